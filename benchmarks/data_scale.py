"""Data at the guide's scale: `inspect` and the reward stage's data preparation on 100,000 preference pairs, and
`inspect` on 10,000 prompts, made by repeating sample_data (each copy's prompt numbered, so no two are the same).

    .venv/bin/python benchmarks/data_scale.py                  # 100,000 pairs, 10,000 prompts
    .venv/bin/python benchmarks/data_scale.py --pairs 20000 --old <commit>   # also an earlier tree, alternating

Each measurement is a fresh process: `python -m pipelines inspect ...` as the Data page runs it, and a small driver
that runs the reward stage's preparation (load, validate, tokenize, fit to max_length) exactly as
`pipelines.stages.reward.train` does before training. Seconds are wall time of the whole process (start-up included,
about 5 s here); peak memory is the child's peak RSS. Prints a table and writes JSON (with the CPU) to
benchmarks/results/data-scale-<cpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import cpu_info  # noqa: E402

PREPARE = """
import sys, logging
sys.path.insert(0, {tree!r})
from pipelines.stages.reward.config import RewardConfig
from pipelines.data.formats import load_checked
from pipelines.model.loading import load_tokenizer, resolve_model
from pipelines.data.formats import tokenize_pairs
cfg = RewardConfig(train_file={file!r}, max_length=128)
tokenizer = load_tokenizer(resolve_model("default"))
pairs = load_checked("pairs", cfg.train_file, logging.getLogger("x"))
out = tokenize_pairs(tokenizer, pairs, cfg.max_length, cfg.min_prompt_tokens)
print("kept", len(out.rows), "truncated", len(out.truncated_lines), "dropped", len(out.dropped_lines))
"""


def scaled(source: Path, target: Path, n: int) -> Path:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(target, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            copy = i // len(rows)
            if copy and isinstance(row.get("prompt"), str):
                row["prompt"] = f"{row['prompt']} (#{copy})"
            fh.write(json.dumps(row) + "\n")
    return target


def timed(argv: list[str], cwd: Path) -> dict:
    """Wall seconds and the child's own peak RSS (wait4's rusage of that one process)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.time()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{argv[:4]} failed:\n{err.read()[-2000:]}")
        return {"seconds": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
                "stdout_tail": out.read().strip()[-160:]}


def measure(tree: Path, pairs: Path, prompts: Path) -> dict:
    py = sys.executable
    return {
        "inspect_pairs": timed([py, "-m", "pipelines", "inspect", "--stage", "reward", "--file", str(pairs),
                                "--max-length", "128"], tree),
        "reward_preparation": timed([py, "-c", PREPARE.format(tree=str(tree), file=str(pairs))], tree),
        "inspect_prompts": timed([py, "-m", "pipelines", "inspect", "--stage", "ppo", "--file", str(prompts)], tree),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--old", help="an earlier commit to measure too, alternating (git worktree)")
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict[str, list] = {"new": [], "old": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = scaled(ROOT / "sample_data" / "prefs_train.jsonl", tmp / "pairs.jsonl", args.pairs)
        prompts = scaled(ROOT / "sample_data" / "prompts_train.jsonl", tmp / "prompts.jsonl", args.prompts)
        old_tree = None
        if args.old:
            old_tree = tmp / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                           capture_output=True)
        try:
            for side, tree in (("new", ROOT), ("old", old_tree)):
                if tree is None:
                    continue
                print(f"[data-scale] {side} tree...", file=sys.stderr, flush=True)
                results[side].append(measure(tree, pairs, prompts))
        finally:
            if old_tree:
                subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    machine = cpu_info()
    print(f"\nCPU: {machine['cpu']} ({machine['usable_cores']} cores, {machine['vector']}); {args.pairs} pairs, "
          f"{args.prompts} prompts\n")
    print("| tree | inspect pairs: s, MB | reward preparation: s, MB | inspect prompts: s, MB |")
    print("|---|---|---|---|")
    for side, runs in results.items():
        for r in runs:
            cells = [f"{r[k]['seconds']} s, {r[k]['peak_rss_mb']} MB" for k in ("inspect_pairs", "reward_preparation",
                                                                                 "inspect_prompts")]
            print(f"| {side} | " + " | ".join(cells) + " |")
    slug = "".join(c if c.isalnum() else "-" for c in machine["cpu"].lower()).strip("-")[:30]
    out = Path(args.out) if args.out else HERE / "results" / f"data-scale-{slug}-{dt.date.today():%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "date": dt.datetime.now().isoformat(timespec="seconds"),
                               "pairs": args.pairs, "prompts": args.prompts, "results": results}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
