"""The preference studio's data: labeling sets, the labels people (or AI judges) give, and what they add up to.

A labeling set is a folder; like a run directory it is the single source of truth, so labeling can stop at any
moment and resume in another tab, on another day, or by another labeler:

    runs/studio/<name>/
        set.json        name, the instruction (what the labeler judges), where the pairs came from, the seed
        items.jsonl     one pair per line: id, prompt, response_1, response_2, model_1, model_2
        labels.jsonl    append-only events: a label (item, labeler, time, which candidate was shown on the left,
                        the choice left/right/tie/skip, the winning candidate) or an undo of the labeler's last one
        export.meta.json  what the last export wrote, with the instruction the labels answer

Why events rather than a table of answers: two labelers append to the same file without overwriting each other,
an undo is itself a record, and the history (who changed their mind, when) is kept.

Why the left/right position is randomised per item and labeler (from the set's seed, so it is the same on every
reload): people favour one side; with random sides that bias becomes noise we can measure (`position_bias`)
instead of a systematic preference for whichever model happened to be shown first.

This module is plain Python (no torch, no streamlit): the page imports it directly; sampling the two candidates
and the AI judges live in `pipelines.studio.models`.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.data.formats import DataReport, _messages, load_preferences, read_records
from pipelines.errors import ConfigError, DataError
from pipelines.runtime.runs import default_runs_dir, read_json, read_jsonl, write_json_atomic

CHOICES = ("left", "right", "tie", "skip")
AI_PREFIX = "ai:"  # labelers whose name starts with this are AI judges; people cannot take such a name
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INSTRUCTION_EXAMPLES = {
    "helpfulness": "Which response answers the question more helpfully and correctly?",
    "politeness": "Which response is more polite and friendly, whatever else it says?",
    "brevity": "Which response gives the answer in fewer words, without leaving anything needed out?",
    "harmlessness": "Which response is less likely to cause harm or offence?",
}


def studio_dir(runs_dir: str | Path | None = None) -> Path:
    return (Path(runs_dir) if runs_dir else default_runs_dir()) / "studio"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"The set name {name!r} is not usable as a folder name. Fix: use letters, digits, `-`, `_` "
                          "or `.` (up to 64 characters, starting with a letter or digit), e.g. `politeness-1`.")
    return name


def check_labeler(labeler: str) -> str:
    labeler = (labeler or "").strip()
    if not labeler:
        raise ConfigError("The labeler name is empty. Fix: type your name, so your labels can be told apart from "
                          "another labeler's and resumed later.")
    if labeler.lower().startswith(AI_PREFIX):
        raise ConfigError(f"The labeler name {labeler!r} starts with `{AI_PREFIX}`, which marks AI judges. Fix: "
                          "choose another name.")
    return labeler


def prompt_text(prompt: Any) -> str:
    """A prompt as the labeler reads it: the string, or the conversation turn by turn."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


