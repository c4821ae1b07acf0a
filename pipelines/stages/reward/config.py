"""The reward model stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, MIN_PROMPT_TOKENS, PACKING, TrainingConfig, setting


@dataclass
class RewardConfig(TrainingConfig):
    """Stage 2: a reward model (the judge) trained on pairwise preferences, used pointwise."""

    stage: typing.ClassVar[str] = "reward"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    sft_run: str = setting(
        "", "Start from an SFT run's model instead of the bare base (a run folder, or `latest`). Empty: use `model`.",
        group="model",
    )
    train_file: str = setting("", "Preference pairs: prompt/chosen/rejected, or chosen/rejected transcripts; a "
                              "file, a folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    eval_file: str = setting("", "Held-out pairs. Empty: hold out `eval_split` of the training file.", group="data")
    eval_split: float = setting(0.1, "Share of training pairs held out when `eval_file` is empty.", min=0.0,
                                max=0.5, group="data")
    eval_steps: int = setting(20, "Evaluate held-out accuracy every N steps (0: only at the end).", min=0)
    accuracy_gate: float = setting(0.70, "Held-out accuracy a judge needs before PPO may use it.", min=0.0,
                                   max=1.0)
    labeler_instruction: str = setting(
        "", "What the people who labeled the pairs were asked to judge, in one sentence: a judge learns that and "
        "nothing else, and Compare says so beside its scores. Empty: taken from the data (a `labeler_instruction` "
        "field, or the quote under a 'What the labeler was asked to judge' heading in a README.md beside it).",
        group="data",
    )
    min_prompt_tokens: int = setting(8, MIN_PROMPT_TOKENS, min=0, group="data")
    packing: bool = setting(True, PACKING)

    def validate(self):
        self.require("train_file", "sample_data/prefs_train.jsonl", "your preference pairs")
