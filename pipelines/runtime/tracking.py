"""Progress, metrics, stop requests and checkpoints for a running stage.

`Tracker` is what every stage reports to: it appends metrics to the run directory, keeps `status.json`'s progress
and ETA current, prints a progress line, and answers "should we stop?" (Ctrl-C or a STOP file). Under a launcher the
answer is agreed on by all ranks, so every process stops after the same step (pipelines/runtime/distributed.py).
`TrackerCallback` plugs it into a transformers Trainer; `TrainerCheckpoints` makes the Trainer's own checkpoints
atomic and timely (see pipelines/runtime/checkpoints.py).

`report_to` (tensorboard, wandb, trackio): the Trainer stages hand it to the Trainer's own integrations
(`trainer_reporting`); PPO's loop is ours, so its Tracker sends the same rows, by the same metric names, through
`ExperimentTracker`. TensorBoard event files go to the run's `tensorboard/` folder either way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import time
from pathlib import Path

from transformers import PrinterCallback, TrainerCallback

from pipelines.errors import TrainingDiverged
from pipelines.runtime import distributed
from pipelines.runtime.checkpoints import SaveSchedule, clear_staging, publish, staging_dir
from pipelines.runtime.runs import format_seconds

log = logging.getLogger("pipelines")


class Tracker:
    def __init__(self, run, max_steps: int, batch_per_process: int = 0, report_to: str = "none",
                 config: dict | None = None):
        """`batch_per_process`: examples one process consumes per optimizer step (accumulation included); the
        status and, under a launcher, the progress line show the global batch, that times the processes.
        `report_to`: an experiment tracker that also gets every row (for loops that are not a Trainer's)."""
        self.run = run
        self.external = ExperimentTracker(report_to, run, config or {}) if report_to != "none" and run.writes \
            else None
        self.max_steps = max_steps
        self.global_batch = batch_per_process * distributed.world_size()
        run.set_status(world_size=distributed.world_size(), global_batch=self.global_batch or None)
        # A resumed run's rows go on from the last kept row's time; its ETA counts from its own first step.
        rows = run.metrics() if run.status().get("resumes") else []
        self.started = time.time() - (rows[-1].get("time", 0) if rows else 0)
        self.first_step_at: float | None = None
        self.first_step = 0
        self.interrupted = False
        self.interrupted_at = 0.0
        self.stopped = False  # agreed by every rank; once true it stays true
        self.step = 0
        self._previous_sigint = signal.getsignal(signal.SIGINT)
        reset_peak_memory()

    def __enter__(self):
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (e.g. under a test runner's thread): the STOP file still works
            pass
        return self

    def __exit__(self, *exc):
        try:
            signal.signal(signal.SIGINT, self._previous_sigint)
        except ValueError:
            pass
        if self.external:
            self.external.close()

    def _on_sigint(self, signum, frame):
        # Under a launcher one Ctrl-C arrives twice: from the terminal, and forwarded by torchrun a moment later.
        if self.interrupted and distributed.launched() and time.time() - self.interrupted_at < 2:
            return
        if self.interrupted:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.interrupted, self.interrupted_at = True, time.time()
        log.warning("Stop requested (Ctrl-C): finishing the current step and saving. Press Ctrl-C again to abort.")

    def should_stop(self) -> bool:
        """Ctrl-C or a STOP file, in any rank. Every rank must call this at the same points of its loop (it is a
        collective under a launcher); after the first yes it answers from memory."""
        if not self.stopped:
            self.stopped = distributed.agree(self.interrupted or self.run.stop_requested())
        return self.stopped

    def eta_seconds(self, step: int) -> float | None:
        # Time from the end of the first step, so model loading and warm-up do not distort the rate.
        if self.first_step_at is None or step <= self.first_step:
            return None
        rate = (time.time() - self.first_step_at) / (step - self.first_step)
        return rate * (self.max_steps - step)

    def log(self, step: int, metrics: dict) -> None:
        """One metrics row, the status' progress, and a progress line on stderr."""
        if self.first_step_at is None:
            self.first_step_at, self.first_step = time.time(), step
        self.step = step
        clean = {k: _number(v) for k, v in metrics.items() if _number(v) is not None}
        row = {"step": step, "time": round(time.time() - self.started, 2), **clean, **peak_memory()}
        self.run.log_metrics(row)
        if self.external:
            self.external.log(step, {k: v for k, v in row.items() if k != "step"})
        eta = self.eta_seconds(step)
        self.run.set_status(step=step, max_steps=self.max_steps, eta_s=eta)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(clean.items())[:6])
        batch = (f"global batch {self.global_batch} on {distributed.world_size()} processes | "
                 if distributed.launched() and self.global_batch else "")
        log.info("step %d/%d (%d%%) ETA %s | %s%s", step, self.max_steps, 100 * step // max(self.max_steps, 1),
                 format_seconds(eta), batch, shown)


PROJECT = "rlhf-workbench"  # the W&B / Trackio project when WANDB_PROJECT / TRACKIO_PROJECT do not say


class ExperimentTracker:
    """One run's rows sent to TensorBoard, Weights & Biases or Trackio under the run's id, as the Trainer's own
    integrations would send them (same metric names; the project from WANDB_PROJECT / TRACKIO_PROJECT, default
    `rlhf-workbench`). A resumed run continues the same tracker run."""

    def __init__(self, kind: str, run, config: dict):
        self.kind = kind
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run.path / "tensorboard"))
        elif kind == "wandb":
            import wandb

            self.module = wandb
            wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run.id, id=run.id, resume="allow",
                       config=config, dir=str(run.path))
        elif kind == "trackio":
            import trackio

            self.module = trackio
            trackio.init(project=os.environ.get("TRACKIO_PROJECT", PROJECT), name=run.id, config=config,
                         resume="allow")
        log.info("Metrics also go to %s%s.", kind, f" ({run.path / 'tensorboard'})" if kind == "tensorboard" else "")

    def log(self, step: int, metrics: dict) -> None:
        if self.kind == "tensorboard":
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        else:
            self.module.log(metrics, step=step)

    def close(self) -> None:
        if self.kind == "tensorboard":
            self.writer.close()
        else:
            self.module.finish()


