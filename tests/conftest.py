"""Shared fixtures: a tiny random Llama with the default model's real tokenizer, built locally (no hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Tests never reach a model hub: an unknown id must fail fast, as it does for an offline user.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def default_tokenizer_dir():
    from pipelines.models import default_model_dir

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


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(*args: str) -> int:
    """Run `python -m pipelines ...` in this process (imports are shared, so a tiny run takes about a second)."""
    from pipelines.cli import main

    return main([str(a) for a in args])


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in Path(runs_dir).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]
