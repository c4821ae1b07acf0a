"""The GRPO stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pipelines.config import STARTING_SFT_RUN, WatchedConfig, setting
from pipelines.errors import ConfigError


GRPO_REWARDS = ("answer", "regex", "length", "judge")


@dataclass
class GRPOConfig(WatchedConfig):
    """GRPO: the model samples a group of answers per prompt and learns from how each scored against the group,
    the score coming from a checkable rule or the judge; no value model."""

    stage: typing.ClassVar[str] = "grpo"

    sft_run: str = setting("", STARTING_SFT_RUN, group="model")
    prompts_file: str = setting("", "Prompts, with a reference `answer` field for the `answer` reward; a file, a "
                                "folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    rewards: list[str] = setting(
        ["answer"], "What scores each sampled answer (summed when several): `answer` (1 when the prompt's reference "
        "answer appears in it, numbers and case normalised), `regex` (1 when `reward_regex` matches), `length` (1 "
        "when at most `max_words` words), `judge` (the reward run's score).", group="rewards",
    )
    reward_regex: str = setting("", "The pattern of the `regex` reward (Python syntax, searched anywhere in the "
                                "answer).", group="rewards")
    max_words: int = setting(20, "The bound of the `length` reward, in words.", min=1, group="rewards")
    reward_run: str = setting("", "The judge of the `judge` reward: a reward run folder or `latest`.",
                              group="rewards")
    allow_untrusted_judge: bool = setting(
        False, "Use a judge whose held-out accuracy is below its gate. Only for deliberate experiments.",
        group="rewards",
    )
    num_generations: int = setting(
        4, "Answers sampled per prompt (the group): each is scored against its group's mean, so a group whose "
        "answers all score alike teaches nothing. `batch_size` counts prompts.", min=2, max=256, group="method",
    )
    beta: float = setting(0.04, "Weight of the KL penalty that keeps the model near the reference (0: no reference "
                          "pass at all, faster, nothing holds it back).", min=0.0, max=10.0, group="method")
    max_new_tokens: int = setting(40, "Longest sampled answer in tokens.", min=1, max=4096, group="generation")
    temperature: float = setting(1.0, "Sampling temperature: the group needs answers that differ.", min=0.01,
                                 max=5.0, group="generation")
    top_p: float = setting(1.0, "Nucleus sampling threshold.", min=0.01, max=1.0, group="generation")
    sample_every: int = setting(2, "Write a few (prompt, answer, reward) samples every N steps.", min=1)

    def judge_run(self) -> str:
        return self.reward_run if "judge" in self.rewards else ""

    def validate(self):
        self.require("prompts_file", "sample_data/verifiable/prompts_train.jsonl")
        unknown = [r for r in self.rewards if r not in GRPO_REWARDS]
        if unknown or not self.rewards:
            problem = f"`{unknown[0]}` is not a reward" if unknown else "it is empty"
            raise ConfigError(f"`rewards` is {self.rewards}: {problem}. Fix: choose from {list(GRPO_REWARDS)}, e.g. "
                              "`rewards: [answer]`.")
        if "regex" in self.rewards:
            from pipelines.stages.grpo.rules import check_regex

            problem = check_regex(self.reward_regex) if self.reward_regex else "it is empty"
            if problem:
                raise ConfigError(f"`reward_regex` is not a usable pattern ({problem}) but `rewards` has `regex`. "
                                  "Fix: set `reward_regex`, e.g. `--set reward_regex='^[0-9]+$'`.")
        if "judge" in self.rewards and not self.reward_run:
            raise ConfigError("`rewards` has `judge` but `reward_run` is empty. Fix: set `reward_run` to a reward "
                              "run folder or `latest`.")
