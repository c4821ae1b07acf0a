"""Several processes, one run: what a stage needs when `accelerate launch` or `torchrun` starts N copies of the CLI.

The launchers set RANK / WORLD_SIZE / LOCAL_RANK; without them (a plain `python -m pipelines`) every function here
is a no-op that answers for a world of one, so single-process code paths stay exactly as they were.

The contract (see the README's multi-GPU section):
- rank 0 (the "main" process) chooses and creates the run directory and is the only one that writes `config.yaml`,
  `status.json`, `metrics.jsonl`, `summary.json`, samples, checkpoints and the adapter; the others log to
  `run.rank<K>.log` (pipelines.runtime.runs.Run enforces it: a Run object in another rank never writes those files);
- decisions that change what every rank does next (stop now, checkpoint now) are agreed on, so all ranks take them
  at the same step;
- a rank that fails records its message in `error.rank<K>.json`, so the run's status names it.

Communication is torch.distributed through accelerate's `PartialState` (gloo on a CPU, NCCL on GPUs); nothing here
talks over sockets itself. This module imports torch only inside its functions: the UI lists runs through
pipelines.runtime.runs, which asks `is_main()`.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable, TypeVar

from pipelines.errors import WorkbenchError

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def rank() -> int:
    return int(os.environ.get("RANK") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK") or 0)


def launched() -> bool:
    """Started by a launcher with more than one process."""
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> None:
    """Join the process group (once): gloo for CPU ranks, NCCL for CUDA ones, each rank on its own GPU.

    accelerate's PartialState is the same state TRL's Trainer builds on, so the Trainer finds this group and uses it.
    On a machine without CUDA, PartialState must be told `cpu=True`, or it quietly stays single-process."""
    if not launched():
        return
    import signal

    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_initialized():
        # A generous timeout: some work is rank 0's alone (the reward stage's held-out evaluation, saving), and the
        # others wait for it in a collective; NCCL's default of 10 minutes would end a big evaluation. A rank that
        # dies still ends the job at once (its connections close; the launcher stops the rest).
        PartialState(cpu=device == "cpu", timeout=datetime.timedelta(hours=3))
    # When one process fails, the launcher ends the others with SIGTERM. As an exception it unwinds through the
    # stage's error handling, so rank 0 still writes `failed` with the failing rank's message.
    signal.signal(signal.SIGTERM, _terminated)


def finish(ok: bool = True) -> None:
    """Leave the process group. After a success every rank waits for the others first: a process that exits while
    gloo still talks to it can abort ("terminate called without an active exception") and turn a completed run into a
    failed launch. After a failure there is no one to wait for."""
    if not active():
        return
    import torch.distributed as dist

    if ok:
        dist.barrier()
    dist.destroy_process_group()


def _terminated(signum, frame):
    raise SystemExit(f"ended by the launcher (signal {signum}): another process of this job failed or was stopped")


def check_engine() -> None:
    """Refuse sharding engines: every stage here assumes each process holds the whole base (PPO calls its decoder
    directly under several adapters; 4-bit bases would need `bnb_4bit_quant_storage` to be sharded)."""
    from pipelines.errors import ConfigError

    for variable, engine in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            raise ConfigError(f"This launch uses {engine}, which the workbench does not support: every process must "
                              "hold the whole base model. Fix: launch with plain data parallelism, e.g. `accelerate "
                              "launch --config_file sample_data/accelerate/ddp.yaml --num_processes N -m pipelines "
                              "...` (see sample_data/accelerate/README.md).")


def active() -> bool:
    if not launched():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def share_from_main(make: Callable[[], T]) -> T:
    """Rank 0 calls `make()` and every rank gets its result (picklable). An error raised by `make` on rank 0 is
    raised on every rank (as a WorkbenchError when it is another kind), so all of them exit the same way instead of
    waiting for each other forever."""
    if not active():
        return make()
    import torch.distributed as dist

    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("value", make())
        except WorkbenchError as exc:
            box[0] = ("error", exc)
        except Exception as exc:  # noqa: BLE001 - e.g. an OSError making the run folder: every rank must hear it
            box[0] = ("error", WorkbenchError(f"{type(exc).__name__}: {exc}"))
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "error":
        raise payload
    return payload


def agree(flag: bool) -> bool:
    """True on every rank when it is true on any rank (a STOP seen by one stops all, at the same step)."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def sum_over_ranks(tensor):
    """The element-wise sum of `tensor` over all ranks (a new tensor; the input is left alone)."""
    if not active():
        return tensor
    import torch.distributed as dist

    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def mean_over_ranks(metrics: dict[str, float], summed: tuple[str, ...] = ()) -> dict[str, float]:
    """Each metric averaged over the ranks (those named in `summed` added up). Every rank must pass the same keys."""
    if not active():
        return metrics
    import torch

    keys = sorted(metrics)
    values = sum_over_ranks(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_device()))
    n = world_size()
    return {k: float(v) if k in summed else float(v) / n for k, v in zip(keys, values.tolist())}


def average_gradients(params) -> None:
    """Data parallelism by hand where DDP's wrapper cannot sit (PPO calls the decoder directly, under several
    adapters): every gradient becomes its mean over the ranks, in one flat all-reduce. A parameter without a gradient
    on this rank counts as zeros, so every rank sends the same shapes."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    params = list(params)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(params) -> None:
    """Rank 0's values in every rank's parameters (so the replicas start identical whatever each drew at init)."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def replica_difference(params) -> float:
    """The largest absolute difference between any rank's trainable weights and rank 0's: 0.0 when data parallelism
    kept the replicas identical, as it must. 0.0 for a single process."""
    if not active():
        return 0.0
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        mine = torch.cat([p.detach().float().reshape(-1) for p in params])
        main = mine.clone()
        dist.broadcast(main, src=0)
        gap = (mine - main).abs().max() if mine.numel() else torch.zeros((), device=mine.device)
        gap = gap.reshape(1)
        dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return float(gap.item())


def _device() -> str:
    """Where collectives' tensors live: the rank's GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    return f"cuda:{local_rank()}" if dist.get_backend() == "nccl" else "cpu"


def replica_check(params) -> dict[str, Any]:
    """For the summary of a launched run: whether every rank ends holding rank 0's trainable weights (compared in
    memory, before rank 0 saves them). Empty for a single process."""
    if not active():
        return {}
    gap = replica_difference(params)
    if gap:
        import logging

        logging.getLogger("pipelines").error("The processes' trainable weights differ by up to %.3g at the end: data "
                                             "parallelism did not keep them in step. The adapter saved is rank 0's.",
                                             gap)
    return {"replicas_identical": gap == 0.0, "replica_max_abs_difference": gap}
