"""Launched jobs: two CPU processes (gloo) under torchrun or `accelerate launch` train one run, in one run directory.

Each test starts real launchers as subprocesses, as a user would; the tiny model keeps a launch to seconds. A fault or
a rank-dependent reward is switched on through tests/launched/entry.py, the CLI with an injection."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pipelines.runtime.runs import Run, pid_alive
from tests.conftest import REPO, SAMPLE, only_run, read_json
from workbench import jobs

ENTRY = REPO / "tests" / "launched" / "entry.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def launched(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 tests/launched/entry.py ARGS` (the CLI), waited for."""
    return subprocess.run([*TORCHRUN, str(ENTRY), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def ppo_args(sft_run, reward_run, runs, *extra):
    return ["ppo", "--set", f"sft_run={sft_run}", "--set", f"reward_run={reward_run}", "--set",
            f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_new_tokens=6", "--set", "batch_size=4",
            "--set", "learning_rate=0.003", "--set", "allow_untrusted_judge=true", "--set", "unfinished_penalty=0",
            "--runs-dir", runs, *extra]


def assert_one_run_of_two_processes(runs: Path, state: str = "completed") -> Path:
    folders = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]  # .jobs: the app's job files
    assert len(folders) == 1, folders
    run = folders[0]
    status, summary = read_json(run / "status.json"), read_json(run / "summary.json")
    assert status["state"] == state, status
    assert status["world_size"] == 2 and summary["world_size"] == 2
    assert summary["replicas_identical"] is True and summary["replica_max_abs_difference"] == 0.0
    assert (run / "run.log").is_file() and (run / "run.rank1.log").is_file()
    assert "rank 1 of 2" in (run / "run.rank1.log").read_text()
    return run


def test_collectives_match_a_single_process(tmp_path):
    out = tmp_path / "collectives.json"
    done = subprocess.run([*TORCHRUN, str(REPO / "tests" / "launched" / "collectives.py"), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = read_json(out)
    assert got["world_size"] == 2
    # Whitening over the global batch gives the full batch's numbers; whitening each half alone would not.
    assert got["whiten_global_vs_full"] < 1e-5 < got["whiten_local_vs_full"]
    assert got["averaged_a"] == [1.5, 1.5, 1.5]  # (1 + 2) / 2
    assert got["averaged_b"] == [2.0] * 4  # (4 + no gradient = 0) / 2
    assert got["mean_over_ranks"] == {"score": 0.5, "tokens_per_second": 21.0}
    assert got["agree_when_only_rank_1_says_yes"] is True and got["agree_when_nobody_does"] is False
    assert got["replicas_same"] == 0.0 and got["replicas_differ"] == 0.5 and got["replicas_after_broadcast"] == 0.0
    assert got["shared_from_main"] == "made by rank 0"


def test_sft_on_two_processes_makes_one_run(tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    done = launched("sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}",
                    "--set", "max_steps=6", "--set", "save_steps=3", "--set", "max_length=96", "--set",
                    "learning_rate=0.01", "--runs-dir", runs)
    assert done.returncode == 0, done.stderr[-3000:]
    run = assert_one_run_of_two_processes(runs)
    assert done.stdout.strip().splitlines() == [str(run)]  # the run folder, printed once (by rank 0)
    rows = Run(run).metrics()
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7))  # rank 0's rows only, each step once
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0]
    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().max() > 0 for k, v in adapter.items() if "lora_B" in k)  # LoRA B starts at zero
    assert read_json(run / "status.json")["global_batch"] == 8  # 4 per process x 2
    assert "global batch 8 on 2 processes" in (run / "run.log").read_text()
    checkpoint = run / "checkpoints" / "checkpoint-6"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()


