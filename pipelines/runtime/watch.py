"""The reward-hacking watch of the RL stages (PPO, GRPO): a rising reward says the policy pleases the judge, not that
it got better, so the run also watches what its answers look like and says when they go wrong.

Two kinds of evidence, both written to the run folder:
- **signals of every step**, from the answers the step sampled: length, repetition (the share of an answer's word
  trigrams that repeat an earlier one), the share of answers identical to an answer to another prompt, and the share
  cut off at `max_new_tokens` (the stage logs length and cut-off itself; `batch_signals` adds the other two);
- **probes**: a fixed set of held-out prompts answered greedily at the start (the starting model's answers) and every
  `probe_every` steps, each answer scored by the judge (or the stage's reward) and graded where the prompt carries a
  reference `answer`. One row per probe and step in `probes.jsonl`; their means in that step's metrics row
  (`probes/...`, the start's as a row of step 0).

**Alarms** compare now with the start: a signal of the steps is the mean over the last `WINDOW` steps against the
mean of the first `BASELINE` steps (one batch is too noisy to judge a drift on), a probe signal is the newest probe
against the start's. An alarm is raised once per signal, at the step it trips, with the newest checkpoint from
before the drift began to go back to (kept from rotation; `python -m pipelines resume RUN --checkpoint N` goes back
to it). It goes to the log at once, to status.json (the page's banner) and to summary.json's `alarms`; with
`stop_on_alarm` the stage ends the run there, with a checkpoint.

This module is plain Python (no torch): the stage hands it a function that answers prompts and one that scores.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from pipelines.data.answers import is_correct
from pipelines.data.formats import load_checked
from pipelines.runtime.checkpoints import keep_checkpoint, list_checkpoints
from pipelines.runtime.runs import Run

log = logging.getLogger("pipelines")

BASELINE = 3  # steps whose mean is "the start" for the signals of the steps
WINDOW = 5  # steps whose mean is "now"
REPETITION_RISE = 0.2  # repeated trigrams, as a share of an answer's trigrams, above the start's
COLLAPSE = 0.5  # share of answers identical to an answer to another prompt
CUT_OFF = 0.6  # share of answers cut off at max_new_tokens, where the start's was below half of it
CORRECTNESS_FALL = 0.25  # graded probes that turned wrong, as a share, while the judge's score on them rose


# ---- what one batch of answers looks like ------------------------------------------------------------------------


def normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def repetition(text: str, n: int = 3) -> float:
    """The share of the answer's word n-grams that repeat an earlier one: 0 for an answer that never repeats itself,
    near 1 for the same phrase said over and over."""
    words = normalised(text).split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def identical_share(prompts: list[str], texts: list[str]) -> float:
    """The share of answers that are, up to case and punctuation, an answer given to another prompt too: one answer
    to every question is 1. (Answers to the same prompt, as a GRPO group has, do not count.)"""
    asked: dict[str, set[str]] = {}
    for prompt, text in zip(prompts, texts):
        asked.setdefault(normalised(text), set()).add(prompt)
    return sum(len(asked[normalised(t)]) > 1 for t in texts) / len(texts) if texts else 0.0


def batch_signals(prompts: list[str], texts: list[str]) -> dict[str, float]:
    """The two signals a stage does not log itself, for one step's answers."""
    return {"watch/repetition": sum(map(repetition, texts)) / max(len(texts), 1),
            "watch/identical": identical_share(prompts, texts)}


# ---- the watch ---------------------------------------------------------------------------------------------------


def question_of(prompt) -> str:
    """A prompt record's question as text: the string, or the last message of a conversation."""
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


def pick_probes(records: list[dict], count: int) -> list[dict]:
    """`count` prompts, those with a reference `answer` first (they can be graded), each in file order."""
    graded = [r for r in records if r.get("answer")]
    return (graded + [r for r in records if not r.get("answer")])[:count]


def load_probes(cfg, prompts: list[dict]) -> list[dict]:
    """A stage's probe records: `probes` of `probes_file`, or of its own `prompts` when that is empty; none (and
    nothing read) when `probes` is 0."""
    if not cfg.probes:
        return []
    return pick_probes(load_checked("prompts", cfg.probes_file, log, cfg.column_map) if cfg.probes_file else prompts,
                       cfg.probes)


@dataclass
class Alarm:
    step: int
    signal: str  # length, repetition, collapse, correctness
    message: str
    checkpoint: str = ""  # the newest checkpoint from before the drift; empty: none, go back to the starting model

    def as_dict(self) -> dict:
        return {"step": self.step, "signal": self.signal, "message": self.message, "checkpoint": self.checkpoint}


@dataclass
class Kept:
    step: int
    name: str