def trainer_arguments(cfg, run, device: str, evaluate: bool = False) -> tuple[dict, list]:
    """The TrainingArguments every Trainer stage shares (checkpoints, schedule, logging, reporting, precision), and
    the reporting callbacks to hand the Trainer. `evaluate`: the Trainer evaluates its eval set every `eval_steps`
    (the reward stage evaluates its own way). Each stage adds what is its own (lengths, beta...)."""
    from pipelines.model.loading import trainer_hardware

    reporting, callbacks = trainer_reporting(cfg, run)
    evaluation = {"per_device_eval_batch_size": cfg.batch_size, "eval_strategy": "steps" if cfg.eval_steps else "no",
                  "eval_steps": cfg.eval_steps or None} if evaluate else {}
    return {**TrainerCheckpoints.trainer_args(run, cfg), "max_steps": cfg.max_steps,
            "per_device_train_batch_size": cfg.batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "learning_rate": cfg.learning_rate,
            "logging_steps": cfg.logging_steps, "gradient_checkpointing": cfg.gradient_checkpointing,
            "seed": cfg.seed, **reporting, "disable_tqdm": True, "dataloader_num_workers": 0, **evaluation,
            # a NaN or inf loss is logged as it is (the Trainer would log the window's average instead, or 0), so
            # the run stops there (TrackerCallback)
            "logging_nan_inf_filter": False,
            **trainer_hardware(device)}, callbacks


def train_tracked(trainer, tracker, resume, labelled_head: bool) -> tuple:
    """Run a Trainer stage's training under its tracker: (the Trainer's result, whether it was stopped). Our Tracker
    prints the progress line, so the Trainer's own printer goes; `resume`: a checkpoint folder, or None.
    `labelled_head`: TRL's LM head scores labelled positions only, for the duration (pipelines/model/patches.py)."""
    from pipelines.model.patches import fused_head_on_labelled_positions

    trainer.remove_callback(PrinterCallback)
    with tracker, fused_head_on_labelled_positions() if labelled_head else contextlib.nullcontext():
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return result, tracker.should_stop()


def final_evaluation(trainer, tracker, labelled_head: bool) -> dict:
    """The eval metrics at the last step: the Trainer's own if it evaluated there, else one more evaluation (logged).
    Read from the Trainer's history, not metrics.jsonl: every rank must take the same branch (evaluate() is a
    collective), and only rank 0 writes the file."""
    from pipelines.model.patches import fused_head_on_labelled_positions

    metrics = next((row for row in reversed(trainer.state.log_history) if "eval_loss" in row), {})
    if metrics.get("step") != trainer.state.global_step:
        with fused_head_on_labelled_positions() if labelled_head else contextlib.nullcontext():
            metrics = trainer.evaluate()
        tracker.log(trainer.state.global_step, metrics)
    return metrics


def trainer_reporting(cfg, run) -> tuple[dict, list]:
    """(TrainingArguments, extra callbacks) that send a Trainer stage's metrics where `report_to` says. TensorBoard
    goes through the Trainer's own callback, pointed at the run folder (its default is under output_dir, which here
    is the checkpoints' staging folder)."""
    if cfg.report_to == "none":
        return {"report_to": []}, []
    if cfg.report_to == "tensorboard":
        if not run.writes:
            return {"report_to": []}, []
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        return {"report_to": []}, [TensorBoardCallback(SummaryWriter(str(run.path / "tensorboard")))]
    os.environ.setdefault("WANDB_PROJECT", PROJECT)
    return {"report_to": [cfg.report_to], "run_name": run.id,
            "project": os.environ.get("TRACKIO_PROJECT", PROJECT)}, []


