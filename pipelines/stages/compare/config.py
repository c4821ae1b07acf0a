"""The Compare stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pipelines.config import StageConfig, setting


@dataclass
class CompareConfig(StageConfig):
    """Side by side: base, SFT, PPO, DPO and GRPO responses to held-out prompts, each scored by the judge."""

    stage: typing.ClassVar[str] = "compare"

    sft_run: str = setting("latest", "SFT run folder or `latest` (empty: leave SFT out).", group="model")
    ppo_run: str = setting("latest", "PPO run folder or `latest` (empty: leave PPO out). Several, comma-separated, "
                           "are compared as ppo, ppo_2, ...", group="model")
    dpo_run: str = setting("", "DPO run folder(s) or `latest` (empty: leave DPO out).", group="model")
    grpo_run: str = setting("", "GRPO run folder(s) or `latest` (empty: leave GRPO out).", group="model")
    reward_run: str = setting("latest", "The judge: a reward run folder or `latest`.", group="model")
    prompts_file: str = setting("", "Held-out prompts: a file, a folder, or a Hub dataset "
                                "`owner/name[:config][:split]`.", group="data")
    num_prompts: int = setting(40, "How many prompts to compare.", min=1)
    max_new_tokens: int = setting(48, "Longest response in tokens.", min=1, max=4096, group="generation")
    temperature: float = setting(0.7, "Sampling temperature (0: greedy).", min=0.0, max=5.0, group="generation")
    top_p: float = setting(1.0, "Nucleus sampling threshold.", min=0.01, max=1.0, group="generation")

    # The fields naming the models compared, in this order; the aligned models' take several runs each
    # (comma-separated).
    compared_runs: typing.ClassVar[tuple[str, ...]] = ("sft_run", "ppo_run", "dpo_run", "grpo_run")
    several_runs: typing.ClassVar[tuple[str, ...]] = ("ppo_run", "dpo_run", "grpo_run")

    def validate(self):
        self.require("prompts_file", "sample_data/prompts_eval.jsonl")

    def compare_models(self) -> dict[str, str]:
        """{model key: run folder} of every adapter compared: the stage's name, with `_2`, `_3`... for the second and
        later runs of one stage (compare_summary.json's keys: `win_rate_ppo_2_vs_ppo`)."""
        models = {}
        for field_name in self.compared_runs:
            stage, value = field_name.removesuffix("_run"), getattr(self, field_name)
            folders = [f.strip() for f in value.split(",") if f.strip()] if field_name in self.several_runs else \
                [value] if value else []
            models.update({stage if i == 0 else f"{stage}_{i + 1}": folder for i, folder in enumerate(folders)})
        return models
