"""`python -m pipelines demo`: the whole pipeline on sample_data, each stage in its own run directory.

SFT -> reward model -> the gate -> PPO -> comparison. The recipes are the same YAML files a user runs by hand;
the demo only wires each stage to the run directory the previous one produced.

`--preset brevity` is the second half of the lesson: the SFT model of the latest demo, a judge trained on the same
prompts by labelers who were asked something else (sample_data/brevity: which reply is briefer?), PPO against that
judge and a comparison: the quick recipes with the brevity pairs as the judge's data.

`--preset methods` puts the approaches side by side: from one SFT model (the latest demo's, when there is one), the
judge and PPO, DPO on the same pairs, GRPO on checkable questions (sample_data/verifiable), then one comparison of all
of them on held-out checkable questions, scored by the judge and graded right or wrong; and each path's wall time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipelines.config import RUN_FIELDS, STAGES
from pipelines.errors import WorkbenchError

log = logging.getLogger("pipelines")
REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "sample_data" / "recipes"
DATA_FIELDS = ("train_file", "eval_file", "prompts_file")
# preset -> (the recipes it runs, the stages, settings that differ from those recipes)
PRESETS = {
    "quick": ("quick", ("sft", "reward", "ppo", "compare"), {}),
    "gpu": ("gpu", ("sft", "reward", "ppo", "compare"), {}),
    "brevity": ("quick", ("reward", "ppo", "compare"), {
        "reward": {"train_file": "sample_data/brevity/prefs_train.jsonl",
                   "eval_file": "sample_data/brevity/prefs_eval.jsonl", "run_name": "brevity judge"},
        "ppo": {"run_name": "aligned for brevity"}, "compare": {"run_name": "brevity"}}),
    "methods": ("quick", ("sft", "reward", "ppo", "dpo", "grpo", "compare"), {
        "compare": {"prompts_file": "sample_data/verifiable/prompts_eval.jsonl", "num_prompts": 60,
                    "run_name": "methods"}}),
}
# Presets that start from the latest finished SFT run of the runs folder: brevity must (its lesson is "the same
# model"), methods may (it saves the SFT stage's minutes when the demo ran before).
STARTS_FROM_SFT = {"brevity": True, "methods": False}
# Each approach's stages, for its cost: wall time summed along the path, memory the largest peak.
PATHS = {"rlhf": ("sft", "reward", "ppo"), "dpo": ("sft", "dpo"), "grpo": ("sft", "grpo"), "sft": ("sft",)}


def path_costs(costs: dict[str, tuple[float | None, float | None]]) -> dict[str, tuple[float, float | None] | None]:
    """{path: (wall seconds, peak MB)} from each stage's (wall seconds, peak MB); None for a path with a stage that
    has no cost."""
    out = {}
    for path, stages in PATHS.items():
        if any(costs.get(s, (None, None))[0] is None for s in stages):
            out[path] = None
            continue
        peaks = [costs[s][1] for s in stages if costs[s][1] is not None]
        out[path] = (sum(costs[s][0] for s in stages), max(peaks) if peaks else None)
    return out


def demo_configs(preset: str):
    """The stage configs of the demo, in order. The recipes name sample_data relative to the repository, so the
    demo works from any folder."""
    recipes, stages, changes = PRESETS[preset]
    configs = []
    for stage in stages:
        config = STAGES[stage].load(RECIPES / f"{stage}_{recipes}.yaml")
        for name, value in changes.get(stage, {}).items():
            setattr(config, name, value)
        for name in DATA_FIELDS:
            value = getattr(config, name, "")
            if value and not Path(value).is_absolute():
                setattr(config, name, str(REPO / value))
        configs.append((stage, config))
    return configs


def run_demo(runs_dir: str | None, preset: str = "quick", debug: bool = False) -> int:
    from pipelines.cli import run_stage, setup_logging
    from pipelines.compare import format_summary  # torch: only when a demo runs, not when the CLI starts
    from pipelines.judge import check_gate

    started = time.time()
    made: dict[str, str] = {}
    if preset in STARTS_FROM_SFT:  # the SFT model of the politeness demo: the one the latest demo made
        from pipelines.runs import list_runs

        sft = next((r for r in list_runs(runs_dir, stage="sft") if r.status().get("state") == "completed"), None)
        if sft is None and STARTS_FROM_SFT[preset]:
            log.error("The brevity demo starts from a finished SFT run, and there is none in this runs folder. "
                      "Fix: run the demo first (`python -m pipelines demo`), then this one.")
            return 2
        if sft is not None:
            made["sft"] = str(sft.path.resolve())
            log.info("Starting from SFT run %s, as the politeness demo did.", sft.id)
    for stage, config in demo_configs(preset):
        if stage in made:
            continue
        for name, source in RUN_FIELDS.items():
            if hasattr(config, name) and source in made:
                setattr(config, name, made[source])
        if stage == "ppo":
            from pipelines.runs import Run

            try:
                check_gate(Run(made["reward"]), config.allow_untrusted_judge)
            except WorkbenchError as exc:
                log.error("%s", exc)
                return 1
        log.info("=== demo: %s ===", stage)
        run, summary = run_stage(stage, config, runs_dir, debug=debug)
        setup_logging()  # back to the console only, between stages
        state = run.status()["state"]
        print(run.path, flush=True)
        if state != "completed":
            log.error("The demo stopped: the %s stage ended as %s. See %s", stage, state, run.log_file)
            return 1
        made[stage] = str(run.path.resolve())
    minutes = (time.time() - started) / 60
    for line in format_summary(summary):
        print(line)
    if preset == "methods":
        from pipelines.runs import Run

        for path, cost in path_costs({stage: Run(folder).cost() for stage, folder in made.items()}).items():
            peak = f", peak memory {cost[1] / 1024:.1f} GB" if cost and cost[1] else ""
            print(f"  path {' -> '.join(PATHS[path])}: " + (f"{cost[0] / 60:.1f} min{peak}" if cost else "not run"))
    print(f"Demo finished in {minutes:.1f} min; comparison in {made['compare']}/compare_summary.json")
    return 0
