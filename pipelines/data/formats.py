"""Load, validate and normalise datasets for every stage.

Sources: JSONL, JSON, CSV, Parquet files; a folder written by `datasets.save_to_disk`; a folder in the Hub layout
(data files under `data/`, or a dataset script-free repo checked out); or a Hub dataset id. A folder or an id may
carry a config and a split: `NAME`, `NAME:SPLIT`, `NAME:CONFIG:SPLIT` (e.g. `Anthropic/hh-rlhf:helpful-base:train`;
the split defaults to `train`). Those load through `datasets.load_dataset` into the usual Hugging Face cache; their
"line" numbers are row numbers (1-based). `column_map` (`from=to` pairs) renames a dataset's fields to the ones
below before anything else, e.g. `question=prompt, response_j=chosen, response_k=rejected`.
Every record is normalised to conversational messages, so one chat template applies everywhere:

    SFT         {"prompt": [messages...], "completion": [assistant message]}   or {"text": ...}
    preference  {"prompt": [messages...], "chosen": str, "rejected": str}
    prompts     {"prompt": [messages...]}

Problems are collected with their line numbers (the Data page lists them all); `load_*` raises a DataError that
quotes the first few when any record is unusable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipelines.config import DATA_FIELDS
from pipelines.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FILE_LIKE = {*SUFFIXES, ".txt", ".tsv", ".yaml", ".yml", ".arrow", ".gz", ".zip"}
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

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def parse_column_map(items: list[str] | None) -> dict[str, str]:
    """`["question=prompt", ...]` -> {"question": "prompt"}; a malformed item is a ConfigError naming it."""
    from pipelines.errors import ConfigError

    mapping = {}
    for item in items or []:
        source, sep, target = (part.strip() for part in item.partition("="))
        if not sep or not source or not target:
            raise ConfigError(f"`column_map` item `{item}` is not of the form from=to. Fix: write e.g. "
                              "`column_map: [question=prompt, response_j=chosen, response_k=rejected]`.")
        mapping[source] = target
    return mapping


def hub_source(value: str) -> tuple[str, str | None, str] | None:
    """(name, config, split) when `value` is a Hub id or a dataset folder, optionally with `:config:split` or
    `:split`; None for anything else (a file path)."""
    if not value or Path(value).is_file():
        return None
    name, *rest = value.split(":")
    # A mistyped file path is not an id: `data/train.jsonl`, `notes/a.txt`, `runs/x:2.jsonl` all end in a suffix.
    file_like = any(Path(part).suffix.lower() in FILE_LIKE for part in (name, *rest))
    if len(rest) > 2 or file_like or not (Path(name).is_dir() or HUB_ID.fullmatch(name)):
        return None
    if not rest:
        config, split = None, "train"
    elif len(rest) == 1:
        config, split = None, rest[0]
    else:
        config, split = rest[0] or None, rest[1]
    return name, config, split or "train"


def read_records(path: str | Path, columns: dict[str, str] | None = None) -> list[tuple[int, Any]]:
    """(line number, record) pairs. Line numbers are 1-based file lines (CSV: the header is line 1); for a dataset
    (a folder or a Hub id) they are row numbers. `columns` renames fields first (see `column_map`)."""
    records = _read_source(path)
    if not columns:
        return records
    first = records[0][1]
    missing = [c for c in columns if isinstance(first, dict) and c not in first]
    if missing:
        fields = sorted(first) if isinstance(first, dict) else []
        raise DataError(f"`{path}` has no field `{missing[0]}`, which `column_map` renames (its fields: "
                        f"{fields}). Fix: correct `column_map`.")
    return [(line, {columns.get(k, k): v for k, v in r.items()} if isinstance(r, dict) else r)
            for line, r in records]


def _read_source(path: str | Path) -> list[tuple[int, Any]]:
    if source := hub_source(str(path)):
        name, _, split = source
        if Path(name).is_dir() and _saved_to_disk(Path(name)):  # `save_to_disk` folder, perhaps with `:split`
            return _read_datasets_folder(Path(name), split)
        return _read_hub(*source)
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data file `{path}` does not exist. Fix: check the path (it is relative to the folder "
                        "you started from), or give a Hub dataset as `owner/name[:config][:split]`.")
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
        return _non_empty(path, _csv_rows(path, text))
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
    for n, line in enumerate(text.split("\n"), start=1):  # JSON Lines end at "\n" only: a text may hold U+2028
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"`{path}` line {n}: invalid JSON ({exc.msg}, column {exc.colno}). Fix that line; each "
                            "line of a .jsonl file must be one JSON object.") from None
    return _non_empty(path, records)


def _saved_to_disk(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _read_hub(name: str, config: str | None, split: str) -> list[tuple[int, Any]]:
    """A Hub dataset (or a local folder in its layout) through `datasets.load_dataset`, cached as usual."""
    import datasets

    with _hub_errors(name, config, split):
        ds = _config_or_data_dir(datasets.load_dataset, name, config, split=split)
    return _non_empty(Path(name), [(i + 1, r) for i, r in enumerate(ds.to_list())])


def check_hub_sources(config) -> None:
    """Before a run starts: every data field that names a Hub dataset can be reached (its metadata, from the Hub
    or the local cache), so an unreachable id is bad input (exit 2, no run folder), not a failed run."""
    import datasets

    for name in DATA_FIELDS:
        source = hub_source(getattr(config, name, "") or "")
        if source and not Path(source[0]).is_dir():
            with _hub_errors(*source, field=name):
                _config_or_data_dir(datasets.load_dataset_builder, source[0], source[1])


def _config_or_data_dir(load, name: str, config: str | None, **kwargs):
    """`load(name, config)`, or `load(name, data_dir=config)` when the dataset has no config by that name: in
    `Anthropic/hh-rlhf:helpful-base`, `helpful-base` is a data folder."""
    try:
        return load(name, config, **kwargs)
    except ValueError as exc:
        if not config or "config" not in str(exc).lower():
            raise
        return load(name, data_dir=config, **kwargs)


@contextlib.contextmanager
def _hub_errors(name: str, config: str | None, split: str, field: str = ""):
    """What went wrong loading a dataset by id or folder, as a DataError that says what to do."""
    where = f"`{name}`" + (f" (config `{config}`)" if config else "") + f", split `{split}`"
    prefix = f"`{field}`: " if field else ""
    try:
        yield
    except ValueError as exc:  # an unknown split or config: the message lists the ones there are
        raise DataError(f"{prefix}Dataset {where}: {str(exc).splitlines()[0]} Fix: pick one of those, written as "
                        "`name:config:split` or `name:split`.") from None
    except Exception as exc:  # offline, unknown id, no access: datasets and huggingface_hub raise many types
        offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE",
                                                                                       "HF_DATASETS_OFFLINE"))
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if Path(name).is_dir():
            raise DataError(f"{prefix}The folder {where} could not be read as a dataset ({reason}). Fix: put its "
                            "data files (JSONL, CSV, Parquet) under `data/`, or point to one file.") from None
        raise DataError(
            f"{prefix}The Hub dataset {where} could not be loaded ({reason}). " +
            ("This machine is offline (HF_HUB_OFFLINE is set). " if offline else "") +
            "Fix: with internet, check the id (and `huggingface-cli login` for gated data); offline, load it once "
            "where there is internet (it stays in the Hugging Face cache) and set HF_HUB_OFFLINE=1, or point to a "
            "local copy: a JSONL file, or a folder with the data files under `data/`.") from None


def _read_datasets_folder(path: Path, split: str = "train") -> list[tuple[int, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError or its own errors
        raise DataError(f"`{path}` is a folder but not one written by `datasets.save_to_disk` ({exc}). Fix: pass a "
                        "data file or a saved dataset folder.") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"`{path}` is a DatasetDict without a `{split}` split (it has {list(ds)}). Fix: name "
                            f"one as `{path}:SPLIT`.")
        ds = ds[split]
    return _non_empty(path, [(i + 1, r) for i, r in enumerate(ds)])


def _csv_rows(path, text: str) -> list[tuple[int, dict]]:
    """A CSV file's rows with their line numbers; a row the header cannot name, or one the csv module cannot read, is
    refused with its line."""
    rows = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if None in row:  # more fields than the header has names
                raise DataError(f"`{path}` line {reader.line_num}: {len(row[None]) + len(reader.fieldnames)} fields "
                                f"but the header names {len(reader.fieldnames)}. Fix: quote the fields that hold "
                                "commas, or add the missing column names to the first line.")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"`{path}` line {reader.line_num + 1}: not readable as CSV ({exc}). Fix: check the quoting "
                        "there, or save the data as JSON Lines.") from None
    return rows


def _non_empty(path: Path, records: list) -> list:
    if not records:
        raise DataError(f"`{path}` has no records. Fix: point to a file with records.")
    return records


def labeler_instruction(path: str | Path) -> str:
    """What the labelers of a preference dataset were asked, when the data says: a `labeler_instruction` field of
    its first record, or the quoted lines under a heading that mentions the labeler in a README.md beside the file
    (inside a dataset folder). Empty when neither says."""
    try:
        first = read_records(path)[0][1]
    except DataError:
        return ""
    if isinstance(first, dict) and isinstance(first.get("labeler_instruction"), str):
        return first["labeler_instruction"].strip()
    folder = Path(str(path).split(":")[0])
    readme = (folder if folder.is_dir() else folder.parent) / "README.md"
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.startswith("#") and "labeler" in line.lower():
            quote = []
            for text in lines[i + 1:]:
                if text.startswith("#"):
                    break
                if text.startswith(">"):
                    quote.append(text.lstrip("> ").strip())
                elif quote:
                    break
            if quote:  # a heading that only mentions labelers (a title, say) is not the one
                return " ".join(quote)
    return ""


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


def _normalise(path, kind, formats, convert, columns=None) -> tuple[list[dict], DataReport]:
    records = read_records(path, columns)
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
    # An optional reference answer, a text or a number: Compare grades responses with it (pipelines/data/answers.py) and
    # says how many prompts carry one. Other shapes (a list of aliases, a worked solution as a dict) are not graded.
    answer = r.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, str) and answer.strip():
        return {"prompt": msgs, "answer": answer.strip()}
    return {"prompt": msgs}


def load_sft(path, columns: dict[str, str] | None = None) -> tuple[list[dict], DataReport]:
    return _normalise(path, "examples", SFT_FORMATS, _sft_row, columns)


def load_preferences(path, columns: dict[str, str] | None = None) -> tuple[list[dict], DataReport]:
    return _normalise(path, "pairs", PREF_FORMATS, _pref_row, columns)


def load_prompts(path, columns: dict[str, str] | None = None) -> tuple[list[dict], DataReport]:
    return _normalise(path, "prompts", PROMPT_FORMATS, _prompt_row, columns)


@dataclass(frozen=True)
class DataKind:
    """What a stage's data files hold (a stage record's `data`): how they are read, and how the Data page offers
    them."""

    load: Callable[..., tuple[list[dict], DataReport]]
    description: str
    sample: str  # the sample file the Data page opens on
    too_long: str  # what becomes of a record longer than max_length


DATA_KINDS = {
    "examples": DataKind(load_sft, "SFT examples (messages, prompt/completion, Alpaca, text)",
                         "sample_data/sft_train.jsonl", "truncated"),
    "pairs": DataKind(load_preferences, "Preference pairs (prompt/chosen/rejected, or chosen/rejected transcripts)",
                      "sample_data/prefs_train.jsonl", "dropped or have their prompt cut"),
    "prompts": DataKind(load_prompts, "Prompts (prompt, or messages)", "sample_data/prompts_train.jsonl",
                        "truncated"),
}


def load_checked(kind: str, path: str, log=None, column_map: list[str] | None = None) -> list[dict]:
    """Load a stage's data (`kind`: one of DATA_KINDS): raise on unusable records, log the format and every skip.
    `column_map`: the stage's `from=to` renames."""
    if not path:
        raise DataError("No data file was given. Fix: set the stage's data file.")
    rows, report = DATA_KINDS[kind].load(path, parse_column_map(column_map))
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


