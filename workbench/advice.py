"""Which approach fits? The guide's criteria as questions, the user's own data counted against the guide's sizes,
and what each path cost on this machine in the user's own runs. Plain functions of answers and run files, so the
page and tests/test_advice.py read the same rules."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.demo import path_costs, presets

# The sizes the guide gives for a full pipeline, by the kind of data counted: (low, high, what is counted).
GUIDE_SIZES = {"examples": (1_000, 10_000, "SFT examples"), "pairs": (10_000, 100_000, "comparisons"),
               "prompts": (1_000, 10_000, "prompts")}

PATHS = presets()["methods"].paths  # each approach's stages, as the methods demo runs and measures them
APPROACHES = {
    "rlhf": "Full RLHF (SFT → judge → PPO)",
    "dpo": "DPO (SFT → DPO)",
    "grpo": "GRPO with a verifiable reward (SFT → GRPO)",
    "sft": "SFT alone",
}


@dataclass
class Answers:
    """What the page asks. `checkable`: yes / partly / no; `subjective`: objective / somewhat / very;
    `lifetime`: prototype / long-lived; `compute`: cpu / one-gpu / several-gpus; `pairs`: comparisons at hand."""

    checkable: str
    subjective: str
    pairs: int
    lifetime: str
    compute: str


def recommend(a: Answers) -> tuple[str, list[str]]:
    """(approach key, the reasons in plain words)."""
    low_pairs = GUIDE_SIZES["pairs"][0]
    if a.checkable == "yes":
        return "grpo", ["Answers can be checked by a rule, so the reward is the rule itself: nothing to train, and "
                        "nothing that tone or length can talk round.",
                        "GRPO needs no judge and no value model: one model and its group of samples."]
    if a.pairs == 0:
        return "sft", ["Without comparisons there is nothing to learn a preference from: write good examples and "
                       "fine-tune on them (SFT), then collect comparisons (the Preference studio) if it falls short."]
    reasons = []
    full = a.subjective == "very" and a.pairs >= low_pairs and a.lifetime == "long-lived" and a.compute != "cpu"
    if full:
        reasons.append("Quality is subjective, you have the comparisons a judge needs "
                       f"({a.pairs:,} of the guide's {low_pairs:,}+) and the model will live long: a separate judge "
                       "can then score answers nobody labelled, and PPO can keep improving against it.")
        if a.checkable == "partly":
            reasons.append("Part of the quality is checkable: check those answers with a rule as well (Compare "
                           "grades answers that carry a reference), since a judge of style will not.")
        return "rlhf", reasons
    if a.pairs < low_pairs:
        reasons.append(f"{a.pairs:,} comparisons is below the {low_pairs:,} the guide gives for a judge you can "
                       "trust; DPO learns from the pairs directly, without a judge in between.")
    if a.lifetime == "prototype":
        reasons.append("For a prototype, one stage after SFT is quicker to run and to debug than two.")
    if a.compute == "cpu":
        reasons.append("On a CPU, DPO costs one training run where full RLHF costs two (judge and PPO), and PPO "
                       "samples on every step.")
    if a.subjective != "very":
        reasons.append("Quality is not very subjective: the pairs themselves show what is wanted.")
    return "dpo", reasons or ["DPO gets most of the way with one simple stage; move to full RLHF once a judge "
                              "would pay for itself."]


def size_verdict(kind: str, count: int) -> str:
    low, high, noun = GUIDE_SIZES[kind]
    if count < low:
        return f"{count:,} {noun}: below the guide's {low:,}-{high:,} (fine for learning; thin for a real model)"
    if count <= high:
        return f"{count:,} {noun}: within the guide's {low:,}-{high:,}"
    return f"{count:,} {noun}: above the guide's {low:,}-{high:,}"


def path_rows(costs: dict[str, tuple[float | None, float | None]]) -> list[dict]:
    """The table of each path's measured cost (pipelines.demo.path_costs) from each stage's (wall s, peak MB)."""
    rows = []
    for key, cost in path_costs(PATHS, costs).items():
        stages = PATHS[key]
        if cost is None:
            missing = [s for s in stages if costs.get(s, (None, None))[0] is None]
            rows.append({"approach": APPROACHES[key], "wall time": "-", "peak memory": "-",
                         "measured from": f"no finished {', '.join(missing)} run yet"})
        else:
            rows.append({"approach": APPROACHES[key], "wall time": f"{cost[0] / 60:.1f} min",
                         "peak memory": f"{cost[1] / 1024:.1f} GB" if cost[1] else "-",
                         "measured from": " + ".join(stages)})
    return rows