def test_reward_started_by_the_workbench_on_two_processes(tiny_model_dir, tiny_sft_run, tmp_path):
    """The UI's job: `accelerate launch --config_file sample_data/accelerate/ddp.yaml --num_processes 2 ...`."""
    runs = tmp_path / "runs"
    config = {"model": str(tiny_model_dir), "sft_run": str(tiny_sft_run),
              "train_file": str(SAMPLE / "prefs_train.jsonl"), "eval_file": str(SAMPLE / "prefs_eval.jsonl"),
              "max_steps": 6, "eval_steps": 3, "max_length": 96, "learning_rate": 0.003, "accuracy_gate": 0.0}
    job = jobs.start_stage("reward", config, runs, processes=2)
    assert job.command[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    deadline = time.time() + 300
    while pid_alive(job.pid) and time.time() < deadline:
        time.sleep(0.5)
    run = Path(job.run_dir)
    assert read_json(run / "status.json")["state"] == "completed", Path(job.console).read_text()[-3000:]
    assert_one_run_of_two_processes(runs)
    summary = read_json(run / "summary.json")
    assert summary["eval_pairs"] > 0 and 0.0 <= summary["eval_accuracy"] <= 1.0
    evaluated = [r["step"] for r in Run(run).metrics() if "eval_accuracy" in r]
    assert evaluated == [3, 6]  # held-out accuracy by rank 0 alone, once per evaluation step


def test_ppo_logs_the_mean_over_both_ranks(tiny_sft_run, tiny_reward_run, tmp_path):
    runs = tmp_path / "runs"
    # The separate critic: its adapter switches PEFT's requires_grad between the policy's and the value's backward.
    done = launched(*ppo_args(tiny_sft_run, tiny_reward_run, runs, "--set", "max_steps=3", "--set",
                              "value_model=separate"), env={"TEST_SCORE_IS_RANK": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    run = assert_one_run_of_two_processes(runs)
    rows = [r for r in Run(run).metrics() if "objective/scores" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    # Rank 0's judge says 0.0 for everything, rank 1's says 1.0: only the mean over both ranks is 0.5.
    assert all(r["objective/scores"] == pytest.approx(0.5) for r in rows)
    assert all(r["time/all_reduce"] > 0 for r in rows)  # the gradients' exchange, its own phase of a step
    samples = Run(run).samples()
    assert samples and all(s["score"] == 0.0 for s in samples)  # the samples shown are rank 0's own
    assert read_json(run / "status.json")["global_batch"] == 8


def test_stop_file_stops_both_ranks_and_the_run_resumes_as_if_never_stopped(tiny_sft_run, tiny_reward_run, tmp_path):
    steps = ["--set", "save_steps=1"]
    straight = launched(*ppo_args(tiny_sft_run, tiny_reward_run, tmp_path / "straight", "--set", "max_steps=10",
                                  *steps))
    assert straight.returncode == 0, straight.stderr[-3000:]

    runs = tmp_path / "runs"
    proc = subprocess.Popen([*TORCHRUN, str(ENTRY), *map(str, ppo_args(tiny_sft_run, tiny_reward_run, runs, "--set",
                                                                       "max_steps=500", *steps))],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (list(runs.glob("*/metrics.jsonl")) if runs.is_dir() else []):
        time.sleep(0.05)
    run = only_run(runs)
    Run(run).request_stop()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    status = read_json(run / "status.json")
    assert status["state"] == "stopped" and status["step"] < 10, status
    stopped_at = status["step"]
    # Both ranks stopped after the same step: rank 1 logged exactly the steps rank 0 did.
    rank1_steps = [line for line in (run / "run.rank1.log").read_text().splitlines() if " INFO step " in line]
    assert len(rank1_steps) == stopped_at and f"step {stopped_at}/500" in rank1_steps[-1]
    checkpoint = run / "checkpoints" / f"checkpoint-{stopped_at}"
    assert (checkpoint / "rng.safetensors").is_file() and (checkpoint / "rng.rank1.safetensors").is_file()

    resumed = launched("resume", run, "--set", "max_steps=10")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_one_run_of_two_processes(runs)
    assert [r["step"] for r in Run(run).metrics() if "objective/scores" in r] == list(range(1, 11))
    # Each rank's sampling picked up where it stopped: the same adapter as the uninterrupted two-process run.
    a = load_file(run / "adapter" / "adapter_model.safetensors")
    b = load_file(only_run(tmp_path / "straight") / "adapter" / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_failing_rank_fails_the_run_with_its_message(tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    done = launched("sft", "--set", f"model={tiny_model_dir}", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}",
                    "--set", "max_steps=50", "--set", "max_length=96", "--runs-dir", runs, env={"TEST_FAIL_RANK": "1"})
    assert done.returncode != 0
    run = only_run(runs)
    status = Run(run).status()
    assert status["state"] == "failed"
    assert "rank 1" in status["error"] and "injected failure on rank 1" in status["error"], status["error"]
    assert not (run / "summary.json").exists() and not (run / "adapter").exists()


def test_compare_refuses_to_run_under_a_launcher(tmp_path):
    done = launched("compare", "--set", f"prompts_file={SAMPLE / 'prompts_eval.jsonl'}", "--runs-dir",
                    tmp_path / "runs")
    assert done.returncode != 0
    assert done.stderr.count("error: `compare` runs in one process") == 1  # said once, by rank 0
    assert "Fix: run `python -m pipelines compare" in " ".join(done.stderr.split())
    assert not (tmp_path / "runs").exists()


def test_the_command_box_shows_the_launch_line():
    from workbench import forms

    values = {"model": "default"}
    single, several = forms.command_line("sft", values, "quick", 4)
    assert single.startswith("python -m pipelines sft --config sample_data/recipes/sft_quick.yaml")
    assert several.startswith("accelerate launch --config_file sample_data/accelerate/ddp.yaml --num_processes 4 "
                              "-m pipelines sft --config sample_data/recipes/sft_quick.yaml")
    assert json.loads(json.dumps(jobs.launcher_args(2)))[-1] == "2"


def test_the_status_names_the_rank_that_failed_not_the_ones_that_noticed(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": 999_999_999}))
    (run / "error.rank1.json").write_text(json.dumps({"rank": 1, "error": "RuntimeError: Connection closed by peer",
                                                      "own_fault": False, "at": 1.0}))
    (run / "error.rank10.json").write_text(json.dumps({"rank": 10, "error": "OutOfMemoryError: CUDA out of memory",
                                                       "own_fault": True, "at": 2.0}))
    assert Run(run).status()["error"] == "rank 10: OutOfMemoryError: CUDA out of memory"
    Run(run).clear_rank_errors()  # what a resume does first
    assert "ended without reporting" in Run(run).status()["error"]
