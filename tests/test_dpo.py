"""DPO end to end on the tiny model through the one CLI: the reference is the starting model (implicit rewards zero
at the first step), the adapter moves, the run folder is the same contract as every stage's."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SAMPLE, cli, only_run, read_json


def dpo_args(runs, *extra):
    return ["dpo", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
            f"eval_file={SAMPLE / 'prefs_eval.jsonl'}", "--set", "max_steps=5", "--set", "batch_size=4", "--set",
            "learning_rate=0.005", "--set", "max_length=96", "--set", "eval_steps=5", "--runs-dir", runs, *extra]


@pytest.mark.parametrize("start", ["sft", "base"])
def test_dpo_moves_the_adapter_away_from_a_reference_that_is_the_starting_model(start, tiny_model_dir, tiny_sft_run,
                                                                               tmp_path):
    runs = tmp_path / "runs"
    origin = ["--set", f"sft_run={tiny_sft_run}"] if start == "sft" else ["--set", f"model={tiny_model_dir}"]
    assert cli(*dpo_args(runs, *origin)) == 0
    run = only_run(runs)
    assert read_json(run / "status.json")["state"] == "completed"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "rewards/chosen" in r]
    assert len(train) == 5
    # step 1 is measured before any update, against a reference that IS the starting model: DPO's implicit rewards
    # (beta x log-prob ratio to the reference) are zero
    assert train[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert train[0]["rewards/rejected"] == pytest.approx(0.0, abs=1e-5)
    assert train[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0)
    assert train[-1]["loss"] != pytest.approx(train[0]["loss"], abs=1e-4)  # it moved
    assert any(r["rewards/margins"] != pytest.approx(0.0, abs=1e-6) for r in train[1:])
    assert {"rewards/accuracies", "eval_rewards/accuracies"} <= {k for r in rows for k in r}
    summary = read_json(run / "summary.json")
    assert summary["steps"] == 5 and 0.0 <= summary["eval_accuracy"] <= 1.0 and summary["eval_pairs"] == 100

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert not (run / "adapter" / "ref").exists()  # the trained adapter only, not TRL's frozen reference copy
    config = read_json(run / "adapter" / "adapter_config.json")
    if start == "sft":  # it started as the SFT adapter and moved away from it
        sft = load_file(tiny_sft_run / "adapter" / "adapter_model.safetensors")
        assert config["r"] == read_json(tiny_sft_run / "adapter" / "adapter_config.json")["r"]
        assert sft.keys() == weights.keys()
        assert max((weights[k] - sft[k]).abs().max().item() for k in sft) > 1e-4
    else:  # a fresh LoRA: B starts at zero
        assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    assert torch.isfinite(torch.stack([v.float().abs().max() for v in weights.values()])).all()


def test_dpo_without_pairs_is_refused_before_any_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("dpo", "--runs-dir", runs) == 2
    assert "`train_file` is empty" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())
