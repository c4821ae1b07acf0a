"""The run directory: the single source of truth for a run, on disk.

    runs/<run_id>/
        config.yaml     the full resolved config
        status.json     state (running / completed / failed / stopped), progress, error, pid
        metrics.jsonl   one JSON object per logged step, with `step` and the trainer's metric names
        samples.jsonl   PPO and GRPO: (prompt, response, score) samples for the live view
        probes.jsonl    PPO and GRPO: the reward-hacking watch's probe answers, per step (pipelines/runtime/watch.py)
        run.log         the log (of rank 0 when several processes share the run: the others write run.rank<K>.log)
        error.rank<K>.json  what a rank other than 0 failed with, when it did (its status names that rank)
        summary.json    final figures
        adapter/        the trained LoRA adapter + tokenizer
        STOP            written by anyone who wants the run to end cleanly

Under a launcher (`accelerate launch`, `torchrun`) N processes share one run directory and only rank 0 writes these
files: a `Run` object in any other rank never writes them (pipelines/runtime/distributed.py has the whole contract).

The UI never keeps a run's state in memory: it re-reads these files, so a refresh, a second tab or a restarted
app re-attaches to a live run.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from pipelines.errors import ConfigError
from pipelines.runtime import distributed

RUNS_DIR_ENV = "RLHF_WORKBENCH_RUNS"
log = logging.getLogger("pipelines")


class RunState(enum.StrEnum):
    """How a run stands, as status.json's `state` says it. A run with no state yet is starting."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def write_text_atomic(path: Path, text: str) -> None:
    """Readers polling the file never see half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False, default=float) + "\n" for row in rows))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line; a line being written right now is skipped rather than failing the reader."""
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.split("\n"):  # not splitlines(): a written text may hold U+2028 and its kin, kept as they are
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):  # a record; anything else in the file is not one of ours
            rows.append(row)
    return rows


NUMBERS = ("pid", "pid_started", "started_at", "ended_at", "updated_at", "step", "max_steps", "eta_s")


def status_damage(status: Any) -> str | None:
    """What makes a status.json unusable (a run folder edited by hand, a disk that failed), or None."""
    if status is None:
        return "it is not valid JSON"
    if not isinstance(status, dict):
        return f"it holds a {type(status).__name__}, not the run's status"
    state = status.get("state")
    if state is not None and state not in RunState.__members__.values():
        return f"`state` is {state!r}"
    for key in NUMBERS:
        value = status.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int if key == "pid" else (int, float)):
            return f"`{key}` is {value!r}, not a number"
        if key.endswith("_at") and not 0 <= value < 1e11:
            return f"`{key}` is {value}, not a time"
    return None


