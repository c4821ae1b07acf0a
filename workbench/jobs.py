"""Start, watch and stop pipeline jobs. A job is a subprocess running `python -m pipelines ...`.

Nothing about a job lives in Streamlit's memory: a job writes `runs/.jobs/<job_id>.json` (its command, pid, the
process' start time and the run folder it owns), and every run writes its own `status.json`. A refresh, a second tab
or a restarted app re-reads them and re-attaches. One job runs at a time per runs folder (training saturates the
machine): the job's process holds the folder's lock (pipelines/runtime/joblock.py), whoever started it.

A training stage may run on several processes (one per GPU; on a CPU they share the cores): the job is then
`accelerate launch --config_file sample_data/accelerate/ddp.yaml --num_processes N -m pipelines ...`, whose processes
share one run folder (pipelines/runtime/distributed.py). Its pid is the launcher's, which ends when every process has.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.runtime import joblock
from pipelines.runtime.runs import (Run, default_runs_dir, list_runs, pid_alive, process_started, read_json,
                                    reserve_run_dir, write_json_atomic)

REPO = Path(__file__).resolve().parents[1]
DDP_CONFIG = "sample_data/accelerate/ddp.yaml"  # relative to REPO, where jobs start: the command reads as typed


@dataclass
class Job:
    id: str
    kind: str  # a stage, or "demo"
    pid: int
    command: list[str]
    started_at: float
    run_dir: str = ""  # the run it owns (stages); a demo owns several, found by start time
    console: str = ""
    processes: int = 1
    pid_started: float | None = None  # the process' start time: after a restart, the pid may name another process

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid, self.pid_started)


def jobs_dir(runs_dir: Path | None = None) -> Path:
    path = (runs_dir or default_runs_dir()) / ".jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def all_jobs(runs_dir: Path | None = None) -> list[Job]:
    """The jobs this app started, newest first (a job file that is not one is skipped)."""
    fields = set(Job.__dataclass_fields__)
    jobs = []
    for path in sorted(jobs_dir(runs_dir).glob("*.json"), reverse=True):
        data = read_json(path)
        if isinstance(data, dict) and {"id", "kind", "pid", "command", "started_at"} <= data.keys():
            try:
                jobs.append(Job(**{k: v for k, v in data.items() if k in fields}))
            except TypeError:
                continue
    return jobs


def active_job(runs_dir: Path | None = None) -> Job | None:
    """The job that holds the runs folder's lock now, if any: one this app started, or one started from a terminal
    (then a Job with kind "cli" and no job file)."""
    _reap()
    runs_dir = runs_dir or default_runs_dir()
    info = joblock.holder(runs_dir)
    if info is None:
        return None
    started = next((job for job in all_jobs(runs_dir) if job.pid == info.get("pid") and job.alive), None)
    if started is not None:
        return started
    pid = info.get("pid") if isinstance(info.get("pid"), int) else 0
    return Job(id=f"cli-{pid}", kind="cli", pid=pid, command=list(info.get("command") or []),
               started_at=float(info.get("since") or time.time()), pid_started=info.get("pid_started"))


def busy_message(job: Job | None) -> str:
    if job is None or job.kind == "cli":
        what = joblock.describe(job and {"command": job.command, "pid": job.pid}) + " started from a terminal"
    else:
        what = f"run `{Path(job.run_dir).name}`" if job.run_dir else f"the {job.kind}"
    since = f" (started {time.strftime('%H:%M:%S', time.localtime(job.started_at))})" if job else ""
    return (f"A job is already running: {what}{since}. One training job runs at a time on this machine; stop it "
            "first or wait for it to finish.")


class Busy(RuntimeError):
    pass


# Jobs this app process started. Polling them reaps the ones that ended, which would otherwise linger as zombie
# processes for as long as the app runs. (Jobs started by an earlier app process are watched through their pid.)
_children: list[subprocess.Popen] = []


def _reap() -> None:
    for proc in list(_children):
        if proc.poll() is not None and proc in _children:
            try:
                _children.remove(proc)
            except ValueError:  # another session's thread reaped it first
                pass


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """CUDA GPUs on this machine, from `nvidia-smi -L` (the UI never imports torch); 0 without a driver."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def launcher_args(processes: int, port: int | None = None) -> list[str]:
    """`accelerate launch` arguments for N processes of the one-node DDP config (shown in the UI as typed)."""
    args = ["launch", "--config_file", DDP_CONFIG, "--num_processes", str(processes)]
    return args + (["--main_process_port", str(port)] if port else [])


