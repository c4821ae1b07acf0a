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


def test_pairs_too_long_are_cut_from_the_prompt_and_counted_never_from_the_answers(tiny_model_dir, tmp_path):
    """TRL's collator cuts a pair that does not fit from its end, answers first; here the prompt is cut from the left
    instead, and what could not fit at all is dropped, both counted (in the log, the metrics and the summary)."""
    import inspect

    import trl
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from pipelines.data.formats import tokenize_pairs
    from pipelines.model.patches import FittedPairsDPOTrainer
    from pipelines.stages.dpo.train import to_dataset
    from pipelines.model.loading import load_tokenizer

    # the one method replaced is still TRL's, with the arguments it is called with (the pinned TRL 1.16)
    assert list(inspect.signature(trl.DPOTrainer._prepare_dataset).parameters) == [
        "self", "dataset", "processing_class", "args", "dataset_name"]
    assert FittedPairsDPOTrainer._prepare_dataset is not trl.DPOTrainer._prepare_dataset

    long_prompt = "Tell me, please, " + "and then some more words, " * 30 + "what is 2 + 2?"
    pairs = [{"prompt": [{"role": "user", "content": long_prompt}], "chosen": "It is 4. Happy to help!",
              "rejected": "Whatever. 4.", "_line": 1},
             {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hello! " * 60, "rejected": "No.",
              "_line": 2},
             {"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": "Blue, of course!",
              "rejected": "Blue.", "_line": 3}]
    tok = load_tokenizer(str(tiny_model_dir))
    fitted = tokenize_pairs(tok, pairs, max_length=64, min_prompt_tokens=8)
    assert fitted.truncated_lines == [1] and fitted.dropped_lines == [2]
    collator = DataCollatorForPreference(pad_token_id=tok.pad_token_id, max_length=64)
    batch = collator([dict(row) for row in to_dataset(fitted)])
    assert batch["input_ids"].shape[1] <= 64
    answers = [tok("It is 4. Happy to help!", add_special_tokens=False)["input_ids"],
               tok("Blue, of course!", add_special_tokens=False)["input_ids"]]
    for row, completion, answer in zip(batch["input_ids"], batch["completion_mask"], answers):
        kept = row[completion.bool()].tolist()
        assert any(kept[i:i + len(answer)] == answer for i in range(len(kept))), "an answer lost its tokens"

    train_file = tmp_path / "pairs.jsonl"
    train_file.write_text("".join(json.dumps({k: v for k, v in p.items() if k != "_line"}) + "\n"
                                  for p in pairs * 3), encoding="utf-8")
    runs = tmp_path / "runs"
    assert cli("dpo", "--set", f"model={tiny_model_dir}", "--set", f"train_file={train_file}", "--set",
               "max_steps=2", "--set", "batch_size=2", "--set", "max_length=64", "--runs-dir", runs) == 0
    run = only_run(runs)
    summary = read_json(run / "summary.json")
    assert (summary["train_pairs"], summary["truncated_pairs"], summary["dropped_pairs"]) == (6, 3, 3)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["truncated_pairs"] == 3 and first["dropped_pairs"] == 3
    assert "3 had their prompt cut from the left" in (run / "run.log").read_text()
    assert summary["lora_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"] and summary["lora_layers"] == 8