def compact_prompt(messages: list[dict]) -> Any:
    """One user message is stored as a plain string (readable in the file, and TRL's standard format)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return messages


def sides(item: dict, shown_left: int, winner: int | None) -> dict:
    """Which model wrote the left and the right response, and the winning one: kept in every label, so the file
    alone tells who was preferred and where it was shown."""
    return {"model_left": item[f"model_{shown_left}"], "model_right": item[f"model_{3 - shown_left}"],
            "winner_model": item[f"model_{winner}"] if winner else None}


# ---- one set -----------------------------------------------------------------------------------------------------


@dataclass
class LabelingSet:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def labels_file(self) -> Path:
        return self.path / "labels.jsonl"

    def meta(self) -> dict:
        return read_json(self.path / "set.json", {}) or {}

    @property
    def instruction(self) -> str:
        return self.meta().get("instruction", "")

    def items(self) -> list[dict]:
        return read_jsonl(self.path / "items.jsonl")

    def events(self) -> list[dict]:
        return read_jsonl(self.labels_file)

    # ---- writing labels ----------------------------------------------------------------------------------------

    def shown_left(self, item_id: str, labeler: str) -> int:
        """Which candidate (1 or 2) this labeler sees on the left for this item: random, but the same every time."""
        rng = random.Random(f"{self.meta().get('seed', 0)}/{item_id}/{labeler}")
        return 1 if rng.random() < 0.5 else 2

    def add_label(self, item_id: str, labeler: str, choice: str, shown_left: int | None = None,
                  **extra: Any) -> dict:
        """Append one label. `choice` is the side picked as it was shown (left / right), or tie / skip."""
        if choice not in CHOICES:
            raise ConfigError(f"The choice {choice!r} is not one of {list(CHOICES)}.")
        item = next((i for i in self.items() if i["id"] == item_id), None)
        if item is None:
            raise DataError(f"Set `{self.name}` has no item `{item_id}`.")
        shown_left = shown_left or self.shown_left(item_id, labeler)
        winner = {"left": shown_left, "right": 3 - shown_left}.get(choice)
        event = {"event": "label", "item": item_id, "labeler": labeler, "at": now(), "choice": choice,
                 "shown_left": shown_left, "winner": winner, **sides(item, shown_left, winner), **extra}
        self._append([event])
        return event

    def add_labels(self, events: list[dict]) -> None:
        """Many labels at once (an AI judge), written in one go. Each names item, labeler, choice, shown_left and
        winner; the models behind each side are filled in here."""
        items = {i["id"]: i for i in self.items()}
        self._append([{"event": "label", "at": now(), **e, **sides(items[e["item"]], e["shown_left"], e["winner"])}
                      for e in events])

    def undo(self, labeler: str) -> dict | None:
        """Take back this labeler's latest label still standing; returns it (None when there is nothing to undo)."""
        stack = self._stacks().get(labeler, [])
        if not stack:
            return None
        last = stack[-1]
        self._append([{"event": "undo", "item": last["item"], "labeler": labeler, "at": now()}])
        return last

    def _append(self, events: list[dict]) -> None:
        # One write per call: appends from two labelers' tabs interleave by whole lines, never inside one.
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        with open(self.labels_file, "a", encoding="utf-8") as fh:
            fh.write(text)

    # ---- reading labels back -----------------------------------------------------------------------------------

    def _stacks(self) -> dict[str, list[dict]]:
        """Each labeler's labels in order, with undone ones removed (an undo pops that labeler's latest)."""
        stacks: dict[str, list[dict]] = {}
        for event in self.events():
            stack = stacks.setdefault(event.get("labeler", ""), [])
            if event.get("event") == "undo":
                if stack:
                    stack.pop()
            elif event.get("event") == "label":
                stack.append(event)
        return stacks

    def labels(self, labeler: str | None = None) -> dict[str, dict[str, dict]]:
        """{labeler: {item id: the label standing now}}; a later label of the same item replaces an earlier one."""
        current: dict[str, dict[str, dict]] = {}
        for name, stack in self._stacks().items():
            if labeler is not None and name != labeler:
                continue
            current[name] = {}
            for event in stack:
                current[name][event["item"]] = event
        return {k: v for k, v in current.items() if v}

    def labelers(self) -> list[str]:
        return sorted(self.labels())

    def next_item(self, labeler: str) -> dict | None:
        """The first item, in set order, this labeler has not labeled yet (None: all done)."""
        done = self.labels(labeler).get(labeler, {})
        return next((item for item in self.items() if item["id"] not in done), None)

    def progress(self, labeler: str) -> tuple[int, int]:
        done = self.labels(labeler).get(labeler, {})
        items = self.items()
        return sum(item["id"] in done for item in items), len(items)


# ---- creating and finding sets -----------------------------------------------------------------------------------


def list_sets(runs_dir: str | Path | None = None) -> list[LabelingSet]:
    """Newest first."""
    root = studio_dir(runs_dir)
    if not root.is_dir():
        return []
    sets = [LabelingSet(p) for p in root.iterdir() if (p / "set.json").exists()]
    return sorted(sets, key=lambda s: s.meta().get("created_at", ""), reverse=True)


def open_set(name: str, runs_dir: str | Path | None = None) -> LabelingSet:
    path = studio_dir(runs_dir) / name
    if not (path / "set.json").exists():
        known = ", ".join(s.name for s in list_sets(runs_dir)) or "none yet"
        raise ConfigError(f"There is no labeling set `{name}` in `{studio_dir(runs_dir)}` (sets: {known}). Fix: "
                          "create it first (`python -m pipelines studio generate` or `studio import`), or check the "
                          "name and `--runs-dir`.")
    return LabelingSet(path)


