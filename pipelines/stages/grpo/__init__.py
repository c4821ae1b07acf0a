"""GRPO: the model samples a group of answers per prompt and learns from how each scored against its group, the
score coming from a checkable rule (`rules.py`) or the judge; no value model (TRL's GRPOTrainer, in `train.py`).

This module is the stage's record: its settings (config.py), charts, figures and texts. It imports no torch (the
app reads it).
"""

from __future__ import annotations

from pipelines.stages.grpo.config import GRPOConfig
from pipelines.stages.stage import Chart, Stage, number, watch_charts, watch_figures


def figures(summary: dict) -> list[tuple[str, str]]:
    out = []
    if "initial_reward" in summary:
        rewards = " + ".join(summary.get("rewards", []))
        out.append((f"Reward ({rewards})" if rewards else "Reward",
                    f"{number(summary['initial_reward'])} → {number(summary.get('final_reward'))}"))
    if summary.get("final_kl") is not None:
        out.append(("Final KL to the starting model", number(summary["final_kl"], 3)))
    return out + watch_figures(summary)


def run(config: GRPOConfig, run, resume=None) -> dict:
    from pipelines.stages.grpo import train  # torch and TRL load in the job, never in the app

    return train.run(config, run, resume)


STAGE = Stage(
    config=GRPOConfig, run=run, title="GRPO", page_title="GRPO · practise against a checkable rule",
    icon=":material/checklist:", section="Simpler approaches", data="prompts", figures=figures,
    aligns=True, model_name="Aligned (GRPO)", samples=True,
    intro="Group Relative Policy Optimization: for each question the model samples a group of answers, each is "
          "scored, and it shifts toward the answers that beat their group's average. No judge is needed when the "
          "answer can be checked (the **answer** reward: the reference answer appears in the reply), and no value "
          "model at all. The sample questions (`sample_data/verifiable/`) have one right answer each.",
    charts=(Chart("Reward", "reward per answer", (("reward", "mean"), ("reward_std", "spread within a batch"))),
            Chart("Reward, by rule", "reward per answer",
                  (("rewards/correct_answer/mean", "right answer"), ("rewards/matches_regex/mean",
                                                                      "matches the pattern"),
                   ("rewards/within_length/mean", "short enough"), ("rewards/judge/mean", "judge"))),
            Chart("KL to the starting model", "KL (per token)", (("kl", "KL"),)),
            Chart("Answer length", "tokens", (("completions/mean_length", "mean"),)),
            Chart("What the batch held", "share",
                  (("frac_reward_zero_std", "groups scored all alike (they teach nothing)"),
                   ("clip_ratio/region_mean", "tokens whose update was clipped"))),
            *watch_charts(cut_off="completions/clipped_ratio")),
)
