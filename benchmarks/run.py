"""The workbench's fixed benchmark: one command, a markdown report on stdout, the same figures in JSON.

    .venv/bin/python benchmarks/run.py --quick          # under 20 minutes on a 2-core CPU (`make bench`)
    .venv/bin/python benchmarks/run.py                  # the full set, demo included
    .venv/bin/python benchmarks/run.py --quick --out results.json --only stages,overhead

Every measurement is a fresh process started through the project's one CLI (`python -m pipelines <stage> --config
... --set ... --runs-dir <tmp>`); figures are read back from the run directory it leaves (metrics.jsonl: `step`
and `time`, seconds since the stage's tracker started; summary.json; status.json). On CUDA the stage runs through
`benchmarks/cuda_stage.py`, which calls the same CLI entry point in its process and then reports
torch.cuda.max_memory_allocated(), since the pipelines do not record VRAM.

Sections (see benchmarks/README.md):
  startup     interpreter / `import torch` / `import pipelines.stages.sft.train` times, and per stage the time from
              process start to "Run ... started" (status.json's started_at)
  stages      sft, reward, ppo, dpo and grpo on the sample_data quick recipes with fewer steps: seconds per step
              (median of the step-to-step deltas of `time`, so the first step's warm-up is left out), tokens per
              second (GRPO: prompt and sampled tokens, TRL's `num_tokens`), peak memory
              (peak RSS of the child from wait4's rusage, which is the child's own VmHWM; on CUDA peak allocated
              VRAM); on CUDA again with `quantization=4bit`
  overhead    the workbench's SFT and reward stages against plain TRL scripts doing the same work
              (benchmarks/plain_trl_sft.py, plain_trl_reward.py), alternating, ratio = plain / workbench time of
              `trainer.train()` (Trainer's own `train_runtime` on both sides), target >= 0.95
  ppo_memory  pipelines.stages.ppo.roles.SharedRoles (one base, four roles as adapters) against four separately
              loaded models, one process per layout (benchmarks/ppo_memory.py)
  checkpoints the cost of one checkpoint save (seconds, MB) per stage at the quick recipes, and its share of training
              time at the default schedule (`save_steps: 0` = four saves, plus one per `save_minutes`)
  scaling     SFT seconds per step over a max_length x batch_size grid, one process per cell
  demo        `python -m pipelines demo` end to end (off with --quick unless --demo)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPES = ROOT / "sample_data" / "recipes"
PY = sys.executable
sys.path.insert(0, str(ROOT))  # pipelines.config (pure Python) reads the recipes here; nothing heavy is imported
SECTIONS = ("startup", "stages", "overhead", "ppo_memory", "checkpoints", "scaling", "demo")
OVERHEAD_TARGET = 0.95

# What each mode runs. `sets` are extra `--set` overrides applied to every stage run of that mode.
MODES = {
    "full": dict(stage_steps={"sft": 12, "reward": 10, "ppo": 6, "dpo": 10, "grpo": 6}, overhead_steps=20, repeats=5,
                 grid_lengths=[64, 128, 256], grid_batches=[2, 4, 8], grid_steps=5, ppo_mem_batch=8,
                 ppo_mem_tokens=40, import_repeats=3, demo=True, sets={}, ppo_sets={}, small_eval=False,
                 checkpoint_steps={"sft": 8, "reward": 8, "ppo": 5}),
    "quick": dict(stage_steps={"sft": 6, "reward": 6, "ppo": 4, "dpo": 6, "grpo": 4}, overhead_steps=8, repeats=3,
                  grid_lengths=[64, 128], grid_batches=[2, 4], grid_steps=3, ppo_mem_batch=8, ppo_mem_tokens=40,
                  import_repeats=1, demo=False, sets={}, ppo_sets={}, small_eval=True,
                  checkpoint_steps={"sft": 6, "reward": 6, "ppo": 4}),
    # Hidden: checks that every section runs end to end, in a few minutes; its figures mean little.
    "smoke": dict(stage_steps={"sft": 2, "reward": 2, "ppo": 2, "dpo": 2, "grpo": 2}, overhead_steps=2, repeats=1,
                  grid_lengths=[64], grid_batches=[2], grid_steps=2, ppo_mem_batch=2, ppo_mem_tokens=8,
                  import_repeats=1, demo=False, sets={"batch_size": 2}, ppo_sets={"max_new_tokens": 8},
                  small_eval=True, checkpoint_steps={"sft": 3, "reward": 3, "ppo": 3}),
}


def cpu_info() -> dict:
    """CPU model, cores, vector extensions and RAM: machines of one kind differ twofold, and AVX-512 or not is the
    first thing to compare."""
    info = {"cpu": platform.processor(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "vector": None, "ram_gb": None}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines()
                            if l.startswith("model name")), info["cpu"])
        flags = set(next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), []))
        info["vector"] = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither"
        mem = Path("/proc/meminfo").read_text()
        info["ram_gb"] = round(int(re.search(r"MemTotal:\s+(\d+)", mem).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return info


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rnd(value, digits=2):
    return None if value is None else round(value, digits)


# ---- child processes ---------------------------------------------------------------------------------------------


@dataclass
class Proc:
    argv: list[str]
    returncode: int = -1
    wall_s: float = 0.0
    peak_rss_mb: float | None = None
    spawned_at: float = 0.0
    first_row_s: float | None = None  # process start -> first training row in metrics.jsonl (polled every 0.2 s)
    timed_out: bool = False
    cpu_s: float = 0.0  # the child's own user + system CPU seconds
    other_cpu_s: float | None = None  # CPU seconds every other process used meanwhile: a busy machine shows here
    stdout: str = ""
    stderr: str = ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join((self.stderr or self.stdout).strip().splitlines()[-lines:])

    def tagged(self, tag: str) -> dict | None:
        """The JSON of the last stdout line starting with `tag ` (the helper scripts report this way)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        return None


