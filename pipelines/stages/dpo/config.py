"""The DPO stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, MIN_PROMPT_TOKENS, PACKING, STARTING_SFT_RUN, TrainingConfig, setting


@dataclass
class DPOConfig(TrainingConfig):
    """Direct Preference Optimization: the model learns from the preference pairs themselves, no judge, no sampling."""

    stage: typing.ClassVar[str] = "dpo"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    sft_run: str = setting("", STARTING_SFT_RUN, group="model")
    train_file: str = setting("", "Preference pairs: prompt/chosen/rejected, or chosen/rejected transcripts; a "
                              "file, a folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    eval_file: str = setting("", "Held-out pairs: their preference accuracy is charted beside the training one.",
                             group="data")
    eval_steps: int = setting(20, "Evaluate on the held-out pairs every N steps (0: only at the end).", min=0)
    beta: float = setting(0.1, "How far the model may move from the reference: a smaller beta lets it drift more "
                          "(DPO's KL weight; at 0 the loss would not depend on the model).", min=0.001, max=10.0)
    min_prompt_tokens: int = setting(8, MIN_PROMPT_TOKENS, min=0, group="data")
    packing: bool = setting(True, PACKING)

    def validate(self):
        self.require("train_file", "sample_data/prefs_train.jsonl", "your preference pairs")
