"""DPO, the simpler road to the same goal: learn from the preference pairs directly, with no judge and no sampling
(TRL's DPOTrainer + LoRA). The loss raises the log-probability of the chosen answer over the rejected one, measured
against a frozen reference, so the model cannot drift far from where it started (`beta` sets how far).

The reference is the starting model through adapter switching, never a second copy in memory
(pipelines.model.loading.starting_policy), pairs too long for `max_length` are cut and counted as the reward stage
does it (pipelines.model.patches.FittedPairsDPOTrainer), and the saved adapter, like a PPO policy's, applies to the
SFT run's base as it is, so Compare and export treat a DPO run as they treat a PPO run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trl
from datasets import Dataset

from pipelines.data.formats import TokenizedPairs, fit_preference_files, load_checked
from pipelines.model.loading import adapter_report, lora_config, pick_device, save_trained_adapter, starting_policy
from pipelines.model.packing import padding_free_passes
from pipelines.model.patches import FittedPairsDPOTrainer
from pipelines.runtime import distributed
from pipelines.runtime.runs import Run
from pipelines.runtime.tracking import (Tracker, TrackerCallback, TrainerCheckpoints, final_evaluation, train_tracked,
                                        trainer_arguments)
from pipelines.stages.dpo.config import DPOConfig

log = logging.getLogger("pipelines")


def to_dataset(pairs: TokenizedPairs) -> Dataset:
    """Fitted pairs in the tokenized form TRL's preference collator reads: the prompt's ids, each answer's ids."""
    return Dataset.from_list([{"prompt_ids": r["chosen_ids"][:r["prompt_len"]],
                               "chosen_ids": r["chosen_ids"][r["prompt_len"]:],
                               "rejected_ids": r["rejected_ids"][r["prompt_len"]:]} for r in pairs.rows])


def run(cfg: DPOConfig, run: Run, resume: Path | None = None) -> dict:
    """Train; `resume`: a checkpoint folder of this run to continue from (the Trainer's own resume)."""
    device = pick_device(cfg.device)
    sft_run = Run(cfg.sft_run) if cfg.sft_run else None
    train_rows = load_checked("pairs", cfg.train_file, log, cfg.column_map)
    eval_rows = load_checked("pairs", cfg.eval_file, log, cfg.column_map) if cfg.eval_file else []
    model, tokenizer = starting_policy(cfg, sft_run, device)
    train, held_out, accounting = fit_preference_files(tokenizer, train_rows, eval_rows, cfg, log)
    if cfg.packing:
        log.info("Training passes: %s.", padding_free_passes(model, device))
    shared, report_callbacks = trainer_arguments(cfg, run, device, evaluate=bool(eval_rows))
    args = trl.DPOConfig(
        **shared,
        max_length=cfg.max_length,  # every pair fits already: the collator's cut from the end never applies
        beta=cfg.beta,
    )
    tracker = Tracker(run, cfg.max_steps, cfg.batch_size * cfg.gradient_accumulation_steps)
    if not resume:  # a resumed run has this row already
        tracker.log(0, accounting)
    trainer = FittedPairsDPOTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(held_out) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=None if sft_run else lora_config(cfg, "CAUSAL_LM", model),
        callbacks=[TrackerCallback(tracker), TrainerCheckpoints(run, cfg, tracker), *report_callbacks],
    )
    adapter = adapter_report(trainer.model, "default")
    result, stopped = train_tracked(trainer, tracker, resume, labelled_head=cfg.packing)
    summary = {"steps": trainer.state.global_step, **adapter, **accounting,
               "train_runtime_s": round(result.metrics["train_runtime"], 2)}
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    if losses:
        summary.update(first_loss=losses[0], final_loss=losses[-1])
    if eval_rows and not stopped:
        metrics = final_evaluation(trainer, tracker, labelled_head=cfg.packing)
        summary.update(eval_pairs=len(held_out.rows), eval_accuracy=metrics.get("eval_rewards/accuracies"),
                       eval_margin=metrics.get("eval_rewards/margins"))
    summary.update(distributed.replica_check(p for p in trainer.model.parameters() if p.requires_grad))

    save_trained_adapter(trainer, tokenizer, run)
    return {**summary, "stopped": stopped}
