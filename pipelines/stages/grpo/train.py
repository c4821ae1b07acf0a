"""GRPO, RL without a value model (TRL's GRPOTrainer + LoRA): for each prompt the model samples a group of answers,
each answer is scored, and its advantage is how far its score sits above or below its group's mean. Where the score
is a checkable rule (pipelines/stages/grpo/rules.py: the reference answer appears, a regex matches, a length bound
holds) no judge is needed at all: the path for answers that are objectively right or wrong.

The reference for the KL penalty is the starting model through adapter switching, never a second copy in memory
(pipelines.model.loading.starting_policy), and the saved adapter applies to the SFT run's base as it is, like a PPO
or DPO policy: Compare takes it as `grpo_run`.

The reward-hacking watch (pipelines/runtime/watch.py) rides along as a callback: the sampled answers' signals join
each logged row, the probe prompts are answered greedily at the start and every `probe_every` steps, and an alarm
can end the run with a checkpoint (`stop_on_alarm`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import trl
from datasets import Dataset
from transformers import TrainerCallback

from pipelines.data.formats import encode_prompt, load_checked
from pipelines.errors import DataError
from pipelines.model.loading import adapter_report, lora_config, pick_device, save_trained_adapter, starting_policy
from pipelines.model.sampling import decode_responses, end_of_turn_ids, left_pad, response_mask, sample
from pipelines.runtime import distributed
from pipelines.runtime.runs import Run
from pipelines.runtime.tracking import (WATCHED, Tracker, TrackerCallback, TrainerCheckpoints, train_tracked,
                                        trainer_arguments)
from pipelines.runtime.watch import Keys, Watch, batch_signals, load_probes
from pipelines.stages.grpo.config import GRPOConfig
from pipelines.stages.grpo.rules import answer_reward, length_reward, regex_reward

log = logging.getLogger("pipelines")


# ---- rewards: what each answer of a group scores --------------------------------------------------------------


def last_text(messages) -> str:
    """The text of a conversational prompt's or completion's last message (TRL hands both as message lists); plain
    text as it is."""
    return messages[-1]["content"] if isinstance(messages, list) else messages


def reward_functions(cfg: GRPOConfig, device: str) -> list:
    """One function per entry of `rewards`, in TRL's form `f(prompts, completions, **columns) -> scores`. Their
    names are the metric names (`rewards/correct_answer/mean`...)."""
    functions = []
    for name in cfg.rewards:
        if name == "answer":
            def correct_answer(prompts, completions, answer, **_):
                return [answer_reward(last_text(c), a, last_text(p)) for p, c, a in zip(prompts, completions, answer)]
            functions.append(correct_answer)
        elif name == "regex":
            def matches_regex(completions, **_):
                return [regex_reward(last_text(c), cfg.reward_regex) for c in completions]
            functions.append(matches_regex)
        elif name == "length":
            def within_length(completions, **_):
                return [length_reward(last_text(c), cfg.max_words) for c in completions]
            functions.append(within_length)
        else:
            functions.append(judge_reward(cfg, device))
    return functions


def judge_reward(cfg: GRPOConfig, device: str):
    """The reward run's score, behind the same accuracy gate as PPO's (an untrusted judge teaches noise)."""
    from pipelines.model.judge import Judge, check_gate

    judge_run = Run(cfg.reward_run)
    check_gate(judge_run, cfg.allow_untrusted_judge)
    scorer = Judge(judge_run, device)

    def judge(prompts, completions, **_):
        return scorer.score(prompts, [last_text(c) for c in completions])
    return judge


def with_samples(functions: list, every: int, run: Run, signals: dict):
    """The first reward function, also writing the step's first four (prompt, answer, rewards) to samples.jsonl:
    `score` their sum (what the group compares), `rewards` each one's (the others computed again for these four).
    It keeps the signals of every batch of answers it sees in `signals`, for the watch."""
    first = functions[0]

    def wrapped(prompts, completions, trainer_state=None, **columns):
        scores = first(prompts=prompts, completions=completions, **columns)
        signals.update(batch_signals([last_text(p) for p in prompts], [last_text(c) for c in completions]))
        step = (trainer_state.global_step if trainer_state else 0) + 1  # the step these samples are trained in
        if run.writes and (step == 1 or step % every == 0):
            first_four = {k: v[:4] if isinstance(v, list) else v for k, v in columns.items()}
            each = {first.__name__: scores[:4], **{f.__name__: f(prompts=prompts[:4], completions=completions[:4],
                                                                 **first_four) for f in functions[1:]}}
            rows = []
            for i, (prompt, completion) in enumerate(zip(prompts[:4], completions[:4])):
                rewards = {name: values[i] for name, values in each.items()}
                rows.append({"step": step, "prompt": last_text(prompt),
                             "response": last_text(completion), "rewards": rewards,
                             "score": sum(v for v in rewards.values() if v is not None)})
            run.append_samples(rows)
        return scores
    wrapped.__name__ = first.__name__
    return wrapped


def to_dataset(rows: list[dict], cfg: GRPOConfig) -> Dataset:
    """Prompts as TRL's conversational prompts, with their reference answers. The `answer` reward has nothing to say
    about a prompt without one, so such prompts are left out, and counted in the log."""
    if "answer" in cfg.rewards:
        kept = [r for r in rows if r.get("answer")]
        if not kept:
            raise DataError(f"`{cfg.prompts_file}`: no prompt carries an `answer` field, which the `answer` reward "
                            "reads. Fix: add the reference answer to each line (`\"answer\": \"12\"`), or choose "
                            "other `rewards`.")
        if len(kept) < len(rows):
            log.warning("%d of %d prompts carry no `answer`; the `answer` reward cannot score them, so GRPO leaves "
                        "them out.", len(rows) - len(kept), len(rows))
        rows = kept
    return Dataset.from_list([{"prompt": r["prompt"], "answer": r.get("answer") or ""} for r in rows])


# ---- the stage -------------------------------------------------------------------------------------------------


def run(cfg: GRPOConfig, run: Run, resume: Path | None = None) -> dict:
    """Train; `resume`: a checkpoint folder of this run to continue from (the Trainer's own resume)."""
    device = pick_device(cfg.device)
    sft_run = Run(cfg.sft_run) if cfg.sft_run else None
    records = load_checked("prompts", cfg.prompts_file, log, cfg.column_map)
    dataset = to_dataset(records, cfg)
    probes = load_probes(cfg, records)
    functions = reward_functions(cfg, device)
    signals: dict[str, float] = {}
    rewards = [with_samples(functions, cfg.sample_every, run, signals), *functions[1:]]
    model, tokenizer = starting_policy(cfg, sft_run, device)
    shared, report_callbacks = trainer_arguments(cfg, run, device)
    args = trl.GRPOConfig(
        **{**shared, "per_device_train_batch_size": cfg.batch_size * cfg.num_generations},  # TRL counts answers
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        disable_dropout=True,  # else the same tokens get other log-probs under the policy than under the reference
        log_completions=False,  # our samples.jsonl instead of its console tables
    )
    tracker = Tracker(run, cfg.max_steps, cfg.batch_size * cfg.gradient_accumulation_steps)
    watching = WatchCallback(cfg, run, probes, functions, signals, tokenizer, resumed=resume is not None)
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if sft_run else lora_config(cfg, "CAUSAL_LM", model),
        callbacks=[watching,  # before the tracker: it adds to the rows the tracker writes
                   TrackerCallback(tracker, watch=(*WATCHED, "reward")), TrainerCheckpoints(run, cfg, tracker),
                   *report_callbacks],
    )
    adapter = adapter_report(trainer.model, "default")
    # the loss's LM head on the answers' tokens alone, as TRL does on CUDA
    result, stopped = train_tracked(trainer, tracker, resume, labelled_head=True)
    history = [row for row in trainer.state.log_history if "reward" in row]
    summary = {"steps": trainer.state.global_step, **adapter, "train_prompts": len(dataset),
               "rewards": list(cfg.rewards),
               "train_runtime_s": round(result.metrics["train_runtime"], 2)}
    if history:
        quarter = max(1, len(history) // 4)
        summary.update(initial_reward=mean(row["reward"] for row in history[:quarter]),
                       final_reward=mean(row["reward"] for row in history[-quarter:]),
                       final_kl=history[-1].get("kl"))
    summary.update(distributed.replica_check(p for p in trainer.model.parameters() if p.requires_grad))

    save_trained_adapter(trainer, tokenizer, run)
    return {**summary, "stopped": stopped or watching.stopped, **watching.watch.finish()}


class WatchCallback(TrainerCallback):
    """The reward-hacking watch in the Trainer's loop. At the start the probes get the starting model's answers (a
    metrics row of step 0); each logged row gets the latest batch's signals and, every `probe_every` steps and at
    the last, the probes' means; then the row is checked, and an alarm with `stop_on_alarm` saves and stops there.
    The probes are scored by the stage's own rewards, summed, as its answers are."""

    def __init__(self, cfg: GRPOConfig, run: Run, probes: list[dict], functions: list, signals: dict, tokenizer,
                 resumed: bool):
        self.cfg, self.run, self.functions, self.signals, self.tokenizer = cfg, run, functions, signals, tokenizer
        self.eos_ids = end_of_turn_ids(tokenizer)
        self.model = None
        self.watch = Watch(run, Keys(length="completions/mean_length", cut_off="completions/clipped_ratio"),
                           probes, self.answer_greedily, self.score, cfg.length_alarm, cfg.max_new_tokens,
                           cfg.batch_size)
        self.resumed = resumed
        self.stopped = False

    def score(self, records: list[dict], texts: list[str]) -> list[float]:
        columns = {"prompts": [r["prompt"] for r in records], "completions": texts,
                   "answer": [r.get("answer") or "" for r in records]}
        each = [f(**columns) for f in self.functions]
        return [sum(v for v in values if v is not None) for values in zip(*each)]

    @torch.no_grad()
    def answer_greedily(self, records: list[dict]) -> tuple[list[str], list[bool]]:
        model, was_training = self.model, self.model.training
        device = next(model.parameters()).device
        ids, mask = left_pad([encode_prompt(self.tokenizer, r["prompt"]) for r in records],
                             self.tokenizer.pad_token_id, device)
        model.eval()
        try:
            responses = sample(model, ids, mask, max_new_tokens=self.cfg.max_new_tokens, temperature=0.0, top_p=1.0,
                               eos_ids=self.eos_ids, pad_id=self.tokenizer.pad_token_id)
        finally:
            model.train(was_training)
        answer_mask, finished = response_mask(responses, self.eos_ids)
        return decode_responses(self.tokenizer, responses, answer_mask), (~finished).tolist()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        if self.resumed:
            self.watch.restore()
        else:
            self.watch.probe_start()

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not logs or "loss" not in logs:  # the end-of-training row (runtime, throughput) is not a step
            return
        self.model = model or self.model
        step = state.global_step
        logs.update(distributed.mean_over_ranks(self.signals))  # each rank saw its own slice of the answers
        if self.cfg.probe_due(step):
            logs.update(self.watch.probe(step))
        raised = self.watch.check(step, logs)
        # agreed by every rank (on_log runs on all of them at the same steps), so all of them save and stop together
        if distributed.agree(bool(raised)) and self.cfg.stop_on_alarm and step < self.cfg.max_steps:
            log.warning("Stopping at step %d: the reward-hacking watch raised an alarm (`stop_on_alarm`); a "
                        "checkpoint of this step is saved.", step)
            self.stopped = control.should_training_stop = control.should_save = True


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
