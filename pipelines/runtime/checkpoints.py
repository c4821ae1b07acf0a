"""Checkpoints: a run that dies keeps what it learned, and `python -m pipelines resume RUN_DIR` carries it on.

    runs/<run_id>/checkpoints/
        checkpoint-10/      complete checkpoints: the only folders `resume` ever considers
        checkpoint-20/
        .staging/           a checkpoint being written; renamed into place once complete
        .replaced-checkpoint-20/  the old checkpoint of a step saved again, until the new one is in place

A save writes into `.staging/` and then renames the finished folder to `checkpoint-<step>` (one rename on one file
system: atomic). A kill at any instant leaves either the previous checkpoints or the new one complete; what a kill
leaves in `.staging/` is never read and is cleared by the next save or resume. Saving a step that already has a
checkpoint (a resumed run re-saving its last step) first moves the old one aside, where it still counts until the
new one is in place.

SFT and reward use the Trainer's own checkpoint (adapter, optimizer, scheduler, RNG, trainer_state.json with the data
position), written into `.staging/` and published by `TrainerCheckpoints` in pipelines/runtime/tracking.py. PPO
writes its own in the same spirit: `weights.safetensors` (policy and value adapters, value head),
`optimizer.safetensors`, `rng.safetensors` and a small `state.json` (step, prompt order, KL controller, what the
summary needs).

This module is free of torch at import time: the pages list checkpoints through it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines.errors import WorkbenchError
from pipelines.runtime import distributed

PREFIX = "checkpoint-"
STAGING = ".staging"
REPLACED = ".replaced-"
KEPT = "KEPT"  # a file in a checkpoint that rotation must not delete (keep_checkpoint)
# A checkpoint is usable only with these files (the Trainer's names for SFT / reward, ours for PPO).
# (A distributed run's Trainer writes rng_state_<rank>.pth instead of rng_state.pth: any one of them will do.)
TRAINER_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "adapter_model.safetensors")
PPO_FILES = ("state.json", "weights.safetensors", "optimizer.safetensors", "rng.safetensors")


class ResumeError(WorkbenchError):
    """A run cannot be resumed: no checkpoint, a damaged one, a config change that cannot continue."""


def checkpoints_dir(run_path: Path) -> Path:
    return Path(run_path) / "checkpoints"


def staging_dir(run_path: Path) -> Path:
    return checkpoints_dir(run_path) / STAGING


def list_checkpoints(run_path: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first, as (step, folder). A step's moved-aside old checkpoint counts while the
    step has no other (a kill came between the two renames of a re-save)."""
    found: dict[int, Path] = {}
    folder = checkpoints_dir(run_path)
    if folder.is_dir():
        for path in sorted(folder.iterdir(), key=lambda p: p.name.startswith(REPLACED)):
            name = path.name.removeprefix(REPLACED)
            suffix = name[len(PREFIX):]
            if path.is_dir() and name.startswith(PREFIX) and suffix.isdigit():
                found.setdefault(int(suffix), path)
    return sorted(found.items())


def newest_checkpoint(run_path: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_path)
    return found[-1] if found else None


