"""PPO seconds per step of this tree against an earlier commit, alternating, in one sitting.

    .venv/bin/python benchmarks/ppo_before_after.py --old c8a2cb7 --sft-run runs/<sft> --reward-run runs/<reward>

These machines drift by a quarter within an hour, so a before/after figure means something only when both sides
run in the same sitting, alternating (new, old, new, old...), from the same SFT run and judge. The old commit is
checked out in a temporary git worktree; both sides run `python -m pipelines ppo` with the quick recipe (or
`--recipe`) and `--steps` steps in this project's .venv. Seconds per step: the step intervals after the first of
every run of a side, pooled, median; phases: medians of `time/<phase>` (older trees may log none). Prints a table
and writes JSON (with the CPU) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import cpu_info  # noqa: E402


def run_side(tree: Path, name: str, args, runs: Path) -> dict:
    out = runs / name
    argv = [sys.executable, "-m", "pipelines", "ppo", "--config", str(tree / args.recipe), "--set",
            f"sft_run={args.sft_run}", "--set", f"reward_run={args.reward_run}", "--set", f"max_steps={args.steps}",
            "--set", f"prompts_file={tree / 'sample_data' / 'prompts_train.jsonl'}", "--runs-dir", str(out)]
    proc = subprocess.run(argv, cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    run = next(p for p in out.iterdir() if p.is_dir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "objective/scores" in r]
    times = [r["time"] for r in rows]
    return {"deltas": [b - a for a, b in zip(times, times[1:])],
            "phases": [{k[5:]: v for k, v in r.items() if k.startswith("time/")} for r in rows[1:]],
            "response_length": statistics.mean(r["response_length"] for r in rows)}


def pooled(results: list[dict]) -> dict:
    deltas = [d for r in results for d in r["deltas"]]
    phases: dict[str, list[float]] = {}
    for r in results:
        for row in r["phases"]:
            for k, v in row.items():
                phases.setdefault(k, []).append(v)
    return {"s_per_step": round(statistics.median(deltas), 2), "step_deltas_s": [round(d, 2) for d in deltas],
            "phases_s": {k: round(statistics.median(v), 2) for k, v in phases.items()},
            "mean_response_length": round(statistics.mean(r["response_length"] for r in results), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="the earlier commit (anything `git worktree add` takes)")
    p.add_argument("--sft-run", required=True, help="the SFT run both sides start from")
    p.add_argument("--reward-run", required=True, help="the judge both sides use")
    p.add_argument("--recipe", default="sample_data/recipes/ppo_quick.yaml", help="relative to each tree")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / f"ppo-before-after-{time.strftime('%Y%m%d-%H%M')}.json"))
    args = p.parse_args()
    args.sft_run, args.reward_run = str(Path(args.sft_run).resolve()), str(Path(args.reward_run).resolve())
    work = Path(tempfile.mkdtemp(prefix="ppo-before-after-"))
    old_tree = work / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                   capture_output=True)
    results: dict[str, list[dict]] = {"new": [], "old": []}
    try:
        for i in range(args.pairs):
            for side, tree in (("new", ROOT), ("old", old_tree)):
                results[side].append(run_side(tree, f"{side}{i}", args, work))
                print(f"pair {i + 1} {side}: median {statistics.median(results[side][-1]['deltas']):.2f} s/step",
                      file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    summary = {side: pooled(runs) for side, runs in results.items()}
    ratio = summary["new"]["s_per_step"] / summary["old"]["s_per_step"]
    report = {"machine": cpu_info(), "old": args.old, "recipe": args.recipe, "steps": args.steps,
              "pairs": args.pairs, "summary": summary, "new_over_old": round(ratio, 3)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    phases = sorted(set(summary["new"]["phases_s"]) | set(summary["old"]["phases_s"]))
    print("| side | s/step | mean response tokens | " + " | ".join(phases) + " |")
    print("|---" * (3 + len(phases)) + "|")
    for side, s in summary.items():
        cells = [str(s["phases_s"].get(k, "-")) for k in phases]
        print(f"| {side} | {s['s_per_step']} | {s['mean_response_length']} | " + " | ".join(cells) + " |")
    m = report["machine"]
    print(f"\nnew / old time per step: {ratio:.2f} on {m['cpu']} ({m['vector']}, {m['usable_cores']} cores); "
          f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