class BatchEncoder:
    """`encode_prompt` / `encode_response` for thousands of records at once: the same ids (the tests hold them equal)
    in seconds rather than minutes. Record by record, rendering the chat template (Jinja) and tokenizing one text at
    a time cost about a millisecond per pair; here the template is rendered once per conversation shape (its roles in
    order) with placeholders and filled in by joining strings, and the texts go through the fast tokenizer's batch
    call. A shape's plan is checked against the real rendering of its first record and of every 500th, and a shape
    that fails is rendered for real, all of its records; records whose contents a template might treat specially
    (leading or trailing whitespace, tags such as `</think>`) are always rendered for real.

    `progress(done, total)` is called as the texts are tokenized."""

    CHUNK = 4096
    CHECK_EVERY = 500
    # A placeholder for message i, wrapped in whitespace and letters: a template that trims, cases or escapes
    # contents breaks the wrapper, the placeholder is then not found, and that shape is rendered for real.
    MARK = re.compile(" \n\x00a(\\d+)Z\x00\n ")

    def __init__(self, tokenizer, progress=None):
        self.tokenizer, self.progress = tokenizer, progress
        self.templated = bool(tokenizer.chat_template)
        self.plans: dict[tuple, tuple | None] = {}  # shape -> (text pieces, content order); None: render for real
        self.seams: bool | None = None  # see _seams_hold

    # ---- texts ----

    def _exact(self, messages: Messages, generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)

    @staticmethod
    def _fill(plan, messages: Messages) -> str:
        pieces, order = plan
        out = [pieces[0]]
        for index, piece in zip(order, pieces[1:]):
            out += [messages[index]["content"], piece]
        return "".join(out)

    def _plan(self, messages: Messages, generation: bool):
        marked = [{"role": m["role"], "content": f" \n\x00a{i}Z\x00\n "} for i, m in enumerate(messages)]
        pieces = self.MARK.split(self._exact(marked, generation))
        order = [int(i) for i in pieces[1::2]]
        return (pieces[0::2], order) if len(set(order)) == len(messages) else None

    @staticmethod
    def _plain(messages: Messages) -> bool:
        return all(m["content"] == m["content"].strip() and "<" not in m["content"] for m in messages)

    def render_many(self, conversations: list[Messages], generation: bool) -> list[str]:
        """The chat template's text of each conversation (with the generation prompt or not)."""
        texts, shapes, checks = [], [], []
        for i, messages in enumerate(conversations):
            shape = (tuple(m["role"] for m in messages), generation)
            if shape not in self.plans:
                self.plans[shape] = self._plan(messages, generation)
                checks.append(i)
            plan = self.plans[shape]
            texts.append(self._fill(plan, messages) if plan and self._plain(messages) else None)
            shapes.append(shape)
        checks += range(0, len(conversations), self.CHECK_EVERY)
        failed = {shapes[i] for i in checks
                  if texts[i] is not None and texts[i] != self._exact(conversations[i], generation)}
        for shape in failed:
            self.plans[shape] = None
        return [self._exact(m, generation) if text is None or shape in failed else text
                for m, text, shape in zip(conversations, texts, shapes)]

    def prompt_texts(self, prompts: list[Messages]) -> list[str]:
        if self.templated:
            return self.render_many(prompts, True)
        return ["\n\n".join(m["content"] for m in prompt) + "\n\n" for prompt in prompts]

    # ---- tokens ----

    def tokenize(self, texts: list[str], special: bool = False) -> list[list[int]]:
        """The ids of each text, as `tokenizer(text, add_special_tokens=special)["input_ids"]` gives them. A fast
        tokenizer's Rust backend is called directly: the transformers wrapper's per-text conversion (attention
        masks, offsets) costs as much as the tokenization itself."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and (backend.truncation or backend.padding):
            backend = None  # settings saved with the tokenizer that its __call__ resets: go through __call__
        ids: list[list[int]] = []
        for start in range(0, len(texts), self.CHUNK):
            chunk = texts[start:start + self.CHUNK]
            if backend is not None:
                ids += [e.ids for e in backend.encode_batch(chunk, add_special_tokens=special)]
            else:
                ids += self.tokenizer(chunk, add_special_tokens=special)["input_ids"]
            if self.progress:
                self.progress(len(ids), len(texts))
        return ids

    def prompts(self, prompts: list[Messages]) -> list[list[int]]:
        """encode_prompt of each."""
        return self.tokenize(self.prompt_texts(prompts), special=not self.templated)

    def responses(self, prompts: list[Messages],
                  *answers: list[str]) -> tuple[list[list[int]], list[list[list[int]]]]:
        """(prompt ids of each record, and for each list of answers the ids of each answer): what encode_response
        returns, for every record and answer at once.

        The answer's text after its prompt (`answer<|im_end|>\\n`, say) is tokenized alone rather than the whole
        conversation again: half the tokens. That gives the same ids where the tokenizer cannot merge across the
        seam, which is checked on this data's first records (a tokenizer that can, e.g. SentencePiece's leading
        space, takes the whole-conversation path), and not trusted for answers that start with whitespace."""
        texts = self.prompt_texts(prompts)
        prompt_ids = self.tokenize(texts, special=not self.templated)
        per_list = []
        for responses in answers:
            ids: list[list[int] | None] = [None] * len(responses)
            if self.templated:
                conversations = [p + [{"role": "assistant", "content": r}] for p, r in zip(prompts, responses)]
                full = self.render_many(conversations, False)
                tails = [f[len(t):] if f.startswith(t) and r[:1].strip() else None
                         for t, f, r in zip(texts, full, responses)]
                if self._seams_hold(prompt_ids, full, tails):
                    cut = [i for i, tail in enumerate(tails) if tail is not None]
                    for i, tail_ids in zip(cut, self.tokenize([tails[i] for i in cut])):
                        ids[i] = tail_ids
                whole = [i for i, x in enumerate(ids) if x is None]
                for i, f in zip(whole, self.tokenize([full[i] for i in whole])):
                    q = prompt_ids[i]
                    ids[i] = f[len(q):] if f[:len(q)] == q else None
            redo = [i for i, x in enumerate(ids) if x is None]  # no template, or the prompt's tokens merge
            for i, plain in zip(redo, self.tokenize([responses[i] for i in redo])):
                ids[i] = plain + [self.tokenizer.eos_token_id]
            per_list.append(ids)
        return prompt_ids, per_list

    def _seams_hold(self, prompt_ids, full, tails) -> bool:
        """Whether prompt ids + the tail's own ids are the whole conversation's ids: checked on this call's first
        64 records with a tail and on every 500th, once per encoder and again whenever a call disagrees. Until some
        record has been checked, not trusted."""
        with_tail = [i for i, tail in enumerate(tails) if tail is not None]
        checked = with_tail[:64] + with_tail[64::self.CHECK_EVERY]
        if not checked or self.seams is False:
            return bool(self.seams) and not checked
        whole = self.tokenize([full[i] for i in checked])
        parts = self.tokenize([tails[i] for i in checked])
        self.seams = all(w == prompt_ids[i] + t for i, w, t in zip(checked, whole, parts))
        return self.seams


def logged_progress(log, what: str, every: int = 5):
    """A `progress(done, total)` for BatchEncoder that logs large jobs every `every` chunks (and at the end), so a
    terminal user sees a long tokenization move."""
    def progress(done: int, total: int) -> None:
        if total >= 20_000 and (done == total or done % (BatchEncoder.CHUNK * every) < BatchEncoder.CHUNK):
            log.info("Tokenizing %s: %d of %d texts (%d%%)", what, done, total, 100 * done // total)
    return progress


def fit_to_length(prompt_ids: list[int], response_lens: list[int], max_length: int,
                  min_prompt_tokens: int) -> int | None:
    """How many prompt tokens to keep (cut from the left) so prompt + the longest response fit; None: cannot."""
    room = max_length - max(response_lens)
    if room >= len(prompt_ids):
        return len(prompt_ids)
    if room >= max(min_prompt_tokens, 1):
        return room
    return None


@dataclass
class TokenizedPairs:
    """Preference pairs as the reward and DPO stages train on them: each pair fitted to `max_length` by cutting its
    prompt from the left (both answers stay whole), what had to be cut and what could not fit counted by line."""

    rows: list[dict] = field(default_factory=list)  # chosen_ids, rejected_ids (prompt + answer), prompt_len, line,
    # chosen_len, rejected_len
    truncated_lines: list[int] = field(default_factory=list)
    dropped_lines: list[int] = field(default_factory=list)

    def describe(self, name: str, max_length: int) -> str:
        return (f"{name}: {len(self.rows)} pairs kept; {len(self.truncated_lines)} had their prompt cut from the left "
                f"to fit max_length={max_length}; {len(self.dropped_lines)} dropped because the responses alone do "
                "not fit" + (f" (lines {', '.join(map(str, self.dropped_lines[:10]))}"
                             f"{', ...' if len(self.dropped_lines) > 10 else ''})" if self.dropped_lines else ""))


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int, min_prompt_tokens: int,
                   progress=None) -> TokenizedPairs:
    """Every pair as it is trained on (the ids of encode_response, computed in batches: BatchEncoder)."""
    out = TokenizedPairs()
    all_prompt_ids, (all_chosen, all_rejected) = BatchEncoder(tokenizer, progress).responses(
        [p["prompt"] for p in pairs], [p["chosen"] for p in pairs], [p["rejected"] for p in pairs])
    for pair, prompt_ids, chosen_ids, rejected_ids in zip(pairs, all_prompt_ids, all_chosen, all_rejected):
        keep = fit_to_length(prompt_ids, [len(chosen_ids), len(rejected_ids)], max_length, min_prompt_tokens)
        if keep is None:
            out.dropped_lines.append(pair.get("_line", 0))
            continue
        if keep < len(prompt_ids):
            out.truncated_lines.append(pair.get("_line", 0))
            prompt_ids = prompt_ids[len(prompt_ids) - keep:]
        out.rows.append({"chosen_ids": prompt_ids + chosen_ids, "rejected_ids": prompt_ids + rejected_ids,
                         "prompt_len": len(prompt_ids), "line": pair.get("_line", 0), "chosen_len": len(chosen_ids),
                         "rejected_len": len(rejected_ids)})
    return out


def fit_preference_files(tokenizer, train_rows: list[dict], eval_rows: list[dict], cfg,
                         log) -> tuple[TokenizedPairs, TokenizedPairs, dict]:
    """A preference stage's training and held-out pairs fitted to `cfg.max_length` (tokenize_pairs), each file's
    accounting logged, refused when nothing fits; with the counts the stage's metrics and summary carry."""
    train = tokenize_pairs(tokenizer, train_rows, cfg.max_length, cfg.min_prompt_tokens,
                           logged_progress(log, "training pairs"))
    held_out = tokenize_pairs(tokenizer, eval_rows, cfg.max_length, cfg.min_prompt_tokens,
                              logged_progress(log, "held-out pairs"))
    log.info(train.describe("training pairs", cfg.max_length))
    if eval_rows:
        log.info(held_out.describe("held-out pairs", cfg.max_length))
    if not train.rows:
        raise DataError(f"No training pair of `{cfg.train_file}` fits `max_length={cfg.max_length}`, even with the "
                        "prompt cut. Fix: raise `max_length`.")
    if eval_rows and not held_out.rows:
        raise DataError("No held-out pair fits `max_length`. Fix: raise `max_length` or check `eval_file`.")
    counts = {"train_pairs": len(train.rows),
              "truncated_pairs": len(train.truncated_lines) + len(held_out.truncated_lines),
              "dropped_pairs": len(train.dropped_lines) + len(held_out.dropped_lines)}
    return train, held_out, counts


