"""Shared fixtures: a tiny random Llama with the default model's real tokenizer, built locally (no hub)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Tests never reach a model hub: an unknown id must fail fast, as it does for an offline user.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def default_tokenizer_dir():
    from pipelines.model.loading import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_tokenizer_dir):
    """hidden 64, 2 layers: every stage runs a step in about a second on a CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(default_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def yes_no_model(tiny_model_dir, tmp_path_factory):
    """The tiny model fully fine-tuned to answer with six words, a random mix of "yes" and "no": a policy with a
    known, learnable behaviour (its length, its words) that a rule-based reward can move."""
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from pipelines.data.formats import encode_response
    from pipelines.model.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rng = random.Random(0)
    rows = []
    for _ in range(64):
        prompt_ids, response_ids = encode_response(tok, [{"role": "user", "content": "Answer."}],
                                                   " ".join(rng.choice(["yes", "no"]) for _ in range(6)))
        rows.append(prompt_ids + response_ids)
    ids = torch.tensor(rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(150):
        batch = ids[torch.randint(0, len(ids), (16,))]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    path = tmp_path_factory.mktemp("yes-no")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(*args: str) -> int:
    """Run `python -m pipelines ...` in this process (imports are shared, so a tiny run takes about a second)."""
    from pipelines.cli import main

    return main([str(a) for a in args])


def kill_after_first_checkpoint(argv: list[str], run_dir: Path) -> None:
    """Start `python -m pipelines ARGV --run-id NAME` and SIGKILL it as soon as its first checkpoint is complete."""
    from pipelines.runtime.checkpoints import list_checkpoints
    from pipelines.runtime.runs import Run

    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *argv, "--run-id", run_dir.name], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list_checkpoints(run_dir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = Run(run_dir).status()
    assert status["state"] == "failed", status  # killed before it could finish: the pid is gone
    assert list_checkpoints(run_dir), "no checkpoint was written before the kill"


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in Path(runs_dir).iterdir() if p.is_dir() and not p.name.startswith(".")]  # not .jobs/
    assert len(runs) == 1, runs
    return runs[0]


SAMPLE = REPO / "sample_data"


@pytest.fixture(scope="session")
def chain_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("chain-runs")


@pytest.fixture(scope="session")
def tiny_sft_run(tiny_model_dir, chain_runs):
    assert cli("sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}",
               "--set", "max_steps=3", "--set", "learning_rate=0.01", "--set", "max_length=96",
               "--runs-dir", chain_runs) == 0
    return max(chain_runs.glob("*-sft"))


@pytest.fixture(scope="session")
def tiny_reward_run(tiny_model_dir, tiny_sft_run, chain_runs):
    """A judge trained from the tiny SFT run; the politeness preference is learnable even by a random model."""
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"sft_run={tiny_sft_run}",
               "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
               f"eval_file={SAMPLE / 'prefs_eval.jsonl'}", "--set", "max_steps=12", "--set", "learning_rate=0.003",
               "--set", "batch_size=8", "--set", "eval_steps=5", "--set", "max_length=96", "--set",
               "accuracy_gate=0.6", "--runs-dir", chain_runs) == 0
    return max(chain_runs.glob("*-reward"))


@pytest.fixture(scope="session")
def full_runs(tiny_sft_run, tiny_reward_run, chain_runs):
    """A runs folder holding every stage: SFT, reward, PPO and a comparison, all on the tiny model."""
    if not list(chain_runs.glob("*-compare")):
        assert cli("ppo", "--set", f"sft_run={tiny_sft_run}", "--set", f"reward_run={tiny_reward_run}", "--set",
                   f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_new_tokens=6", "--set",
                   "batch_size=4", "--set", "max_steps=2", "--runs-dir", chain_runs) == 0
        # seven held-out prompts, two of them (the 5th and the 7th) with a reference answer
        assert cli("compare", "--set", f"prompts_file={SAMPLE / 'prompts_eval.jsonl'}", "--set", "num_prompts=7",
                   "--set", "max_new_tokens=6", "--runs-dir", chain_runs) == 0
    return chain_runs


@pytest.fixture(scope="session")
def methods_runs(full_runs, tmp_path_factory):
    """A copy of `full_runs` plus a DPO and a GRPO run from its SFT run, and a comparison of all five models on
    checkable questions: what the methods demo leaves, on the tiny model."""
    runs = tmp_path_factory.mktemp("methods") / "runs"
    shutil.copytree(full_runs, runs)
    assert cli("dpo", "--set", "sft_run=latest", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
               "max_steps=2", "--set", "batch_size=4", "--set", "max_length=96", "--runs-dir", runs) == 0
    assert cli("grpo", "--set", "sft_run=latest", "--set",
               f"prompts_file={SAMPLE / 'verifiable' / 'prompts_train.jsonl'}", "--set", "max_steps=2", "--set",
               "batch_size=2", "--set", "max_new_tokens=6", "--runs-dir", runs) == 0
    assert cli("compare", "--set", f"prompts_file={SAMPLE / 'verifiable' / 'prompts_eval.jsonl'}", "--set",
               "num_prompts=6", "--set", "max_new_tokens=6", "--set", "dpo_run=latest", "--set", "grpo_run=latest",
               "--set", "run_name=methods", "--runs-dir", runs) == 0
    return runs


@pytest.fixture(scope="session")
def tiny_base_reward_run(tiny_model_dir, chain_runs):
    """A judge trained from the bare tiny base (`sft_run` empty), beside `tiny_reward_run` trained from SFT."""
    runs = chain_runs / "from-base"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}",
               "--set", f"eval_file={SAMPLE / 'prefs_eval.jsonl'}", "--set", "max_steps=12", "--set",
               "learning_rate=0.003", "--set", "batch_size=8", "--set", "eval_steps=0", "--set", "max_length=96",
               "--set", "accuracy_gate=0.6", "--runs-dir", runs) == 0
    return only_run(runs)


def shown(markdown: str) -> str:
    """What the browser shows of a Markdown body that escapes data (workbench.panels.as_text): the text as typed."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)