def read_hwm(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def busy_cpu_s() -> float | None:
    """Machine-wide non-idle CPU seconds so far (/proc/stat: user, nice, system, irq, softirq, steal)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def has_training_row(runs_dir: Path, key: str) -> bool:
    for path in runs_dir.glob("*/metrics.jsonl"):
        try:
            if f'"{key}"' in path.read_text(encoding="utf-8"):
                return True
        except OSError:
            pass
    return False


class Runner:
    def __init__(self, work: Path, timeout: int):
        self.work, self.timeout, self.count = work, timeout, 0
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}

    def spawn(self, argv: list[str], name: str, watch: tuple[Path, str] | None = None,
              timeout: int | None = None) -> Proc:
        """Run argv from the repository root; its peak RSS is the child's own (wait4's rusage), not the maximum
        over every child this process ever had (RUSAGE_CHILDREN), and is cross-checked with polled VmHWM."""
        self.count += 1
        base = self.work / "logs" / f"{self.count:03d}-{name}"
        proc = Proc(argv=argv)
        timeout = timeout or self.timeout
        with open(f"{base}.out", "w") as out, open(f"{base}.err", "w") as err:
            busy_before = busy_cpu_s()
            proc.spawned_at = time.time()
            child = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err, env=self.env)
            polled = 0.0
            try:
                while True:
                    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                    if pid:
                        break
                    polled = max(polled, read_hwm(child.pid) or 0.0)
                    if watch and proc.first_row_s is None and has_training_row(*watch):
                        proc.first_row_s = time.time() - proc.spawned_at
                    if not proc.timed_out and time.time() - proc.spawned_at > timeout:
                        progress(f"{name}: over its {timeout} s limit, killing process {child.pid}")
                        proc.timed_out = True
                        child.kill()
                    time.sleep(0.2)
            except BaseException:  # Ctrl-C or SIGTERM: take the child (this one, by its pid) down with us
                child.kill()
                os.waitpid(child.pid, 0)
                child.returncode = -9
                raise
        proc.wall_s = time.time() - proc.spawned_at
        proc.returncode = child.returncode = os.waitstatus_to_exitcode(status)
        proc.peak_rss_mb = round(max(usage.ru_maxrss / 1024, polled), 1)  # ru_maxrss is in KiB on Linux
        proc.cpu_s = round(usage.ru_utime + usage.ru_stime, 2)
        busy_after = busy_cpu_s()
        if busy_before is not None and busy_after is not None:
            proc.other_cpu_s = round(max(0.0, busy_after - busy_before - proc.cpu_s), 1)
        proc.stdout = Path(f"{base}.out").read_text(errors="replace")
        proc.stderr = Path(f"{base}.err").read_text(errors="replace")
        return proc


# ---- reading a run directory -------------------------------------------------------------------------------------

TRAIN_KEY = {"sft": "loss", "reward": "loss", "ppo": "objective/scores", "dpo": "rewards/chosen", "grpo": "reward"}


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    except OSError:
        pass
    return rows


def training_rows(stage: str, rows: list[dict]) -> list[dict]:
    """One row per optimizer step: the trainer's per-step logs (not the accounting row at step 0, evaluations,
    or the end-of-training summary row that carries `train_runtime`)."""
    key, seen, out = TRAIN_KEY[stage], set(), []
    for row in rows:
        if key in row and "train_runtime" not in row and row.get("step", 0) > 0 and row["step"] not in seen:
            seen.add(row["step"])
            out.append(row)
    return out


def step_figures(stage: str, rows: list[dict]) -> dict:
    """Seconds per step: the median step-to-step delta of `time` after the first logged step, so model loading,
    dataset preparation and the first step's warm-up are all left out. Tokens per second: SFT and reward from the
    cumulative `num_tokens` (TRL counts attention-mask tokens, padding excluded) over the same deltas; PPO from its
    own `tokens_per_second` (response tokens per whole step), median over the steps after the first."""
    train = training_rows(stage, rows)
    times = [r["time"] for r in train]
    deltas = [b - a for a, b in zip(times, times[1:])]
    tokens_per_s, tokens_per_step = [], []
    for a, b in zip(train, train[1:]):
        if "num_tokens" in a and "num_tokens" in b and b["time"] > a["time"]:
            tokens_per_step.append(b["num_tokens"] - a["num_tokens"])
            tokens_per_s.append((b["num_tokens"] - a["num_tokens"]) / (b["time"] - a["time"]))
    if stage == "ppo":
        tps = [r["tokens_per_second"] for r in train if "tokens_per_second" in r]
        tokens_per_s = tps[1:] if len(tps) > 1 else tps
    runtime = next((r["train_runtime"] for r in rows if "train_runtime" in r), None)
    # PPO logs `time/<phase>` per step (pipelines.stages.ppo.train.PhaseClock): the median of each, after the first
    # step.
    # `time/probes` only at the watch's probe steps: its median per step is its total over the steps
    phases = {key[5:]: rnd(median([r[key] for r in train[1:] if key in r]), 3)
              for key in (train[-1] if train else {}) if key.startswith("time/") and key != "time/probes"}
    if any("time/probes" in r for r in train[1:]):
        phases["probes"] = rnd(sum(r.get("time/probes", 0) for r in train[1:]) / len(train[1:]), 3)
    return {"phases_s": phases, "steps": len(train), "s_per_step": rnd(median(deltas), 3), "step_deltas_s": [rnd(d, 2) for d in deltas],
            "first_step_s": train[0]["time"] if train else None, "tokens_per_s": rnd(median(tokens_per_s), 1),
            "tokens_per_step": median(tokens_per_step), "train_runtime_s": runtime,
            "num_tokens_total": train[-1].get("num_tokens") if train else None,
            "last_step_s": times[-1] if times else None}


# ---- the benchmark ---------------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    mode: dict
    runner: Runner
    work: Path
    cuda: bool = False
    model_dir: str = ""
    results: dict = field(default_factory=dict)

    # -- helpers --

    def save(self) -> None:
        self.results["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.results, indent=2, default=str), encoding="utf-8")
        out.with_suffix(".md").write_text(render(self.results), encoding="utf-8")

    def error(self, where: str, proc: Proc | None = None, message: str = "") -> dict:
        text = message or (f"exit code {proc.returncode}" + (" (timed out)" if proc and proc.timed_out else ""))
        entry = {"where": where, "error": text, "log_tail": proc.tail() if proc else ""}
        self.results.setdefault("errors", []).append(entry)
        progress(f"FAILED {where}: {text}\n{entry['log_tail']}")
        return {"error": text}

    def small_eval_file(self) -> Path:
        """A few held-out pairs, so the reward stage's end-of-run evaluation (outside every timed interval) does not
        cost minutes of the benchmark's budget."""
        path = self.work / "prefs_eval_small.jsonl"
        if not path.exists():
            lines = (ROOT / "sample_data" / "prefs_eval.jsonl").read_text(encoding="utf-8").splitlines()[:8]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def stage(self, stage: str, name: str, sets: dict, timeout: int | None = None) -> tuple[dict, Path | None]:
        """One stage through the CLI in a fresh process; figures from its run directory."""
        runs_dir = self.work / "runs" / name
        runs_dir.mkdir(parents=True, exist_ok=True)
        sets = {key: str(value) for key, value in {"model": self.args.model, **sets}.items()}
        cli = [stage, "--config", str(RECIPES / f"{stage}_quick.yaml"), "--runs-dir", str(runs_dir)]
        for key, value in sets.items():
            cli += ["--set", f"{key}={value}"]
        argv = [PY, str(HERE / "cuda_stage.py"), *cli] if self.cuda else [PY, "-m", "pipelines", *cli]
        progress(f"{name}: python -m pipelines {' '.join(cli[:1] + [f'{k}={v}' for k, v in sets.items()])}")
        proc = self.runner.spawn(argv, name, watch=(runs_dir, TRAIN_KEY[stage]), timeout=timeout)
        run_dirs = [p for p in runs_dir.iterdir() if (p / "status.json").exists()]
        run_dir = run_dirs[0] if len(run_dirs) == 1 else None
        status = read_json(run_dir / "status.json", {}) if run_dir else {}
        if proc.returncode != 0 or status.get("state") != "completed":
            return self.error(name, proc, f"exit code {proc.returncode}, state {status.get('state')}: "
                                          f"{status.get('error', '')}"[:500]), None
        rows = read_jsonl(run_dir / "metrics.jsonl")
        summary = read_json(run_dir / "summary.json", {})
        figures = step_figures(stage, rows)
        started_at = status.get("started_at")
        result = {
            "stage": stage, "sets": sets, **figures,
            "startup_s": rnd(started_at - proc.spawned_at) if started_at else None,
            "first_row_wall_s": rnd(proc.first_row_s),
            "wall_s": rnd(proc.wall_s), "peak_rss_mb": proc.peak_rss_mb, "cpu_s": proc.cpu_s,
            "other_cpu_s": proc.other_cpu_s, "summary_train_runtime_s": summary.get("train_runtime_s"),
        }
        cuda = proc.tagged("BENCH_CUDA")
        if cuda:
            result["peak_vram_mb"] = cuda.get("max_allocated_mb")
            result["peak_vram_reserved_mb"] = cuda.get("max_reserved_mb")
        progress(f"{name}: {result['steps']} steps, {result['s_per_step']} s/step, {result['tokens_per_s']} tok/s, "
                 f"peak RSS {proc.peak_rss_mb} MiB, wall {result['wall_s']} s")
        return result, run_dir

    # -- sections --

    def machine(self) -> dict:
        info = {**cpu_info(), "platform": platform.platform(), "python": platform.python_version(),
                "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
        for package in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes"):
            try:
                info[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                info[package] = None
        check = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'cuda': c, 'threads': "
                 "torch.get_num_threads(), 'gpu': torch.cuda.get_device_name(0) if c else None, 'vram_gb': "
                 "round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if c else None}))")
        proc = self.runner.spawn([PY, "-c", check], "cuda-check", timeout=300)
        child = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
        info.update(gpu=child.get("gpu"), vram_gb=child.get("vram_gb"), torch_threads=child.get("threads"))
        self.cuda = bool(child.get("cuda")) and not self.args.cpu
        info["device"] = "cuda" if self.cuda else "cpu"
        return info

    def resolve_model_dir(self) -> str:
        """The model folder both sides of the overhead comparison load (the converted default model by default);
        resolving it here also does the one-time conversion outside every measurement."""
        code = "import sys; from pipelines.model.loading import resolve_model; print(resolve_model(sys.argv[1]))"
        proc = self.runner.spawn([PY, "-c", code, self.args.model], "resolve-model", timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"could not resolve model {self.args.model!r}:\n{proc.tail()}")
        return proc.stdout.strip().splitlines()[-1]

    def section_startup(self) -> dict:
        out = {}
        for name, code in (("python", "pass"), ("import_torch", "import torch"),
                           ("import_pipelines_sft", "import pipelines.stages.sft.train")):
            walls = []
            for i in range(self.mode["import_repeats"]):
                proc = self.runner.spawn([PY, "-c", code], f"import-{name}", timeout=600)
                if proc.returncode != 0:
                    return self.error(f"startup {name}", proc)
                walls.append(proc.wall_s)
            out[name + "_s"] = rnd(median(walls))
            progress(f"startup: python -c {code!r}: {out[name + '_s']} s")
        return out

    def section_stages(self) -> dict:
        steps = self.mode["stage_steps"]
        out = {}
        for quant in (["none", "4bit"] if self.cuda else ["none"]):
            made: dict[str, Path] = {}
            results = {}
            for stage in ("sft", "reward", "ppo", "dpo", "grpo"):
                sets = {"max_steps": steps[stage], **self.mode["sets"]}
                if quant != "none":
                    sets["quantization"] = quant
                if stage in ("reward", "dpo", "grpo"):  # from the SFT run, as the demo does
                    sets.update(sft_run=made.get("sft", ""))
                if stage == "dpo" and self.mode["small_eval"]:
                    sets["eval_file"] = self.small_eval_file()
                    if self.mode["small_eval"]:
                        sets["eval_file"] = self.small_eval_file()
                if stage == "ppo":
                    if "sft" not in made or "reward" not in made:
                        results[stage] = {"error": "skipped: needs the SFT and reward runs above"}
                        continue
                    # A few reward steps do not reach the accuracy gate; the benchmark measures speed, not quality.
                    sets.update(sft_run=made["sft"], reward_run=made["reward"], allow_untrusted_judge="true",
                                **self.mode["ppo_sets"])
                result, run_dir = self.stage(stage, f"{stage}-{quant}", sets)
                results[stage] = result
                if run_dir:
                    made[stage] = run_dir
            out[quant] = results
            if quant == "none":
                self.chain_runs = made
        return out

    def section_overhead(self) -> dict:
        """Workbench vs plain TRL, alternating so drifting machine load hits both sides alike.

        The timed interval is `trainer.train()` on both sides, as the Trainer itself measures it (`train_runtime`:
        from just before the first step to the end of the last, model loading, data preparation and tokenizing
        excluded). The workbench's SFT stage writes it to summary.json (`train_runtime_s`); its reward stage does
        not, but the Trainer's end-of-training log (`train_runtime`) reaches metrics.jsonl through the tracker's
        on_log, so it is read from there. Were it missing, the fallback would be (last - first training row
        time) * steps / (steps - 1), marked as an estimate."""
        steps, repeats = self.mode["overhead_steps"], self.args.repeats or self.mode["repeats"]
        out = {"steps": steps, "repeats": repeats, "target_ratio": OVERHEAD_TARGET, "pairs": {"sft": [], "reward": []}}
        from pipelines.stages import STAGES  # the stage records: no torch import in this process

        for stage, script in (("sft", "plain_trl_sft.py"), ("reward", "plain_trl_reward.py")):
            sets = {"max_steps": steps, "eval_steps": 0, **self.mode["sets"]}
            if stage == "sft":
                sets["eval_file"] = ""
            else:
                sets.update(sft_run="", eval_file=self.small_eval_file())
            cfg = STAGES[stage].config.load(RECIPES / f"{stage}_quick.yaml", [f"{k}={v}" for k, v in sets.items()])
            data = ROOT / cfg.train_file
            plain = [PY, str(HERE / script), "--model-dir", self.model_dir, "--train-file", str(data),
                     "--max-length", str(cfg.max_length), "--batch-size", str(cfg.batch_size), "--max-steps",
                     str(cfg.max_steps), "--learning-rate", str(cfg.learning_rate), "--lora-r", str(cfg.lora_r),
                     "--lora-alpha", str(cfg.lora_alpha), "--lora-dropout", str(cfg.lora_dropout), "--targets",
                     ",".join(cfg.lora_target_modules), "--seed", str(cfg.seed)]
            out[f"{stage}_settings"] = {"max_steps": cfg.max_steps, "batch_size": cfg.batch_size,
                                        "max_length": cfg.max_length, "lora_r": cfg.lora_r,
                                        "lora_alpha": cfg.lora_alpha, "targets": cfg.lora_target_modules}
            sets["model"] = self.model_dir
            for i in range(repeats):
                wb, _ = self.stage(stage, f"overhead-{stage}-workbench-{i + 1}", sets)
                progress(f"overhead-{stage}-plain-{i + 1}: {script}")
                proc = self.runner.spawn(plain, f"overhead-{stage}-plain-{i + 1}")
                report = proc.tagged("PLAIN_TRL") if proc.returncode == 0 else None
                if report is None:
                    self.error(f"overhead-{stage}-plain-{i + 1}", proc)
                if "error" in wb or report is None:
                    out["pairs"][stage].append({"error": wb.get("error") or "plain TRL script failed"})
                    continue
                wb_time, estimated = wb["train_runtime_s"], False
                if wb_time is None and wb["steps"] > 1:
                    wb_time = (wb["last_step_s"] - wb["first_step_s"]) * wb["steps"] / (wb["steps"] - 1)
                    estimated = True
                pair = {"workbench_train_s": rnd(wb_time, 3), "plain_train_s": report["train_runtime_s"],
                        "ratio": rnd(report["train_runtime_s"] / wb_time, 3) if wb_time else None,
                        "workbench_estimated": estimated, "workbench_steps": wb["steps"],
                        "plain_steps": report["steps"], "workbench_s_per_step": wb["s_per_step"],
                        "workbench_wall_s": wb["wall_s"], "plain_wall_s": rnd(proc.wall_s),
                        "workbench_peak_rss_mb": wb["peak_rss_mb"], "plain_peak_rss_mb": proc.peak_rss_mb,
                        "plain_train_wall_s": report["train_wall_s"],
                        "workbench_other_cpu_s": wb["other_cpu_s"], "plain_other_cpu_s": proc.other_cpu_s,
                        "workbench_num_tokens": wb["num_tokens_total"], "plain_num_tokens": report.get("num_tokens")}
                if stage == "reward":
                    pair["plain_pairs_kept"] = report.get("pairs_kept")
                out["pairs"][stage].append(pair)
                progress(f"overhead {stage} #{i + 1}: workbench {pair['workbench_train_s']} s, plain "
                         f"{pair['plain_train_s']} s, ratio {pair['ratio']}")
            ratios = [p["ratio"] for p in out["pairs"][stage] if p.get("ratio") is not None]
            out[f"{stage}_ratio"] = ({"min": min(ratios), "median": rnd(median(ratios), 3), "max": max(ratios),
                                      "meets_target": median(ratios) >= OVERHEAD_TARGET} if ratios else None)
        return out

    def chain(self) -> dict[str, Path]:
        """An SFT run and a reward run trained from it (the PPO memory section needs both): the stage section's,
        or two one-step runs made now."""
        made = dict(getattr(self, "chain_runs", {}) or {})
        if "sft" not in made:
            _, made["sft"] = self.stage("sft", "chain-sft", {"max_steps": 1, "eval_file": "", **self.mode["sets"]})
        if made.get("sft") and "reward" not in made:
            _, made["reward"] = self.stage("reward", "chain-reward", {
                "max_steps": 1, "sft_run": made["sft"], "eval_file": self.small_eval_file(), **self.mode["sets"]})
        return made

    def section_ppo_memory(self) -> dict:
        made = self.chain()
        if not made.get("sft") or not made.get("reward"):
            return {"error": "needs an SFT run and a reward run, and making them failed"}
        out = {"batch_size": self.mode["ppo_mem_batch"], "max_new_tokens": self.mode["ppo_mem_tokens"], "runs": []}
        for quant in (["none", "4bit"] if self.cuda else ["none"]):
            for layout in ("shared", "separate"):
                argv = [PY, str(HERE / "ppo_memory.py"), "--layout", layout, "--sft-run", str(made["sft"]),
                        "--reward-run", str(made["reward"]), "--batch-size", str(self.mode["ppo_mem_batch"]),
                        "--max-new-tokens", str(self.mode["ppo_mem_tokens"]), "--quantization", quant]
                if self.args.cpu:
                    argv += ["--device", "cpu"]
                progress(f"ppo-memory-{layout}-{quant}: ppo_memory.py --layout {layout}")
                proc = self.runner.spawn(argv, f"ppo-memory-{layout}-{quant}")
                report = proc.tagged("PPO_MEMORY") if proc.returncode == 0 else None
                if report is None:
                    out["runs"].append({"layout": layout, "quantization": quant,
                                        **self.error(f"ppo-memory-{layout}-{quant}", proc)})
                    continue
                report.update(process_peak_rss_mb=proc.peak_rss_mb, wall_s=rnd(proc.wall_s),
                              other_cpu_s=proc.other_cpu_s)
                out["runs"].append(report)
                progress(f"ppo-memory {layout} {quant}: peak RSS {proc.peak_rss_mb} MiB, peak VRAM "
                         f"{report.get('peak_vram_mb')} MiB, step {report['step_s']} s")
            pair = {r["layout"]: r for r in out["runs"] if r.get("quantization") == quant and "error" not in r}
            if len(pair) == 2:
                key = "peak_vram_mb" if self.cuda else "peak_rss_mb"
                out[f"saving_{quant}"] = {
                    "measure": key, "shared": pair["shared"][key], "separate": pair["separate"][key],
                    "separate_over_shared": rnd(pair["separate"][key] / pair["shared"][key], 2)}
        return out

    def section_checkpoints(self) -> dict:
        """Every step saves (`save_steps=1`); the stage's `Checkpoint at step N saved to ... (X MB in Y s)` log lines
        give each save's size and seconds (the Trainer's whole `_save_checkpoint`; PPO's whole save). A step's own
        time is the median step-to-step delta less the median save (each delta holds one step and one save). The
        share at the defaults: the saves the quick recipe makes (four, plus one per `save_minutes` of training) times
        the save's seconds, over the recipe's max_steps times the step's seconds."""
        import math

        from pipelines.stages import STAGES

        made = self.chain()
        out = {}
        for stage in ("sft", "reward", "ppo"):
            sets = {"max_steps": self.mode["checkpoint_steps"][stage], "save_steps": 1, **self.mode["sets"]}
            if stage == "reward":
                sets.update(sft_run=made.get("sft", ""), eval_file=self.small_eval_file())
            if stage == "ppo":
                sets.update(sft_run=made.get("sft", ""), reward_run=made.get("reward", ""),
                            allow_untrusted_judge="true", **self.mode["ppo_sets"])
            result, run_dir = self.stage(stage, f"checkpoints-{stage}", sets)
            if run_dir is None:
                out[stage] = result
                continue
            log = (run_dir / "run.log").read_text(encoding="utf-8")
            saves = [(float(mb), float(sec)) for mb, sec in
                     re.findall(r"Checkpoint at step \d+ saved to .* \(([\d.]+) MB in ([\d.]+) s\)", log)]
            save_s, size_mb = median([sec for _, sec in saves]), median([mb for mb, _ in saves])
            step_s = result["s_per_step"] - save_s
            recipe = STAGES[stage].config.load(RECIPES / f"{stage}_quick.yaml")
            train_s = recipe.max_steps * step_s
            default_saves = math.ceil(recipe.max_steps / recipe.checkpoint_every()) + (
                int(train_s // (recipe.save_minutes * 60)) if recipe.save_minutes else 0)
            out[stage] = {"saves": len(saves), "save_s": rnd(save_s, 3), "size_mb": rnd(size_mb, 1),
                          "step_s": rnd(step_s, 3), "recipe_max_steps": recipe.max_steps,
                          "default_saves": default_saves,
                          "share_of_training": rnd(default_saves * save_s / train_s, 4),
                          "save_s_each": [sec for _, sec in saves], "peak_rss_mb": result["peak_rss_mb"],
                          "other_cpu_s": result.get("other_cpu_s"), "wall_s": result.get("wall_s")}
            progress(f"checkpoints {stage}: {save_s:.2f} s and {size_mb:.1f} MB per save; "
                     f"{100 * out[stage]['share_of_training']:.2f}% of training at the defaults")
        return out

    def section_scaling(self) -> dict:
        out = {"steps": self.mode["grid_steps"], "cells": []}
        for length in self.mode["grid_lengths"]:
            for batch in self.mode["grid_batches"]:
                sets = {**self.mode["sets"], "max_steps": self.mode["grid_steps"], "max_length": length,
                        "batch_size": batch, "eval_file": ""}
                result, _ = self.stage("sft", f"scaling-sft-L{length}-B{batch}", sets)
                cell = {"max_length": length, "batch_size": batch}
                for key in ("s_per_step", "tokens_per_s", "tokens_per_step", "peak_rss_mb", "peak_vram_mb",
                            "other_cpu_s", "wall_s", "error"):
                    if key in result:
                        cell[key] = result[key]
                out["cells"].append(cell)
        return out

    def section_demo(self) -> dict:
        runs_dir = self.work / "runs" / "demo"
        progress("demo: python -m pipelines demo (the quick preset; about 10-15 minutes on a 2-core CPU)")
        proc = self.runner.spawn([PY, "-m", "pipelines", "demo", "--runs-dir", str(runs_dir)], "demo",
                                 timeout=max(self.runner.timeout, 3600))
        if proc.returncode != 0:
            return self.error("demo", proc)
        stages = {}
        for path in sorted(runs_dir.iterdir()):
            status = read_json(path / "status.json", {})
            if status.get("started_at") and status.get("ended_at"):
                stages[status.get("stage", path.name)] = rnd(status["ended_at"] - status["started_at"])
        return {"wall_s": rnd(proc.wall_s), "peak_rss_mb": proc.peak_rss_mb, "other_cpu_s": proc.other_cpu_s,
                "stage_wall_s": stages}


# ---- the report ---------------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render(r: dict) -> str:
    out = [f"# RLHF workbench benchmark ({r.get('mode')}, {r.get('started_at')})", ""]
    m = r.get("machine", {})
    if m:
        out += ["## Machine", "", table(["what", "value"], [
            ["CPU", f"{m.get('cpu')} ({m.get('vector')})"],
            ["cores (usable)", f"{m.get('cores')} ({m.get('usable_cores')})"],
            ["RAM GiB", m.get("ram_gb")], ["GPU", m.get("gpu") or "none"],
            ["device used", m.get("device")], ["torch threads", m.get("torch_threads")],
            ["load average at start", m.get("load_avg_at_start")], ["load average at end", m.get("load_avg_at_end")],
            ["versions", ", ".join(f"{k} {m.get(k)}" for k in ("torch", "transformers", "trl", "peft", "datasets",
                                                               "accelerate", "bitsandbytes") if m.get(k))],
            ["model", r.get("model_dir")]]), ""]
    s = r.get("startup")
    if s and "error" not in s:
        out += ["## Start-up (fresh process, wall seconds)", "", table(["python -c", "seconds"], [
            ["pass", s.get("python_s")], ["import torch", s.get("import_torch_s")],
            ["import pipelines.stages.sft.train", s.get("import_pipelines_sft_s")]]), ""]
    stages = r.get("stages")
    if stages:
        rows = []
        for quant, results in stages.items():
            for stage, x in results.items():
                if "error" in x:
                    rows.append([stage, quant, f"ERROR: {x['error'][:60]}"] + [None] * 9)
                    continue
                rows.append([stage, quant, x["steps"], x["s_per_step"], x["tokens_per_s"], x["first_step_s"],
                             x["startup_s"], x["first_row_wall_s"], x["peak_rss_mb"], x.get("peak_vram_mb"),
                             x["wall_s"], x.get("other_cpu_s")])
        out += ["## Stages (sample_data quick recipes, fewer steps)", "",
                table(["stage", "quant", "steps", "s/step (median, after step 1)", "tokens/s", "first step s*",
                       "start-up s", "process start -> first step s", "peak RSS MiB", "peak VRAM MiB",
                       "process wall s", "others' CPU s**"], rows),
                "", "*from the stage's tracker start: trainer set-up, data preparation and the first step.  ",
                "**CPU seconds other processes used while it ran: well above 0, the machine was busy and the "
                "figures are slower than they should be.", ""]
    for quant, results in (stages or {}).items():
        phases = (results.get("ppo") or {}).get("phases_s") if isinstance(results, dict) else None
        if phases:
            total = sum(v for v in phases.values() if v) or 1
            rows = [[name, seconds, f"{100 * seconds / total:.0f}%"] for name, seconds in
                    sorted(phases.items(), key=lambda kv: -(kv[1] or 0))]
            out += [f"## PPO: where a step goes ({quant}; medians after step 1, from metrics.jsonl `time/*`)", "",
                    table(["phase", "s per step", "share"], rows), ""]
    o = r.get("overhead")
    if o and "pairs" in o:
        rows = []
        for stage in ("sft", "reward"):
            for i, p in enumerate(o["pairs"].get(stage, []), 1):
                if "error" in p:
                    rows.append([stage, i, f"ERROR: {p['error'][:60]}"] + [None] * 6)
                    continue
                rows.append([stage, i, p["workbench_train_s"], p["plain_train_s"], p["ratio"],
                             p["workbench_peak_rss_mb"], p["plain_peak_rss_mb"],
                             f"{p.get('workbench_other_cpu_s')} / {p.get('plain_other_cpu_s')}"])
        summary = [[stage, x["min"], x["median"], x["max"], "yes" if x["meets_target"] else "NO"]
                   for stage in ("sft", "reward") if (x := o.get(f"{stage}_ratio"))]
        out += [f"## Overhead: workbench vs plain TRL ({o['steps']} steps, {o['repeats']} alternating pairs; "
                "trainer.train() seconds)", "",
                table(["stage", "pair", "workbench s", "plain TRL s", "ratio plain/workbench", "workbench RSS MiB",
                       "plain RSS MiB", "others' CPU s (wb / plain)"], rows), "",
                table(["stage", "ratio min", "median", "max", f"median >= {o['target_ratio']}"], summary), ""]
    p = r.get("ppo_memory")
    if p and "runs" in p:
        rows = [[x.get("layout"), x.get("quantization"), x.get("parameters_m"), x.get("rss_after_load_mb"),
                 x.get("peak_rss_mb"), x.get("vram_after_load_mb"), x.get("peak_vram_mb"), x.get("load_s"),
                 x.get("step_s")] if "error" not in x else [x.get("layout"), x.get("quantization"),
                                                             f"ERROR: {x['error'][:60]}"] + [None] * 6
                for x in p["runs"]]
        savings = [f"{k[7:]}: separate / shared = {v['separate_over_shared']} ({v['measure']})"
                   for k, v in p.items() if k.startswith("saving_")]
        out += [f"## PPO memory: shared adapters vs separate models (batch {p['batch_size']}, "
                f"{p['max_new_tokens']} new tokens, one rollout + one PPO update)", "",
                table(["layout", "quant", "params M", "RSS after load MiB", "peak RSS MiB", "VRAM after load MiB",
                       "peak VRAM MiB", "load s", "step s"], rows), "", *savings, ""]
    c = r.get("checkpoints")
    if c and "error" not in c:
        rows = [[stage, x.get("save_s"), x.get("size_mb"), x.get("step_s"), x.get("recipe_max_steps"),
                 x.get("default_saves"), f"{100 * x['share_of_training']:.2f}%" if "share_of_training" in x else None,
                 x.get("error")] for stage, x in c.items()]
        out += ["## Checkpoints (quick recipes; one save per step to measure it)", "",
                table(["stage", "s per save (median)", "MB per save", "s per step (without save)", "recipe steps",
                       "saves at the defaults", "share of training time", "error"], rows), ""]
    g = r.get("scaling")
    if g and "cells" in g:
        rows = [[c["max_length"], c["batch_size"], c.get("s_per_step"), c.get("tokens_per_step"),
                 c.get("tokens_per_s"), c.get("peak_rss_mb"), c.get("peak_vram_mb"), c.get("other_cpu_s"),
                 c.get("error")] for c in g["cells"]]
        out += [f"## SFT scaling ({g['steps']} steps per cell)", "",
                table(["max_length", "batch", "s/step", "tokens/step", "tokens/s", "peak RSS MiB", "peak VRAM MiB",
                       "others' CPU s", "error"], rows), ""]
    d = r.get("demo")
    if d:
        if "error" in d:
            out += ["## Demo", "", f"ERROR: {d['error']}", ""]
        else:
            out += ["## Demo (`python -m pipelines demo`, quick preset)", "", table(
                ["what", "seconds"], [["end to end", d["wall_s"]], *[[f"  {k}", v] for k, v in
                                                                     d["stage_wall_s"].items()]]), ""]
    busy = [x for x in _measurements(r) if x.get("other_cpu_s") and x.get("wall_s")
            and x["other_cpu_s"] > 0.1 * x["wall_s"]]
    if busy:
        out += [f"WARNING: other processes used more than 10% of a core during {len(busy)} measurement(s) (the "
                "`others' CPU s` columns): those figures are pessimistic. Re-run on an idle machine.", ""]
    for e in r.get("errors", []):
        out += [f"ERROR in {e['where']}: {e['error']}"]
    return "\n".join(out) + "\n"


def _measurements(r: dict) -> list[dict]:
    """Every child measurement as {wall_s, other_cpu_s}, for the busy-machine warning."""
    out = [x for results in (r.get("stages") or {}).values() if isinstance(results, dict)
           for x in results.values() if isinstance(x, dict)]
    for pairs in ((r.get("overhead") or {}).get("pairs") or {}).values():
        for p in pairs:
            out += [{"wall_s": p.get("workbench_wall_s"), "other_cpu_s": p.get("workbench_other_cpu_s")},
                    {"wall_s": p.get("plain_wall_s"), "other_cpu_s": p.get("plain_other_cpu_s")}]
    out += (r.get("ppo_memory") or {}).get("runs") or []
    out += (r.get("scaling") or {}).get("cells") or []
    out += [x for x in (r.get("checkpoints") or {}).values() if isinstance(x, dict)]
    if isinstance(r.get("demo"), dict):
        out.append(r["demo"])
    return out


def save_rounds(kind: str, info: dict, summary: dict, rounds: list[dict]) -> Path:
    """A paired benchmark's end (viewers.py, watch_cost.py): its summary under the machine's name, printed, and
    written with every round to benchmarks/results/<kind>-<machine>-<date>.json."""
    print(f"\n{info['cpu']} ({info['vector']}, {info['usable_cores']} cores): {json.dumps(summary)}")
    out = HERE / "results" / f"{kind}-{machine_slug(info)}-{dt.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "summary": summary, "rounds": rounds}, indent=2))
    print(f"wrote {out}")
    return out


def machine_slug(info: dict) -> str:
    if info.get("gpu"):
        name = info["gpu"]
    else:
        name = re.sub(r"\((R|TM|tm)\)|CPU|Processor|@.*", " ", info.get("cpu") or platform.machine())
        name = f"{info.get('usable_cores')}c-{name}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "machine"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="the short set: under 20 minutes on a 2-core CPU")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # every section, tiny; figures mean little
    p.add_argument("--out", help="JSON file to write (default benchmarks/results/<machine>-<date>.json; a .md beside)")
    p.add_argument("--repeats", type=int, help="overhead pairs (default 3 with --quick, 5 otherwise)")
    p.add_argument("--demo", action="store_true", help="also time the demo end to end (default with the full set)")
    p.add_argument("--skip-demo", action="store_true", help="leave the demo out")
    p.add_argument("--only", help=f"comma-separated sections to run, of {', '.join(SECTIONS)}")
    p.add_argument("--skip", help="comma-separated sections to leave out")
    p.add_argument("--model", default="default", help="base model for every section (default: the embedded one)")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is present")
    p.add_argument("--timeout", type=int, default=1800, help="seconds before one child process is killed")
    p.add_argument("--keep", action="store_true", help="keep the temporary run directories and child logs")
    args = p.parse_args(argv)

    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    mode = MODES[mode_name]
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS) | set((args.skip or "").split(",")) - set(SECTIONS) - {""}
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    sections = [s for s in sections if s not in (args.skip or "").split(",")]
    if "demo" in sections and not args.only and (args.skip_demo or not (args.demo or mode["demo"])):
        sections.remove("demo")
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""

    # SIGTERM (e.g. `timeout`) ends the run like Ctrl-C: the running child is killed and the figures so far saved.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    bench = Bench(args, mode, Runner(work, args.timeout), work)
    started = time.time()
    bench.results = {"benchmark": "rlhf-workbench", "mode": mode_name, "sections": sections,
                     "command": [Path(PY).name, *sys.argv],
                     "started_at": dt.datetime.now().isoformat(timespec="seconds"),
                     "settings": {k: v for k, v in mode.items()}}
    progress(f"mode {mode_name}; sections {', '.join(sections)}; work folder {work}")
    try:
        bench.results["machine"] = bench.machine()
        if not args.out:
            date = dt.date.today().strftime("%Y%m%d")
            stem = f"{machine_slug(bench.results['machine'])}-{date}" + ("-smoke" if mode_name == "smoke" else "")
            out, n = HERE / "results" / f"{stem}.json", 1
            while out.exists():  # a second run the same day does not overwrite the first
                n += 1
                out = HERE / "results" / f"{stem}-{n}.json"
            args.out = str(out)
        bench.model_dir = bench.results["model_dir"] = bench.resolve_model_dir()
        bench.save()
        for section in sections:
            t0 = time.time()
            progress(f"=== {section} ===")
            try:
                bench.results[section] = getattr(bench, f"section_{section}")()
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others' figures
                bench.results[section] = bench.error(section, message=f"{type(exc).__name__}: {exc}")
            bench.results.setdefault("section_wall_s", {})[section] = rnd(time.time() - t0)
            bench.save()
    finally:
        bench.results["total_wall_s"] = rnd(time.time() - started)
        if "machine" in bench.results:
            bench.results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.out:
            bench.save()
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render(bench.results))
    print(f"Total {bench.results['total_wall_s']} s. Figures written to {args.out} "
          f"(and {Path(args.out).with_suffix('.md').name})")
    return 1 if bench.results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
