"""Stage 2, the reward model ("the judge"): trained on pairs ("A is better than B"), used pointwise
(prompt + response -> one score, pipelines/model/judge.py). TRL's RewardTrainer with LoRA on a one-output
sequence-classification head.

We tokenize the pairs ourselves so no pair is lost silently (pipelines.data.formats.tokenize_pairs): TRL drops pairs
longer than `max_length`; we cut the prompt from the left to keep both responses whole, and count what was truncated
and what still had to be dropped.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import trl
from datasets import Dataset
from transformers import TrainerCallback, set_seed

from pipelines.data.formats import (TokenizedPairs, fit_preference_files, labeler_instruction, load_checked,
                                    load_preferences, read_records, tokenize_pairs)
from pipelines.errors import DataError
from pipelines.model.judge import Judge, encode_for_judge, score_ids
from pipelines.model.loading import (adapter_report, load_base, load_tokenizer, lora_config, merge_adapter, pick_device,
                                     pick_dtype, prepare_for_kbit, resolve_model)
from pipelines.model.packing import padding_free_passes
from pipelines.runtime import distributed
from pipelines.runtime.runs import Run, resolve_run
from pipelines.runtime.tracking import Tracker, TrackerCallback, TrainerCheckpoints, train_tracked, trainer_arguments
from pipelines.stages.reward.config import RewardConfig
from pipelines.stages.reward.report import judge_report

log = logging.getLogger("pipelines")


# ---- the baseline a judge must beat -----------------------------------------------------------------------


def length_baseline(rows: list[dict]) -> float:
    """Accuracy of "the longer response is better" (ties count half): what a judge must clearly beat."""
    if not rows:
        return float("nan")
    wins = sum(1.0 if r["chosen_len"] > r["rejected_len"] else 0.5 if r["chosen_len"] == r["rejected_len"] else 0
               for r in rows)
    return wins / len(rows)


# ---- scoring -------------------------------------------------------------------------------------------------


def evaluate_pairs(model, pad_id: int, tokenized: TokenizedPairs, batch_size: int = 16) -> dict:
    rows = tokenized.rows
    # A pair's two answers side by side in a batch: they share their prompt, which a padding-free pass computes once
    scores = score_ids(model, [ids for r in rows for ids in (r["chosen_ids"], r["rejected_ids"])], pad_id,
                       batch_size)
    chosen, rejected = scores[0::2], scores[1::2]
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "eval_accuracy": sum(m > 0 for m in margins) / max(len(margins), 1),
        "eval_margin": sum(margins) / max(len(margins), 1),
        "eval_pairs": len(rows),
        "length_baseline_accuracy": length_baseline(rows),
        "scores": [{"line": r["line"], "chosen": c, "rejected": j} for r, c, j in zip(rows, chosen, rejected)],
    }


# ---- the stage -----------------------------------------------------------------------------------------------


class HeldOutEval(TrainerCallback):
    """Every `eval_steps`: held-out accuracy and margin (our pointwise scorer, the way the judge is used)."""

    def __init__(self, tracker: Tracker, pad_id: int, held_out: TokenizedPairs, every: int, batch_size: int):
        self.tracker, self.pad_id, self.held_out, self.every, self.batch_size = (tracker, pad_id, held_out, every,
                                                                                 batch_size)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Rank 0 alone under a launcher: only it logs, and the pass needs no other rank (the unwrapped model).
        if not distributed.is_main():
            return
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            result = evaluate_pairs(model, self.pad_id, self.held_out, self.batch_size)
            result.pop("scores")
            self.tracker.log(state.global_step, result)


def split_held_out(pairs: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(pairs) * share))
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def run(cfg: RewardConfig, run: Run, resume: Path | None = None) -> dict:
    """Train the judge; `resume`: a checkpoint folder of this run to continue from (the Trainer's own resume)."""
    device = pick_device(cfg.device)
    model_path = resolve_model(cfg.model, cfg.trust_remote_code)
    tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)

    pairs = load_checked("pairs", cfg.train_file, log, cfg.column_map)
    if cfg.eval_file:
        eval_pairs = load_checked("pairs", cfg.eval_file, log, cfg.column_map)
    else:
        pairs, eval_pairs = split_held_out(pairs, cfg.eval_split, cfg.seed)
        log.info("Held out %d of the training pairs for evaluation (`eval_split: %s`).", len(eval_pairs),
                 cfg.eval_split)
    train, held_out, counts = fit_preference_files(tokenizer, pairs, eval_pairs, cfg, log)  # eval_pairs: never empty
    tracker = Tracker(run, cfg.max_steps, cfg.batch_size * cfg.gradient_accumulation_steps)
    accounting = {**counts, "eval_pairs": len(held_out.rows),
                  "length_baseline_accuracy": length_baseline(held_out.rows)}
    if not resume:  # a resumed run has this row already
        tracker.log(0, accounting)

    set_seed(cfg.seed)  # the new score head is drawn at load time, before the Trainer seeds anything
    model = load_base(cfg, model_path, head="score", device=device)
    if cfg.sft_run:
        log.info("Starting from SFT run %s (its adapter is merged into the base).", cfg.sft_run)
        model = merge_adapter(model, Run(cfg.sft_run).adapter_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = prepare_for_kbit(model, cfg)
    if cfg.packing:
        log.info("Training passes: %s.", padding_free_passes(model, device))

    shared, report_callbacks = trainer_arguments(cfg, run, device)
    args = trl.RewardConfig(
        **shared,
        max_length=None,  # already fitted above; TRL's own filter would drop pairs silently
    )
    columns = ("chosen_ids", "rejected_ids")
    trainer = trl.RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in train.rows]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg, "SEQ_CLS", model),
        callbacks=[TrackerCallback(tracker),
                   HeldOutEval(tracker, tokenizer.pad_token_id, held_out, cfg.eval_steps, cfg.batch_size * 2),
                   TrainerCheckpoints(run, cfg, tracker), *report_callbacks],
    )
    if cfg.quantization != "none":
        score_head_in_compute_dtype(trainer.model, pick_dtype(device))
    adapter = adapter_report(trainer.model, "default")
    train_result, stopped = train_tracked(trainer, tracker, resume, labelled_head=cfg.packing)
    replicas = distributed.replica_check(p for p in trainer.model.parameters() if p.requires_grad)
    if not run.writes:  # the held-out evaluation, the adapter and the summary are rank 0's
        return {"steps": trainer.state.global_step, **replicas, "stopped": stopped}

    result = evaluate_pairs(trainer.model, tokenizer.pad_token_id, held_out, cfg.batch_size * 2)
    scores = result.pop("scores")
    tracker.log(trainer.state.global_step, result)
    trainer.model.save_pretrained(run.adapter_dir)
    tokenizer.save_pretrained(run.adapter_dir)
    with open(run.path / "eval_scores.jsonl", "w", encoding="utf-8") as fh:  # lets anyone re-check a reload
        fh.writelines(json.dumps(row) + "\n" for row in scores)
    try:
        report = report_card(trainer.model, tokenizer, cfg, eval_pairs, scores, result["length_baseline_accuracy"])
    except Exception as exc:  # noqa: BLE001 - the judge is trained and saved: a card that fails must not fail it
        log.warning("The judge's report card could not be made (%s: %s); `python -m pipelines judge-report %s` "
                    "tries again.", type(exc).__name__, exc, run.path)
        report = None
    ready = result["eval_accuracy"] >= cfg.accuracy_gate
    instruction = cfg.labeler_instruction or labeler_instruction(cfg.train_file)
    if instruction:
        log.info("The labelers were asked: %s This judge measures that, and nothing else.", instruction)
    else:
        log.warning("Nothing says what the labelers of %s were asked to judge. Set `labeler_instruction`, so Compare "
                    "can say what this judge's scores measure.", cfg.train_file)
    log.info("Held-out accuracy %.3f (pick-the-longer baseline %.3f) on %d pairs; gate %.2f: %s",
             result["eval_accuracy"], result["length_baseline_accuracy"], result["eval_pairs"], cfg.accuracy_gate,
             "ready for PPO" if ready else "NOT ready for PPO")
    return {"steps": trainer.state.global_step, **adapter,
            "train_runtime_s": round(train_result.metrics["train_runtime"], 2),
            **accounting, **result, "accuracy_gate": cfg.accuracy_gate,
            "ready_for_ppo": ready, "labeler_instruction": instruction, "judge_report": report, **replicas,
            "stopped": stopped}