def publish(staged: Path, run_path: Path, keep: int) -> Path:
    """Rename a finished checkpoint from `.staging/` into place, then drop all but the newest `keep` ones (those
    marked by `keep_checkpoint` stay, and do not count).

    Rotation comes after the rename, so the newest complete checkpoint exists at every instant."""
    final = checkpoints_dir(run_path) / staged.name
    aside = final.with_name(REPLACED + final.name)
    if final.exists():  # the same step saved again: the old one stays (aside) until the new one is in place
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
    os.replace(staged, final)
    shutil.rmtree(aside, ignore_errors=True)
    for _, old in [c for c in list_checkpoints(run_path) if not (c[1] / KEPT).exists()][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    clear_staging(run_path)
    return final


def keep_checkpoint(folder: Path, why: str) -> None:
    """Mark a checkpoint that rotation (`save_total_limit`) must leave alone; `why` is written into the mark."""
    (folder / KEPT).write_text(why + "\n", encoding="utf-8")


def clear_staging(run_path: Path) -> None:
    shutil.rmtree(staging_dir(run_path), ignore_errors=True)


class SaveSchedule:
    """When to checkpoint: every `every` steps, and whenever `minutes` of training passed since the last save."""

    def __init__(self, every: int, minutes: float):
        self.every, self.seconds = every, minutes * 60
        self.last_save = time.monotonic()

    def due(self, step: int) -> bool:
        """Every rank of a launched job must call this at the same step: the clock is agreed on, since each rank's
        clock would cross `minutes` at a different step and all of them take part in a save."""
        if step % self.every == 0:
            return True
        return bool(self.seconds) and distributed.agree(time.monotonic() - self.last_save >= self.seconds)

    def saved(self) -> None:
        self.last_save = time.monotonic()


def check_checkpoint(path: Path, required: tuple[str, ...]) -> None:
    """Raise ResumeError naming what is wrong with a checkpoint folder (`required`: the files its stage writes, as
    glob patterns), before anything is loaded."""
    missing = [name for name in required if not any(f.is_file() and f.stat().st_size for f in path.glob(name))]
    problem = f"files missing or empty: {', '.join(missing)}" if missing else ""
    if not problem:
        for name in required:
            try:
                if name.endswith(".json"):
                    json.loads((path / name).read_text(encoding="utf-8"))
                elif name.endswith(".safetensors"):
                    read_safetensors_header(path / name)
            except (OSError, ValueError) as exc:
                problem = f"`{name}` is unreadable ({exc})"
                break
    if problem:
        older = [step for step, p in list_checkpoints(path.parent.parent) if p != path]
        fix = (f"delete `{path}` to resume from checkpoint-{older[-1]}" if older else
               "start a new run with the same config")
        raise ResumeError(f"Checkpoint `{path}` is damaged: {problem}. Fix: {fix}.")


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size (a truncated file fails here)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if os.path.getsize(path) < 8 + size + end:
        raise ValueError("the file is shorter than its header says (truncated)")
    return header


# ---- PPO's own checkpoint ----------------------------------------------------------------------------------------


def save_ppo(run_path: Path, step: int, weights: dict, optimizer, state: dict[str, Any], keep: int) -> Path | None:
    """Write a PPO checkpoint through `.staging/` and publish it. `weights`: name -> tensor of every trainable
    parameter; `state`: JSON-able loop state. RNG states are taken here, at the moment of saving.

    Under a launcher every rank calls this at the same step: the replicas' weights, optimizer and loop state are the
    same, so rank 0 writes them; each other rank adds its own torch RNG (`rng.rank<K>.safetensors`: its samples
    differ by design). Returns the published folder on rank 0, None elsewhere."""
    from safetensors.torch import save_file

    staged = staging_dir(run_path) / f"{PREFIX}{step}"
    if distributed.is_main():
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
    distributed.barrier()  # the folder exists for every rank
    rng_tensors, rng_state = capture_rng()
    if not distributed.is_main():
        save_file(rng_tensors, staged / f"rng.rank{distributed.rank()}.safetensors")
        distributed.barrier()  # rank 0 publishes once every rank wrote its part
        return None
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, staged / "weights.safetensors")
    tensors, groups = flatten_optimizer(optimizer.state_dict())
    save_file(tensors, staged / "optimizer.safetensors")
    save_file(rng_tensors, staged / "rng.safetensors")
    (staged / "state.json").write_text(json.dumps({"step": step, **state, "optimizer_param_groups": groups,
                                                   "rng": rng_state, "world_size": distributed.world_size()}),
                                       encoding="utf-8")
    distributed.barrier()
    return publish(staged, run_path, keep)


def load_ppo(path: Path, device) -> tuple[dict, dict, dict]:
    """(weights, optimizer state dict, loop state) of a PPO checkpoint; restores the RNG states as a side effect,
    so call it last, after everything that draws random numbers while being built. Rank K > 0 of a launched job
    takes its torch RNG from `rng.rank<K>.safetensors` (and keeps its own fresh one, with a warning, when the
    checkpoint was saved by fewer processes); Python's RNG, which orders the prompts, is the same in every rank."""
    import logging

    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    weights = load_file(path / "weights.safetensors", device=str(device))
    optimizer = unflatten_optimizer(load_file(path / "optimizer.safetensors", device=str(device)),
                                    state.pop("optimizer_param_groups"))
    rng_file = path / ("rng.safetensors" if distributed.is_main() else f"rng.rank{distributed.rank()}.safetensors")
    if rng_file.is_file():
        restore_rng(load_file(rng_file), state.pop("rng"))
    else:
        restore_rng({}, state.pop("rng"))
        logging.getLogger("pipelines").warning(
            "Checkpoint %s was saved by %s process(es), so it has no random state for rank %d: this rank samples "
            "from a fresh seed from here on (the run goes on; it is not bit-for-bit the run it would have been).",
            path.name, state.get("world_size", 1), distributed.rank())
    state.pop("world_size", None)
    return weights, optimizer, state


def flatten_optimizer(state_dict: dict) -> tuple[dict, list]:
    """An optimizer's state dict as flat tensors (`<param index>.<name>`) plus its JSON-able param groups."""
    import torch

    tensors = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            tensors[f"{index}.{name}"] = value.detach().cpu().contiguous() if torch.is_tensor(value) else \
                torch.tensor(value)
    return tensors, state_dict["param_groups"]


def unflatten_optimizer(tensors: dict, param_groups: list) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        # Adam's `step` counter lives on the CPU whatever the device (torch's own convention for non-fused Adam).
        state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    return {"state": state, "param_groups": param_groups}


def capture_rng() -> tuple[dict, dict]:
    import numpy as np
    import torch

    tensors = {"torch_cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}


def restore_rng(tensors: dict, state: dict) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch_cpu" in tensors:
        torch.random.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("torch_cuda_")),
                                       key=lambda k: int(k.rsplit("_", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
