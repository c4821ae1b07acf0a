"""PPO's roles on ONE base model: every role an adapter (or a head) on the same frozen weights.

    policy     trainable LoRA adapter, initialised from the SFT adapter
    reference  the frozen SFT adapter (or the bare base): the KL penalty keeps the policy near it
    value      a linear value head on the policy's hidden states (`value_model: shared`), or its own LoRA adapter
               and head (`separate`)
    judge      the reward run's adapter + its score head, when it was trained on the same base, on the same start
               it was trained from (the bare base, the reference's SFT adapter, or its own SFT adapter loaded frozen)

Only the small adapters differ between roles, so memory holds one base instead of four models (TRL's former
PPOTrainer kept policy, reference, reward and value models apart). Every pass runs on the batch's real tokens where
the model allows (pipelines/model/packing.py), with the same numbers as the padded pass.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from pipelines.model.judge import pooled_position
from pipelines.model.loading import (check_logits_from_hidden, frozen_with, load_base, logits_from_hidden, lora_config,
                                     pick_dtype, prepare_for_kbit, resolve_model)
from pipelines.model.packing import (packing_works, padded_hidden, padding_free_hidden, prefix_sharing_works,
                                     window_shorter_than_a_row)
from pipelines.runtime.runs import Run
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.ppo.core import entropy_of, logprobs_of

log = logging.getLogger("pipelines")


class SharedRoles:
    """The PEFT model with adapters `policy`, `reference` (optional), `value` (with `value_model: separate`) and
    `judge` (optional)."""

    def __init__(self, cfg: PPOConfig, base_path: str, device: str, sft_run: Run | None, judge_run: Run | None):
        from peft import PeftModel, get_peft_model

        self.device = device
        base = prepare_for_kbit(load_base(cfg, base_path, device=device), cfg)
        if sft_run:
            self.model = PeftModel.from_pretrained(base, sft_run.adapter_dir, adapter_name="policy", is_trainable=True)
            self.model.load_adapter(sft_run.adapter_dir, adapter_name="reference", is_trainable=False)
            self.reference = ["reference"]
        else:
            self.model = get_peft_model(base, lora_config(cfg, "CAUSAL_LM", base, dropout=0.0), adapter_name="policy")
            self.reference = []  # the bare base
        self.shared_value = cfg.value_model == "shared"
        if not self.shared_value:
            self.model.add_adapter("value", lora_config(cfg, "CAUSAL_LM", base, dropout=0.0))
        causal = self.model.get_base_model()
        self.decoder, self.logits = causal.get_decoder(), logits_from_hidden(causal)
        check_logits_from_hidden(causal, self.decoder, self.logits, device)
        hidden = causal.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1).to(device)
        nn.init.zeros_(self.value_head.weight), nn.init.zeros_(self.value_head.bias)
        self.judge_adapters: list[str] | None = None
        self.score_head: nn.Linear | None = None
        if judge_run and shares_base(judge_run, base_path, cfg.quantization,
                                     exact_merges=cfg.quantization == "none" and pick_dtype(device) == torch.float32):
            self._attach_judge(judge_run, hidden, sft_run)
        # Eval mode for good, training included: with dropout on, the same tokens get different log-probs on
        # each pass and the PPO ratio is noisy before any update (the lr=0 test checks it stays exactly 1).
        self.model.eval()
        self.quantized = cfg.quantization != "none"
        self.packing = cfg.packing and packing_works(self.decoder, device)
        if cfg.packing and not self.packing:
            log.warning("This model does not keep packed sequences apart; PPO passes run on padded batches.")
        self.share_prefix = self.packing and prefix_sharing_works(self.decoder, device)
        if self.packing and not self.share_prefix:
            log.info("PPO passes run on packed rows; the batch's shared prompt start is not computed once (%s).",
                     "this model's sliding-window attention could outrun a shared row"
                     if window_shorter_than_a_row(causal.config) else "this model does not take a custom mask")

    def _attach_judge(self, judge_run: Run, hidden: int, sft_run: Run | None) -> None:
        """The reward adapter on our base, above the start it was trained from: the bare base (W + dW_reward), or
        an SFT run's adapter, merged into W for its training, which running both adapters at once computes
        (W + dW_sft + dW_reward). That SFT adapter is the reference's when the judge started from PPO's own SFT run,
        else it is loaded frozen as `judge_start`."""
        from peft import PeftConfig, set_peft_model_state_dict
        from safetensors.torch import load_file

        judge_sft = judge_run.config().get("sft_run") or ""
        if not judge_sft:
            start = []
        elif sft_run and Path(judge_sft).resolve() == sft_run.path.resolve():
            start = ["reference"]
        else:
            self.model.load_adapter(Run(judge_sft).adapter_dir, adapter_name="judge_start", is_trainable=False)
            start = ["judge_start"]
        config = PeftConfig.from_pretrained(judge_run.adapter_dir)
        config.task_type, config.modules_to_save = "CAUSAL_LM", None
        self.model.add_adapter("judge", config)
        weights = load_file(judge_run.adapter_dir / "adapter_model.safetensors")
        score = weights.pop(next(k for k in weights if k.endswith("score.weight")))
        set_peft_model_state_dict(self.model, weights, adapter_name="judge")
        self.score_head = nn.Linear(hidden, 1, bias=False).to(self.device)
        self.score_head.weight.data.copy_(score.float())
        self.judge_adapters = start + ["judge"]

    def frozen(self, adapters: list[str]):
        """The context for a pass that trains nothing: sampling, the reference, the judge (pipelines.model.loading.
        frozen_with: the adapters merged into the weights where that keeps the numbers)."""
        return frozen_with(self.model, adapters, self.quantized)

    def use(self, adapters: list[str], trainable: bool = False):
        """Activate adapters; an empty list means the bare base."""
        if adapters:
            self.model.base_model.set_adapter(adapters, inference_mode=not trainable)
            return contextlib.nullcontext()
        return self.model.disable_adapter()

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Policy and value adapters and the value head, by name (the names key the checkpoint's weights)."""
        params = {n: p for n, p in self.model.named_parameters() if ".policy." in n or ".value." in n}
        for p in params.values():
            p.requires_grad_(True)
        return params | {f"value_head.{n}": p for n, p in self.value_head.named_parameters()}

    def hidden(self, ids, mask):
        """Last hidden states of a padded batch; without the padding's share of the work where the model allows
        (pipelines/model/packing.py: packed rows, and the prefix the batch's prompts share computed once; the same
        numbers)."""
        if self.packing:
            return padding_free_hidden(self.decoder, ids, mask, self.share_prefix)
        return padded_hidden(self.decoder, ids, mask)

    def response_logprobs(self, ids, mask, prompt_width: int, temperature: float, entropy: bool = False):
        """One pass under the active adapters over prompts + responses (`ids[:, prompt_width:]`). Returns the
        log-probs of the response tokens, the shared head's values (None for a separate critic) and, with
        `entropy`, the policy's entropy per token; all (batch, response width), zero on padding.

        The LM head and the softmax over the vocabulary run on real response tokens only: after the decoder they
        are the largest part of a pass, and about half the response columns are padding. The value head reads the
        hidden states detached, so the value loss trains the head alone: the fully joint actor-critic, where the
        value loss also moves the policy's LoRA, is the variant the Hydra-RLHF paper found unstable."""
        hidden = self.hidden(ids, mask)[:, prompt_width - 1:-1]  # the position before each token predicts it
        real = mask[:, prompt_width:].bool()
        # The distribution trained on is the one sampled from: the model's own logits (its LM head and whatever its
        # forward does after it, pipelines.model.loading.logits_from_hidden) at the sampling temperature, full softmax.
        logits = self.logits(hidden[real]).float() / temperature  # (real response tokens, vocabulary)
        logprobs = hidden.new_zeros(real.shape, dtype=torch.float)
        logprobs[real] = logprobs_of(logits, ids[:, prompt_width:][real])
        entropies = None
        if entropy:
            entropies = torch.zeros_like(logprobs)
            with torch.no_grad():
                entropies[real] = entropy_of(logits)
        values = self.value_head(hidden.detach().float()).squeeze(-1) if self.shared_value else None
        return logprobs, values, entropies

    def values(self, ids, mask, prompt_width: int):
        """The separate critic: the `value` adapter must be active."""
        return self.value_head(self.hidden(ids, mask)[:, prompt_width - 1:-1].float()).squeeze(-1)

    @torch.no_grad()
    def judge_scores(self, sequences: list[list[int]], pad_id: int) -> list[float]:
        width = max(map(len, sequences))
        ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(sequences):
            ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with self.frozen(self.judge_adapters):
            hidden = self.hidden(ids, mask)
        read = torch.tensor([pooled_position(seq, pad_id) for seq in sequences], device=self.device)
        return self.score_head(hidden[torch.arange(len(sequences)), read].float()).squeeze(-1).cpu().tolist()


def shares_base(judge_run: Run, base_path: str, quantization: str, exact_merges: bool) -> bool:
    """Whether the judge can ride on our base: it was trained on the same base, loaded the same way, and its start
    can be rebuilt there exactly. A judge trained from an SFT run had that adapter merged into its weights; in
    float32 that is the sum of the two adapters up to rounding, but merged into 16-bit or 4-bit weights it is rounded
    to their precision, so there the judge is loaded on its own, computed as it was trained and gated."""
    config = judge_run.config()
    same_base = resolve_model(config.get("model", "default"), config.get("trust_remote_code", False)) == base_path
    same_load = config.get("quantization", "none") == quantization
    return same_base and same_load and (not config.get("sft_run") or exact_merges)


