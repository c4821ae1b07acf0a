"""Compare: base, SFT and aligned models answer the same held-out prompts, side by side, each answer scored by the
judge and, where the prompt carries a reference answer, graded right or wrong (`compare.py`).

This module is the stage's record: its settings (config.py) and texts. It imports no torch (the app reads
it).
"""

from __future__ import annotations

from pipelines.stages.compare.config import CompareConfig
from pipelines.stages.stage import Stage


def run(config: CompareConfig, run) -> dict:
    from pipelines.stages.compare import compare  # torch loads in the job, never in the app

    return compare.run(config, run)


STAGE = Stage(
    config=CompareConfig, run=run, title="Compare", page_title="Compare", icon=":material/compare:", section="Results",
    intro="Base, SFT and aligned models answer the same held-out prompts; the judge scores every answer.",
)