def process_started(pid: int | None) -> float | None:
    """When process `pid` started (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time() if pid else None
    except (psutil.Error, ValueError):
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether process `pid` runs, and is the one that started at `started` when that is known: after a reboot or a
    container restart, an old pid names some other process (its start time gives it away)."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return False
        # psutil derives start times from the boot time, which moves when the clock is stepped (NTP): a minute of
        # slack keeps a live run live, and still tells apart a process started after a restart
        return started is None or abs(process.create_time() - started) < 60.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # another user's process: it exists
        return started is None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Run:
    """One run directory. Created by the pipelines; read by the CLI, the UI and the tests.

    `writes` is false in the ranks other than 0 of a launched job: there the writing methods do nothing, so every
    stage keeps one status, one metrics file and one summary however many processes train it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.writes = distributed.is_main()

    def __reduce__(self):  # sent to another rank, a Run decides there whether it writes
        return Run, (self.path,)

    # ---- creation -------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, stage: str, config_yaml: str, runs_dir: str | Path | None = None, run_name: str = "",
               run_id: str | None = None) -> "Run":
        """A new run directory. `run_id` lets a launcher choose the folder (it may already hold the console log)."""
        runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
        if run_id:
            path = runs_dir / run_id
            if (path / "status.json").exists():
                raise ConfigError(f"Run `{run_id}` already exists in `{runs_dir}`. Fix: choose another run id.")
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = reserve_run_dir(stage, runs_dir, run_name)
        run = cls(path)
        (path / "config.yaml").write_text(config_yaml, encoding="utf-8")
        run.set_status(RunState.RUNNING, stage=stage, started_at=time.time(), pid=os.getpid(),
                       pid_started=process_started(os.getpid()),
                       world_size=distributed.world_size())
        return run

    # ---- files ---------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def log_file(self) -> Path:
        """This process' log: `run.log`, or `run.rank<K>.log` in rank K > 0 of a launched job."""
        return self.path / ("run.log" if distributed.is_main() else f"run.rank{distributed.rank()}.log")

    def status(self) -> dict[str, Any]:
        """The status, with a run whose process died without saying so reported as failed (with the message of a
        rank that failed, when one did: the launcher then ends rank 0 before it can say so itself)."""
        path = self.path / "status.json"
        status = read_json(path)
        if status is None and not path.exists():
            status = {}
        if problem := status_damage(status):
            return {"state": RunState.FAILED.value, "damaged": problem,
                    "error": f"This run's status.json is damaged ({problem}), so how it stands is unknown. Fix: "
                             f"delete the run folder `{self.path}`, or restore the file."}
        if status.get("state") == RunState.RUNNING and not pid_alive(status.get("pid"), status.get("pid_started")):
            status["state"] = RunState.FAILED.value
            status["error"] = status.get("error") or self.rank_error() or (
                "The training process ended without reporting (killed, out of memory, or crashed). "
                "See the end of the log."
            )
        return status

    def record_failure(self, message: str, own_fault: bool = True) -> None:
        """Leave `failed` with the message that explains it. In rank K > 0, `error.rank<K>.json` (rank 0 or the
        status reader picks it up). On rank 0, the failing rank's message unless the failure is rank 0's own:
        when a rank dies, rank 0 fails next in a collective with a message about a closed connection that says
        nothing about why."""
        if not self.writes:
            write_json_atomic(self.path / f"error.rank{distributed.rank()}.json",
                              {"rank": distributed.rank(), "error": message, "own_fault": own_fault,
                               "at": time.time()})
            return
        other = self.rank_error()
        self.set_status(RunState.FAILED, error=message if own_fault or not other else other)

    def rank_error(self) -> str | None:
        """The message of the rank other than 0 that failed first of its own accord (not the echo of another's
        failure), as `rank K: message`; else the first of any."""
        found = [data for path in self.path.glob("error.rank*.json") if (data := read_json(path) or {}).get("error")]
        if not found:
            return None
        first = min(found, key=lambda d: (not d.get("own_fault", True), d.get("at", 0)))
        return f"rank {first.get('rank')}: {first['error']}"

    def clear_rank_errors(self) -> None:
        """Before a resume: the failures recorded by the previous attempt are not this one's."""
        for path in self.path.glob("error.rank*.json"):
            path.unlink(missing_ok=True)

    def set_status(self, state: RunState | None = None, **fields: Any) -> None:
        if not self.writes:
            return
        status = read_json(self.path / "status.json", {}) or {}
        if state:
            status["state"] = RunState(state).value
            if state != RunState.RUNNING:
                status["ended_at"] = time.time()
        status.update(fields, updated_at=time.time())
        write_json_atomic(self.path / "status.json", status)

    @property
    def state(self) -> RunState | None:
        """The run's state now (a run whose process died unannounced is failed); None while it is starting."""
        state = self.status().get("state")
        return RunState(state) if state in RunState.__members__.values() else None

    @property
    def completed(self) -> bool:
        return self.state is RunState.COMPLETED

    def adapter_damage(self) -> str | None:
        """What makes the saved adapter unloadable (a missing, unreadable or truncated file), or None; read before
        any model is loaded, so the message names the file rather than a library's stack."""
        from pipelines.runtime.checkpoints import read_safetensors_header

        config = self.adapter_dir / "adapter_config.json"
        weights = self.adapter_dir / "adapter_model.safetensors"
        try:
            if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
                return f"`{config}` is not an adapter config"
            if weights.exists():
                read_safetensors_header(weights)
            elif not (self.adapter_dir / "adapter_model.bin").exists():
                return f"`{weights}` is missing"
        except FileNotFoundError as exc:
            return f"`{exc.filename}` is missing"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"`{weights if 'config' not in str(exc) and config.exists() else config}` is unreadable ({exc})"
        return None

    def config(self) -> dict[str, Any]:
        import yaml

        try:
            config = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):  # missing, not UTF-8, or broken: no settings to show
            return {}
        return config if isinstance(config, dict) else {}

    def base_model(self) -> str:
        """The `model` this run's adapter sits on. A PPO (or reward) run that started from an SFT run shares that
        run's base, whatever its own `model` field says."""
        config = self.config()
        if config.get("sft_run"):
            return Run(config["sft_run"]).config().get("model", "default")
        return config.get("model", "default")

    @property
    def stage(self) -> str:
        return self.status().get("stage") or self.config().get("stage", "")

    def log_metrics(self, row: dict[str, Any]) -> None:
        if not self.writes:
            return
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    def append_samples(self, rows: list[dict[str, Any]]) -> None:
        if not self.writes:
            return
        with open(self.path / "samples.jsonl", "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, default=float) + "\n")

    def samples(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "samples.jsonl")

    def probes(self) -> list[dict[str, Any]]:
        """The reward-hacking watch's probe answers (PPO, GRPO): one row per probe and step."""
        return read_jsonl(self.path / "probes.jsonl")

    def write_summary(self, summary: dict[str, Any]) -> None:
        if not self.writes:
            return
        write_json_atomic(self.path / "summary.json", summary)

    def summary(self) -> dict[str, Any]:
        summary = read_json(self.path / "summary.json", {})
        return summary if isinstance(summary, dict) else {}

    def cost(self) -> tuple[float | None, float | None]:
        """(wall seconds from start to end, model loading included; peak resident memory in MB) of an ended run;
        None where it did not record them."""
        status = self.status()
        wall = status["ended_at"] - status["started_at"] if status.get("ended_at") and status.get("started_at") \
            else None
        peaks = [m["memory/peak_rss_mb"] for m in self.metrics()
                 if isinstance(m.get("memory/peak_rss_mb"), (int, float))]
        return wall, max(peaks) if peaks else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- stopping ------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        (self.path / "STOP").write_text("stop requested\n", encoding="utf-8")

    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()


def reserve_run_dir(stage: str, runs_dir: str | Path | None = None, run_name: str = "") -> Path:
    """Make a fresh `<date>-<time>-<stage>[-label]` folder (suffixed when two start in the same second)."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_name)[:40]
    base = f"{stamp}-{stage}" + (f"-{label}" if label else "")
    for n in range(1000):
        path = runs_dir / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"Could not create a run folder in `{runs_dir}`. Fix: clean up old runs there.")


def list_runs(runs_dir: str | Path | None = None, stage: str | None = None) -> list[Run]:
    """Newest first."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    runs = [Run(p) for p in runs_dir.iterdir() if (p / "status.json").exists()]
    if stage:
        runs = [r for r in runs if r.stage == stage]
    return sorted(runs, key=lambda r: r.status().get("started_at", 0), reverse=True)


def finished_runs(stage: str, runs_dir: str | Path | None = None) -> list[Run]:
    """The completed runs of a stage, newest first."""
    return [r for r in list_runs(runs_dir, stage) if r.completed]


def resolve_run(value: str, stage: str, runs_dir: str | Path | None = None, field: str = "") -> Run:
    """A run folder, or `latest`: the newest completed run of that stage."""
    field = field or f"{stage}_run"
    if value == "latest":
        done = finished_runs(stage, runs_dir)
        if not done:
            where = runs_dir or default_runs_dir()
            raise ConfigError(f"`{field}: latest` found no completed `{stage}` run in `{where}`. Fix: run the "
                              f"`{stage}` stage first, or set `{field}` to a run folder.")
        return done[0]
    path = Path(value)
    if not path.is_dir() and runs_dir and (Path(runs_dir) / value).is_dir():
        path = Path(runs_dir) / value
    run = Run(path)
    if not (path / "status.json").exists():
        raise ConfigError(f"`{field}` is `{value}`, which is not a run folder (no status.json there). Fix: pass a "
                          f"folder printed by a `{stage}` run, or `latest`.")
    if run.stage != stage:
        raise ConfigError(f"`{field}` is `{value}`, a `{run.stage}` run, but a `{stage}` run is needed.")
    if run.state not in (RunState.COMPLETED, RunState.STOPPED) or not run.adapter_dir.is_dir():
        raise ConfigError(f"`{field}` is `{value}`, which did not finish with a saved adapter (state: "
                          f"{run.status().get('state')}). Fix: pick a completed run.")
    if problem := run.adapter_damage():
        raise ConfigError(f"`{field}` is `{value}`, whose adapter is damaged: {problem}. Fix: pick another `{stage}` "
                          "run, or run that one again (a copied or half-synced folder is the usual cause).")
    return run
