"""What a stage is, as one record: its settings, what runs it, what its data files hold, its charts, the figures of
its summary and the names people read. Each stage's package builds its record (`STAGE`); pipelines/stages lists
them, and everything that offers stages (the CLI, the forms, the pages, the charts, the Runs page, the results, the
demo, Compare) iterates that list instead of naming stages itself.

A record imports no torch: the app reads it. Its `run` loads the stage's heavy module when a job calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipelines.config import StageConfig, TrainingConfig
from pipelines.runtime.checkpoints import TRAINER_FILES


@dataclass(frozen=True)
class Chart:
    """One live chart: the metric keys it draws (each with its legend label), and optionally a config field drawn as
    a dashed line with its label (the judge's accuracy gate)."""

    title: str
    y_title: str
    series: tuple[tuple[str, str], ...]
    line_from: str = ""
    line_label: str = ""


Figures = Callable[[dict], list[tuple[str, str]]]


def watch_charts(cut_off: str) -> tuple[Chart, ...]:
    """The reward-hacking watch's charts (pipelines/runtime/watch.py), for a stage that logs the share of answers cut
    off at `max_new_tokens` under the key `cut_off`."""
    return (Chart("What the answers look like", "share of answers",
                  ((cut_off, "cut off at max_new_tokens"), ("watch/identical", "same as an answer to another question"),
                   ("watch/repetition", "repeated word triples (share)"))),
            Chart("Probe questions: the judge's score", "mean score", (("probes/score", "score"),)),
            Chart("Probe questions: answered correctly", "share",
                  (("probes/correct", "correct (reference answer)"), ("probes/identical", "same answer as another"))))


def watch_figures(summary: dict) -> list[tuple[str, str]]:
    """The reward-hacking watch's verdict, for a run that had the watch."""
    if "alarms" not in summary:
        return []
    signals = ", ".join(dict.fromkeys(a["signal"] for a in summary["alarms"]))
    return [("Reward-hacking alarms", f"{len(summary['alarms'])} ({signals})" if signals else "none")]


def no_figures(summary: dict) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Stage:
    """One stage. `run(config, run, resume=None) -> summary` is what the engine calls in the job process."""

    config: type[StageConfig]
    run: Callable[..., dict]
    title: str  # its short name: "SFT", "PPO"
    page_title: str  # the heading of its page
    intro: str  # what it does, in a paragraph for its page (Markdown: our own text)
    icon: str  # a Material icon for the navigation
    section: str  # the navigation section its page sits in
    data: str = "prompts"  # what its data files hold: a kind of pipelines.data.formats.DATA_KINDS
    charts: tuple[Chart, ...] = ()
    figures: Figures = no_figures  # (label, value) pairs a person looks for in its summary.json
    model_name: str = ""  # its model as Compare names it ("Aligned (PPO)"); empty: its adapter does not generate
    aligns: bool = False  # it aligns a starting model: Compare's headline pits it against the model it started from
    samples: bool = False  # it writes samples.jsonl (prompt, response, score), shown under its charts
    checkpoint_files: tuple[str, ...] = TRAINER_FILES  # what its checkpoints hold (checked before a resume)
    tour: tuple[str, str] | None = None  # (heading, text) of its card in Home's tour of the three classic stages

    @property
    def id(self) -> str:
        """The stage's one name: CLI command, run-folder suffix, `stage:` in config.yaml, `<id>_run` fields."""
        return self.config.stage

    @property
    def trains(self) -> bool:
        """It trains an adapter, checkpoints and can be resumed."""
        return issubclass(self.config, TrainingConfig)

    @property
    def generates(self) -> bool:
        """Its adapter makes a model that writes answers: Compare and the studio can sample it, and it can be exported
        merged into its base."""
        return bool(self.model_name)

    @property
    def run_field(self) -> str:
        """The config field by which other stages name one of its runs (`sft_run`)."""
        return f"{self.id}_run"


# ---- helpers for the stages' figures ---------------------------------------------------------------------------


def number(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "?"


def loss_change(summary: dict) -> str:
    return f"{number(summary['first_loss'])} → {number(summary.get('final_loss'))}"
