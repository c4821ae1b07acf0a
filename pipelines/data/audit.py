"""An audit of preference pairs before anything trains on them (`python -m pipelines audit`, and the Data page).

A judge learns whatever its pairs teach, flaws included: pairs repeated many times weigh more, a pair and its reverse
teach nothing but noise, and when the chosen answer is nearly always the longer one, a judge can score well by
counting words. The audit finds these in seconds, with the lines to look at.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from pipelines.data.formats import read_records

# Fields that say who labeled a pair or where it came from, counted when records carry them.
GROUPING_FIELDS = ("labeler", "annotator", "worker_id", "source", "model_a", "model_b")
EXAMPLES = 5  # line numbers listed per finding
LENGTH_WARNING = 0.25  # a chosen-longer share further than this from one half gets a plain warning


def normalised(text) -> str:
    """Text compared loosely: case, punctuation and spacing do not matter (near duplicates)."""
    if isinstance(text, list):  # messages
        text = "\n".join(str(m.get("content", "")) for m in text if isinstance(m, dict))
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def exact(text) -> str:
    if isinstance(text, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in text if isinstance(m, dict))
    return str(text)


def words(text: str) -> int:
    return len(text.split())


def audit_pairs(rows: list[dict], skipped: list[tuple[int, str]] = (), eval_rows: list[dict] | None = None,
                records: list[tuple[int, object]] | None = None) -> dict:
    """The audit of loaded pairs (`rows`, each with `_line`); `skipped`: the loader's (line, reason) for the records
    it left out; `eval_rows`: a held-out file's pairs, for the prompts it shares with these; `records`: the raw
    records, for per-labeler or per-source counts."""
    first_exact: dict[tuple, int] = {}
    first_near: dict[tuple, int] = {}
    exact_dupes, near_dupes = [], []
    by_answers: dict[tuple, list[tuple[str, str, int]]] = defaultdict(list)
    longer = shorter = 0
    for row in rows:
        line = row.get("_line", 0)
        key = (exact(row["prompt"]), row["chosen"], row["rejected"])
        near = (normalised(row["prompt"]), normalised(row["chosen"]), normalised(row["rejected"]))
        if key in first_exact:
            exact_dupes.append((line, first_exact[key]))
        else:
            first_exact[key] = line
            if near in first_near:
                near_dupes.append((line, first_near[near]))
            else:
                first_near[near] = line
        by_answers[(near[0], *sorted(near[1:]))].append((near[1], near[2], line))
        chosen, rejected = words(row["chosen"]), words(row["rejected"])
        longer += chosen > rejected
        shorter += chosen < rejected
    contradictions = []
    for pairs in by_answers.values():
        winners = {chosen for chosen, _, _ in pairs}
        if len(winners) > 1:  # the same two answers, each preferred somewhere
            contradictions.append(sorted(line for _, _, line in pairs))
    identical = [line for line, reason in skipped if reason == "chosen == rejected"]
    decided = longer + shorter
    share = longer / decided if decided else None
    report = {
        "pairs": len(rows),
        "duplicates": len(exact_dupes) + len(near_dupes),
        "exact_duplicates": len(exact_dupes),
        "near_duplicates": len(near_dupes),
        "duplicate_lines": [{"line": line, "same_as": first} for line, first in (exact_dupes + near_dupes)[:EXAMPLES]],
        "identical": len(identical),
        "identical_lines": identical[:EXAMPLES],
        "contradictions": len(contradictions),
        "contradiction_lines": contradictions[:EXAMPLES],
        "chosen_longer_share": round(share, 4) if share is not None else None,
        "same_length_pairs": len(rows) - decided,
        "warnings": [],
    }
    if share is not None and abs(share - 0.5) > LENGTH_WARNING:
        report["warnings"].append(
            f"The chosen answer is the longer one in {share:.0%} of the pairs that differ in length. A judge trained "
            "on these can score well by preferring " + ("long" if share > 0.5 else "short") + " answers; check "
            "whether the labelers meant that.")
    if report["duplicates"]:
        report["warnings"].append(f"{report['duplicates']} pair(s) repeat an earlier one (exactly or up to case and "
                                  "punctuation): repeated pairs weigh more in training.")
    if contradictions:
        report["warnings"].append(f"{len(contradictions)} pair(s) of answers are preferred both ways: label noise, or "
                                  "labelers who disagree.")
    if eval_rows is not None:
        train_prompts = {normalised(r["prompt"]) for r in rows}
        shared = [r.get("_line", 0) for r in eval_rows if normalised(r["prompt"]) in train_prompts]
        report["eval_overlap"] = len(shared)
        report["eval_overlap_lines"] = shared[:EXAMPLES]
        report["eval_pairs"] = len(eval_rows)
        if shared:
            report["warnings"].append(f"{len(shared)} of the {len(eval_rows)} held-out pairs ask a prompt the training "
                                      "pairs also ask: the held-out accuracy will flatter the judge.")
    else:
        report["eval_overlap"] = None
    if records:
        groups = {}
        for field in GROUPING_FIELDS:
            counts = Counter(str(r[field]) for _, r in records if isinstance(r, dict) and r.get(field) is not None)
            if counts:
                groups[field] = dict(counts.most_common(20))
        report["groups"] = groups
    return report


def audit_file(path: str, eval_path: str | None = None, columns: dict[str, str] | None = None) -> dict:
    """`audit_pairs` of a pairs file (and its held-out file), read as the reward stage reads them."""
    from pipelines.data.formats import load_preferences

    rows, loaded = load_preferences(path, columns)
    loaded.raise_if_errors()
    eval_rows = None
    if eval_path:
        eval_rows, eval_loaded = load_preferences(eval_path, columns)
        eval_loaded.raise_if_errors()
    return {"file": str(path), "format": loaded.format,
            **audit_pairs(rows, loaded.skipped, eval_rows, read_records(path, columns))}