def report_card(model, tokenizer, cfg: RewardConfig, eval_pairs: list[dict], scores: list[dict],
                length_baseline: float) -> dict:
    """The judge's report card (pipelines/stages/reward/report.py) on the held-out pairs it was scored on; its
    warnings go to the log, where the CLI user reads them before PPO."""
    by_line = {pair["_line"]: pair for pair in eval_pairs}
    pairs = [by_line[row["line"]] for row in scores]

    def score(prompts, responses):
        ids = [encode_for_judge(tokenizer, p, r, cfg.max_length) for p, r in zip(prompts, responses)]
        return score_ids(model, ids, tokenizer.pad_token_id, cfg.batch_size * 2)

    report = judge_report(score, pairs, [r["chosen"] for r in scores], [r["rejected"] for r in scores],
                          length_baseline)
    low, high = report["accuracy_interval"]
    log.info("Judge report: accuracy %.2f (95%% interval %.2f-%.2f, %d pairs), length correlation %s, calibration "
             "error %s, probes %s", report["accuracy"], low, high, report["pairs"], report["length_correlation"],
             report["calibration_error"], report["probes"])
    for warning in report["warnings"]:
        log.warning("%s", warning)
    return report


def score_head_in_compute_dtype(model, dtype) -> None:
    """TRL casts every trainable weight of a quantized model to bf16 (QLoRA's recipe for the adapters, which cast
    their input themselves). The score head is a plain linear layer: it would meet hidden states of the compute dtype
    (float32 on a CPU, float16 on a GPU without bf16) and fail on the first step. It trains in that dtype instead."""
    for name, param in model.named_parameters():
        if param.requires_grad and ".score." in f".{name}" and param.dtype != dtype:
            param.data = param.data.to(dtype)


