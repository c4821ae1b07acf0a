"""Results in words people read correctly: a run's summary as labelled figures, and a comparison's two headline
numbers (what the judge prefers; whether the answers are right). Plain functions of the JSON files, so the stage
pages, Runs, Compare and Home say the same thing the same way (tests/test_results.py)."""

from __future__ import annotations

from typing import Callable

from pipelines.stages import STAGES, generating_stages, model_name


def summary_figures(stage: str, summary: dict) -> list[tuple[str, str]]:
    """(label, value) pairs for the figures a person looks for in a finished run of `stage`: the stage's own
    (its record's `figures`), a comparison's headline, then what any run may carry."""
    figures = list(STAGES[stage].figures(summary)) if stage in STAGES else []
    figures += [(label, value) for label, value, _ in headline(summary)]
    if summary.get("truncated_pairs") or summary.get("dropped_pairs"):
        # short labels and values: a figure's tile cuts what does not fit its width (the modules' names are in the
        # summary and the log)
        figures.append(("Pairs cut / dropped",
                        f"{summary.get('truncated_pairs', 0)} / {summary.get('dropped_pairs', 0)}"))
    if summary.get("lora_modules"):
        figures.append((f"LoRA, {summary.get('lora_layers', '?')} layers",
                        f"{summary.get('trainable_parameters', 0) / 1e6:.2f}M params"))
    for key, label in (("steps", "Steps"), ("world_size", "Processes")):
        if isinstance(summary.get(key), int) and (key != "world_size" or summary[key] > 1):
            figures.append((label, str(summary[key])))
    return figures


def main_pair(summary: dict) -> tuple[str, str] | None:
    """The comparison people came for: an aligned model against the model it started from (the SFT model, else the
    base), else the SFT model against the base."""
    aligned = [s.id for s in STAGES.values() if s.aligns]
    starts = [s.id for s in generating_stages() if not s.aligns]  # the SFT model
    pairs = [(a, b) for b in (*starts, "base") for a in aligned] + [(a, "base") for a in starts]
    return next((pair for pair in pairs if f"win_rate_{pair[0]}_vs_{pair[1]}" in summary), None)


def win_rate_matrix(summary: dict) -> list[dict]:
    """Every pair's win rate as a table: one row per model, the share of prompts where the judge preferred it over
    the model of each column (a pair stored one way round is read the other way as 1 - rate)."""
    models = summary.get("models", [])
    rates = {}
    for key, value in summary.items():
        if key.startswith("win_rate_"):
            a, b = key.removeprefix("win_rate_").split("_vs_")
            rates[a, b], rates[b, a] = value, 1 - value
    return [{"model": model_name(a), **{f"vs {model_name(b)}": f"{rates[a, b]:.0%}" if (a, b) in rates else "-"
                                        for b in models}} for a in models]


def headline(summary: dict) -> list[tuple[str, str, str]]:
    """The comparison's headline as (label, value, help): the judge's verdict, and beside it, where the prompts
    carry reference answers, how often each side was right. Two numbers, because the judge scores only what its
    labelers were asked about."""
    pair = main_pair(summary)
    if pair is None:
        return []
    a, b = pair
    judged = summary.get("labeler_instruction") or "what this judge prefers"
    out = [(f"Judge prefers {model_name(a)} over {model_name(b)}", f"{summary[f'win_rate_{a}_vs_{b}']:.0%}",
            f"Share of the {summary['prompts']} prompts where the judge scored {model_name(a)}'s answer higher "
            f"(ties count half). The judge measures: {judged}")]
    rates = summary.get("correct_rate") or {}
    if a in rates and b in rates:
        out.append((f"Correct answers, {model_name(b)} → {model_name(a)}", f"{rates[b]:.0%} → {rates[a]:.0%}",
                    f"Of the {summary['graded_prompts']} prompts with a reference answer: the answer appears in the "
                    "response (case and numbers normalised). The judge never saw these answers."))
    return out


def fooled_rows(rows: list[dict], models: list[str]) -> list[dict]:
    """Prompts where the judge's favourite answer is wrong (graded prompts only)."""
    return [r for r in rows if r.get("answer") and (r.get(r["winner"]) or {}).get("correct") is False
            and r["winner"] in models]


def example_rows(rows: list[dict], models: list[str], pair: tuple[str, str] | None, k: int) -> list[dict]:
    """A few telling prompts for the Home card: first ones where the aligned model won on the judge and is right,
    then ones where it won while wrong (the lesson), then any others; in file order within each kind."""
    if pair is None or not all(m in models for m in pair):
        return []
    a, b = pair

    def kind(row):
        won = row[a]["score"] > row[b]["score"]
        return (0 if won and row[a].get("correct") else 1 if won and row[a].get("correct") is False else 2)

    ranked = sorted(rows, key=kind)
    picked = [r for r in ranked if kind(r) == 0][:1] + [r for r in ranked if kind(r) == 1][:1]
    return (picked + [r for r in ranked if r not in picked])[:k]


def instruction_contrast(comparisons: list[tuple[str, dict]],
                         rows_of: Callable[[str], list[dict]]) -> list[tuple[str, dict, dict]] | None:
    """The newest two comparisons of an aligned model whose judges were trained on different labeler instructions
    and that started from the same SFT model: [(run id, summary, {prompt: row})], or None. `comparisons`: (run id,
    compare_summary), newest first; `rows_of(run id)`: its compare.jsonl rows, read for the two picked only."""
    picked: list[tuple[str, dict, dict]] = []
    for run_id, summary in comparisons:
        instruction = summary.get("labeler_instruction")
        if "ppo" not in summary.get("models", []) or not instruction:
            continue
        if any(s["labeler_instruction"] == instruction for _, s, _ in picked):
            continue
        if "sft" not in summary["models"] or not summary.get("sft_run"):
            continue  # the lesson needs the SFT model both started from
        if picked and summary["sft_run"] != picked[0][1]["sft_run"]:
            continue  # a different SFT model would make it a different lesson
        picked.append((run_id, summary, {r["prompt"]: r for r in rows_of(run_id)}))
        if len(picked) == 2:
            return picked
    return None
