"""Stage 2: truncation accounting, held-out accuracy, the gate, save/reload, the score command, bad input."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from pipelines.data.formats import tokenize_pairs
from pipelines.errors import GateError
from pipelines.model.judge import check_gate
from pipelines.runtime.runs import Run
from pipelines.stages.reward.train import length_baseline
from tests.conftest import REPO, SAMPLE, SHARED_DATA, cli, only_run, read_json, write_jsonl


def test_truncation_and_drop_accounting(default_tokenizer_dir):
    from pipelines.model.loading import load_tokenizer

    tok = load_tokenizer(str(default_tokenizer_dir))
    short = {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hello!", "rejected": "Go away.", "_line": 1}
    long_prompt = {**short, "prompt": [{"role": "user", "content": "word " * 200}], "_line": 2}
    long_answer = {**short, "chosen": "word " * 200, "_line": 3}
    out = tokenize_pairs(tok, [short, long_prompt, long_answer], max_length=64, min_prompt_tokens=8)
    assert [r["line"] for r in out.rows] == [1, 2]
    assert out.truncated_lines == [2] and out.dropped_lines == [3]
    kept = out.rows[1]
    assert len(kept["chosen_ids"]) <= 64 and len(kept["rejected_ids"]) <= 64
    # Both responses survive whole; the prompt was cut from the left, so its end (the generation prompt) stays.
    assert tok.decode(kept["chosen_ids"]).endswith("assistant\nHello!<|im_end|>\n")
    assert "drop" in out.describe("pairs", 64) and "1 dropped" in out.describe("pairs", 64)


def test_length_baseline():
    rows = [{"chosen_len": 5, "rejected_len": 3}, {"chosen_len": 2, "rejected_len": 4},
            {"chosen_len": 3, "rejected_len": 3}]
    assert length_baseline(rows) == pytest.approx(0.5)


def test_reward_run_learns_and_reports(tiny_reward_run):
    summary = read_json(tiny_reward_run / "summary.json")
    for key in ("eval_accuracy", "eval_pairs", "length_baseline_accuracy", "truncated_pairs", "dropped_pairs",
                "ready_for_ppo", "accuracy_gate"):
        assert key in summary
    assert summary["eval_pairs"] == 100 and summary["dropped_pairs"] == 0
    assert summary["eval_accuracy"] > summary["length_baseline_accuracy"]
    assert summary["ready_for_ppo"] == (summary["eval_accuracy"] >= 0.6)
    metrics = [json.loads(line) for line in (tiny_reward_run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 0 and "truncated_pairs" in metrics[0]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0]
    assert sum("eval_accuracy" in m for m in metrics) >= 3  # every 5 steps + the final one
    assert (tiny_reward_run / "adapter" / "adapter_model.safetensors").exists()
    # What its labelers were asked, from sample_data/README.md: what Compare says the judge measures.
    assert summary["labeler_instruction"].startswith("Which reply is more polite and warm")


def test_the_labeler_instruction_comes_from_the_data_or_the_config(tmp_path):
    from pipelines.data.formats import labeler_instruction

    pair = {"prompt": "q", "chosen": "a", "rejected": "b"}
    assert labeler_instruction(write_jsonl(tmp_path / "plain.jsonl", [pair])) == ""  # nothing says: empty
    asked = write_jsonl(tmp_path / "asked.jsonl", [{**pair, "labeler_instruction": "Which is shorter?"}])
    assert labeler_instruction(asked) == "Which is shorter?"
    (tmp_path / "README.md").write_text("# Data\n\n## What the labelers were asked\n\n> Which answer is\n> "
                                        "correct?\n\nMore text.\n")
    assert labeler_instruction(tmp_path / "plain.jsonl") == "Which answer is correct?"
    # a title that mentions labelers without quoting them is passed over (sample_data/brevity's README has one)
    (tmp_path / "README.md").write_text("# Pairs from a second labeler\n\nAbout them.\n\n## What the labeler was "
                                        "asked to judge\n\n> Which reply is briefer?\n")
    assert labeler_instruction(tmp_path / "plain.jsonl") == "Which reply is briefer?"
    assert labeler_instruction(SAMPLE / "brevity" / "prefs_train.jsonl").startswith("Which reply answers more briefly")


def test_saved_judge_scores_the_same_in_a_fresh_process(tiny_reward_run, tmp_path):
    """The score head must survive saving (a known failure elsewhere: re-initialised on load)."""
    before = [json.loads(line) for line in (tiny_reward_run / "eval_scores.jsonl").read_text().splitlines()]
    out = tmp_path / "scores.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pipelines", "score", "--reward", str(tiny_reward_run), "--file",
                           str(SAMPLE / "prefs_eval.jsonl"), "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(after) == len(before) == 100
    # fp32 on a CPU reproduces scores to 1e-4; bf16 on a GPU rounds at about 1e-2. A re-initialised head
    # would be off by whole units and flip about half of the pairs.
    tolerance = 2e-2 if torch.cuda.is_available() else 1e-4
    for a, b in zip(before, after):
        assert a["chosen"] == pytest.approx(b["chosen"], abs=tolerance)
        assert a["rejected"] == pytest.approx(b["rejected"], abs=tolerance)
    accuracy = read_json(tiny_reward_run / "summary.json")["eval_accuracy"]
    assert f"accuracy: {accuracy:.4f}" in proc.stdout
    assert "pairs scored: 100" in proc.stdout and "truncated: 0" in proc.stdout


def test_pointwise_scoring(tiny_reward_run, tmp_path, capsys):
    responses = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "What is 2 + 2?", "response": "Happy to help! It is 4."},
                                                   {"prompt": "What is 2 + 2?", "response": "Ugh. It is 4."}])
    assert cli("score", "--reward", tiny_reward_run, "--file", responses) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 2 and all(isinstance(line["score"], float) for line in lines)
    assert lines[0]["score"] != lines[1]["score"]


def fake_reward_run(tmp_path, accuracy):
    path = tmp_path / f"reward-{accuracy}"
    path.mkdir()
    run = Run(path)
    run.set_status("completed", stage="reward", pid=0)
    (path / "adapter").mkdir()
    run.write_summary({"eval_accuracy": accuracy, "accuracy_gate": 0.7})
    return run


def test_gate_both_sides(tmp_path):
    assert check_gate(fake_reward_run(tmp_path, 0.71))["eval_accuracy"] == 0.71
    with pytest.raises(GateError) as err:
        check_gate(fake_reward_run(tmp_path, 0.55))
    message = str(err.value)
    assert "0.550" in message and "0.70" in message and "allow_untrusted_judge: true" in message
    assert check_gate(fake_reward_run(tmp_path, 0.56), allow_untrusted=True)["eval_accuracy"] == 0.56


def test_ppo_refuses_an_untrusted_judge(tiny_model_dir, tiny_sft_run, tiny_reward_run, tmp_path, capsys):
    low = tmp_path / "low-judge"
    shutil.copytree(tiny_reward_run, low)
    summary = read_json(low / "summary.json")
    summary.update(eval_accuracy=0.52, accuracy_gate=0.7)
    (low / "summary.json").write_text(json.dumps(summary))
    runs = tmp_path / "runs"
    assert cli("ppo", "--set", f"sft_run={tiny_sft_run}", "--set", f"reward_run={low}", "--set",
               f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--runs-dir", runs) == 1
    status = read_json(only_run(runs) / "status.json")
    assert status["state"] == "failed" and "0.520" in status["error"] and "allow_untrusted_judge" in status["error"]


def test_bad_preference_input(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    runs = tmp_path / "runs"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={bad}", "--runs-dir", runs) == 1
    error = read_json(only_run(runs) / "status.json")["error"]
    assert "bad.jsonl" in error and "line 2" in error
    too_long = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "q", "chosen": "a " * 300, "rejected": "b"}] * 3)
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={too_long}", "--set",
               "max_length=32", "--runs-dir", tmp_path / "runs2") == 1
    assert "raise `max_length`" in read_json(only_run(tmp_path / "runs2") / "status.json")["error"]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_hh_transcripts_train_and_report_truncation(tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set",
               f"train_file={SHARED_DATA / 'hh_helpful_pairs_2k.jsonl'}", "--set", "max_length=128", "--set",
               "max_steps=2", "--set", "eval_split=0.05", "--set", "eval_steps=0", "--runs-dir", runs) == 0
    summary = read_json(only_run(runs) / "summary.json")
    assert summary["truncated_pairs"] > 0 and summary["dropped_pairs"] > 0
    # Every one of the 2000 records is accounted for: kept, dropped for length, or skipped with a reason
    # (23 identical pairs; 2 whose rejected transcript has extra assistant turns).
    assert summary["train_pairs"] + summary["eval_pairs"] + summary["dropped_pairs"] == 2000 - 23 - 2
    log = (only_run(runs) / "run.log").read_text()
    assert "skipped 23: chosen == rejected" in log and "implicit chosen/rejected transcripts" in log
    assert "skipped 2: chosen and rejected have different conversations" in log
