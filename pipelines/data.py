"""Load, validate and normalise datasets for every stage.

Files: JSONL, JSON, CSV, Parquet, or a folder written by `datasets.save_to_disk`.
Every record is normalised to conversational messages, so one chat template applies everywhere:

    SFT         {"prompt": [messages...], "completion": [assistant message]}   or {"text": ...}
    preference  {"prompt": [messages...], "chosen": str, "rejected": str}
    prompts     {"prompt": [messages...]}

Problems are collected with their line numbers (the Data page lists them all); `load_*` raises a DataError that
quotes the first few when any record is unusable.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
Messages = list[dict[str, str]]


@dataclass
class DataReport:
    """What a loader found: the format, how many records it kept, and every problem with its line."""

    path: str
    kind: str
    format: str = "unknown"
    total: int = 0
    kept: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # make the file unusable
    skipped: list[tuple[int, str]] = field(default_factory=list)  # records left out, each reported
    notes: list[str] = field(default_factory=list)

    def raise_if_errors(self) -> None:
        if not self.errors:
            return
        shown = "; ".join(f"line {line}: {msg}" for line, msg in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        raise DataError(f"`{self.path}` has {len(self.errors)} unusable record(s): {shown}{more}. Fix those lines, "
                        "or see the Data page for the full list.")

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.format} format, {self.kept} of {self.total} records used"]
        reasons: dict[str, list[int]] = {}
        for line, msg in self.skipped:
            reasons.setdefault(msg, []).append(line)
        for msg, where in reasons.items():
            shown = ", ".join(map(str, where[:8])) + (", ..." if len(where) > 8 else "")
            out.append(f"  skipped {len(where)}: {msg} (line {shown})")
        out.extend(f"  {note}" for note in self.notes)
        return out


# ---- reading files -------------------------------------------------------------------------------------------


def read_records(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, record) pairs. Line numbers are 1-based file lines (CSV: the header is line 1)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file `{path}` does not exist. Fix: check the path (it is relative to the folder "
                        "you started from).")
    if path.is_dir():
        return _read_datasets_folder(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"`{path}` has an unknown extension `{suffix}`. Fix: use one of {', '.join(SUFFIXES)} "
                        "or a `datasets` folder.")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises many types for a broken file
            raise DataError(f"`{path}` is not a readable Parquet file ({exc}). Fix: re-export it.") from None
        return _non_empty(path, [(i + 1, r) for i, r in enumerate(rows)])
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"`{path}` is empty. Fix: point to a file with records.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"`{path}` line {line}: bytes that are not UTF-8 (at byte {exc.start}). Fix: re-save the "
                        "file as UTF-8.") from None
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        return _non_empty(path, [(i + 2, row) for i, row in enumerate(reader)])
    if suffix == ".json" and text.lstrip()[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"`{path}` line {exc.lineno}: invalid JSON ({exc.msg}). Fix the syntax there.") from None
        if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(f"`{path}` holds a JSON object; expected a list of records (or an object with "
                                "exactly one list). Fix: write a JSON list or JSON Lines.")
            data = lists[0]
        if not isinstance(data, list):
            raise DataError(f"`{path}` holds a JSON {type(data).__name__}; expected a list of records.")
        return _non_empty(path, [(i + 1, r) for i, r in enumerate(data)])
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"`{path}` line {n}: invalid JSON ({exc.msg}, column {exc.colno}). Fix that line; each "
                            "line of a .jsonl file must be one JSON object.") from None
    return _non_empty(path, records)


def _read_datasets_folder(path: Path) -> list[tuple[int, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError or its own errors
        raise DataError(f"`{path}` is a folder but not one written by `datasets.save_to_disk` ({exc}). Fix: pass a "
                        "data file or a saved dataset folder.") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"`{path}` is a DatasetDict without a `train` split (it has {list(ds)}).")
        ds = ds["train"]
    return _non_empty(path, [(i + 1, r) for i, r in enumerate(ds)])


def _non_empty(path: Path, records: list) -> list:
    if not records:
        raise DataError(f"`{path}` has no records. Fix: point to a file with records.")
    return records


# ---- shapes --------------------------------------------------------------------------------------------------


def _messages(value: Any, where: str) -> Messages:
    """A string becomes one user message; a list must be {role, content} dicts."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(f"`{where}` must be a string or a list of {{role, content}} messages")


