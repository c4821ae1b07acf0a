"""Stage 3, PPO against the judge: our own implementation, on ONE base model shared by every role.

    policy     trainable LoRA adapter, initialised from the SFT adapter
    reference  the frozen SFT adapter (or the bare base): the KL penalty keeps the policy near it
    value      a linear value head on the policy's hidden states (`value_model: shared`), or its own LoRA adapter
               and head (`separate`)
    judge      the reward run's adapter + its score head, when it was trained on the same base, on the same start
               it was trained from (the bare base, the reference's SFT adapter, or its own SFT adapter loaded frozen)

Only the small adapters differ between roles, so memory holds one base instead of four models (TRL's former
PPOTrainer kept policy, reference, reward and value models apart). One step:
    1. rollout: sample responses to a batch of prompts with the policy;
    2. score: the judge's score on each finished response, minus a penalty for ones that never finished;
    3. per token: log-probs of policy and reference, values; reward = score at the end - kl_coef * KL;
    4. GAE advantages (whitened) and returns;
    5. several PPO epochs over minibatches: clipped policy loss + clipped value loss, gradient clipping.
Full passes of the base per step, as few as give the same numbers: the rollout's policy log-probs and values are
taken from the first update's forward when that sees the whole batch at the rollout's weights (one minibatch), and
the shared value head reads the hidden states of the policy's own forward. With the defaults a step is: generate,
judge, reference, then per PPO epoch one forward and one backward.
Every `save_steps` steps (and `save_minutes`, and at a stop) a checkpoint holds all the next step needs:
the trainable weights, the optimizer, the RNG states, the prompt order and the KL controller, so a resumed run
continues exactly as if it had never stopped.

Data-parallel under a launcher (`accelerate launch` / `torchrun`, N processes, one base per process): each rank
takes its own `batch_size` prompts of a global batch of N x `batch_size` (one shared prompt order, disjoint
slices) and samples them with its own seed; generation and the judge run on each rank's own model. Advantages are
whitened over the global batch, gradients are averaged over the ranks before clipping (so the replicas stay
identical: the end-of-run check in the summary says so), and every logged metric, the KL that drives the adaptive
controller included, is the mean over the ranks (`tokens_per_second`: their sum).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pipelines.runtime import distributed
from pipelines.runtime.checkpoints import ResumeError, SaveSchedule, load_ppo, save_ppo
from pipelines.stages.ppo import PPOConfig
from pipelines.data.formats import encode_prompt, load_checked
from pipelines.errors import WorkbenchError
from pipelines.model.judge import Judge, check_gate, encode_for_judge, pooled_position
from pipelines.model.loading import (adapter_report, check_logits_from_hidden, frozen_with, load_base, load_tokenizer,
                              logits_from_hidden, lora_config, pick_device, pick_dtype, prepare_for_kbit, resolve_model)
from pipelines.model.packing import (packing_works, padded_hidden, padding_free_hidden, prefix_sharing_works,
                               window_shorter_than_a_row)
from pipelines.stages.ppo.core import (KLController, entropy_of, gae, kl_k1, kl_k3, logprobs_of, masked_mean, minibatches,
                                policy_loss, token_rewards, value_loss, whiten)
from pipelines.runtime.runs import Run
from pipelines.model.sampling import decode_responses, end_of_turn_ids, generate, left_pad, response_mask
from pipelines.runtime.tracking import Tracker, log_checkpoint

log = logging.getLogger("pipelines")


class TrainingDiverged(WorkbenchError):
    """KL beyond its bound, or a NaN loss: the run stops with its last adapter saved."""


# ---- one base, many roles --------------------------------------------------------------------------------------


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


# ---- the stage ---------------------------------------------------------------------------------------------------


def run(cfg: PPOConfig, run: Run, resume: Path | None = None) -> dict:
    """Train; `resume`: a checkpoint folder of this run to continue from."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    sft_run = Run(cfg.sft_run) if cfg.sft_run else None
    judge_run = Run(cfg.reward_run)
    gate = check_gate(judge_run, cfg.allow_untrusted_judge)
    base_name = sft_run.config().get("model", "default") if sft_run else cfg.model
    if sft_run and cfg.model not in ("", "default", base_name):
        log.warning("`model` is %s but the SFT run was trained on %s; using the SFT run's base.", cfg.model, base_name)
    base_path = resolve_model(base_name, cfg.trust_remote_code)
    tokenizer = load_tokenizer(str(sft_run.adapter_dir) if sft_run else base_path, cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    prompts = load_checked("prompts", cfg.prompts_file, log, cfg.column_map)

    roles = SharedRoles(cfg, base_path, device, sft_run, judge_run)
    if roles.judge_adapters is None:
        judge_role = ("; the judge was trained on another base or quantization, or from an SFT run merged into "
                      "16-bit or 4-bit weights, so it is loaded separately, as it was trained")
    elif roles.judge_adapters == ["judge"]:
        judge_role = " and judge (reward LoRA + score head)"
    else:
        judge_role = f" and judge (reward LoRA + score head on the {roles.judge_adapters[0]} adapter)"
    log.info("Memory layout: one %s base serves policy (trainable LoRA), reference (%s), value (%s)%s.",
             Path(base_path).name, "frozen SFT adapter" if sft_run else "bare base",
             "a head on the policy's hidden states" if roles.shared_value else "LoRA + head", judge_role)
    adapter = adapter_report(roles.model, "policy")
    log.info("Judge %s: held-out accuracy %.3f.", judge_run.id, gate.get("eval_accuracy", float("nan")))

    if roles.judge_adapters is not None:
        judge_max_length = int(judge_run.config().get("max_length", 256))

        def score(batch, texts):
            ids = [encode_for_judge(tokenizer, p["prompt"], t, judge_max_length) for p, t in zip(batch, texts)]
            return roles.judge_scores(ids, tokenizer.pad_token_id)
    else:
        judge = Judge(judge_run, device)

        def score(batch, texts):
            return judge.score([p["prompt"] for p in batch], texts)

    summary = train(cfg, run, roles, tokenizer, prompts, score, resume)
    return {**summary, **adapter, "judge_run": judge_run.id, "shared_judge": roles.judge_adapters is not None}


class PhaseClock:
    """Wall seconds of each phase of a step, logged as `time/<phase>` so the user (and benchmarks/run.py) sees where a
    PPO step goes: generate, judge, forward_policy / forward_reference / forward_value (rollout and updates),
    backward, all_reduce (the gradients' exchange, under a launcher), optimizer, and `time/other` for the rest. On
    CUDA a phase ends with a synchronize, so queued kernels count in the phase that launched them."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def report(self, step_seconds: float) -> dict[str, float]:
        """This step's phases (and the rest, `time/other`); starts the next step from zero."""
        out = {f"time/{name}": seconds for name, seconds in self.seconds.items()}
        out["time/other"] = max(0.0, step_seconds - sum(self.seconds.values()))
        self.seconds = {}
        return out


@dataclass
class Rollout:
    """What a step's updates hold fixed: the rollout policy's log-probs and values, the KL to the reference, GAE
    advantages (whitened) and returns, all (batch, response tokens); and the policy's mean entropy."""

    logprobs: torch.Tensor
    values: torch.Tensor
    kl: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    entropy: float


@torch.no_grad()
def assess_rollout(cfg: PPOConfig, logprobs, values, entropy, ref_logprobs, scores, mask, kl_coef: float) -> Rollout:
    """Steps 3-4 from the rollout policy's outputs: per-token KL and rewards, then advantages and returns
    (advantages whitened over the global batch when several processes share the run)."""
    kl = kl_k1(logprobs, ref_logprobs) * mask
    rewards = token_rewards(scores, kl, mask.float(), kl_coef)
    advantages, returns = gae(rewards, values, mask.float(), cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = whiten(advantages, mask.float(),
                            total=distributed.sum_over_ranks if distributed.active() else None)
    return Rollout(logprobs, values, kl, advantages, returns, masked_mean(entropy, mask).item())


@dataclass
class LoopState:
    """What the loop carries from step to step besides weights and optimizer; checkpointed with them."""

    order: list[int] = field(default_factory=list)  # prompt indices still to visit this pass, drawn from the end
    scores: list[float] = field(default_factory=list)  # each step's mean judge score, for the summary
    kls: list[float] = field(default_factory=list)  # each step's mean KL
    warned_negative: bool = False


def train(cfg: PPOConfig, run: Run, roles: SharedRoles, tokenizer, prompts: list[dict], score,
          resume: Path | None = None) -> dict:
    """The PPO loop. `score(batch_of_prompt_records, response_texts) -> list[float]` is the reward signal:
    the judge in the product, a rule in the tests. `resume`: a checkpoint of this run to continue from."""
    device = roles.device
    trainable = roles.trainable_parameters()
    params = list(trainable.values())
    world, rank = distributed.world_size(), distributed.rank()
    if distributed.active():
        distributed.broadcast_parameters(params)  # identical replicas from the first step
        # each rank samples its own responses; Python's RNG, which orders the prompts, stays the same in all
        torch.manual_seed(cfg.seed + rank)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=1e-5)
    kl_ctl = KLController(cfg.kl_coef, cfg.adaptive_kl, cfg.target_kl, cfg.kl_horizon)
    eos_ids = end_of_turn_ids(tokenizer)
    tracker = Tracker(run, cfg.max_steps, cfg.batch_size, cfg.report_to, cfg.to_dict())
    schedule = SaveSchedule(cfg.checkpoint_every(), cfg.save_minutes)
    clock = PhaseClock(device)
    loop = LoopState()
    first_step = 1
    if resume:  # last: it restores the RNG states, and nothing above may draw random numbers after it
        first_step = restore_checkpoint(resume, device, trainable, optimizer, kl_ctl, loop) + 1
    stopped = False

    def checkpoint(step: int) -> None:
        started = time.time()
        folder = save_ppo(run.path, step, trainable, optimizer, {"kl_coef": kl_ctl.value, **dataclasses.asdict(loop)},
                          cfg.save_total_limit)
        if folder is not None:
            log_checkpoint(step, folder, time.time() - started)
        schedule.saved()

    with tracker:
        for step in range(first_step, cfg.max_steps + 1):
            started = time.time()
            # 1. rollout: this rank's slice of the global batch
            while len(loop.order) < cfg.batch_size * world:  # fewer prompts than a batch: cycle through them again
                loop.order += random.sample(range(len(prompts)), len(prompts))
            drawn = [loop.order.pop() for _ in range(cfg.batch_size * world)]
            batch = [prompts[i] for i in drawn[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]]
            prompt_ids, prompt_mask = left_pad([encode_prompt(tokenizer, p["prompt"]) for p in batch],
                                               tokenizer.pad_token_id, device)
            with clock.phase("generate"):
                responses = generate(roles, ["policy"], prompt_ids, prompt_mask, tokenizer,
                                     max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                     top_p=cfg.top_p, eos_ids=eos_ids)
            mask, finished = response_mask(responses, eos_ids)
            ids = torch.cat([prompt_ids, responses], 1)
            attn = torch.cat([prompt_mask, mask], 1)
            width = prompt_ids.shape[1]
            texts = decode_responses(tokenizer, responses, mask)

            def policy_forward(rows, trainable=False, entropy=False):
                """(log-probs of the sampled tokens, the shared head's values or None, entropy) under the policy."""
                with roles.use(["policy"], trainable=trainable), clock.phase("forward_policy"):
                    return roles.response_logprobs(ids[rows], attn[rows], width, cfg.temperature, entropy)

            def value_forward(rows, trainable=False):
                with roles.use(["value"], trainable=trainable), clock.phase("forward_value"):
                    return roles.values(ids[rows], attn[rows], width)

            # 2. score
            with clock.phase("judge"):
                scores = torch.tensor(score(batch, texts), dtype=torch.float, device=device)
            scores = scores + cfg.unfinished_penalty * (~finished).float()

            # 3-4. the rollout's per-token numbers: the reference's log-probs here; the policy's log-probs and the
            # values from the first update's forward when it sees the whole batch at the rollout's weights (one
            # minibatch), else from a pass of their own; a separate critic needs its own pass either way
            everything = torch.arange(len(responses), device=device)
            with torch.no_grad():
                with roles.frozen(roles.reference), clock.phase("forward_reference"):
                    ref_logprobs = roles.response_logprobs(ids, attn, width, cfg.temperature)[0]
                separate_values = None if roles.shared_value else value_forward(everything)

            def critic(shared_values):
                return shared_values if roles.shared_value else separate_values

            rollout = None
            if cfg.num_minibatches > 1:
                with torch.no_grad():
                    logprobs, values, entropy = policy_forward(everything, entropy=True)
                    rollout = assess_rollout(cfg, logprobs, critic(values), entropy, ref_logprobs, scores, mask,
                                             kl_ctl.value)

            # 5. PPO epochs
            stats: dict[str, list[float]] = {}
            for _ in range(cfg.ppo_epochs):
                for mb in minibatches(cfg.batch_size, cfg.num_minibatches):
                    mb_mask = mask[mb].float()
                    logprobs, values, entropy = policy_forward(mb, trainable=True, entropy=rollout is None)
                    if rollout is None:  # this forward IS the rollout's: same weights, same tokens, eval mode
                        rollout = assess_rollout(cfg, logprobs.detach(), critic(values).detach(), entropy,
                                                 ref_logprobs, scores, mask, kl_ctl.value)
                    pg_loss, pg_stats = policy_loss(logprobs, rollout.logprobs[mb], rollout.advantages[mb], mb_mask,
                                                    cfg.cliprange)
                    if roles.shared_value:  # the head reads detached hidden states: one backward serves both
                        vf_loss, vf_stats = value_loss(values, rollout.values[mb], rollout.returns[mb], mb_mask,
                                                       cfg.cliprange_value)
                        with clock.phase("backward"):
                            (pg_loss + cfg.vf_coef * vf_loss).backward()
                    else:
                        with clock.phase("backward"):
                            pg_loss.backward()  # before the value adapter's switch turns the policy's grads off
                        vf_loss, vf_stats = value_loss(value_forward(mb, trainable=True), rollout.values[mb],
                                                       rollout.returns[mb], mb_mask, cfg.cliprange_value)
                        with clock.phase("backward"):
                            (cfg.vf_coef * vf_loss).backward()
                    if distributed.active():  # the one exchange of a data-parallel update, timed on its own
                        with clock.phase("all_reduce"):
                            distributed.average_gradients(params)
                    with clock.phase("optimizer"):
                        if cfg.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    for key, value in {"loss/policy": pg_loss.item(), "loss/value": vf_loss.item(), **pg_stats,
                                       **vf_stats}.items():
                        stats.setdefault(key, []).append(value)
            kl = rollout.kl

            # report (the means over all ranks: every rank logs, decides and adapts on the same numbers)
            non_score = (-kl_ctl.value * kl).sum(1).mean().item()
            metrics = {
                "objective/scores": scores.mean().item(),
                "objective/kl": kl.sum(1).mean().item(),
                "objective/kl_k3": (kl_k3(rollout.logprobs, ref_logprobs) * mask).sum(1).mean().item(),
                "objective/non_score_reward": non_score,
                "objective/rlhf_reward": scores.mean().item() + non_score,
                "objective/entropy": rollout.entropy,
                "objective/kl_coef": kl_ctl.value,
                **{k: sum(v) / len(v) for k, v in stats.items()},
                "val/unfinished": (~finished).float().mean().item(),
                "response_length": mask.sum(1).float().mean().item(),
                "tokens_per_second": mask.sum().item() / max(time.time() - started, 1e-6),
                **clock.report(time.time() - started),
            }
            metrics = distributed.mean_over_ranks(metrics, summed=("tokens_per_second",))
            mean_kl = metrics["objective/kl"]
            tracker.log(step, metrics)
            loop.scores.append(metrics["objective/scores"])
            loop.kls.append(mean_kl)
            kl_ctl.update(mean_kl, cfg.batch_size * world)
            if step % cfg.sample_every == 0 or step == 1:
                run.append_samples([{"step": step, "prompt": p["prompt"][-1]["content"], "response": t,
                                     "score": s, "kl": k}
                                    for p, t, s, k in list(zip(batch, texts, scores.tolist(),
                                                               kl.sum(1).tolist()))[:4]])
            if mean_kl < -1.0 and not loop.warned_negative:
                loop.warned_negative = True
                log.warning("The KL estimate is negative (%.2f): the policy's log-probs disagree with how responses "
                            "were sampled. Report it: sampling and scoring use one distribution by design.",
                            mean_kl)
            problem = diverged(metrics, cfg.max_kl)
            if problem:
                save_policy(roles, tokenizer, run)
                raise TrainingDiverged(f"Stopped at step {step}: {problem} The last policy adapter is saved in "
                                       f"{run.adapter_dir}.")
            stopped = tracker.should_stop()
            if schedule.due(step) or stopped or step == cfg.max_steps:
                checkpoint(step)
            if stopped:
                break

    replicas = distributed.replica_check(params)
    save_policy(roles, tokenizer, run)
    window = loop.scores[-max(1, len(loop.scores) // 4):]
    return {
        "steps": len(loop.scores),
        "initial_score": loop.scores[0],
        "final_score": sum(window) / len(window),
        "mean_kl": sum(loop.kls) / len(loop.kls),
        "final_kl": loop.kls[-1],
        "final_kl_coef": kl_ctl.value,
        **replicas,
        "stopped": stopped,
    }


def restore_checkpoint(folder: Path, device, trainable: dict, optimizer, kl_ctl: KLController, loop: LoopState) -> int:
    """Load a PPO checkpoint into the live objects; returns its step."""
    weights, optimizer_state, state = load_ppo(folder, device)
    missing, extra = sorted(set(trainable) - set(weights)), sorted(set(weights) - set(trainable))
    if missing or extra:
        example = f"lacks `{missing[0]}`" if missing else f"holds `{extra[0]}`, which this model has not"
        raise ResumeError(f"Checkpoint `{folder}` does not match this model: it {example} ({len(missing)} missing, "
                          f"{len(extra)} unexpected trainable tensors). Fix: resume with the config the run started "
                          "with (`python -m pipelines resume RUN_DIR` reads it from the run's config.yaml).")
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(weights[name])
    optimizer.load_state_dict(optimizer_state)
    kl_ctl.value = state["kl_coef"]
    for name in (f.name for f in dataclasses.fields(LoopState)):
        setattr(loop, name, state[name])
    return state["step"]


def diverged(metrics: dict, max_kl: float) -> str | None:
    for key in ("loss/policy", "loss/value", "objective/kl"):
        if not math.isfinite(metrics.get(key, 0.0)):
            return (f"`{key}` became {metrics[key]} (numerical blow-up). Fix: lower `learning_rate`, or use fp32 / "
                    "bf16 rather than fp16.")
    if max_kl and metrics["objective/kl"] > max_kl:
        return (f"the KL to the reference reached {metrics['objective/kl']:.1f}, beyond `max_kl: {max_kl}`: the "
                "policy drifted too far from the SFT model (reward hacking territory). Fix: lower `learning_rate`, "
                "raise `kl_coef`, or turn on `adaptive_kl`.")
    return None


def save_policy(roles: SharedRoles, tokenizer, run: Run) -> None:
    """The policy adapter alone, as a normal PEFT adapter folder (it replaces the SFT adapter, not stacks on it).
    Rank 0's, under a launcher (the replicas are identical)."""
    import shutil

    if not run.writes:
        return
    roles.model.save_pretrained(run.path / "_save", selected_adapters=["policy"])
    shutil.rmtree(run.adapter_dir, ignore_errors=True)
    (run.path / "_save" / "policy").rename(run.adapter_dir)
    shutil.rmtree(run.path / "_save", ignore_errors=True)
    tokenizer.save_pretrained(run.adapter_dir)
    log.info("Policy adapter saved to %s", run.adapter_dir)
