"""The judge, used pointwise: a finished reward run scores (prompt, response) -> one number, the way it was trained
and gated. PPO, GRPO's `judge` reward, Compare, the studio and `python -m pipelines score` all score through this
module (PPO's judge riding on the policy's base reads the same token, `pooled_position`)."""

from __future__ import annotations

import logging

import torch

from pipelines.data.formats import encode_response, fit_to_length
from pipelines.errors import GateError
from pipelines.model.loading import load_base, load_tokenizer, merge_adapter, resolve_model
from pipelines.model.packing import padding_free_passes
from pipelines.runtime.runs import Run
from pipelines.stages.reward.config import RewardConfig

log = logging.getLogger("pipelines")


@torch.no_grad()
def score_ids(model, sequences: list[list[int]], pad_id: int, batch_size: int = 16) -> list[float]:
    """One score per token sequence, from the sequence-classification head at the token it pools (pooled_position)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(batch):
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        scores.extend(logits[:, 0].float().cpu().tolist())
    model.train(was_training)
    return scores


def pooled_position(sequence: list[int], pad_id: int) -> int:
    """Where the sequence-classification head reads a sequence: its rightmost token that is not the pad token
    (transformers' rule, which TRL's training and score_ids go through). Not always the last token: where pad is
    also the end-of-turn token a chat response ends with, the head reads the token before it; PPO's judge pass on
    the shared base reads the same one."""
    return max((i for i, token in enumerate(sequence) if token != pad_id), default=0)


def encode_for_judge(tokenizer, prompt, response: str, max_length: int) -> list[int]:
    """prompt (a string or messages) + response, as in training: the prompt is cut from the left to fit."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    prompt_ids, response_ids = encode_response(tokenizer, messages, response)
    keep = fit_to_length(prompt_ids, [len(response_ids)], max_length, 1)
    if keep is None:  # a response longer than max_length: score its beginning rather than nothing
        return (prompt_ids[-1:] + response_ids)[:max_length]
    return prompt_ids[len(prompt_ids) - keep:] + response_ids


class Judge:
    """A finished reward run, loaded for pointwise scoring: judge.score(prompts, responses) -> scores."""

    def __init__(self, run: Run, device: str | None = None):
        from peft import PeftModel

        config = RewardConfig.from_dict({k: v for k, v in run.config().items() if k != "stage"})
        self.run, self.config = run, config
        self.tokenizer = load_tokenizer(str(run.adapter_dir), config.trust_remote_code)
        model = load_base(config, resolve_model(config.model, config.trust_remote_code), head="score", device=device)
        if config.sft_run:
            model = merge_adapter(model, Run(config.sft_run).adapter_dir)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = PeftModel.from_pretrained(model, run.adapter_dir).eval()
        if config.packing:
            padding_free_passes(self.model, next(self.model.parameters()).device)

    def score(self, prompts: list, responses: list[str], batch_size: int = 16) -> list[float]:
        ids = [encode_for_judge(self.tokenizer, p, r, self.config.max_length) for p, r in zip(prompts, responses)]
        return score_ids(self.model, ids, self.tokenizer.pad_token_id, batch_size)


def check_gate(run: Run, allow_untrusted: bool = False) -> dict:
    """PPO refuses a judge below its accuracy gate unless the user overrides deliberately."""
    summary = run.summary()
    accuracy, gate = summary.get("eval_accuracy"), summary.get("accuracy_gate", 0.70)
    if accuracy is None:
        raise GateError(f"Reward run `{run.path}` has no held-out accuracy (it did not finish). Fix: train a reward "
                        "model to completion first.")
    if accuracy < gate:
        message = (f"The judge `{run.path}` has held-out accuracy {accuracy:.3f}, below its gate {gate:.2f}: its "
                   "scores are not trustworthy enough to optimise against. Fix: train it longer or on better data; "
                   "or, to use it deliberately anyway, set `allow_untrusted_judge: true`.")
        if not allow_untrusted:
            raise GateError(message)
        log.warning("Gate overridden (`allow_untrusted_judge: true`). %s", message)
    else:
        log.info("Judge %s passes its gate: held-out accuracy %.3f >= %.2f", run.id, accuracy, gate)
    for warning in (summary.get("judge_report") or {}).get("warnings", []):  # what its report card found
        log.warning("Judge %s: %s", run.id, warning)
    return summary
