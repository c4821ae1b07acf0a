"""Stage 1 end to end on a tiny model through the one CLI: the run-directory contract, training, stopping."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, cli, only_run, read_json, write_jsonl

EXAMPLES = [{"messages": [{"role": "user", "content": f"Say the word number {i}."},
                          {"role": "assistant", "content": f"Banana banana {i}."}]} for i in range(24)]


@pytest.fixture
def sft_data(tmp_path):
    return write_jsonl(tmp_path / "sft.jsonl", EXAMPLES)


def sft_args(tiny_model_dir, data, runs, *extra):
    return ["sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={data}", "--set", "learning_rate=0.01",
            "--set", "max_steps=6", "--set", "batch_size=4", "--runs-dir", runs, *extra]


def test_sft_trains_and_writes_the_run_directory(tiny_model_dir, sft_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli(*sft_args(tiny_model_dir, sft_data, runs, "--set", f"eval_file={sft_data}", "--set",
                         "eval_steps=3")) == 0
    run = only_run(runs)
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run)  # the run directory is the last line

    status = read_json(run / "status.json")
    assert status["state"] == "completed" and status["stage"] == "sft" and status["step"] == 6
    config = (run / "config.yaml").read_text()
    assert f"model: {tiny_model_dir}" in config and "lora_r: 16" in config and "stage: sft" in config
    metrics = [m for m in map(__import__("json").loads, (run / "metrics.jsonl").read_text().splitlines())]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 6 and losses[-1] < losses[0]  # the loss moved, downwards
    assert {"step", "mean_token_accuracy", "learning_rate", "grad_norm"} <= set(metrics[0])
    assert any("eval_loss" in m for m in metrics)
    summary = read_json(run / "summary.json")
    assert summary["final_loss"] < summary["first_loss"] and "eval_loss" in summary
    assert "step 6/6" in (run / "run.log").read_text()

    # The adapter trained (LoRA B starts at zero) and changes the model's output.
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, run / "adapter")
    assert not torch.allclose(before, tuned(ids).logits)
    assert (run / "adapter" / "tokenizer_config.json").exists()


def test_4bit_qlora_trains_a_step_on_cpu(tiny_model_dir, sft_data, tmp_path):
    runs = tmp_path / "runs"
    assert cli(*sft_args(tiny_model_dir, sft_data, runs, "--set", "quantization=4bit", "--set", "max_steps=2")) == 0
    run = only_run(runs)
    assert read_json(run / "status.json")["state"] == "completed"
    assert "quantization 4bit" in (run / "run.log").read_text()
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())


def test_stop_file_ends_the_run_cleanly(tiny_model_dir, sft_data, tmp_path):
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "STOP").write_text("")  # asked to stop before the first step ends
    assert cli(*sft_args(tiny_model_dir, sft_data, runs, "--run-id", "r1", "--set", "max_steps=50")) == 0
    status = read_json(runs / "r1" / "status.json")
    assert status["state"] == "stopped" and status["step"] == 1
    assert (runs / "r1" / "adapter" / "adapter_model.safetensors").exists()


def test_ctrl_c_stops_cleanly(tiny_model_dir, sft_data, tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *sft_args(tiny_model_dir, sft_data, runs, "--set",
                                                                          "max_steps=100000")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        status = [read_json(p / "status.json") for p in runs.glob("*/") if (p / "status.json").exists()] \
            if runs.exists() else []
        if status and status[0].get("step", 0) >= 1:
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    run = only_run(runs)
    assert read_json(run / "status.json")["state"] == "stopped"
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert out.strip().splitlines()[-1] == str(run)


@pytest.mark.parametrize("overrides, words", [
    (["--set", "train_file=missing.jsonl"], ["missing.jsonl", "does not exist"]),
    (["--set", "model=no-such-org/no-such-model-xyz"], ["no-such-org/no-such-model-xyz", "model: default"]),
])
def test_bad_input_fails_with_a_message_and_a_failed_status(tiny_model_dir, sft_data, tmp_path, capsys, overrides,
                                                              words):
    runs = tmp_path / "runs"
    assert cli(*sft_args(tiny_model_dir, sft_data, runs), *overrides) == 1
    err = capsys.readouterr().err
    status = read_json(only_run(runs) / "status.json")
    assert status["state"] == "failed"
    for word in words:
        assert word in status["error"] and word in err
    assert "Traceback" not in err


def test_bad_settings_exit_2_before_any_run(tmp_path, capsys):
    assert cli("sft", "--set", "train_file=x.jsonl", "--set", "max_stepz=3", "--runs-dir", tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert "Unknown key `max_stepz`" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_overlong_examples_are_counted(tiny_model_dir, tmp_path, caplog):
    rows = EXAMPLES[:4] + [{"messages": [{"role": "user", "content": "long " * 300},
                                         {"role": "assistant", "content": "x"}]}]
    runs = tmp_path / "runs"
    assert cli(*sft_args(tiny_model_dir, write_jsonl(tmp_path / "d.jsonl", rows), runs, "--set", "max_steps=1",
                         "--set", "max_length=64")) == 0
    assert "1 of 5 training examples are longer than max_length=64" in (only_run(runs) / "run.log").read_text()
    assert read_json(only_run(runs) / "summary.json")["truncated_examples"] == 1


def test_a_base_model_without_chat_template_trains_on_plain_text(tiny_model_dir, sft_data, tmp_path):
    import shutil

    base = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = read_json(base / "tokenizer_config.json")
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(__import__("json").dumps(config))
    runs = tmp_path / "runs"
    assert cli(*sft_args(base, sft_data, runs, "--set", "max_steps=2")) == 0
    assert "has no chat template" in (only_run(runs) / "run.log").read_text()


def test_a_loss_that_becomes_nan_fails_the_run_and_keeps_the_last_good_checkpoint(tiny_model_dir, sft_data, tmp_path,
                                                                                   monkeypatch):
    import trl

    from pipelines.runtime.runs import Run, RunState, resolve_run

    real = trl.SFTTrainer.compute_loss
    calls = []

    def blows_up_at_step_4(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) >= 4:  # one micro-batch a step: the fourth step's loss is NaN
            return out * float("nan") if not isinstance(out, tuple) else (out[0] * float("nan"), *out[1:])
        return out

    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", blows_up_at_step_4)
    runs = tmp_path / "runs"
    assert cli(*sft_args(tiny_model_dir, sft_data, runs, "--set", "save_steps=2")) == 1
    run = Run(only_run(runs))
    assert run.state is RunState.FAILED
    assert "The loss became nan at step 4" in run.status()["error"]
    assert sorted(p.name for p in (run.path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert [m["step"] for m in run.metrics() if "loss" in m][-1] == 4
    with pytest.raises(Exception, match="found no completed `sft` run"):
        resolve_run("latest", "sft", runs)  # a failed run is never `latest`