@dataclass
class Keys:
    """Where a stage logs the signals it computes itself."""

    length: str  # mean answer length in tokens
    cut_off: str  # share of answers cut off at max_new_tokens


@dataclass
class Watch:
    """`answer(prompts) -> (texts, cut_off)` answers prompt records greedily with the policy as it is now, and says
    which ran into `max_new_tokens`;
    `score(prompts, texts) -> scores` is the stage's judge. `length_change`: the relative change of the mean answer
    length that raises the length alarm (1.0: twice as long, or half as long); answers that run into
    `max_new_tokens` raise it too."""

    run: Run
    keys: Keys
    probes: list[dict]
    answer: Callable
    score: Callable
    length_change: float = 1.0
    max_new_tokens: int = 0
    batch_size: int = 8  # probes answered at once
    alarms: list[Alarm] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # the steps' metrics rows, probe means included
    probe_rows: dict[int, list[dict]] = field(default_factory=dict)  # step -> its probes' rows
    seconds: float = 0.0  # spent on probes, this run (resumes included)

    def restore(self) -> None:
        """After a resume (the run folder already rewound to the checkpoint): the steps, probes and alarms so far."""
        rows = self.run.metrics()
        self.history = [row for row in rows if row.get("step", 0) > 0 and self.keys.length in row]  # training steps
        self.seconds = sum(row.get("time/probes", 0.0) for row in rows)
        for row in self.run.probes():
            self.probe_rows.setdefault(row["step"], []).append(row)
        last = self.history[-1]["step"] if self.history else 0
        self.alarms = [Alarm(**a) for a in self.run.status().get("alarms", []) if a.get("step", 0) <= last]
        self.run.set_status(alarms=[a.as_dict() for a in self.alarms])

    # -- probes --

    def probe_start(self) -> None:
        """The probes answered by the starting model, as a metrics row of step 0."""
        if means := self.probe(0):
            self.run.log_metrics({"step": 0, "time": 0.0, **means})

    def probe(self, step: int) -> dict[str, float]:
        """Answer, score and grade the probes now; write their rows; return their means (`probes/...`) and the
        seconds they took (`time/probes`)."""
        if not self.probes or step in self.probe_rows:
            return {}
        started = time.perf_counter()
        texts, cut_off, scores = [], [], []
        for first in range(0, len(self.probes), self.batch_size):
            chunk = self.probes[first:first + self.batch_size]
            chunk_texts, chunk_cut_off = self.answer(chunk)
            texts += chunk_texts
            cut_off += chunk_cut_off
            scores += self.score(chunk, chunk_texts)
        seconds = time.perf_counter() - started
        self.seconds += seconds
        rows = []
        for record, text, cut, score in zip(self.probes, texts, cut_off, scores):
            question = question_of(record["prompt"])
            answer = record.get("answer") or None
            rows.append({"step": step, "prompt": question, "response": text, "score": float(score),
                         "answer": answer, "correct": is_correct(text, answer, question) if answer else None,
                         "words": len(text.split()), "cut_off": cut})
        self.probe_rows[step] = rows
        if self.run.writes:
            with open(self.run.path / "probes.jsonl", "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))  # one write per step
        return {**probe_means(rows), "time/probes": seconds}

    # -- alarms --

    def check(self, step: int, metrics: dict) -> list[Alarm]:
        """This step's metrics (probe means included where probed) against the start; the alarms it raises."""
        self.history.append({"step": step, **metrics})
        raised: list[Alarm] = []
        for alarm, before in self._tripped(step):
            if alarm.signal in {a.signal for a in (*self.alarms, *raised)}:
                continue  # once per signal, however the drift is seen
            back = "no checkpoint predates it: go back to the starting model."
            if kept := self._checkpoint_before(before):
                alarm.checkpoint = kept.name
                back = (f"go back to `{kept.name}` (kept): `python -m pipelines resume {self.run.path} --checkpoint "
                        f"{kept.step} --set max_steps={kept.step}` makes the model as it was there.")
            alarm.message = f"{alarm.message} Step {step}: {back}"
            log.warning("Reward-hacking watch: %s", alarm.message)
            raised.append(alarm)
        if raised:
            self.alarms += raised
            self.run.set_status(alarms=[a.as_dict() for a in self.alarms])
        return raised

    def _tripped(self, step: int) -> list[tuple[Alarm, int]]:
        """Each alarm this step trips, with the last step before its drift was seen: for the steps' signals the step
        before the window, for the probes the previous probe."""
        out = [(alarm, step - WINDOW) for alarm in self._step_alarms(step)]
        if step in self.probe_rows and 0 in self.probe_rows and step > 0:
            before = max(s for s in self.probe_rows if s < step)
            out += [(alarm, before) for alarm in
                    self._probe_alarms(step, probe_means(self.probe_rows[0]), probe_means(self.probe_rows[step]))]
        return out

    def _step_alarms(self, step: int) -> list[Alarm]:
        out = []
        steps = self.history
        if len(steps) >= BASELINE + WINDOW:
            start, now = steps[:BASELINE], steps[-WINDOW:]
            length_start, length_now = mean_of(start, self.keys.length), mean_of(now, self.keys.length)
            cut_start, cut_now = mean_of(start, self.keys.cut_off) or 0.0, mean_of(now, self.keys.cut_off) or 0.0
            ratio = length_now / length_start if length_start and length_now else 1.0
            drifted = self.length_change and (ratio >= 1 + self.length_change or ratio <= 1 / (1 + self.length_change))
            if drifted or (cut_now >= CUT_OFF and cut_start < CUT_OFF / 2):
                limit = f" of {self.max_new_tokens} tokens" if self.max_new_tokens else ""
                out.append(Alarm(step, "length", f"Answers {'grew' if ratio > 1 else 'shrank'} from "
                                 f"{length_start or 0:.1f} to {length_now or 0:.1f} tokens on average "
                                 f"({ratio - 1:+.0%}), and {cut_now:.0%} run into the length limit{limit} (at the "
                                 f"start {cut_start:.0%}): the judge may be paying for length rather than for better "
                                 "answers."))
            rep_start, rep_now = mean_of(start, "watch/repetition"), mean_of(now, "watch/repetition")
            if rep_now is not None and rep_now - (rep_start or 0) >= REPETITION_RISE:
                out.append(Alarm(step, "repetition", f"Answers repeat themselves: {rep_now:.0%} of their word "
                                 f"triples are repeats (at the start {rep_start or 0:.0%})."))
            same_start, same_now = mean_of(start, "watch/identical"), mean_of(now, "watch/identical")
            if same_now is not None and same_now >= COLLAPSE and (same_start or 0) < COLLAPSE:
                out.append(Alarm(step, "collapse", f"{same_now:.0%} of answers are the same answer given to other "
                                 "questions: the policy collapsed toward one answer."))
        return out

    def _probe_alarms(self, step: int, start: dict, now: dict) -> list[Alarm]:
        out = []
        if now.get("probes/identical", 0) >= COLLAPSE and start.get("probes/identical", 0) < COLLAPSE:
            out.append(Alarm(step, "collapse", f"{now['probes/identical']:.0%} of the probe questions now get the "
                             "same answer as another: the policy collapsed toward one answer."))
        if "probes/correct" in now and "probes/correct" in start:
            fell = start["probes/correct"] - now["probes/correct"]
            rose = now["probes/score"] - start["probes/score"]
            if fell >= CORRECTNESS_FALL and rose > 0:
                out.append(Alarm(step, "correctness", f"The judge's score on the probe questions rose "
                                 f"({start['probes/score']:+.2f} -> {now['probes/score']:+.2f}) while the share "
                                 f"answered correctly fell ({start['probes/correct']:.0%} -> "
                                 f"{now['probes/correct']:.0%}): the policy pleases the judge, not the facts."))
        return out

    def _checkpoint_before(self, step: int) -> Kept | None:
        """The newest checkpoint at or before `step`, marked so that rotation keeps it; None if there is none."""
        found = [(s, folder) for s, folder in list_checkpoints(self.run.path) if s <= step]
        if not found:
            return None
        kept, folder = max(found)
        if self.run.writes:
            keep_checkpoint(folder, "named by a reward-hacking alarm")
        return Kept(kept, folder.name)

    def finish(self) -> dict:
        """The summary's part (`alarms`, `probe_seconds`), with the alarms recalled at the end of the log, where a
        terminal user looks when the run is done."""
        for alarm in self.alarms:
            log.warning("Reward-hacking watch, step %d (%s): %s", alarm.step, alarm.signal, alarm.message)
        return {"alarms": [a.as_dict() for a in self.alarms], "probe_seconds": round(self.seconds, 2)}


def mean_of(rows: list[dict], key: str) -> float | None:
    """The mean of a key over rows, leaving out rows without it and values that are not finite numbers."""
    values = [row[key] for row in rows if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
    return sum(values) / len(values) if values else None


def probe_means(rows: list[dict]) -> dict[str, float]:
    """The probes of one step in numbers: the judge's mean score, the share graded correct (where any is graded),
    the mean length in words, and the share identical to another probe's answer."""
    if not rows:
        return {}
    graded = [row["correct"] for row in rows if row.get("correct") is not None]
    out = {"probes/score": sum(row["score"] for row in rows) / len(rows),
           "probes/words": sum(row["words"] for row in rows) / len(rows),
           "probes/identical": identical_share([row["prompt"] for row in rows], [row["response"] for row in rows])}
    if graded:
        out["probes/correct"] = sum(graded) / len(graded)
    return out
