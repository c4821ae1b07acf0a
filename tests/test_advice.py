"""The "Which approach?" rules: each recommendation on the answers that should lead to it, the guide's sizes, and
path costs from run files."""

from pathlib import Path

import pytest

from pipelines.runtime.runs import Run
from pipelines.runtime.tracking import peak_memory, reset_peak_memory
from workbench.advice import Answers, path_rows, recommend, size_verdict


def answers(**changes):
    values = dict(checkable="no", subjective="very", pairs=50_000, lifetime="long-lived", compute="one-gpu")
    return Answers(**{**values, **changes})


def test_each_approach_is_recommended_where_the_guide_says():
    assert recommend(answers())[0] == "rlhf"
    assert recommend(answers(checkable="yes"))[0] == "grpo"  # a rule beats a judge whenever it can
    assert recommend(answers(pairs=0))[0] == "sft"
    for change in ({"pairs": 2_000}, {"lifetime": "prototype"}, {"compute": "cpu"}, {"subjective": "somewhat"}):
        key, reasons = recommend(answers(**change))
        assert key == "dpo" and reasons, change


def test_reasons_name_the_users_own_count_against_the_guide():
    key, reasons = recommend(answers(pairs=2_000))
    assert any("2,000 comparisons is below the 10,000" in r for r in reasons)
    assert "partly" not in " ".join(recommend(answers())[1])
    assert any("checkable" in r for r in recommend(answers(checkable="partly"))[1])


def test_size_verdicts():
    assert size_verdict("pairs", 400).startswith("400 comparisons: below the guide's 10,000-100,000")
    assert "within" in size_verdict("examples", 5_000)
    assert "above" in size_verdict("prompts", 20_000)


def test_path_costs_sum_wall_time_and_take_the_largest_peak():
    costs = {"sft": (120.0, 3000.0), "reward": (180.0, 3500.0), "ppo": (300.0, 2500.0), "dpo": (460.0, 4096.0),
             "grpo": (None, None)}
    rows = {r["approach"].split(" ")[0]: r for r in path_rows(costs)}
    assert rows["Full"]["wall time"] == "10.0 min" and rows["Full"]["peak memory"] == "3.4 GB"
    assert rows["DPO"]["wall time"] == "9.7 min" and rows["DPO"]["peak memory"] == "4.0 GB"
    assert rows["GRPO"]["wall time"] == "-" and "no finished grpo run" in rows["GRPO"]["measured from"]
    assert rows["SFT"]["wall time"] == "2.0 min"


def test_a_runs_cost_is_read_from_its_status_and_metrics(tmp_path):
    run = Run.create("sft", "stage: sft\n", tmp_path)
    run.set_status("running", started_at=100.0)
    assert run.cost() == (None, None)  # not ended
    for row in ({"step": 1, "memory/peak_rss_mb": 10.0}, {"step": 2, "loss": 1.0},
                {"step": 3, "memory/peak_rss_mb": 12.5}):
        run.log_metrics(row)
    run.set_status("completed", ended_at=160.5)
    assert run.cost() == (60.5, 12.5)


def test_a_stages_peak_memory_starts_from_its_own_tracker(tmp_path):
    """The demo runs every stage in one process: a later stage must not report an earlier stage's peak."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's resettable VmHWM")
    block = bytearray(400 * 2**20)  # 400 MB resident, then freed
    block[::4096] = b"x" * len(block[::4096])
    high = peak_memory()["memory/peak_rss_mb"]
    del block
    reset_peak_memory()
    assert peak_memory()["memory/peak_rss_mb"] < high - 300
