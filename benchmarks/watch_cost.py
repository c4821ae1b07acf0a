"""What the reward-hacking watch costs a quick-recipe PPO run. Prints a table and writes
benchmarks/results/watch-<machine>-<date>.json.

    .venv/bin/python benchmarks/watch_cost.py --runs-dir DIR [--reward RUN] [--rounds 1] [--steps 30]

DIR holds a finished SFT run and a finished reward run (a demo's runs folder: `python -m pipelines demo --runs-dir
DIR`; `--reward` picks another judge than the newest). PPO then runs the quick recipe from them `--rounds` times
with the watch's probes as the recipe sets them and `--rounds` times with `probes=0`, alternated, in one sitting.
Two figures per round:
- the probes' own seconds, timed inside the run (`time/probes`, summed in summary.json's `probe_seconds`), over the
  run's wall time from its first step's start to its end: the share of the run they took;
- the run's wall time, with and without probes: the same cost seen from outside, noisier (a 2-core CPU moves by
  several percent from run to run).
Also the per-step signals every run computes even with probes off (`batch_signals` on a batch of answers), timed
alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import cpu_info, median, rnd, save_rounds, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def newest(runs_dir: Path, stage: str) -> Path:
    found = sorted(p for p in runs_dir.glob(f"*-{stage}*") if (p / "summary.json").exists())
    if not found:
        sys.exit(f"No finished {stage} run in {runs_dir}. Fix: run `python -m pipelines demo --runs-dir {runs_dir}`.")
    return found[-1]


def ppo(runs_dir: Path, judge: Path, out_dir: Path, steps: int, *extra: str) -> dict:
    """One quick-recipe PPO run from the folder's SFT run against `judge`; its figures."""
    started = time.time()
    subprocess.run([sys.executable, "-m", "pipelines", "ppo", "--config", "sample_data/recipes/ppo_quick.yaml",
                    "--set", f"sft_run={newest(runs_dir, 'sft')}", "--set", f"reward_run={judge}",
                    "--set", f"max_steps={steps}", *extra, "--runs-dir", str(out_dir)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process_s = time.time() - started
    run = sorted(out_dir.glob("*-ppo"))[-1]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps_rows = [r for r in rows if r["step"] > 0]
    status = json.loads((run / "status.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    # the run's own time: from its tracker's start (before the start's probes) to its end
    wall = status["ended_at"] - status["started_at"]
    probe_s = summary.get("probe_seconds", 0.0)
    return {"run": run.name, "process_s": rnd(process_s), "run_s": rnd(wall), "probe_s": probe_s,
            "probe_passes": len({r["step"] for r in rows if "probes/score" in r}),
            "probe_share": rnd(probe_s / wall, 4) if wall else None,
            "s_per_step": rnd(median([b["time"] - a["time"] for a, b in zip(steps_rows, steps_rows[1:])])),
            "alarms": [a["signal"] for a in summary.get("alarms", [])]}


def signals_cost() -> float:
    """Microseconds of `batch_signals` for a batch of eight 40-word answers (what every step computes)."""
    from pipelines.runtime.watch import batch_signals

    texts = [" ".join(f"word{(i * 7 + j) % 23}" for j in range(40)) for i in range(8)]
    prompts = [f"question {i}" for i in range(8)]
    seconds = min(timeit.repeat(lambda: batch_signals(prompts, texts), number=200, repeat=5)) / 200
    return rnd(seconds * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--reward", type=Path, help="the judge (default: the newest reward run in --runs-dir)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    out_dir = Path(f"/tmp/watch-cost-{int(time.time())}")
    results = []
    for round_ in range(args.rounds):
        for probes in (True, False):
            figures = ppo(args.runs_dir, args.reward or newest(args.runs_dir, "reward"),
                          out_dir / f"r{round_}-{'on' if probes else 'off'}", args.steps,
                          *(() if probes else ("--set", "probes=0")))
            results.append({"round": round_, "probes": probes, **figures})
            print(json.dumps(results[-1]), flush=True)
    on = [r for r in results if r["probes"]]
    off = [r for r in results if not r["probes"]]
    summary = {"judge": str(args.reward or newest(args.runs_dir, "reward")),
               "probe_share_inside": median([r["probe_share"] for r in on]),
               "run_s_on": median([r["run_s"] for r in on]), "run_s_off": median([r["run_s"] for r in off]),
               "signals_us_per_step": signals_cost()}
    if summary["run_s_on"] and summary["run_s_off"]:
        summary["run_time_ratio"] = rnd(summary["run_s_on"] / summary["run_s_off"], 3)
    info = cpu_info()
    print(table(["round", "probes", "run s", "s/step", "probe s", "passes", "share", "alarms"],
                [[r["round"], "on" if r["probes"] else "off", r["run_s"], r["s_per_step"], r["probe_s"],
                  r["probe_passes"], r["probe_share"], ",".join(r["alarms"]) or "-"] for r in results]))
    save_rounds("watch", info, summary, results)


if __name__ == "__main__":
    main()
