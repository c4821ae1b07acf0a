"""Stage 2, the reward model: a judge trained on pairwise preferences and used pointwise (prompt + response -> one
score, pipelines/model/judge.py). Trained in `train.py` (TRL's RewardTrainer with LoRA on a one-output head).

This module is the stage's record: its settings (config.py), charts, figures and texts. It imports no torch (the
app reads it).
"""

from __future__ import annotations

from pipelines.stages.reward.config import RewardConfig
from pipelines.stages.stage import Chart, Stage


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