# ---- `python -m pipelines score` -----------------------------------------------------------------------------


def score_command(reward: str, file: str, runs_dir: str | None, out: str | None) -> int:
    judge = Judge(resolve_run(reward, "reward", runs_dir, field="--reward"))
    records = read_records(file)
    first = records[0][1]
    if isinstance(first, dict) and "chosen" in first and "rejected" in first:
        pairs, report = load_preferences(file)
        report.raise_if_errors()
        tokenized = tokenize_pairs(judge.tokenizer, pairs, judge.config.max_length, judge.config.min_prompt_tokens)
        result = evaluate_pairs(judge.model, judge.tokenizer.pad_token_id, tokenized)
        if out:
            Path(out).write_text("".join(json.dumps(r) + "\n" for r in result["scores"]), encoding="utf-8")
        print(f"pairs scored: {result['eval_pairs']}")
        print(f"truncated: {len(tokenized.truncated_lines)}")
        print(f"dropped: {len(tokenized.dropped_lines) + len(report.skipped)}")
        print(f"margin: {result['eval_margin']:.4f}")
        print(f"length baseline: {result['length_baseline_accuracy']:.4f}")
        print(f"accuracy: {result['eval_accuracy']:.4f}")
        return 0
    rows = []
    for line, record in records:
        if not isinstance(record, dict) or "prompt" not in record or not ({"response", "completion"} & set(record)):
            raise DataError(f"`{file}` line {line}: expected `prompt` with `response` (or `completion`), or a "
                            "preference pair with `chosen`/`rejected`. Fix that record.")
        rows.append(record)
    responses = [r.get("response", r.get("completion")) for r in rows]
    scores = judge.score([r["prompt"] for r in rows], responses)
    lines = [json.dumps({**r, "score": s}, ensure_ascii=False) for r, s in zip(rows, scores)]
    if out:
        Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        print("\n".join(lines))
    print(f"responses scored: {len(scores)}")
    return 0


# ---- `python -m pipelines judge-report` --------------------------------------------------------------------------


def report_command(reward: str, file: str | None, runs_dir: str | None, save: bool) -> int:
    """The report card of any finished reward run, on its own held-out pairs (the same split it made, when it had no
    eval_file) or on `file`."""
    judge = Judge(resolve_run(reward, "reward", runs_dir, field="run"))
    cfg = judge.config
    if file:
        pairs = load_checked("pairs", file, log)
    elif cfg.eval_file:
        pairs = load_checked("pairs", cfg.eval_file, log, cfg.column_map)
    else:
        pairs = split_held_out(load_checked("pairs", cfg.train_file, log, cfg.column_map), cfg.eval_split, cfg.seed)[1]
    tokenized = tokenize_pairs(judge.tokenizer, pairs, cfg.max_length, cfg.min_prompt_tokens)
    if not tokenized.rows:
        raise DataError(f"None of the {len(pairs)} held-out pairs fits this judge's max_length ({cfg.max_length}). "
                        "Fix: pass shorter pairs with --file.")
    result = evaluate_pairs(judge.model, judge.tokenizer.pad_token_id, tokenized)
    report = report_card(judge.model, judge.tokenizer, cfg, pairs, result["scores"],
                         result["length_baseline_accuracy"])
    if save:
        judge.run.write_summary({**judge.run.summary(), "judge_report": report})
    print(json.dumps(report, ensure_ascii=False))
    return 0
