"""The stages, in the order the workbench offers them: the one list of them. Each stage's package holds its record
(`STAGE`, pipelines/stages/stage.py); the CLI, the forms, the pages, the charts, the Runs page, the results, the demo
and Compare all iterate this list.

A new stage is a package here with a `STAGE` and one line below (or `register(stage)` for one defined elsewhere).
"""

from __future__ import annotations

from pipelines.errors import ConfigError
from pipelines.stages import compare, dpo, grpo, ppo, reward, sft
from pipelines.stages.stage import Stage

STAGES: dict[str, Stage] = {s.id: s for s in (sft.STAGE, reward.STAGE, ppo.STAGE, dpo.STAGE, grpo.STAGE,
                                                compare.STAGE)}
JUDGE = reward.STAGE  # the stage whose runs are judges: PPO, GRPO, Compare and the studio score with them


def register(stage: Stage) -> Stage:
    """Add a stage defined outside this package (a test's, or a plug-in's)."""
    if stage.id in STAGES and STAGES[stage.id] is not stage:
        raise ValueError(f"A stage named `{stage.id}` exists already.")
    STAGES[stage.id] = stage
    return stage


def stage_named(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"`{name}` is not a stage. Fix: use one of {', '.join(STAGES)}.")
    return STAGES[name]


def training_stages() -> list[Stage]:
    return [s for s in STAGES.values() if s.trains]


def generating_stages() -> list[Stage]:
    """The stages whose adapter writes answers: Compare and the studio sample them, export merges them."""
    return [s for s in STAGES.values() if s.generates]


def run_fields() -> dict[str, Stage]:
    """{field name: stage} of the fields by which a config names another stage's run (`sft_run`): the engine resolves
    them (`latest`), the demo wires them, the forms offer that stage's finished runs."""
    return {s.run_field: s for s in STAGES.values()}


def model_name(key: str) -> str:
    """A model of a comparison as people read it: "Base model", "SFT", "Aligned (PPO)"; the second PPO run of a
    comparison (`ppo_2`) is "Aligned (PPO) 2"."""
    names = {"base": "Base model", **{s.id: s.model_name for s in generating_stages()}}
    stage, _, number = key.partition("_")
    if number.isdigit() and stage in names:
        return f"{names[stage]} {number}"
    return names.get(key, key.upper())
