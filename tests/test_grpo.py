"""GRPO end to end on the tiny model through the one CLI, and each verifiable reward rule on hand-made cases."""

import json

import pytest
from safetensors.torch import load_file

from pipelines.errors import ConfigError
from pipelines.stages.grpo.config import GRPOConfig
from pipelines.stages.grpo.rules import answer_reward, length_reward, regex_reward
from tests.conftest import SAMPLE, cli, only_run, read_json, write_jsonl


@pytest.mark.parametrize("question, response, answer, expected", [
    ("What is 7 plus 5?", "7 plus 5 is 12.", "12", 1.0),
    ("What is 7 plus 5?", "Twelve!", "12", 1.0),
    ("What is 7 plus 5?", "It is 120.", "12", 0.0),  # whole numbers, not digits inside another
    ("What is 7 plus 5?", "It is 12, or 13, or 14.", "12", 0.0),  # listing candidates does not pay
    ("What is the opposite of hot?", "The opposite of hot is COLD.", "cold", 1.0),
    ("What is the opposite of hot?", "The opposite of hot is colder.", "cold", 0.0),
    ("Is 65 bigger than 56? Answer yes or no.", "Yes, 65 is bigger than 56.", "yes", 1.0),
    ("Is 65 bigger than 56? Answer yes or no.", "No.", "yes", 0.0),
    ("Is 65 bigger than 56? Answer yes or no.", "Yes or no: no.", "yes", 0.0),
    ("Say anything.", "anything", None, None),  # nothing to check against: not counted
])
def test_answer_reward(question, response, answer, expected):
    assert answer_reward(response, answer, question) == expected


def test_regex_and_length_rewards():
    assert regex_reward("The answer is 42.", r"\b42\b") == 1.0
    assert regex_reward("The answer is 420.", r"\b42\b") == 0.0
    assert length_reward("one two three", 3) == 1.0
    assert length_reward("one two three four", 3) == 0.0
    assert length_reward("   ", 3) == 0.0  # saying nothing is not brief, it is empty


@pytest.mark.parametrize("values, message", [
    ({"rewards": ["answer", "politeness"]}, "`politeness` is not a reward"),
    ({"rewards": ["regex"]}, "`reward_regex` is not a usable pattern (it is empty)"),
    ({"rewards": ["regex"], "reward_regex": "(unclosed"}, "`reward_regex` is not a usable pattern"),
    ({"rewards": ["judge"]}, "`reward_run` is empty"),
    ({"num_generations": 1}, "`num_generations` is 1, below its minimum 2"),
])
def test_bad_reward_settings_are_named(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("`", "`")):
        GRPOConfig.from_dict({"prompts_file": "p.jsonl", **values})


def grpo_args(runs, prompts, *extra):
    return ["grpo", "--set", f"prompts_file={prompts}", "--set", "max_steps=4", "--set", "batch_size=2", "--set",
            "num_generations=4", "--set", "max_new_tokens=8", "--set", "learning_rate=0.01", "--set",
            "sample_every=1", "--runs-dir", runs, *extra]


@pytest.mark.parametrize("start", ["sft", "base"])
def test_grpo_trains_against_a_rule_and_moves_the_adapter(start, tiny_model_dir, tiny_sft_run, tmp_path):
    runs = tmp_path / "runs"
    origin = ["--set", f"sft_run={tiny_sft_run}"] if start == "sft" else ["--set", f"model={tiny_model_dir}"]
    # two rules at once: the length rule passes often on a random tiny model, so groups differ and it learns
    prompts = SAMPLE / "verifiable" / "prompts_train.jsonl"
    assert cli(*grpo_args(runs, prompts, *origin, "--set", "rewards=answer,length", "--set", "max_words=6")) == 0
    run = only_run(runs)
    assert read_json(run / "status.json")["state"] == "completed"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward" in r]
    assert len(train) == 4
    keys = {k for r in train for k in r}
    assert {"reward", "reward_std", "rewards/correct_answer/mean", "rewards/within_length/mean", "kl",
            "completions/mean_length"} <= keys
    assert train[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the reference IS the starting model
    assert any(abs(r["kl"]) > 1e-6 for r in train[1:])  # ...and the policy moved away from it
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples and {"step", "prompt", "response", "score", "rewards"} <= samples[0].keys()
    for sample in samples:  # the sum of both rules, each one's kept
        assert set(sample["rewards"]) == {"correct_answer", "within_length"}
        assert sample["score"] == sum(sample["rewards"].values())
    summary = read_json(run / "summary.json")
    assert summary["steps"] == 4 and summary["rewards"] == ["answer", "length"] and summary["train_prompts"] == 240

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    if start == "sft":
        sft = load_file(tiny_sft_run / "adapter" / "adapter_model.safetensors")
        assert sft.keys() == weights.keys()
        assert max((weights[k] - sft[k]).abs().max().item() for k in sft) > 1e-4
    else:
        assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())


def test_grpo_answer_reward_without_answers_is_refused_with_the_fix(tiny_model_dir, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "What is 2 plus 2?"}] * 4)
    assert cli(*grpo_args(tmp_path / "runs", prompts, "--set", f"model={tiny_model_dir}")) == 1
    err = capsys.readouterr().err
    assert "no prompt carries an `answer` field" in err and "Fix:" in err
    assert read_json(only_run(tmp_path / "runs") / "status.json")["state"] == "failed"


def test_grpo_with_the_judge_as_its_reward(tiny_sft_run, tiny_reward_run, tmp_path):
    """The `judge` reward: the reward run scores every sampled answer (a second, separate model on a CPU), and its
    per-answer scores differ within a group, so the policy gets a signal."""
    runs = tmp_path / "runs"
    assert cli(*grpo_args(runs, SAMPLE / "prompts_train.jsonl", "--set", f"sft_run={tiny_sft_run}", "--set",
                          "rewards=judge", "--set", f"reward_run={tiny_reward_run}", "--set", "max_steps=2",
                          "--set", "allow_untrusted_judge=true")) == 0
    run = only_run(runs)
    train = [r for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
             if "reward" in r]
    assert len(train) == 2 and all("rewards/judge/mean" in r for r in train)
    assert any(r["reward_std"] > 0 for r in train)  # the judge's scores are not all alike
    assert read_json(run / "summary.json")["train_prompts"] == 100  # every prompt: the judge needs no answer
