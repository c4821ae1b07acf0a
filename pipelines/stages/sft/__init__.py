"""Stage 1, SFT: fine-tune the base model on instruction-response examples (TRL's SFTTrainer, in `train.py`).

This module is the stage's record: its settings, charts, figures and texts. It imports no torch (the app reads it).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, PACKING, TrainingConfig, setting
from pipelines.stages.stage import Chart, Stage, loss_change, number


@dataclass
class SFTConfig(TrainingConfig):
    """Stage 1: supervised fine-tuning on instruction-response examples."""

    stage: typing.ClassVar[str] = "sft"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    train_file: str = setting("", "Training data: a JSONL, JSON, CSV or Parquet file, a `datasets` folder, or a "
                              "Hub dataset `owner/name[:config][:split]` (split default `train`).", group="data")
    eval_file: str = setting("", "Optional held-out data in the same formats, evaluated every `eval_steps`.",
                             group="data")
    completion_only_loss: bool = setting(
        True, "Train only on the response tokens, not on the prompt (recommended).", group="data"
    )
    eval_steps: int = setting(0, "Evaluate on `eval_file` every N steps (0: only at the end).", min=0)
    packing: bool = setting(True, PACKING)

    def validate(self):
        self.require("train_file", "sample_data/sft_train.jsonl", "your SFT data")


def figures(summary: dict) -> list[tuple[str, str]]:
    out = []
    if "first_loss" in summary:
        out.append(("Training loss", loss_change(summary)))
    if "eval_loss" in summary:
        out.append(("Held-out loss", number(summary["eval_loss"])))
    return out


def run(config: SFTConfig, run, resume=None) -> dict:
    from pipelines.stages.sft import train  # torch and TRL load in the job, never in the app

    return train.run(config, run, resume)


STAGE = Stage(
    config=SFTConfig, run=run, title="SFT", page_title="Stage 1 · Supervised fine-tuning", icon=":material/school:",
    section="Stages", data="examples", figures=figures, model_name="SFT",
    intro="Supervised fine-tuning: the model learns to continue each instruction with its example response. Only a "
          "small LoRA adapter is trained; the base model stays frozen.",
    tour=("1 · Teach by example (SFT)",
          "The base model reads a few hundred example conversations and learns to answer in that style. **In:** "
          "instruction → response examples. **Out:** a model that answers like the examples, good habits and bad "
          "ones alike."),
    charts=(Chart("Loss", "loss (lower is better)", (("loss", "train"), ("eval_loss", "held-out"))),
            Chart("Token accuracy", "share of next tokens right",
                  (("mean_token_accuracy", "train"), ("eval_mean_token_accuracy", "held-out")))),
)
