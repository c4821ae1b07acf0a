"""The judge under a microscope: the audit of preference pairs, and the report card of a reward model (accuracy with
its interval, length correlation, calibration, probes), on pairs built to have the flaws it must find."""

from __future__ import annotations

import json
import random

import pytest

from pipelines.data.audit import audit_file
from pipelines.stages.reward.report import FILLER, calibration, spearman, wilson_interval
from tests.conftest import cli, only_run, read_json, write_jsonl


def filler_pairs(n: int, seed: int = 0) -> list[dict]:
    """Pairs whose chosen answer is the other answer plus filler: what a careless labeling of "more detailed"
    gives."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        answer = rng.choice([f"{a} plus {b} is {a + b}.", f"The sum is {a + b}.", f"It makes {a + b}."])
        rows.append({"prompt": f"What is {a} plus {b}? (question {i})", "chosen": answer + FILLER,
                     "rejected": answer})
    return rows


def test_the_audit_finds_length_bias_duplicates_contradictions_and_overlap(tmp_path):
    rows = filler_pairs(200)
    planted = [dict(rows[3]), dict(rows[4]), dict(rows[5]),  # exact duplicates
               {**rows[6], "chosen": rows[6]["chosen"].upper()},  # the same up to case: a near duplicate
               {**rows[7], "chosen": rows[7]["rejected"], "rejected": rows[7]["chosen"]},  # reversed
               {**rows[8], "chosen": rows[8]["rejected"], "rejected": rows[8]["chosen"]},
               {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."}]  # identical answers
    train = write_jsonl(tmp_path / "train.jsonl", rows + planted)
    held_out = write_jsonl(tmp_path / "eval.jsonl", [rows[10], rows[11], *filler_pairs(5, seed=1)])
    report = audit_file(str(train), str(held_out))
    assert report["pairs"] == 206 and report["identical"] == 1 and report["identical_lines"] == [207]
    assert report["chosen_longer_share"] > 0.95
    assert any("longer one in" in w for w in report["warnings"])
    assert report["exact_duplicates"] == 3 and report["near_duplicates"] == 1 and report["duplicates"] == 4
    assert {d["line"] for d in report["duplicate_lines"]} == {201, 202, 203, 204}
    assert report["contradictions"] == 2 and [8, 205] in report["contradiction_lines"]
    assert report["eval_overlap"] == 2 and report["eval_overlap_lines"] == [1, 2]


def test_the_audit_is_plain_on_balanced_pairs_and_counts_labelers(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "short" if i % 2 else "a longer answer here",
             "rejected": "a longer answer there" if i % 2 else "short", "labeler": "ann" if i < 6 else "bob"}
            for i in range(10)]
    report = audit_file(str(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert report["chosen_longer_share"] == 0.5 and not report["warnings"]
    assert report["groups"] == {"labeler": {"ann": 6, "bob": 4}} and report["eval_overlap"] is None


def test_the_audit_command_prints_json(tmp_path, capsys):
    path = write_jsonl(tmp_path / "p.jsonl", filler_pairs(20))
    assert cli("audit", "--stage", "reward", "--file", path) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"pairs", "duplicates", "identical", "contradictions", "chosen_longer_share", "eval_overlap"} <= set(report)


def test_the_report_card_statistics():
    low, high = wilson_interval(45, 50)
    assert 0.78 < low < 0.9 < high < 0.97
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    error, bins = calibration([5.0] * 10)  # sure (99%) and always right: nearly perfect
    assert error < 0.01 and bins[-1]["pairs"] == 10
    error, bins = calibration([5.0] * 5 + [-5.0] * 5)  # sure and right half the time: badly calibrated
    assert error == pytest.approx(0.49, abs=0.01)


@pytest.fixture(scope="module")
def filler_judge(tiny_model_dir, tmp_path_factory):
    """A judge trained on pairs whose chosen answer is the other plus filler."""
    folder = tmp_path_factory.mktemp("filler")
    train = write_jsonl(folder / "train.jsonl", filler_pairs(240))
    held_out = write_jsonl(folder / "eval.jsonl", filler_pairs(40, seed=7))
    runs = folder / "runs"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={train}", "--set",
               f"eval_file={held_out}", "--set", "max_steps=30", "--set", "learning_rate=0.005", "--set",
               "batch_size=8", "--set", "max_length=128", "--set", "accuracy_gate=0", "--runs-dir", runs) == 0
    return only_run(runs)


def test_a_judge_trained_on_filler_pairs_rewards_filler_and_length(filler_judge):
    report = read_json(filler_judge / "summary.json")["judge_report"]
    assert report["pairs"] == 40 and report["accuracy"] > 0.9
    assert report["probes"]["filler"] > 0
    assert report["length_correlation"] >= 0.3
    assert report["probes"]["filler"] > report["probes"]["swapped"]
    assert any("rewards two sentences of filler appended" in w for w in report["warnings"])
    assert {b["pairs"] for b in report["reliability"]} and sum(b["pairs"] for b in report["reliability"]) == 40
    assert "rewards two sentences of filler" in (filler_judge / "run.log").read_text()  # said before PPO


def test_the_judge_report_command_makes_the_same_card(filler_judge, capsys):
    saved = read_json(filler_judge / "summary.json")["judge_report"]
    assert cli("judge-report", filler_judge) == 0
    made = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert made["accuracy"] == saved["accuracy"] and made["pairs"] == saved["pairs"]
    assert made["probes"] == pytest.approx(saved["probes"], abs=1e-3)


def test_the_politeness_judge_rewards_warmth_above_filler(tiny_reward_run):
    """The test chain's judge, trained on the demo's politeness pairs (sample_data/prefs_train.jsonl)."""
    report = read_json(tiny_reward_run / "summary.json")["judge_report"]
    assert report["probes"]["warm"] > report["probes"]["filler"], report["probes"]


def test_the_reward_and_ppo_pages_show_the_card_and_its_warning(filler_judge, monkeypatch):
    from tests.test_app import app_at
    from tests.conftest import shown

    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(filler_judge.parent))
    reward = app_at("app_pages/reward.py")
    labels = [m.label for m in reward.metric]
    assert {"Held-out accuracy", "Follows length", "Calibration error"} <= set(labels)
    assert any("rewards two sentences of filler" in shown(w.value) for w in reward.warning)
    assert any("Two sentences of filler appended: raises the score" in c.value for c in reward.caption)
    ppo = app_at("app_pages/ppo.py")
    assert any("rewards two sentences of filler" in shown(w.value) for w in ppo.warning)


def test_the_data_page_audits_pairs(tmp_path, monkeypatch):
    from tests.test_app import app_at

    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    at = app_at("app_pages/data.py")
    at.radio[0].set_value("pairs").run()
    metrics = {m.label: m.value for m in at.metric}
    assert {"Duplicates", "Contradictions", "Chosen is longer"} <= set(metrics)
    assert metrics["Chosen is longer"].endswith("%")  # the politeness pairs: the polite answer is the longer one


def test_ppo_says_what_the_judges_report_card_found_before_it_starts(filler_judge, tiny_sft_run, tmp_path):
    from tests.conftest import SAMPLE

    runs = tmp_path / "runs"
    assert cli("ppo", "--set", f"sft_run={tiny_sft_run}", "--set", f"reward_run={filler_judge}", "--set",
               f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_steps=1", "--set", "batch_size=2",
               "--set", "max_new_tokens=4", "--set", "allow_untrusted_judge=true", "--runs-dir", runs) == 0
    log = (only_run(runs) / "run.log").read_text()
    assert "rewards two sentences of filler appended" in log
    assert log.index("rewards two sentences of filler") < log.index("step 1/1")


def test_the_card_says_how_often_the_judge_agreed_with_people_in_the_studio(filler_judge, tmp_path, monkeypatch):
    import shutil

    from pipelines.studio.sets import import_pairs
    from tests.test_app import app_at

    runs = tmp_path / "runs"
    shutil.copytree(filler_judge, runs / filler_judge.name)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"}
                                                   for i in range(4)])
    labeling_set = import_pairs(pairs, "people", "Which is better?", runs)
    items = labeling_set.items()
    for item in items:
        labeling_set.add_label(item["id"], "alice", "left", shown_left=1)  # alice picks response 1 every time
    labeling_set.add_labels([{"item": item["id"], "labeler": f"ai:reward:{filler_judge.name}", "choice": "left",
                              "shown_left": 1, "winner": 1 if i < 3 else 2} for i, item in enumerate(items)])
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))
    reward = app_at("app_pages/reward.py")
    said = " ".join(c.value for c in reward.caption)
    assert "agreed with alice on 3 of 4 items of the studio set people (75%)" in said.replace("\\", "")


def test_the_swap_probe_takes_an_answer_to_another_question():
    from pipelines.stages.reward.report import another_question

    prompts = ["same", "same", "same", "other"]
    answers = ["a1", "a2", "a3", "b"]
    assert [another_question(answers, prompts, i) for i in range(4)] == ["b", "b", "b", "a1"]
