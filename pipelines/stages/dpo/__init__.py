"""DPO, Direct Preference Optimization: the model learns from the preference pairs themselves, no judge and no
sampling (TRL's DPOTrainer, in `train.py`).

This module is the stage's record: its settings (config.py), charts, figures and texts. It imports no torch (the
app reads it).
"""

from __future__ import annotations

from pipelines.stages.dpo.config import DPOConfig
from pipelines.stages.stage import Chart, Stage, loss_change, number


def figures(summary: dict) -> list[tuple[str, str]]:
    out = []
    if "first_loss" in summary:
        out.append(("Loss", loss_change(summary)))
    if isinstance(summary.get("eval_accuracy"), float):
        out.append(("Held-out preference accuracy", f"{summary['eval_accuracy']:.0%}"))
    if isinstance(summary.get("eval_margin"), float):
        out.append(("Held-out reward margin", number(summary["eval_margin"])))
    return out


def run(config: DPOConfig, run, resume=None) -> dict:
    from pipelines.stages.dpo import train  # torch and TRL load in the job, never in the app

    return train.run(config, run, resume)


STAGE = Stage(
    config=DPOConfig, run=run, title="DPO", page_title="DPO · learn from the pairs directly", icon=":material/join:",
    section="Simpler approaches", data="pairs", figures=figures, aligns=True, model_name="Aligned (DPO)",
    intro="Direct Preference Optimization: the model learns from the preference pairs themselves, with no judge and no "
          "sampling. Its loss raises the probability of the preferred answer over the other one, measured against "
          "the starting model, which it may not drift far from (`beta`). Cheaper than stages 2 and 3 together; it "
          "can only learn what the pairs show.",
    charts=(Chart("Loss", "loss (lower is better)", (("loss", "train"), ("eval_loss", "held-out"))),
            Chart("Implicit rewards (log-prob ratio to the reference x beta)", "implicit reward",
                  (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"), ("rewards/margins", "margin"),
                   ("eval_rewards/margins", "held-out margin"))),
            Chart("Preference accuracy (chosen above rejected)", "share of pairs right",
                  (("rewards/accuracies", "train batch"), ("eval_rewards/accuracies", "held-out")))),
)
