"""`python -m pipelines resume RUN_DIR [--set max_steps=N]`: carry a failed or stopped run on, or extend a finished
one, in its own run directory, from its newest complete checkpoint.

`plan_resume` makes every check before anything is written, so a run that cannot be resumed is left exactly as it
was (the CLI exits 2 with the reason and the fix). `begin` then rewinds the run directory to the checkpoint:
metrics, samples and probe answers after its step are dropped (each step is in metrics.jsonl once), and
status.json says `running` again and records the resume, so the summary can say how many steps the interruption
cost.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import TrainingConfig
from pipelines.runtime.checkpoints import (ResumeError, check_checkpoint, clear_staging, list_checkpoints,
                                          newest_checkpoint)
from pipelines.runtime.runs import Run, RunState, process_started, read_jsonl, write_jsonl_atomic
from pipelines.stages import STAGES, training_stages


@dataclass
class ResumePlan:
    run: Run
    stage: str
    config: TrainingConfig
    step: int  # the checkpoint's step: training goes on from step + 1
    checkpoint: Path
    lost_steps: int  # steps done after the checkpoint and done again now: what the interruption cost


def plan_resume(run_dir: str | Path, overrides: list[str] = (), checkpoint: int | None = None) -> ResumePlan:
    """`checkpoint`: the step of the checkpoint to go back to; None: the newest."""
    run = Run(run_dir)
    if not (run.path / "status.json").is_file():
        raise ResumeError(f"`{run_dir}` is not a run folder (no status.json there). Fix: pass a folder printed by a "
                          "training run, e.g. `runs/20261125-101500-sft`.")
    status = run.status()
    stage = status.get("stage") or run.config().get("stage", "")
    trainers = [s.id for s in training_stages()]
    if stage not in trainers:
        raise ResumeError(f"Run `{run.id}` is a `{stage or 'unknown'}` run; only training stages "
                          f"({', '.join(trainers)}) checkpoint and resume. Fix: start a new `{stage}` run.")
    if status.get("state") == RunState.RUNNING:
        raise ResumeError(f"Run `{run.id}` is still running (process {status.get('pid')}). Fix: wait for it to end, "
                          "or stop it first (Stop in the workbench, or a file named STOP in its folder).")
    newest = newest_checkpoint(run.path)
    if newest is None:
        raise ResumeError(f"Run `{run.id}` has no checkpoint: it ended at step {status.get('step', 0)}, before its "
                          "first checkpoint. Fix: start it again as a new run; a smaller `save_steps` checkpoints "
                          "sooner.")
    config_file = run.path / "config.yaml"
    original = STAGES[stage].config.load_saved(config_file)
    config = STAGES[stage].config.load_saved(config_file, overrides)
    changed = [f for f in original.to_dict() if getattr(original, f, None) != getattr(config, f, None)]
    fixed = [f for f in changed if f not in config.resumable_changes]
    if fixed:
        name = fixed[0]
        raise ResumeError(f"`resume` cannot change `{name}` ({getattr(original, name)!r} -> {getattr(config, name)!r}):"
                          f" the checkpoint was trained with {getattr(original, name)!r}, and a run continues only with"
                          f" what it started with. Only these may change: {', '.join(config.resumable_changes)}. Fix: "
                          "drop that --set, or start a new run with the new setting.")
    step, folder = newest
    if checkpoint is not None:
        found = dict(list_checkpoints(run.path))
        if checkpoint not in found:
            raise ResumeError(f"Run `{run.id}` has no checkpoint at step {checkpoint}. Fix: choose one of the steps "
                              f"it has: {', '.join(map(str, found))}.")
        step, folder = checkpoint, found[checkpoint]
    check_checkpoint(folder, STAGES[stage].checkpoint_files)
    # A run that died after its last checkpoint but before it finished (final evaluation, saving the adapter) may
    # resume with nothing left to train: it only finishes. Going back to an earlier checkpoint always may.
    going_back = step < newest[0]
    if status.get("state") == RunState.COMPLETED and config.max_steps <= step and not going_back:
        raise ResumeError(f"Run `{run.id}` already did all its {original.max_steps} steps. Fix: extend it with "
                          f"`--set max_steps=N`, N above {step}.")
    if config.max_steps < step:
        raise ResumeError(f"`max_steps` is {config.max_steps}, but the checkpoint to resume from is at step {step}. "
                          f"Fix: set `max_steps` to {step} or more.")
    lost = max(0, int(status.get("step") or step) - step)
    return ResumePlan(run, stage, config, step, folder, lost)


def begin(plan: ResumePlan) -> None:
    """The first writes of a resume: the run directory rewound to the checkpoint, and marked running again."""
    run = plan.run
    for name in ("metrics.jsonl", "samples.jsonl", "probes.jsonl"):
        path = run.path / name
        if path.exists():
            write_jsonl_atomic(path, [row for row in read_jsonl(path) if row.get("step", 0) <= plan.step])
    (run.path / "config.yaml").write_text(plan.config.to_yaml(), encoding="utf-8")
    for stale in ("STOP", "summary.json"):  # a STOP left by the stop we resume from would end the run at once
        (run.path / stale).unlink(missing_ok=True)
    for later_step, later in list_checkpoints(run.path):  # going back: the checkpoints of the abandoned steps
        if later_step > plan.step:
            shutil.rmtree(later, ignore_errors=True)
    clear_staging(run.path)
    run.clear_rank_errors()
    alarms = [a for a in run.status().get("alarms", []) if a.get("step", 0) <= plan.step]  # the watch's, kept
    resumes = run.status().get("resumes", []) + [{"from_step": plan.step, "lost_steps": plan.lost_steps,
                                                  "at": time.time()}]
    run.set_status(RunState.RUNNING, pid=os.getpid(), pid_started=process_started(os.getpid()), step=plan.step,
                   max_steps=plan.config.max_steps, eta_s=None, error=None, ended_at=None, summary=None,
                   resumes=resumes, alarms=alarms)


def resume_summary(run: Run) -> dict:
    """What the summary says about interruptions: the checkpoint steps resumed from and the steps done twice."""
    resumes = run.status().get("resumes") or []
    if not resumes:
        return {}
    return {"resumed_from": [r["from_step"] for r in resumes], "steps_redone": sum(r["lost_steps"] for r in resumes)}