def check_new_set(name: str, runs_dir: str | Path | None = None) -> Path:
    """The folder a new set will take; refuses a name in use, before anything slow (loading a model) happens."""
    path = studio_dir(runs_dir) / check_name(name)
    if path.exists():
        raise ConfigError(f"A labeling set named `{name}` already exists in `{path.parent}`. Fix: choose another "
                          "name (its labels are kept; open it to continue labeling).")
    return path


def create_set(name: str, instruction: str, source: str, items: list[dict], runs_dir: str | Path | None = None,
               seed: int = 0, left_out_identical: list[int] = (), **meta: Any) -> LabelingSet:
    """Write a new set. Items: prompt, response_1, response_2, model_1, model_2 (and anything else worth keeping).
    Pairs whose two responses are identical cannot teach a preference: they are left out and returned in the
    metadata (`left_out`) with their source line, so the caller can say which."""
    path = check_new_set(name, runs_dir)
    instruction = (instruction or "").strip()
    if not instruction:
        raise ConfigError("The instruction is empty. Fix: write what the labeler should judge, e.g. "
                          f"\"{INSTRUCTION_EXAMPLES['politeness']}\" The judge trained on these labels learns exactly "
                          "that.")
    kept, identical = [], list(left_out_identical)
    for item in items:
        if item["response_1"].strip() == item["response_2"].strip():
            identical.append(item.get("line", len(kept) + len(identical) + 1))
        else:
            kept.append(item)
    if not kept:
        what = f"all {len(identical)} pairs have two identical responses" if identical else "there are no pairs"
        raise DataError(f"The set `{name}` would be empty: {what} ({source}). Fix: give pairs whose two responses "
                        "differ (when sampling one model twice, use a temperature above 0; or pick two different "
                        "models).")
    path.mkdir(parents=True)
    rows = [{"id": f"{i:04d}", **item} for i, item in enumerate(kept)]
    (path / "items.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                      encoding="utf-8")
    write_json_atomic(path / "set.json", {"name": name, "instruction": instruction, "source": source,
                                          "created_at": now(), "seed": seed, "items": len(rows),
                                          "left_out_identical": sorted(identical), **meta})
    return LabelingSet(path)


def describe_left_out(labeling_set: LabelingSet) -> str | None:
    identical = labeling_set.meta().get("left_out_identical") or []
    if not identical:
        return None
    shown = ", ".join(map(str, identical[:10])) + (", ..." if len(identical) > 10 else "")
    return (f"{len(identical)} pair(s) were left out because their two responses were identical (source line "
            f"{shown}): such a pair cannot say which is better.")


PAIR_FORMATS = "prompt/response_a/response_b (optionally model_a/model_b), or preference pairs (prompt/chosen/rejected)"


def import_pairs(path: str | Path, name: str, instruction: str, runs_dir: str | Path | None = None,
                 seed: int = 0) -> LabelingSet:
    """A set from a file of ready-made pairs, without any model: `prompt` + `response_a`/`response_b`, or a
    preference file (its chosen/rejected become the two candidates, named `chosen` and `rejected`, so the table
    of model wins shows how often labelers agree with the file's own labels)."""
    check_new_set(name, runs_dir)
    records = read_records(path)  # a missing, empty or broken file fails here, naming the line
    first_line, first = records[0]
    if isinstance(first, dict) and "response_a" in first:
        items, report = _ab_pairs(path, records)
        report.raise_if_errors()
        identical = []
    elif isinstance(first, dict) and "chosen" in first and "rejected" in first:
        items, identical = _preference_pairs(path, seed)
    else:
        fields = sorted(first) if isinstance(first, dict) else type(first).__name__
        raise DataError(f"`{path}` line {first_line}: unknown pairs format (the record has {fields}). Fix: use "
                        f"{PAIR_FORMATS}.")
    return create_set(name, instruction, f"pairs file {path}", items, runs_dir, seed, left_out_identical=identical)


def _preference_pairs(path, seed: int) -> tuple[list[dict], list[int]]:
    pairs, report = load_preferences(path)
    if not pairs and report.skipped and [msg for _, msg in report.errors] == ["no usable records"]:
        report.errors = []  # nothing is broken, every pair was skipped: create_set says why the set is empty
    report.raise_if_errors()
    rng = random.Random(seed)
    items = []
    for pair in pairs:
        sides = [("chosen", pair["chosen"]), ("rejected", pair["rejected"])]
        rng.shuffle(sides)  # so candidate 1 is not always the preferred one of the file
        items.append({"prompt": compact_prompt(pair["prompt"]), "response_1": sides[0][1], "response_2": sides[1][1],
                      "model_1": sides[0][0], "model_2": sides[1][0], "line": pair["_line"]})
    # load_preferences has already left out the pairs with chosen == rejected; the set reports them
    return items, [line for line, why in report.skipped if why == "chosen == rejected"]


def _ab_pairs(path, records) -> tuple[list[dict], DataReport]:
    report = DataReport(str(path), "pairs", format="prompt/response_a/response_b", total=len(records))
    items = []
    for line, record in records:
        if not isinstance(record, dict) or not all(k in record for k in ("prompt", "response_a", "response_b")):
            report.errors.append((line, "missing field(s) prompt, response_a, response_b"))
            continue
        try:
            prompt = compact_prompt(_messages(record["prompt"], "prompt"))
        except ValueError as exc:
            report.errors.append((line, str(exc)))
            continue
        if not all(isinstance(record[k], str) for k in ("response_a", "response_b")):
            report.errors.append((line, "`response_a` and `response_b` must be strings"))
            continue
        items.append({"prompt": prompt, "response_1": record["response_a"], "response_2": record["response_b"],
                      "model_1": str(record.get("model_a") or "A"), "model_2": str(record.get("model_b") or "B"),
                      "line": line})
    report.kept = len(items)
    return items, report


# ---- what the labels add up to -------------------------------------------------------------------------------------


def agreement(labeling_set: LabelingSet) -> list[dict]:
    """For every two labelers: on the items both picked a side for (A or B, not tie or skip), how often they picked
    the same candidate. Ties are counted apart: a tie against a side is neither agreement nor disagreement."""
    current = labeling_set.labels()
    names = sorted(current)
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            common = [k for k in current[first] if k in current[second]]
            decided = [k for k in common if current[first][k]["winner"] and current[second][k]["winner"]]
            agree = sum(current[first][k]["winner"] == current[second][k]["winner"] for k in decided)
            ties = sum(1 for k in common if "tie" in (current[first][k]["choice"], current[second][k]["choice"]))
            rows.append({"labeler 1": first, "labeler 2": second, "items both labeled": len(common),
                         "both picked a side": len(decided), "agree": agree,
                         "agreement": agree / len(decided) if decided else None, "with a tie": ties,
                         "ai vs human": first.startswith(AI_PREFIX) != second.startswith(AI_PREFIX)})
    return rows


def position_bias(labeling_set: LabelingSet) -> list[dict]:
    """Per human labeler: the share of decided labels that picked the left side. Sides are random, so an
    unbiased labeler lands near 50%; `margin95` is the +/- range chance alone gives at this count."""
    rows = []
    for name, labels in labeling_set.labels().items():
        if name.startswith(AI_PREFIX):  # AI judges see both orders, or none: no side to prefer
            continue
        decided = [e for e in labels.values() if e["choice"] in ("left", "right")]
        if not decided:
            continue
        left = sum(e["choice"] == "left" for e in decided)
        rows.append({"labeler": name, "decided": len(decided), "picked left": left,
                     "share left": left / len(decided), "margin95": 1.96 * math.sqrt(0.25 / len(decided))})
    return sorted(rows, key=lambda r: r["labeler"])


def model_wins(labeling_set: LabelingSet, labelers: list[str] | None = None) -> list[dict]:
    """How often each candidate source won, over the chosen labelers' labels (default: every human)."""
    items = {i["id"]: i for i in labeling_set.items()}
    counts: dict[str, dict[str, int]] = {}
    for name, labels in labeling_set.labels().items():
        if (labelers is None and name.startswith(AI_PREFIX)) or (labelers is not None and name not in labelers):
            continue
        for item_id, event in labels.items():
            item = items.get(item_id)
            if item is None or event["choice"] == "skip":
                continue
            for side in (1, 2):
                row = counts.setdefault(item[f"model_{side}"], {"wins": 0, "losses": 0, "ties": 0})
                key = "ties" if event["choice"] == "tie" else "wins" if event["winner"] == side else "losses"
                row[key] += 1
    return [{"model": model, **c, "win rate": (c["wins"] + c["ties"] / 2) / max(sum(c.values()), 1)}
            for model, c in sorted(counts.items())]


# ---- export: the TRL preference format stage 2 trains on ------------------------------------------------------


def export(labeling_set: LabelingSet, out: str | Path, labelers: list[str] | None = None,
           agreed_only: bool = False) -> dict:
    """Write the labels as TRL explicit preference pairs, {"prompt", "chosen", "rejected"} per line, which the
    reward stage (`train_file`) reads as it is; extra fields record the instruction, the labeler and the models
    (loaders ignore them). Ties and skips say nothing about which is better and are left out, counted.

    labelers: whose labels (default: every human). agreed_only: one pair per item, kept only when none of those
    labelers picked the other side (an item two people disagree on is noise for the judge)."""
    current = labeling_set.labels()
    chosen_labelers = [n for n in current if not n.startswith(AI_PREFIX)] if labelers is None else \
        [n for n in labelers if n in current]
    missing = [n for n in (labelers or []) if n not in current]
    if missing:
        raise ConfigError(f"No labels from {', '.join(missing)} in set `{labeling_set.name}` (labelers: "
                          f"{', '.join(current) or 'none yet'}). Fix: pick labelers who labeled this set.")
    items = {i["id"]: i for i in labeling_set.items()}
    instruction = labeling_set.instruction
    counts = {"ties": 0, "skips": 0, "disagreements": 0}
    votes: dict[str, list[dict]] = {}
    for name in chosen_labelers:
        for item_id, event in current[name].items():
            if event["choice"] in ("tie", "skip"):
                counts[event["choice"] + "s"] += 1
            elif item_id in items:
                votes.setdefault(item_id, []).append(event)
    records = []
    for item_id in (i for i in items if i in votes):  # set order
        events = votes[item_id]
        if agreed_only:
            if len({e["winner"] for e in events}) > 1:
                counts["disagreements"] += 1
                continue
            events = [{**events[-1], "labeler": "+".join(sorted(e["labeler"] for e in events))}]
        item = items[item_id]
        for event in events:
            win, lose = event["winner"], 3 - event["winner"]
            chosen, rejected = item[f"response_{win}"], item[f"response_{lose}"]
            if isinstance(item["prompt"], list):  # a conversation: TRL wants the answers as messages too
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            records.append({"prompt": item["prompt"], "chosen": chosen, "rejected": rejected,
                            "instruction": instruction, "chosen_model": item[f"model_{win}"],
                            "rejected_model": item[f"model_{lose}"], "labeler": event["labeler"],
                            "labeled_at": event["at"], "set": labeling_set.name, "item": item_id})
    if not records:
        raise DataError(f"Nothing to export from set `{labeling_set.name}`: no label from "
                        f"{', '.join(chosen_labelers) or 'anyone'} picks a side ({counts['ties']} tie(s), "
                        f"{counts['skips']} skip(s), {counts['disagreements']} disagreement(s)). Fix: label some items "
                        "A or B first.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(out)
    summary = {"file": str(out), "pairs": len(records), **counts, "labelers": chosen_labelers,
               "agreed_only": agreed_only, "instruction": instruction, "set": labeling_set.name,
               "exported_at": now()}
    write_json_atomic(labeling_set.path / "export.meta.json", summary)
    return summary


def summary_lines(labeling_set: LabelingSet) -> list[str]:
    """The state of a set in a few lines, for the command line."""
    items = labeling_set.items()
    lines = [f"set {labeling_set.name}: {len(items)} items; instruction: {labeling_set.instruction}"]
    for name, labels in sorted(labeling_set.labels().items()):
        choices = [e["choice"] for e in labels.values()]
        lines.append(f"  {name}: {len(labels)}/{len(items)} labeled ({choices.count('left') + choices.count('right')}"
                     f" A/B, {choices.count('tie')} tie, {choices.count('skip')} skip)")
    for row in agreement(labeling_set):
        if row["agreement"] is not None:
            lines.append(f"  agreement {row['labeler 1']} vs {row['labeler 2']}: {row['agreement']:.0%} on "
                         f"{row['both picked a side']} items")
    for row in position_bias(labeling_set):
        lines.append(f"  {row['labeler']} picked the left side {row['share left']:.0%} of {row['decided']} times "
                     f"(chance alone: 50% +/- {row['margin95']:.0%})")
    return lines
