"""The engine: run a stage, or carry one on, in its run directory, and leave status.json saying how it ended. The CLI
and the demo both call it; under a launcher every process runs it, rank 0 owning the run directory.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from pipelines.config import StageConfig
from pipelines.errors import WorkbenchError
from pipelines.runtime import distributed
from pipelines.runtime.checkpoints import clear_staging, newest_checkpoint
from pipelines.runtime.runs import Run, RunState, resolve_run
from pipelines.stages import run_fields, stage_named

log = logging.getLogger("pipelines")


def setup_logging(log_file: Path | None = None) -> None:
    """The log on stderr and in `log_file`. In ranks other than 0 of a launched job the console gets warnings and
    errors only (rank 0 already prints the progress); their own log file gets everything."""
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    stderr.setLevel(logging.INFO if distributed.is_main() else logging.WARNING)
    log.addHandler(stderr)
    if log_file:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        log.addHandler(fh)


def quiet_libraries() -> None:
    """Our log says what matters; the libraries' progress bars and advisories would drown it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers
    import datasets

    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notices meant for library authors
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def run_stage(config: StageConfig, runs_dir: str | None = None, run_id: str | None = None,
              debug: bool = False) -> tuple[Run, dict]:
    """Create the run directory, run the config's stage, and leave status.json saying how it ended. Under a launcher
    (joined first: `join_launched_job`), rank 0 creates the directory and every rank learns its path from rank 0."""
    config = resolve_run_fields(config, runs_dir)
    run = distributed.share_from_main(
        lambda: Run.create(config.stage, config.to_yaml(), runs_dir, config.run_name, run_id=run_id))
    setup_logging(run.log_file)
    log.info("Run %s (%s) started; run directory %s%s", run.id, config.stage, run.path,
             f"; rank {distributed.rank()} of {distributed.world_size()}" if distributed.launched() else "")
    return execute(config, run, debug=debug)


def resume_stage(run_dir: str, overrides: list[str], debug: bool = False,
                 checkpoint: int | None = None) -> tuple[Run, dict]:
    """Carry a run on from its newest checkpoint (or the one at step `checkpoint`), in its own directory (checks
    first: pipelines/runtime/resume.py)."""
    from pipelines.runtime.resume import begin, plan_resume

    def planned_and_begun():
        plan = plan_resume(run_dir, overrides, checkpoint)
        begin(plan)
        return plan

    plan = distributed.share_from_main(planned_and_begun)  # rank 0 checks and rewinds the folder; all get the plan
    setup_logging(plan.run.log_file)
    log.info("Run %s resumed from step %d (%s); %d step(s) after it are done again; training on to step %d.",
             plan.run.id, plan.step, plan.checkpoint.name, plan.lost_steps, plan.config.max_steps)
    return execute(plan.config, plan.run, resume=plan.checkpoint, debug=debug)


def join_launched_job(device: str) -> None:
    """Under a launcher: join the other processes (on the device the stage will use). A no-op otherwise."""
    if distributed.launched():
        from pipelines.model.loading import pick_device

        distributed.init(pick_device(device))


def saved_device(run_dir: str) -> str:
    """The `device` a run was started with (for joining the processes before its config is fully checked)."""
    try:
        return str(Run(run_dir).config().get("device", "auto"))
    except Exception:  # noqa: BLE001 - a broken config.yaml is reported by plan_resume, with its fix
        return "auto"


def execute(config: StageConfig, run: Run, resume: Path | None = None, debug: bool = False) -> tuple[Run, dict]:
    """Run a stage in its run directory; every way it ends leaves status.json saying how. Returns the summary, empty
    when the run failed (a rank other than 0 cannot tell from status.json, which rank 0 may not have written yet)."""
    from pipelines.runtime.resume import resume_summary

    try:
        stage = stage_named(config.stage)
        summary = stage.run(config, run, resume) if resume else stage.run(config, run)
    except WorkbenchError as exc:
        log.error("%s", exc)
        run.record_failure(str(exc))
        if debug:
            raise
        return run, {}
    except BaseException as exc:  # noqa: BLE001 - every failure must leave a failed status behind
        if message := disk_full_message(exc, run):
            clear_staging(run.path)  # the half-written checkpoint: its space lets the status below be written
            log.error("%s", message)
            try:
                run.record_failure(message)
            except OSError:  # still full: the status reader reports a process that ended without saying so
                pass
        else:
            log.error("Unexpected error: %s: %s\n%s", type(exc).__name__, exc, traceback.format_exc())
            # Not a user error: on rank 0 this may only be the echo of another rank's failure (a closed connection).
            run.record_failure(f"{type(exc).__name__}: {exc}", own_fault=False)
        if debug or not isinstance(exc, Exception):
            raise
        return run, {}
    stopped = summary.pop("stopped", False)
    summary.update(resume_summary(run), world_size=distributed.world_size())
    run.write_summary(summary)
    run.set_status(RunState.STOPPED if stopped else RunState.COMPLETED, summary=summary)
    log.info("Run %s %s: %s", run.id, "stopped" if stopped else "completed",
             json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, default=str))
    return run, summary


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# How torch and safetensors word the same failure in exceptions of their own (they carry no errno).
DISK_FULL_WORDS = (*(os.strerror(code) for code in DISK_FULL), "file write failed")


def disk_full_message(exc: BaseException, run: Run) -> str | None:
    """What to tell a user whose disk filled up (or who hit a file-size or quota limit) mid-run, or None for any
    other failure."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL or any(w in str(seen) for w in DISK_FULL_WORDS):
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return None
    newest = newest_checkpoint(run.path)
    kept = f"Its newest complete checkpoint, {newest[1].name}, is intact. " if newest else "It has no checkpoint. "
    return (f"Writing to disk failed: the disk is full, or a file-size or quota limit was reached ({seen}). "
            f"{kept}Fix: free space on the disk that holds `{run.path.parent}`, then " +
            (f"`python -m pipelines resume {run.path}` (or Resume on the run's page)." if newest else
             "start the run again."))


def resolve_run_fields(config: StageConfig, runs_dir: str | None) -> StageConfig:
    """The config with `latest` and relative run folders made absolute paths, so config.yaml records exactly what was
    used: a new config, validated like the first."""
    changes = {}
    for name, stage in run_fields().items():
        value = getattr(config, name, "")
        several = name in getattr(config, "several_runs", ())  # Compare's: comma-separated, each resolved
        if value:
            changes[name] = ",".join(str(resolve_run(v.strip(), stage.id, runs_dir, field=name).path.resolve())
                                     for v in (value.split(",") if several else [value]) if v.strip())
    return dataclasses.replace(config, **changes)