def _text(value: Any, where: str) -> str:
    """A response: a string, or a one-message assistant list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) and "content" in value[0]:
        return str(value[0]["content"])
    raise ValueError(f"`{where}` must be a string (or a one-message list)")


HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_hh_transcript(text: str) -> Messages:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> [{user: hi}, {assistant: hello}]."""
    parts = HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not a `Human:` / `Assistant:` transcript")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def _transcript(value: Any, where: str) -> Messages:
    if isinstance(value, str):
        return split_hh_transcript(value)
    return _messages(value, where)


SFT_FORMATS = {
    "messages": ("messages",),
    "prompt-completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
}
PREF_FORMATS = {
    "explicit prompt/chosen/rejected": ("prompt", "chosen", "rejected"),
    "implicit chosen/rejected transcripts": ("chosen", "rejected"),
}
PROMPT_FORMATS = {"prompt": ("prompt",), "messages": ("messages",)}


def detect_format(record: Any, formats: dict[str, tuple[str, ...]], path: str, line: int) -> str:
    if not isinstance(record, dict):
        raise DataError(f"`{path}` line {line}: a record must be a JSON object, got {type(record).__name__}.")
    for name, keys in formats.items():
        if all(k in record for k in keys):
            return name
    wanted = " | ".join("/".join(keys) for keys in formats.values())
    raise DataError(f"`{path}` line {line}: unknown format; the record has fields {sorted(record)} but one of these "
                    f"field sets is needed: {wanted}. Fix: rename the fields.")


def _normalise(path, kind, formats, convert) -> tuple[list[dict], DataReport]:
    records = read_records(path)
    report = DataReport(str(path), kind, total=len(records))
    report.format = detect_format(records[0][1], formats, str(path), records[0][0])
    rows = []
    for line, record in records:
        if not isinstance(record, dict) or not all(k in record for k in formats[report.format]):
            report.errors.append((line, f"missing field(s) for the {report.format} format "
                                        f"({', '.join(formats[report.format])})"))
            continue
        try:
            row = convert(report.format, record)
        except ValueError as exc:
            report.errors.append((line, str(exc)))
            continue
        if isinstance(row, str):  # a reason to skip the record
            report.skipped.append((line, row))
            continue
        row["_line"] = line
        rows.append(row)
    report.kept = len(rows)
    if not rows and not report.errors:
        report.errors.append((records[0][0], "no usable records"))
    return rows, report


def _sft_row(fmt: str, r: dict) -> dict | str:
    if fmt == "messages":
        msgs = _messages(r["messages"], "messages")
        if msgs[-1]["role"] != "assistant":
            raise ValueError("`messages` must end with an assistant message")
        if not msgs[-1]["content"].strip():
            return "empty response"
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    if fmt == "prompt-completion":
        completion = _text(r["completion"], "completion")
        if not completion.strip():
            return "empty response"
        return {"prompt": _messages(r["prompt"], "prompt"), "completion": [{"role": "assistant", "content": completion}]}
    if fmt == "alpaca":
        for key in ("instruction", "input", "output"):
            if key in r and r[key] is not None and not isinstance(r[key], str):
                raise ValueError(f"`{key}` must be a string")
        if not (r.get("output") or "").strip():
            return "empty response"
        prompt = r["instruction"] + (f"\n\n{r['input']}" if (r.get("input") or "").strip() else "")
        return {"prompt": [{"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": r["output"]}]}
    if not isinstance(r["text"], str):
        raise ValueError("`text` must be a string")
    return {"text": r["text"]} if r["text"].strip() else "empty text"


