"""Stage 3, PPO: the SFT model samples, the judge scores, the policy improves while a KL penalty keeps it near the
SFT reference; policy, reference, value and judge share one base model as LoRA adapters (`train.py`; the PPO
arithmetic in `core.py`).

This module is the stage's record: its settings (config.py), charts, figures and texts. It imports no torch (the
app reads it).
"""

from __future__ import annotations

from pipelines.runtime.checkpoints import PPO_FILES
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.stage import Chart, Stage, number, watch_charts, watch_figures


def figures(summary: dict) -> list[tuple[str, str]]:
    out = []
    if "initial_score" in summary:
        out.append(("Judge's score", f"{number(summary['initial_score'])} → {number(summary.get('final_score'))}"))
    if summary.get("final_kl") is not None:
        out.append(("Final KL to the SFT model", number(summary["final_kl"])))
    if summary.get("mean_kl") is not None:
        out.append(("KL, training average", number(summary["mean_kl"])))
    return out + watch_figures(summary)


def run(config: PPOConfig, run, resume=None) -> dict:
    from pipelines.stages.ppo import train  # torch loads in the job, never in the app

    return train.run(config, run, resume)


STAGE = Stage(
    config=PPOConfig, run=run, title="PPO", page_title="Stage 3 · PPO against the judge",
    icon=":material/trending_up:", section="Stages", data="prompts", figures=figures, aligns=True,
    model_name="Aligned (PPO)", samples=True, checkpoint_files=PPO_FILES,
    intro="Proximal Policy Optimisation: sample answers, score them with the judge, nudge the model toward the "
          "better-scored ones, and pay a penalty (KL) for drifting from the SFT model. One base model in memory "
          "serves the policy, the reference, the value function and the judge as separate LoRA adapters.",
    tour=("3 · Practise against the judge (PPO)",
          "The model from stage 1 answers many questions; the judge scores every answer; the model shifts toward "
          "what scored well. A leash (the *KL penalty*) keeps it close to the stage-1 model so it cannot win by "
          "writing nonsense the judge happens to like. **In:** the stage-1 model, the judge, questions. **Out:** "
          "the aligned model."),
    charts=(Chart("Judge score", "judge's score", (("objective/scores", "score"),
                                                    ("objective/rlhf_reward", "score - KL penalty"))),
            Chart("KL to the SFT model", "KL (nats per answer)", (("objective/kl", "KL (k1)"),
                                                                   ("objective/kl_k3", "KL (k3)"))),
            Chart("Losses", "loss", (("loss/policy", "policy"), ("loss/value", "value"))),
            Chart("Entropy", "nats per token", (("objective/entropy", "entropy"),)),
            Chart("KL coefficient", "kl_coef", (("objective/kl_coef", "kl_coef"),)),
            Chart("Response length", "tokens", (("response_length", "tokens"),)),
            *watch_charts(cut_off="val/unfinished"),
            Chart("Seconds per step, by phase", "seconds",
                  (("time/generate", "generate"), ("time/judge", "judge"), ("time/forward_policy", "policy forwards"),
                   ("time/forward_reference", "reference forward"), ("time/forward_value", "value forwards"),
                   ("time/backward", "backward"), ("time/all_reduce", "gradient exchange"),
                   ("time/optimizer", "optimizer"), ("time/other", "other")))),  # the probes: probe_seconds
)