def token_lengths(tokenizer, rows: list[dict], progress=None) -> list[int]:
    """Tokens of each record as the trainer sees it: prompt + the longest response, chat template applied (a prompt
    alone for prompt files, the text for plain-text SFT). Batched (BatchEncoder), a slice of records at a time, so
    memory holds one slice's texts and ids however large the file; `progress(records done, records)`."""
    encoder = BatchEncoder(tokenizer)
    lengths: list[int] = []
    step = 2 * BatchEncoder.CHUNK
    for start in range(0, len(rows), step):
        part = rows[start:start + step]
        if "text" in part[0]:
            lengths += [len(ids) for ids in encoder.tokenize([r["text"] for r in part], special=True)]
        else:
            prompts = [r["prompt"] for r in part]
            if "completion" in part[0]:
                answers = [[r["completion"][-1]["content"] for r in part]]
            else:
                answers = [[r[k] for r in part] for k in ("chosen", "rejected") if k in part[0]]
            if not answers:  # prompts only
                lengths += [len(ids) for ids in encoder.prompts(prompts)]
            else:
                prompt_ids, per_list = encoder.responses(prompts, *answers)
                lengths += [len(q) + max(len(ids[i]) for ids in per_list) for i, q in enumerate(prompt_ids)]
        if progress:
            progress(len(lengths), len(rows))
    return lengths


def inspect_file(kind: str, path: str, tokenizer=None, max_length: int = 256, preview: int = 5,
                 column_map: list[str] | None = None, progress=None) -> dict:
    """Everything the Data page shows: format, counts, every problem with its line, a preview, and token-length
    statistics against max_length (when a tokenizer is given). Never raises for a bad file: it reports."""
    try:
        rows, report = DATA_KINDS[kind].load(path, parse_column_map(column_map))
    except DataError as exc:
        return {"path": str(path), "kind": kind, "fatal": str(exc)}
    result = {"path": str(path), "kind": kind, "format": report.format, "total": report.total, "kept": report.kept,
              "errors": report.errors, "skipped": report.skipped, "notes": report.notes,
              "preview": [{k: v for k, v in r.items() if k != "_line"} for r in rows[:preview]]}
    if tokenizer is not None and rows:
        lengths = token_lengths(tokenizer, rows, progress)
        ordered = sorted(lengths)
        result["tokens"] = {"min": ordered[0], "median": ordered[len(ordered) // 2],
                            "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], "max": ordered[-1],
                            "max_length": max_length, "over_max_length": sum(n > max_length for n in lengths),
                            "lengths": lengths}
    return result
