"""`python -m pipelines demo`: the whole pipeline on sample_data, each stage in its own run directory.

SFT -> reward model -> the gate -> PPO -> comparison. The recipes are the same YAML files a user runs by hand;
the demo only wires each stage to the run directory the previous one produced.

`--preset brevity` is the second half of the lesson: the SFT model of the latest demo, a judge trained on the same
prompts by labelers who were asked something else (sample_data/brevity: which reply is briefer?), PPO against that
judge and a comparison: the quick recipes with the brevity pairs as the judge's data.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipelines.config import STAGES
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
}


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
    from pipelines.reward import check_gate

    started = time.time()
    made: dict[str, str] = {}
    if preset == "brevity":  # the same SFT model as the politeness demo: the one the latest demo made
        from pipelines.runs import list_runs

        sft = next((r for r in list_runs(runs_dir, stage="sft") if r.status().get("state") == "completed"), None)
        if sft is None:
            log.error("The brevity demo starts from a finished SFT run, and there is none in this runs folder. "
                      "Fix: run the demo first (`python -m pipelines demo`), then this one.")
            return 2
        made["sft"] = str(sft.path.resolve())
        log.info("Starting from SFT run %s, as the politeness demo did.", sft.id)
    for stage, config in demo_configs(preset):
        for name, source in (("sft_run", "sft"), ("reward_run", "reward"), ("ppo_run", "ppo")):
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
    print(f"Demo finished in {minutes:.1f} min; comparison in {made['compare']}/compare_summary.json")
    return 0
