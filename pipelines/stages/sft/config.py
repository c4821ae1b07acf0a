"""The SFT stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, PACKING, TrainingConfig, setting


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