def free_port() -> int:
    """A free local port for the launcher's rendezvous (its default, 29500, may be taken by another program)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(kind: str, runs_dir: Path, prepare, processes: int = 1) -> Job:
    """Take the runs folder's job lock, then start the job (`prepare()` gives its pipelines arguments, the run folder
    it owns and its console file) and hand it the lock, which it holds until it ends."""
    try:
        lock = joblock.try_lock(runs_dir)
    except joblock.JobBusy as exc:
        raise Busy(str(exc)) from None
    if lock is None:
        raise Busy(busy_message(active_job(runs_dir)))
    try:
        args, run_dir, console = prepare()
        command = [sys.executable, "-m", "pipelines", *args]
        if processes > 1:  # accelerate's launcher module of this interpreter: the `accelerate` script may be elsewhere
            command = [sys.executable, "-m", "accelerate.commands.launch", *launcher_args(processes, free_port())[1:],
                       "-m", "pipelines", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", joblock.JOB_LOCKED_ENV: str(joblock.lock_path(runs_dir))}
        with open(console, "ab") as out:
            # A new session: the job survives the app's restart, and a stop signal reaches only the job.
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, pass_fds=(lock,))
        _children.append(proc)
        joblock.say_holder(lock, proc.pid, command)
    finally:
        os.close(lock)  # the child's copy holds the lock from here on
    job = Job(id=f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{proc.pid}", kind=kind, pid=proc.pid, command=command,
              started_at=time.time(), run_dir=str(run_dir or ""), console=str(console), processes=processes,
              pid_started=process_started(proc.pid))
    write_json_atomic(jobs_dir(runs_dir) / f"{job.id}.json", job.__dict__)
    return job


def start_stage(stage: str, config: dict, runs_dir: Path | None = None, processes: int = 1) -> Job:
    """Write the config next to the run, then start the CLI on it (under `accelerate launch` for several
    processes). Returns at once."""
    runs_dir = runs_dir or default_runs_dir()

    def prepare():
        run_dir = reserve_run_dir(stage, runs_dir, config.get("run_name", ""))
        request = run_dir / "request.yaml"
        request.write_text(yaml.safe_dump({"stage": stage, **config}, sort_keys=False), encoding="utf-8")
        args = [stage, "--config", str(request), "--runs-dir", str(runs_dir), "--run-id", run_dir.name]
        return args, run_dir, run_dir / "console.log"

    return _launch(stage, runs_dir, prepare, processes)


def start_resume(run_dir: str | Path, overrides: list[str] = ()) -> Job:
    """Carry a failed or stopped run on from its newest checkpoint, in its own folder (`python -m pipelines resume`),
    on as many processes as it had."""
    run = Run(run_dir)
    args = ["resume", str(run.path), *[a for item in overrides for a in ("--set", item)]]
    return _launch(run.stage, run.path.parent, lambda: (args, run.path, run.path / "console.log"),
                   int(run.status().get("world_size") or 1))


def start_command(kind: str, args: list[str], runs_dir: Path | None = None) -> Job:
    """A pipelines command that owns no single run (the demo, the studio's generation) as a job; its console
    output goes to runs/.jobs/."""
    runs_dir = runs_dir or default_runs_dir()
    console = jobs_dir(runs_dir) / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    return _launch(kind, runs_dir, lambda: (args, None, console))


def start_demo(runs_dir: Path | None = None, preset: str = "quick") -> Job:
    runs_dir = runs_dir or default_runs_dir()
    return start_command("demo", ["demo", "--runs-dir", str(runs_dir), "--preset", preset], runs_dir)


def stop(job: Job) -> None:
    """Ask nicely (a STOP file: the run saves its adapter at the end of the step), and interrupt a job without one
    run of its own (the demo, the studio's). The signal goes only to a job this app started, still the same process
    (pid and start time), and only to the process group it leads."""
    if job.run_dir:
        Run(job.run_dir).request_stop()
        return
    for run in demo_runs(job):
        run.request_stop()
    if job.kind != "cli" and job.alive:
        try:
            if os.getpgid(job.pid) == job.pid:
                os.killpg(job.pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass


def demo_preset(job: Job) -> str:
    """The `--preset` a demo job was started with."""
    command = job.command
    return command[command.index("--preset") + 1] if "--preset" in command[:-1] else "quick"


def demo_runs(job: Job, runs_dir: Path | None = None) -> list[Run]:
    """The runs a demo job made (oldest first): those started after the job."""
    runs = [r for r in list_runs(runs_dir) if r.status().get("started_at", 0) >= job.started_at - 1]
    return sorted(runs, key=lambda r: r.status().get("started_at", 0))


def job_console_tail(job: Job, lines: int = 30) -> str:
    try:
        return "\n".join(Path(job.console).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A short pipelines command whose answer the page waits for (inspect, score). Never shell=True."""
    return subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stream_cli(args: list[str], timeout: float = 900):
    """A pipelines command whose stderr the page reads as it comes (for a progress bar): yields each stderr line,
    then returns the CompletedProcess (as the generator's value). Never shell=True."""
    import tempfile

    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        timer = threading.Timer(timeout, proc.kill)  # a child that goes quiet is ended all the same
        timer.start()
        errors = []
        try:
            for line in proc.stderr:
                errors.append(line)
                yield line
            proc.wait()
        finally:  # the page moved on (a rerun dropped this generator) or the time ran out: end the child
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), "".join(errors))


def last_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or " ERROR " in line]
    return (errors or lines or ["no output"])[-1]
