"""Stage 1, SFT: fine-tune the base model on instruction-response examples (TRL's SFTTrainer, in `train.py`).

This module is the stage's record: its settings (config.py), charts, figures and texts. It imports no torch (the
app reads it).
"""

from __future__ import annotations

from pipelines.stages.sft.config import SFTConfig
from pipelines.stages.stage import Chart, Stage, loss_change, number


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
