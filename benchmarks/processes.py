"""One process or several: the SFT quick recipe and a few PPO steps, 1 process x 2 threads against a launched job of
2 processes x 1 thread (gloo), on this CPU.

    .venv/bin/python benchmarks/processes.py                       # SFT recipe both ways, reward, PPO both ways
    .venv/bin/python benchmarks/processes.py --sft-steps 10 --ppo-steps 3

On a 2-core machine both layouts use both cores; the launched one also pays for gradient all-reduces and two copies
of the model, and each of its processes does a whole per-device batch, so a step carries twice the examples. The
figures are measurements, not targets: what a user with several GPUs gets is the README's multi-GPU section.
Each side is a fresh `python -m pipelines ...` (under `torchrun --standalone --nproc_per_node 2` for the launched
side) with the quick recipes; figures are read back from the run directory. Prints a table and writes JSON (with
the CPU) to benchmarks/results/processes-<cpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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

RECIPES = ROOT / "sample_data" / "recipes"


def launch(stage_args: list[str], processes: int, runs: Path) -> tuple[Path, float]:
    """Run one stage; returns its run folder and the whole command's wall seconds (start-up included)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
    prefix = [sys.executable, "-m", "pipelines"]
    if processes > 1:
        prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                  "-m", "pipelines"]
    started = time.time()
    proc = subprocess.run([*prefix, *stage_args, "--runs-dir", str(runs)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    wall = time.time() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(stage_args[:1])} with {processes} process(es) failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]), wall


def step_seconds(run: Path, key: str) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if key in r]
    return statistics.median(b - a for a, b in zip(times, times[1:]))


def measure(stage: str, sets: list[str], processes: int, runs: Path, key: str, per_process_batch: int) -> dict:
    run, wall = launch([stage, "--config", str(RECIPES / f"{stage}_quick.yaml"), *sets], processes, runs)
    summary = json.loads((run / "summary.json").read_text())
    s_step = step_seconds(run, key)
    row = {"stage": stage, "processes": processes, "threads_per_process": max(1, (os.cpu_count() or 2) // processes),
           "wall_s": round(wall, 1), "s_per_step": round(s_step, 2), "global_batch": per_process_batch * processes,
           "samples_per_s": round(per_process_batch * processes / s_step, 2), "world_size": summary.get("world_size"),
           "replicas_identical": summary.get("replicas_identical"), "run": str(run)}
    if stage == "sft":
        row.update(first_loss=summary.get("first_loss"), final_loss=summary.get("final_loss"),
                   train_runtime_s=summary.get("train_runtime_s"))
    if stage == "ppo":
        rows = [r for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
                if "objective/scores" in r]  # the training steps (not the watch's row of step 0)
        row["tokens_per_s"] = round(statistics.median(r["tokens_per_second"] for r in rows[1:]), 1)
        row["mean_score"] = round(statistics.mean(r["objective/scores"] for r in rows), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sft-steps", type=int, default=0, help="SFT steps (0: the quick recipe's 40)")
    parser.add_argument("--ppo-steps", type=int, default=4)
    parser.add_argument("--reward-steps", type=int, default=0, help="reward steps for PPO's judge (0: the recipe's)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/processes-<cpu>-<date>.json)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        sft_sets = ["--set", f"train_file={ROOT / 'sample_data/sft_train.jsonl'}", "--set",
                    f"eval_file={ROOT / 'sample_data/sft_eval.jsonl'}"]
        if args.sft_steps:
            sft_sets += ["--set", f"max_steps={args.sft_steps}"]
        for processes in (1, 2):
            print(f"[processes] sft with {processes} process(es)...", file=sys.stderr, flush=True)
            results.append(measure("sft", sft_sets, processes, runs / f"sft{processes}", "loss", 8))
        sft_run = results[0]["run"]
        print("[processes] reward (one process, for PPO's judge)...", file=sys.stderr, flush=True)
        reward_sets = ["--set", f"sft_run={sft_run}", "--set", f"train_file={ROOT / 'sample_data/prefs_train.jsonl'}",
                       "--set", f"eval_file={ROOT / 'sample_data/prefs_eval.jsonl'}"]
        if args.reward_steps:
            reward_sets += ["--set", f"max_steps={args.reward_steps}", "--set", "accuracy_gate=0"]
        reward_run, _ = launch(["reward", "--config", str(RECIPES / "reward_quick.yaml"), *reward_sets], 1,
                               runs / "reward")
        ppo_sets = ["--set", f"sft_run={sft_run}", "--set", f"reward_run={reward_run}", "--set",
                    f"prompts_file={ROOT / 'sample_data/prompts_train.jsonl'}", "--set", f"max_steps={args.ppo_steps}",
                    "--set", "allow_untrusted_judge=true"]
        for processes in (1, 2):
            print(f"[processes] ppo with {processes} process(es)...", file=sys.stderr, flush=True)
            results.append(measure("ppo", ppo_sets, processes, runs / f"ppo{processes}", "objective/scores", 8))
    machine = cpu_info()
    print(f"\nCPU: {machine['cpu']} ({machine['usable_cores']} cores, {machine['vector']})\n")
    print("| stage | processes x threads | wall s | s/step | global batch | samples/s | replicas identical |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['stage']} | {r['processes']} x {r['threads_per_process']} | {r['wall_s']} | {r['s_per_step']} | "
              f"{r['global_batch']} | {r['samples_per_s']} | {r['replicas_identical']} |")
    slug = "".join(c if c.isalnum() else "-" for c in machine["cpu"].lower()).strip("-")[:30]
    out = Path(args.out) if args.out else HERE / "results" / f"processes-{slug}-{dt.date.today():%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "date": dt.datetime.now().isoformat(timespec="seconds"),
                               "results": [{k: v for k, v in r.items() if k != "run"} for r in results]}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