def _pref_row(fmt: str, r: dict) -> dict | str:
    if fmt.startswith("explicit"):
        prompt = _messages(r["prompt"], "prompt")
        chosen, rejected = _text(r["chosen"], "chosen"), _text(r["rejected"], "rejected")
    else:
        c, j = _transcript(r["chosen"], "chosen"), _transcript(r["rejected"], "rejected")
        if c[-1]["role"] != "assistant" or j[-1]["role"] != "assistant":
            raise ValueError("`chosen` and `rejected` must end with an assistant turn")
        if c[:-1] != j[:-1]:
            return "chosen and rejected have different conversations before the last turn"
        prompt, chosen, rejected = c[:-1], c[-1]["content"], j[-1]["content"]
    if not prompt:
        raise ValueError("the prompt is empty")
    if chosen.strip() == rejected.strip():
        return "chosen == rejected"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _prompt_row(fmt: str, r: dict) -> dict | str:
    msgs = _messages(r[fmt], fmt)
    if fmt == "messages" and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]  # a conversation with its answer: keep the question
    if not msgs or not msgs[-1]["content"].strip():
        return "empty prompt"
    return {"prompt": msgs}


def load_sft(path) -> tuple[list[dict], DataReport]:
    return _normalise(path, "sft", SFT_FORMATS, _sft_row)


def load_preferences(path) -> tuple[list[dict], DataReport]:
    return _normalise(path, "preference", PREF_FORMATS, _pref_row)


def load_prompts(path) -> tuple[list[dict], DataReport]:
    return _normalise(path, "prompts", PROMPT_FORMATS, _prompt_row)


LOADERS = {"sft": load_sft, "reward": load_preferences, "ppo": load_prompts, "compare": load_prompts}


def load_checked(kind: str, path: str, log=None) -> list[dict]:
    """Load for a stage: raise on unusable records, log the format and every skip."""
    if not path:
        raise DataError("No data file was given. Fix: set the stage's data file.")
    rows, report = LOADERS[kind](path)
    report.raise_if_errors()
    for line in report.lines():
        (log.info if log else print)(line)
    return rows


# ---- tokens --------------------------------------------------------------------------------------------------


def encode_prompt(tokenizer, prompt: Messages) -> list[int]:
    """The prompt as the model sees it before it answers (chat template with the generation prompt)."""
    if tokenizer.chat_template:
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
    text = "\n\n".join(m["content"] for m in prompt) + "\n\n"
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def encode_response(tokenizer, prompt: Messages, response: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of prompt + response, the response ending with the end-of-turn marker."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    if tokenizer.chat_template:
        full = list(tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": response}],
                                                  tokenize=True, return_dict=True)["input_ids"])
        if full[: len(prompt_ids)] == prompt_ids:
            return prompt_ids, full[len(prompt_ids):]
    return prompt_ids, tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def fit_to_length(prompt_ids: list[int], response_lens: list[int], max_length: int,
                  min_prompt_tokens: int) -> int | None:
    """How many prompt tokens to keep (cut from the left) so prompt + the longest response fit; None: cannot."""
    room = max_length - max(response_lens)
    if room >= len(prompt_ids):
        return len(prompt_ids)
    if room >= max(min_prompt_tokens, 1):
        return room
    return None


def inspect_file(kind: str, path: str, tokenizer=None, max_length: int = 256, preview: int = 5) -> dict:
    """Everything the Data page shows: format, counts, every problem with its line, a preview, and token-length
    statistics against max_length (when a tokenizer is given). Never raises for a bad file: it reports."""
    try:
        rows, report = LOADERS[kind](path)
    except DataError as exc:
        return {"path": str(path), "kind": kind, "fatal": str(exc)}
    result = {"path": str(path), "kind": kind, "format": report.format, "total": report.total, "kept": report.kept,
              "errors": report.errors, "skipped": report.skipped, "notes": report.notes,
              "preview": [{k: v for k, v in r.items() if k != "_line"} for r in rows[:preview]]}
    if tokenizer is not None and rows:
        lengths = []
        for row in rows:
            if "text" in row:
                lengths.append(len(tokenizer(row["text"])["input_ids"]))
                continue
            responses = [row[k] for k in ("chosen", "rejected") if k in row]
            if "completion" in row:
                responses = [row["completion"][-1]["content"]]
            if not responses:  # prompts only
                lengths.append(len(encode_prompt(tokenizer, row["prompt"])))
                continue
            lengths.append(max(sum(map(len, encode_response(tokenizer, row["prompt"], r))) for r in responses))
        ordered = sorted(lengths)
        result["tokens"] = {"min": ordered[0], "median": ordered[len(ordered) // 2],
                            "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], "max": ordered[-1],
                            "max_length": max_length, "over_max_length": sum(n > max_length for n in lengths),
                            "lengths": lengths}
    return result