def peak_memory() -> dict[str, float]:
    """Peak memory since this stage's tracker started (reset_peak_memory): the process' resident set, and allocated
    VRAM on CUDA. Cheap enough for every step."""
    import resource

    import torch

    high_water = _status_kb("VmHWM")  # Linux: resettable, so a demo's later stages do not inherit earlier peaks
    rss_kb = high_water if high_water is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = {"memory/peak_rss_mb": rss_kb / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["memory/cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def reset_peak_memory() -> None:
    """Start this stage's peak from what is resident now. The demo runs every stage in one process, whose lifetime
    peak (`ru_maxrss`) would otherwise be every later stage's too. Where the kernel does not allow it, the peak stays
    the process' lifetime peak."""
    import torch

    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the high-water mark (VmHWM)
    except OSError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else float(value)
    if hasattr(value, "item"):
        return _number(value.item())
    return None


class TrainerCheckpoints(TrainerCallback):
    """The Trainer's own checkpointing (`save_strategy="steps"`, `resume_from_checkpoint`), made safe to kill.

    The Trainer writes each checkpoint into `checkpoints/.staging/`; `on_save` renames it into place and rotates (the
    Trainer's own rotation is off: it would delete before the new checkpoint is in place). It also saves when
    `save_minutes` passed, and at a stop request, so a stopped run resumes exactly where it ended."""

    def __init__(self, run, cfg, tracker: Tracker):
        self.run, self.tracker, self.keep = run, tracker, cfg.save_total_limit
        self.schedule = SaveSchedule(cfg.checkpoint_every(), cfg.save_minutes)
        self.mark = time.time()
        if run.writes:
            clear_staging(run.path)  # whatever a killed save left behind

    @staticmethod
    def trainer_args(run, cfg) -> dict:
        """The TrainingArguments that go with this callback."""
        return dict(output_dir=str(staging_dir(run.path)), save_strategy="steps", save_steps=cfg.checkpoint_every(),
                    save_total_limit=None, save_only_model=False)

    # After a step the Trainer logs, evaluates, then saves: the last of these marks when the save began (cost line).
    def on_step_end(self, args, state, control, **kwargs):
        if self.schedule.due(state.global_step) or self.tracker.should_stop():
            control.should_save = True
        self.mark = time.time()

    def on_log(self, args, state, control, **kwargs):
        self.mark = time.time()

    def on_evaluate(self, args, state, control, **kwargs):
        self.mark = time.time()

    def on_save(self, args, state, control, **kwargs):
        distributed.barrier()  # every rank has written its part (each its own rng_state_<rank>.pth) before the rename
        if state.is_world_process_zero:
            staged = staging_dir(self.run.path) / f"checkpoint-{state.global_step}"
            final = publish(staged, self.run.path, self.keep)
            log_checkpoint(state.global_step, final, time.time() - self.mark)
        self.schedule.saved()


def log_checkpoint(step: int, folder, seconds: float) -> None:
    """One line per checkpoint with its size and cost (benchmarks/run.py reads these)."""
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    log.info("Checkpoint at step %d saved to %s (%.1f MB in %.2f s)", step, folder, size, seconds)


def first_not_finite(metrics: dict, keys) -> str | None:
    """The first of `keys` whose value in `metrics` is NaN or infinite (a numerical blow-up), or None."""
    return next((key for key in keys if isinstance(metrics.get(key), float) and not math.isfinite(metrics[key])), None)


# What a Trainer stage cannot go on from once it is NaN or inf (a NaN gradient has already spoilt the weights); a
# stage adds its own (GRPO: its reward).
WATCHED = ("loss", "grad_norm", "eval_loss")


class TrackerCallback(TrainerCallback):
    """Trainer logs -> Tracker; a stop request ends training at the next step boundary, and a `watch` number that
    became NaN or inf fails the run at that step. The Trainer logs before it saves the step's checkpoint, so the run
    keeps its last good one; a failed run is never `latest`."""

    def __init__(self, tracker: Tracker, rename: dict[str, str] | None = None, watch: tuple[str, ...] = WATCHED):
        self.tracker = tracker
        self.rename = rename or {}
        self.watch = watch

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            metrics = {self.rename.get(k, k): v for k, v in logs.items()}
            self.tracker.log(state.global_step, metrics)
            if key := first_not_finite(metrics, self.watch):
                raise TrainingDiverged(f"The {key.replace('_', ' ')} became {metrics[key]} at step "
                                       f"{state.global_step} (a numerical blow-up); the run stops here and keeps its "
                                       "last good checkpoint. Fix: start again with a lower `learning_rate`, or in "
                                       "float32 or bfloat16 rather than float16.")

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker.should_stop():
            control.should_training_stop = True
