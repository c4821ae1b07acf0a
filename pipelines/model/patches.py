"""Every change the workbench makes to a library's private behaviour, in one place.

Each is written against the pinned version (requirements.txt), checked against it where it is applied, logged the
first time it is applied in a process, and scoped: to the passes that need it, or to our own subclass. On another
TRL the head patch is left off (the library's own behaviour) and the DPO subclass warns; the log says which.

- `fused_head_on_labelled_positions`: TRL's fused LM head on the positions that carry a label, on a CPU too (its
  private `_use_triton`), while a Trainer trains or evaluates.
- `FittedPairsDPOTrainer`: TRL's DPOTrainer without its own `_prepare_dataset`, for pairs fitted here.

(The packed passes, pipelines/model/packing.py, wrap the decoder of one model object the workbench loaded; they
change no library code.)
"""

from __future__ import annotations

import contextlib
import logging

import trl
import trl.trainer.utils as trl_utils

log = logging.getLogger("pipelines")
TRL_WRITTEN_FOR = "1.16."  # the TRL the patches below were written against (requirements.txt pins it)
_logged: set[str] = set()


def _log_once(name: str, message: str) -> None:
    if name not in _logged:
        _logged.add(name)
        log.info("%s", message)


def trl_is_pinned() -> bool:
    return trl.__version__.startswith(TRL_WRITTEN_FOR)


@contextlib.contextmanager
def fused_head_on_labelled_positions():
    """TRL's fused LM head (the SFT and DPO losses: log-probs without materialising the logits) projects only the
    positions that carry a label on CUDA, but every position of the padded batch elsewhere, so that a compiler
    (Neuron) sees the same tile shapes each batch. On a CPU nothing is compiled, and at the quick SFT recipe about
    two thirds of those positions are prompt or padding: the head was half of a step. Within this block the CPU
    takes the labelled positions too; each position's log-prob is its own row of the projection either way
    (tests/test_packing.py holds the two equal). Yields whether the patch is on."""
    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None or not trl_is_pinned():
        _log_once("fused_head", f"TRL {trl.__version__} is not the {TRL_WRITTEN_FOR}x the workbench patches: its "
                                "fused LM head runs as TRL decides (every position on a CPU).")
        yield False
        return

    def compact_on_cpu(device):
        return device.type == "cpu" or decide(device)

    trl_utils._use_triton = compact_on_cpu
    _log_once("fused_head", "Patched TRL's fused LM head (trl.trainer.utils._use_triton) to score labelled positions "
                            "only on a CPU too, while a trainer runs.")
    try:
        yield True
    finally:
        trl_utils._use_triton = decide


class FittedPairsDPOTrainer(trl.DPOTrainer):
    """TRL's DPOTrainer on pairs tokenized and fitted to `max_length` by the workbench, as the reward stage fits them
    (pipelines.data.formats.tokenize_pairs: the prompt cut from the left, both answers whole, what was cut or dropped
    counted). TRL 1.16 would tokenize the text again, and its collator cut a pair that does not fit from the end:
    the answers first, so a pair could lose its whole completion (a constant loss, nothing learned, nobody told).
    Its `_prepare_dataset` (tokenize, then drop prompts that fill `max_length`) is the one method replaced; a test
    holds the pinned TRL to its signature."""

    def __init__(self, *args, **kwargs):
        if not trl_is_pinned():
            log.warning("TRL %s is not the %sx the workbench's DPO trainer was written for: check that "
                        "`DPOTrainer._prepare_dataset` still only tokenizes.", trl.__version__, TRL_WRITTEN_FOR)
        _log_once("dpo_dataset", "DPO: TRL's DPOTrainer._prepare_dataset replaced; the pairs come tokenized and "
                                 "fitted to max_length.")
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset
