"""One job at a time per runs folder, held by the job's own process.

A job (a stage, `resume`, the demo, the studio's generation and AI labeling, `export`, `score`) holds an exclusive
`flock` on `<runs>/.jobs/job.lock` for as long as it runs. The kernel lets it go when the process ends in any way
(finished, killed, the machine restarted), so a stale file never claims a job is running; and taking the lock *is*
the check, so two Start presses, two tabs, an app and a terminal cannot both win.

The workbench takes the lock itself before it starts a job and hands it to the child (`pass_fds`), which then holds
it for its whole life; `JOB_LOCKED_ENV` tells that child (and the processes a launcher starts for it) not to take it
again. The lock file's text says who holds it: pid, process start time, command and when.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from pipelines.errors import WorkbenchError
from pipelines.runtime.runs import process_started

JOB_LOCKED_ENV = "RLHF_WORKBENCH_JOB_LOCKED"  # set for a job whose starter holds the lock for it


class JobBusy(WorkbenchError):
    """Another job holds the runs folder's lock."""


def lock_path(runs_dir: Path) -> Path:
    return Path(runs_dir) / ".jobs" / "job.lock"


def try_lock(runs_dir: Path, patience: float = 0.2) -> int | None:
    """The lock's file descriptor, locked, or None when another process holds it. `patience`: how long to retry, since
    `holder` takes the lock for an instant to test it (a job holds it for far longer)."""
    path = lock_path(runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as exc:  # another user's lock file (a job once run with sudo, say)
        raise JobBusy(f"`{path}` belongs to another user, so this runs folder cannot be shared with their jobs. "
                      "Fix: use another runs folder, or give the file back (chown).") from exc
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def say_holder(fd: int, pid: int, command: list[str]) -> None:
    """Write who holds the lock into its file (read by `holder`)."""
    text = json.dumps({"pid": pid, "pid_started": process_started(pid), "command": command, "since": time.time()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def holder(runs_dir: Path) -> dict | None:
    """Who holds the lock now ({"pid", "pid_started", "command", "since"}, or {} when its file does not say), or None
    when no job runs."""
    path = lock_path(runs_dir)
    if not path.exists():
        return None
    try:
        fd = try_lock(runs_dir, patience=0)
    except JobBusy:
        return {}
    if fd is not None:
        os.close(fd)  # free: nobody holds it
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # being written this instant
    return info if isinstance(info, dict) else {}


def describe(info: dict | None) -> str:
    """The holder in words, for "a job is running" messages."""
    command = info.get("command") if info else None
    if not command:
        return "another job"
    shown = " ".join(command[command.index("pipelines") + 1:][:4] if "pipelines" in command else command[:4])
    return f"another job (`{shown} ...`, process {info.get('pid')})"


@contextlib.contextmanager
def held(runs_dir: Path, command: list[str] | None = None):
    """Hold the runs folder's lock while the block runs; JobBusy when another job holds it. Nothing to take in a job
    the workbench started (it holds the lock for it) or in the processes a launcher started beside rank 0's."""
    if os.environ.get(JOB_LOCKED_ENV) or os.environ.get("LOCAL_RANK", "0") != "0":
        yield
        return
    fd = try_lock(runs_dir)
    if fd is None:
        raise JobBusy(f"{describe(holder(runs_dir)).capitalize()} is running with the runs folder `{runs_dir}`; one "
                      "job runs at a time there (training uses the whole machine). Fix: wait for it to end, or stop "
                      "it (Stop in the workbench, or Ctrl-C where it was started).")
    try:
        say_holder(fd, os.getpid(), command or sys.argv)
        yield
    finally:
        os.close(fd)
