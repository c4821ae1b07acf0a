"""Stage 3, PPO against the judge: our own implementation, on ONE base model shared by every role (roles.py).

One step, as `train` tells it:
    1. rollout: sample responses to a batch of prompts with the policy;
    2. score: the judge's score on each finished response, minus a penalty for ones that never finished;
    3. reference: the reference's log-probs of the sampled tokens (and a separate critic's values);
    4. advantages: per token, reward = score at the end - kl_coef * KL; GAE advantages (whitened) and returns;
    5. update: several PPO epochs over minibatches: clipped policy loss + clipped value loss, gradient clipping;
    6. log: the step's metrics, samples, the guards (KL bound, NaN), a checkpoint when due;
    7. watch: the answers' signals and, every `probe_every` steps, the probe prompts against the start: an alarm
       when they drift (pipelines/runtime/watch.py), and the end of the run there with `stop_on_alarm`.
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
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.data.formats import encode_prompt, load_checked
from pipelines.errors import TrainingDiverged
from pipelines.model.judge import Judge, check_gate, encode_for_judge
from pipelines.model.loading import adapter_report, load_tokenizer, pick_device, resolve_model
from pipelines.model.sampling import (decode_responses, end_of_turn_ids, generate, left_pad, response_mask,
                                      sample_responses)
from pipelines.runtime import distributed
from pipelines.runtime.checkpoints import ResumeError, SaveSchedule, load_ppo, save_ppo
from pipelines.runtime.runs import Run
from pipelines.runtime.tracking import Tracker, first_not_finite, log_checkpoint
from pipelines.runtime.watch import Keys, Watch, batch_signals, load_probes
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.ppo.core import (KLController, gae, kl_k1, kl_k3, masked_mean, minibatches, policy_loss,
                                       token_rewards, value_loss, whiten)
from pipelines.stages.ppo.roles import SharedRoles

log = logging.getLogger("pipelines")


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
    probes = load_probes(cfg, prompts)

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

    summary = train(cfg, run, roles, tokenizer, prompts, score, resume, probes)
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
          resume: Path | None = None, probes: list[dict] = ()) -> dict:
    """The PPO loop. `score(batch_of_prompt_records, response_texts) -> list[float]` is the reward signal:
    the judge in the product, a rule in the tests. `resume`: a checkpoint of this run to continue from. `probes`:
    the watch's prompt records (none: no probes; the signals of the steps are watched all the same)."""
    loop = PPOLoop(cfg, run, roles, tokenizer, score, probes)
    first_step = loop.restore(resume) + 1 if resume else 1  # last: it restores the RNG states
    stopped = False
    with loop.tracker:
        if first_step == 1:
            loop.watch.probe_start()  # the starting model's answers, before any update
        for step in range(first_step, cfg.max_steps + 1):
            started = time.time()
            sampled = loop.rollout(loop.draw(prompts))  # 1. this rank's slice of the global batch, answered
            scores = loop.judge(sampled)  # 2.
            ref_logprobs, separate_values = loop.reference(sampled)  # 3.
            rollout, losses = loop.update(sampled, scores, ref_logprobs, separate_values)  # 4-5.
            probed = loop.probe(step)  # 7. (its time is part of the step's)
            metrics = loop.report(step, started, sampled, scores, ref_logprobs, rollout, losses, probed)  # 6.
            loop.keep_samples(step, sampled, scores, rollout)
            loop.stop_if_diverged(step, metrics)
            raised = loop.watch.check(step, metrics)  # 7.
            # agreed by every rank (a collective: called at every step), so all of them stop at the same step
            alarmed = distributed.agree(bool(raised)) and cfg.stop_on_alarm and step < cfg.max_steps
            stopped = loop.tracker.should_stop() or alarmed
            if loop.schedule.due(step) or stopped or step == cfg.max_steps:
                loop.checkpoint(step)
            if stopped:
                if alarmed:
                    log.warning("Stopped at step %d by the reward-hacking watch (`stop_on_alarm`); a checkpoint of "
                                "this step is saved.", step)
                break
    return loop.finish(stopped)


