"""Stage 1, supervised fine-tuning: teach the base model to answer like the examples (TRL's SFTTrainer + LoRA)."""

from __future__ import annotations

import logging
from pathlib import Path

import trl
from datasets import Dataset

from pipelines.data.formats import load_checked
from pipelines.model.loading import (adapter_report, load_base, load_tokenizer, lora_config, pick_device,
                                     prepare_for_kbit, resolve_model)
from pipelines.model.packing import padding_free_passes
from pipelines.runtime import distributed
from pipelines.runtime.tracking import (Tracker, TrackerCallback, TrainerCheckpoints, final_evaluation, train_tracked,
                                        trainer_arguments)
from pipelines.stages.sft.config import SFTConfig

log = logging.getLogger("pipelines")


def without_chat_template(rows: list[dict]) -> list[dict]:
    """A base model has no chat template: train on plain prompt / completion strings instead of messages."""
    plain = []
    for row in rows:
        if "text" in row:
            plain.append(row)
            continue
        prompt = "\n\n".join(m["content"] for m in row["prompt"]) + "\n\n"
        plain.append({"prompt": prompt, "completion": row["completion"][-1]["content"], "_line": row["_line"]})
    return plain


def count_too_long(tokenizer, rows: list[dict], max_length: int) -> list[int]:
    """Lines of the examples that will be truncated to max_length, so the user hears about it up front."""
    long_lines = []
    for row in rows:
        if "text" in row:
            n = len(tokenizer(row["text"])["input_ids"])
        elif isinstance(row["prompt"], str):
            n = len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) + 1
        else:
            n = len(tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True,
                                                  return_dict=True)["input_ids"])
        if n > max_length:
            long_lines.append(row["_line"])
    return long_lines


def to_dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_list([{k: v for k, v in row.items() if k != "_line"} for row in rows])


def run(cfg: SFTConfig, run, resume: Path | None = None) -> dict:
    """Train; `resume`: a checkpoint folder of this run to continue from (the Trainer's own resume)."""
    device = pick_device(cfg.device)
    model_path = resolve_model(cfg.model, cfg.trust_remote_code)
    tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)

    train_rows = load_checked("examples", cfg.train_file, log, cfg.column_map)
    eval_rows = load_checked("examples", cfg.eval_file, log, cfg.column_map) if cfg.eval_file else []
    if not tokenizer.chat_template:
        log.info("%s has no chat template: training on plain prompt + completion text.", cfg.model)
        train_rows, eval_rows = without_chat_template(train_rows), without_chat_template(eval_rows)
    too_long = count_too_long(tokenizer, train_rows, cfg.max_length)
    if too_long:
        log.warning("%d of %d training examples are longer than max_length=%d tokens and will be truncated "
                    "(lines %s). Raise `max_length` to keep them whole.", len(too_long), len(train_rows),
                    cfg.max_length, ", ".join(map(str, too_long[:10])) + (", ..." if len(too_long) > 10 else ""))
    is_text = "text" in train_rows[0]

    model = prepare_for_kbit(load_base(cfg, model_path, device=device), cfg)
    if cfg.packing:
        log.info("Training passes: %s.", padding_free_passes(model, device))
    shared, report_callbacks = trainer_arguments(cfg, run, device, evaluate=bool(eval_rows))
    args = trl.SFTConfig(
        **shared,
        max_length=cfg.max_length,
        completion_only_loss=None if is_text else cfg.completion_only_loss,
    )
    tracker = Tracker(run, cfg.max_steps, cfg.batch_size * cfg.gradient_accumulation_steps)
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=to_dataset(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg, "CAUSAL_LM", model),
        callbacks=[TrackerCallback(tracker), TrainerCheckpoints(run, cfg, tracker), *report_callbacks],
    )
    adapter = adapter_report(trainer.model, "default")
    result, stopped = train_tracked(trainer, tracker, resume, labelled_head=cfg.packing)
    summary = {"steps": trainer.state.global_step, **adapter, "train_examples": len(train_rows),
               "truncated_examples": len(too_long), "train_runtime_s": round(result.metrics["train_runtime"], 2)}
    losses = [row["loss"] for row in run.metrics() if "loss" in row]
    if losses:
        summary.update(first_loss=losses[0], final_loss=losses[-1])
    if eval_rows and not stopped:
        summary["eval_loss"] = final_evaluation(trainer, tracker, labelled_head=cfg.packing).get("eval_loss")
    summary.update(distributed.replica_check(p for p in trainer.model.parameters() if p.requires_grad))

    if run.writes:
        trainer.model.save_pretrained(run.adapter_dir)
        tokenizer.save_pretrained(run.adapter_dir)
        log.info("Adapter saved to %s", run.adapter_dir)
    return {**summary, "stopped": stopped}
