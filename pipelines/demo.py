"""`python -m pipelines demo`: a pipeline on sample_data, each stage in its own run directory.

A preset is a recipe file, sample_data/recipes/demo_<name>.yaml: the stages it runs, in order, each from its own
recipe (`<stage>_<recipes>.yaml`, the files a user runs by hand), and the settings that differ from those recipes.
The demo only wires each stage to the runs the stages before it made (`sft_run`, `reward_run`...), and checks the
judge's gate before a stage that uses it. `quick` is the politeness demo: SFT -> reward model -> the gate -> PPO ->
comparison; `brevity`, `methods` and `hacking` say in their files what they teach.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import DATA_FIELDS, StageConfig, read_yaml
from pipelines.errors import ConfigError, WorkbenchError
from pipelines.stages import STAGES, run_fields, stage_named

log = logging.getLogger("pipelines")
REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "sample_data" / "recipes"
# as `--help` and Home list them; others follow by name
PRESET_ORDER = ("quick", "gpu", "brevity", "methods", "hacking")


@dataclass(frozen=True)
class Preset:
    about: str
    recipes: str  # each stage's recipe is <stage>_<recipes>.yaml
    stages: tuple[str, ...]
    changes: dict = field(default_factory=dict)  # {stage: {setting: value}} over its recipe
    starts_from: str = ""  # a stage whose latest finished run the demo starts from instead of training one
    starts_from_required: bool = False
    paths: dict = field(default_factory=dict)  # {approach: its stages}: each path's cost is reported at the end


def presets() -> dict[str, Preset]:
    """The demo presets: sample_data/recipes/demo_<name>.yaml."""
    found = {}
    for path in sorted(RECIPES.glob("demo_*.yaml")):
        values = read_yaml(path)
        try:
            preset = Preset(**{**values, "stages": tuple(values.get("stages", ()))})
        except TypeError as exc:
            raise ConfigError(f"Demo preset `{path}` has a key the demo does not know ({exc}).") from None
        for stage in (*preset.stages, *preset.changes, *(s for stages in preset.paths.values() for s in stages),
                      *filter(None, [preset.starts_from])):
            stage_named(stage)  # a misspelt stage is named here, not after an hour of training
        found[path.stem.removeprefix("demo_")] = preset
    listed = [name for name in PRESET_ORDER if name in found]
    return {name: found[name] for name in [*listed, *sorted(set(found) - set(listed))]}


def path_costs(paths: dict[str, tuple[str, ...]], costs: dict[str, tuple[float | None, float | None]]
               ) -> dict[str, tuple[float, float | None] | None]:
    """{path: (wall seconds, peak MB)} from each stage's (wall seconds, peak MB); None for a path with a stage that
    has no cost."""
    out = {}
    for path, stages in paths.items():
        if any(costs.get(s, (None, None))[0] is None for s in stages):
            out[path] = None
            continue
        peaks = [costs[s][1] for s in stages if costs[s][1] is not None]
        out[path] = (sum(costs[s][0] for s in stages), max(peaks) if peaks else None)
    return out


def demo_configs(name: str) -> list[tuple[str, StageConfig]]:
    """The stage configs of the demo, in order. The recipes name sample_data relative to the repository, so the
    demo works from any folder."""
    preset = presets()[name]
    configs = []
    for stage in preset.stages:
        recipe = RECIPES / f"{stage}_{preset.recipes}.yaml"
        values = {**read_yaml(recipe), **preset.changes.get(stage, {})}
        values.pop("stage", None)
        config = STAGES[stage].config.from_dict(values, str(recipe))
        in_repo = {name: str(REPO / value) for name in DATA_FIELDS
                   if (value := getattr(config, name, "")) and not Path(value).is_absolute()}
        configs.append((stage, dataclasses.replace(config, **in_repo)))
    return configs


def run_demo(runs_dir: str | None, preset: str = "quick", debug: bool = False) -> int:
    from pipelines.engine import run_stage, setup_logging
    from pipelines.model.judge import check_gate
    from pipelines.runtime.runs import Run, finished_runs
    from pipelines.stages.compare.compare import format_summary  # torch: only when a demo runs, not when the CLI starts

    started = time.time()
    made: dict[str, str] = {}
    plan = presets()[preset]
    if plan.starts_from:  # e.g. the SFT model of the politeness demo: the one the latest demo made
        start = next(iter(finished_runs(plan.starts_from, runs_dir)), None)
        if start is None and plan.starts_from_required:
            log.error("The %s demo starts from a finished %s run, and there is none in this runs folder. Fix: run "
                      "the demo first (`python -m pipelines demo`), then this one.", preset,
                      STAGES[plan.starts_from].title)
            return 2
        if start is not None:
            made[plan.starts_from] = str(start.path.resolve())
            log.info("Starting from %s run %s, as the politeness demo did.", STAGES[plan.starts_from].title, start.id)
    summary: dict = {}
    for stage, config in demo_configs(preset):
        if stage in made:
            continue
        config = dataclasses.replace(config, **{name: made[source.id] for name, source in run_fields().items()
                                                if hasattr(config, name) and source.id in made})
        if config.judge_run() in made.values():
            try:  # before the stage's run folder exists: a judge that failed its gate stops the demo here
                check_gate(Run(config.judge_run()), config.allow_untrusted_judge)
            except WorkbenchError as exc:
                log.error("%s", exc)
                return 1
        log.info("=== demo: %s ===", stage)
        run, summary = run_stage(config, runs_dir, debug=debug)
        setup_logging()  # back to the console only, between stages
        state = run.state
        print(run.path, flush=True)
        if not run.completed:
            log.error("The demo stopped: the %s stage ended as %s. See %s", stage, state, run.log_file)
            return 1
        made[stage] = str(run.path.resolve())
    minutes = (time.time() - started) / 60
    for line in format_summary(summary):
        print(line)
    if plan.paths:
        costs = path_costs(plan.paths, {stage: Run(folder).cost() for stage, folder in made.items()})
        for path, cost in costs.items():
            peak = f", peak memory {cost[1] / 1024:.1f} GB" if cost and cost[1] else ""
            print(f"  path {' -> '.join(plan.paths[path])}: " + (f"{cost[0] / 60:.1f} min{peak}" if cost else
                                                                 "not run"))
    last = made[plan.stages[-1]]
    print(f"Demo finished in {minutes:.1f} min; comparison in {last}/compare_summary.json")
    return 0