@dataclass
class Sampled:
    """Step 1's result: this rank's prompts with the sampled responses, as one batch of prompt + response."""

    batch: list[dict]
    ids: torch.Tensor  # the prompts, left-padded, then the responses
    attn: torch.Tensor
    width: int  # the prompts' columns
    mask: torch.Tensor  # the responses' tokens, end-of-turn included
    finished: torch.Tensor  # which responses reached end-of-turn
    texts: list[str]


class PPOLoop:
    """What the steps share (the roles, the optimizer, the KL controller, the clock, the tracker, the state a
    checkpoint carries), and each part of a step as a method, in the order `train` calls them."""

    def __init__(self, cfg: PPOConfig, run: Run, roles: SharedRoles, tokenizer, score, probes: list[dict] = ()):
        self.cfg, self.run, self.roles, self.tokenizer, self.score = cfg, run, roles, tokenizer, score
        self.device = roles.device
        self.trainable = roles.trainable_parameters()
        self.params = list(self.trainable.values())
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if distributed.active():
            distributed.broadcast_parameters(self.params)  # identical replicas from the first step
            # each rank samples its own responses; Python's RNG, which orders the prompts, stays the same in all
            torch.manual_seed(cfg.seed + self.rank)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, eps=1e-5)
        self.kl_ctl = KLController(cfg.kl_coef, cfg.adaptive_kl, cfg.target_kl, cfg.kl_horizon)
        self.eos_ids = end_of_turn_ids(tokenizer)
        self.tracker = Tracker(run, cfg.max_steps, cfg.batch_size, cfg.report_to, cfg.to_dict())
        self.schedule = SaveSchedule(cfg.checkpoint_every(), cfg.save_minutes)
        self.clock = PhaseClock(self.device)
        self.state = LoopState()
        self.watch = Watch(run, Keys(length="response_length", cut_off="val/unfinished"), list(probes),
                           self.answer_greedily, lambda records, texts: self.score(records, texts),
                           cfg.length_alarm, cfg.max_new_tokens, cfg.batch_size)

    def restore(self, folder: Path) -> int:
        """The checkpoint's weights, optimizer, KL controller, loop state and RNG states; returns its step. The
        watch reads its history back from the run folder (already rewound to the checkpoint)."""
        step = restore_checkpoint(folder, self.device, self.trainable, self.optimizer, self.kl_ctl, self.state)
        self.watch.restore()
        return step

    def answer_greedily(self, records: list[dict]) -> tuple[list[str], list[bool]]:
        """The policy's greedy answers to prompt records, and whether each was cut off: the watch's probes."""
        return sample_responses(self.roles, ["policy"], records, self.tokenizer, batch_size=len(records), seed=None,
                                max_new_tokens=self.cfg.max_new_tokens, temperature=0.0, top_p=1.0)

    def probe(self, step: int) -> dict[str, float]:
        """The probes' means at a probe step (every `probe_every`, and the last); else nothing."""
        if not self.watch.probes or not self.cfg.probe_due(step):
            return {}
        with self.clock.phase("probes"):
            return self.watch.probe(step)

    def draw(self, prompts: list[dict]) -> list[dict]:
        """This rank's slice of the next global batch, from one prompt order shared by the ranks."""
        size = self.cfg.batch_size
        while len(self.state.order) < size * self.world:  # fewer prompts than a batch: cycle through them again
            self.state.order += random.sample(range(len(prompts)), len(prompts))
        drawn = [self.state.order.pop() for _ in range(size * self.world)]
        return [prompts[i] for i in drawn[self.rank * size:(self.rank + 1) * size]]

    def rollout(self, batch: list[dict]) -> Sampled:
        cfg = self.cfg
        prompt_ids, prompt_mask = left_pad([encode_prompt(self.tokenizer, p["prompt"]) for p in batch],
                                           self.tokenizer.pad_token_id, self.device)
        with self.clock.phase("generate"):
            responses = generate(self.roles, ["policy"], prompt_ids, prompt_mask, self.tokenizer,
                                 max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                 eos_ids=self.eos_ids)
        mask, finished = response_mask(responses, self.eos_ids)
        return Sampled(batch, torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, mask], 1),
                       prompt_ids.shape[1], mask, finished, decode_responses(self.tokenizer, responses, mask))

    def judge(self, sampled: Sampled) -> torch.Tensor:
        with self.clock.phase("judge"):
            scores = torch.tensor(self.score(sampled.batch, sampled.texts), dtype=torch.float, device=self.device)
        return scores + self.cfg.unfinished_penalty * (~sampled.finished).float()

    def policy_forward(self, sampled: Sampled, rows, trainable: bool = False, entropy: bool = False):
        """(log-probs of the sampled tokens, the shared head's values or None, entropy) under the policy."""
        with self.roles.use(["policy"], trainable=trainable), self.clock.phase("forward_policy"):
            return self.roles.response_logprobs(sampled.ids[rows], sampled.attn[rows], sampled.width,
                                                self.cfg.temperature, entropy)

    def value_forward(self, sampled: Sampled, rows, trainable: bool = False):
        with self.roles.use(["value"], trainable=trainable), self.clock.phase("forward_value"):
            return self.roles.values(sampled.ids[rows], sampled.attn[rows], sampled.width)

    @torch.no_grad()
    def reference(self, sampled: Sampled) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reference's log-probs of the sampled tokens, and a separate critic's values (which need a pass of
        their own either way; the shared head's come with the policy's forward)."""
        with self.roles.frozen(self.roles.reference), self.clock.phase("forward_reference"):
            ref_logprobs = self.roles.response_logprobs(sampled.ids, sampled.attn, sampled.width,
                                                        self.cfg.temperature)[0]
        everything = torch.arange(len(sampled.batch), device=self.device)
        return ref_logprobs, None if self.roles.shared_value else self.value_forward(sampled, everything)

    def update(self, sampled: Sampled, scores, ref_logprobs, separate_values) -> tuple[Rollout, dict[str, float]]:
        """Steps 4-5: the rollout's advantages, at the weights that sampled it, then the PPO epochs. The rollout's
        log-probs and values come from the first update's forward when it sees the whole batch (one minibatch),
        else from a pass of their own. Returns the rollout and the mean of each loss statistic."""
        cfg = self.cfg

        def assess(logprobs, values, entropy) -> Rollout:
            critic = values if self.roles.shared_value else separate_values
            return assess_rollout(cfg, logprobs, critic, entropy, ref_logprobs, scores, sampled.mask,
                                  self.kl_ctl.value)

        rollout = None
        if cfg.num_minibatches > 1:
            with torch.no_grad():
                rollout = assess(*self.policy_forward(sampled, torch.arange(len(sampled.batch), device=self.device),
                                                      entropy=True))
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            for mb in minibatches(cfg.batch_size, cfg.num_minibatches):
                logprobs, values, entropy = self.policy_forward(sampled, mb, trainable=True, entropy=rollout is None)
                if rollout is None:  # this forward IS the rollout's: same weights, same tokens, eval mode
                    rollout = assess(logprobs.detach(), None if values is None else values.detach(), entropy)
                for key, value in self.optimize(sampled, mb, rollout, logprobs, values).items():
                    stats.setdefault(key, []).append(value)
        return rollout, {key: sum(values) / len(values) for key, values in stats.items()}

    def optimize(self, sampled: Sampled, mb, rollout: Rollout, logprobs, values) -> dict[str, float]:
        """One optimizer step on a minibatch: the clipped policy and value losses, backward, the gradients averaged
        over the ranks and clipped, the step. Returns the losses and their statistics."""
        cfg, clock = self.cfg, self.clock
        mb_mask = sampled.mask[mb].float()
        pg_loss, pg_stats = policy_loss(logprobs, rollout.logprobs[mb], rollout.advantages[mb], mb_mask,
                                        cfg.cliprange)
        if self.roles.shared_value:  # the head reads detached hidden states: one backward serves both
            vf_loss, vf_stats = value_loss(values, rollout.values[mb], rollout.returns[mb], mb_mask,
                                           cfg.cliprange_value)
            with clock.phase("backward"):
                (pg_loss + cfg.vf_coef * vf_loss).backward()
        else:
            with clock.phase("backward"):
                pg_loss.backward()  # before the value adapter's switch turns the policy's grads off
            vf_loss, vf_stats = value_loss(self.value_forward(sampled, mb, trainable=True), rollout.values[mb],
                                           rollout.returns[mb], mb_mask, cfg.cliprange_value)
            with clock.phase("backward"):
                (cfg.vf_coef * vf_loss).backward()
        if distributed.active():  # the one exchange of a data-parallel update, timed on its own
            with clock.phase("all_reduce"):
                distributed.average_gradients(self.params)
        with clock.phase("optimizer"):
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return {"loss/policy": pg_loss.item(), "loss/value": vf_loss.item(), **pg_stats, **vf_stats}

    def report(self, step: int, started: float, sampled: Sampled, scores, ref_logprobs, rollout: Rollout,
               losses: dict[str, float], probed: dict[str, float]) -> dict[str, float]:
        """The step's metrics, logged: the means over all ranks, so every rank logs, decides and adapts the KL
        coefficient on the same numbers. `probed`: the probes' means, the same on every rank (identical replicas
        answer greedily)."""
        kl, mask = rollout.kl, sampled.mask
        non_score = (-self.kl_ctl.value * kl).sum(1).mean().item()
        metrics = {
            "objective/scores": scores.mean().item(),
            "objective/kl": kl.sum(1).mean().item(),
            "objective/kl_k3": (kl_k3(rollout.logprobs, ref_logprobs) * mask).sum(1).mean().item(),
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": scores.mean().item() + non_score,
            "objective/entropy": rollout.entropy,
            "objective/kl_coef": self.kl_ctl.value,
            **losses,
            "val/unfinished": (~sampled.finished).float().mean().item(),
            "response_length": mask.sum(1).float().mean().item(),
            **batch_signals([p["prompt"][-1]["content"] for p in sampled.batch], sampled.texts),
            "tokens_per_second": mask.sum().item() / max(time.time() - started - probed.get("time/probes", 0), 1e-6),
            **self.clock.report(time.time() - started),
        }
        metrics = {**distributed.mean_over_ranks(metrics, summed=("tokens_per_second",)), **probed}
        self.tracker.log(step, metrics)
        self.state.scores.append(metrics["objective/scores"])
        self.state.kls.append(metrics["objective/kl"])
        self.kl_ctl.update(metrics["objective/kl"], self.cfg.batch_size * self.world)
        return metrics

    def keep_samples(self, step: int, sampled: Sampled, scores, rollout: Rollout) -> None:
        if step % self.cfg.sample_every == 0 or step == 1:
            rows = zip(sampled.batch, sampled.texts, scores.tolist(), rollout.kl.sum(1).tolist())
            self.run.append_samples([{"step": step, "prompt": p["prompt"][-1]["content"], "response": t, "score": s,
                                      "kl": k} for p, t, s, k in list(rows)[:4]])

    def stop_if_diverged(self, step: int, metrics: dict[str, float]) -> None:
        mean_kl = metrics["objective/kl"]
        if mean_kl < -1.0 and not self.state.warned_negative:
            self.state.warned_negative = True
            log.warning("The KL estimate is negative (%.2f): the policy's log-probs disagree with how responses "
                        "were sampled. Report it: sampling and scoring use one distribution by design.", mean_kl)
        problem = diverged(metrics, self.cfg.max_kl)
        if problem:
            save_policy(self.roles, self.tokenizer, self.run)
            raise TrainingDiverged(f"Stopped at step {step}: {problem} The last policy adapter is saved in "
                                   f"{self.run.adapter_dir}.")

    def checkpoint(self, step: int) -> None:
        started = time.time()
        folder = save_ppo(self.run.path, step, self.trainable, self.optimizer,
                          {"kl_coef": self.kl_ctl.value, **dataclasses.asdict(self.state)}, self.cfg.save_total_limit)
        if folder is not None:
            log_checkpoint(step, folder, time.time() - started)
        self.schedule.saved()

    def finish(self, stopped: bool) -> dict:
        """The policy adapter saved, and the summary."""
        replicas = distributed.replica_check(self.params)
        save_policy(self.roles, self.tokenizer, self.run)
        scores, kls = self.state.scores, self.state.kls
        window = scores[-max(1, len(scores) // 4):]
        return {"steps": len(scores), "initial_score": scores[0], "final_score": sum(window) / len(window),
                "mean_kl": sum(kls) / len(kls), "final_kl": kls[-1], "final_kl_coef": self.kl_ctl.value, **replicas,
                "stopped": stopped, **self.watch.finish()}


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
    if key := first_not_finite(metrics, ("loss/policy", "loss/value", "objective/kl")):
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
