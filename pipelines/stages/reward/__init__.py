"""Stage 2, the reward model: a judge trained on pairwise preferences and used pointwise (prompt + response -> one
score, pipelines/model/judge.py). Trained in `train.py` (TRL's RewardTrainer with LoRA on a one-output head).

This module is the stage's record: its settings, charts, figures and texts. It imports no torch (the app reads it).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, MIN_PROMPT_TOKENS, PACKING, TrainingConfig, setting
from pipelines.stages.stage import Chart, Stage


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


def figures(summary: dict) -> list[tuple[str, str]]:
    out = []
    if "eval_accuracy" in summary:
        baseline = summary.get("length_baseline_accuracy")
        versus = f" vs {baseline:.0%} for 'pick the longer answer'" if isinstance(baseline, float) else ""
        out.append(("Held-out accuracy", f"{summary['eval_accuracy']:.0%}{versus}"))
    if "accuracy_gate" in summary:
        passed = "passes" if summary.get("ready_for_ppo") else "does not pass"
        out.append(("Trusted for PPO", f"{passed} the {summary['accuracy_gate']:.0%} gate"))
    return out


def run(config: RewardConfig, run, resume=None) -> dict:
    from pipelines.stages.reward import train  # torch and TRL load in the job, never in the app

    return train.run(config, run, resume)


STAGE = Stage(
    config=RewardConfig, run=run, title="Reward model", page_title="Stage 2 · The judge (reward model)",
    icon=":material/balance:", section="Stages", data="pairs", figures=figures,
    intro="The judge is a copy of the model with a one-number output. It sees (prompt, preferred answer) and (prompt, "
          "other answer) and learns to score the preferred one higher. The chart's dashed line is the gate: the "
          "accuracy it needs before PPO may use it.",
    tour=("2 · Train a judge (reward model)",
          "People find it much easier to say *which of two answers is better* than to write the perfect answer or "
          "give a score out of ten. So the judge is trained on comparisons (A is better than B) and learns to give "
          "any answer a score. **In:** pairs of answers with the preferred one marked. **Out:** a judge, checked on "
          "comparisons it never saw; below about 70% agreement it is not trusted."),
    charts=(Chart("Loss", "loss (lower is better)", (("loss", "train"),)),
            Chart("Accuracy (chosen scored above rejected)", "share of pairs right",
                  (("accuracy", "train batch"), ("eval_accuracy", "held-out"),
                   ("length_baseline_accuracy", "pick-the-longer baseline")), line_from="accuracy_gate",
                  line_label="gate"),
            Chart("Margin (chosen - rejected score)", "score difference",
                  (("margin", "train batch"), ("eval_margin", "held-out")))),
)
