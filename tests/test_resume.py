"""Checkpoints and resume: runs killed with SIGKILL carry on from their newest checkpoint, saves are atomic, and a run
that cannot be resumed gets a clear message and exit 2 with its directory untouched."""

import hashlib
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pipelines.runtime import checkpoints, tracking
from pipelines.runtime.runs import Run
from tests.conftest import SAMPLE, cli, kill_after_first_checkpoint, read_json

SFT_SETS = ["--set", "train_file=" + str(SAMPLE / "sft_train.jsonl"), "--set", "max_length=96", "--set",
            "batch_size=4", "--set", "learning_rate=0.01"]


def sft_argv(model, runs, *extra):
    return ["sft", "--set", f"model={model}", *SFT_SETS, "--runs-dir", str(runs), *extra]


def reward_argv(model, sft_run, runs, *extra):
    return ["reward", "--set", f"model={model}", "--set", f"sft_run={sft_run}", "--set",
            f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set", f"eval_file={SAMPLE / 'prefs_eval.jsonl'}",
            "--set", "max_length=96", "--set", "batch_size=4", "--set", "learning_rate=0.003", "--set",
            "eval_steps=4", "--set", "accuracy_gate=0.0", "--runs-dir", str(runs), *extra]


def ppo_argv(sft_run, reward_run, runs, *extra):
    return ["ppo", "--set", f"sft_run={sft_run}", "--set", f"reward_run={reward_run}", "--set",
            f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_new_tokens=8", "--set", "batch_size=4",
            "--set", "num_minibatches=2", "--set", "learning_rate=0.003", "--set", "allow_untrusted_judge=true",
            "--runs-dir", str(runs), *extra]


def dpo_argv(sft_run, runs, *extra):
    return ["dpo", "--set", f"sft_run={sft_run}", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
            "batch_size=4", "--set", "max_length=96", "--set", "learning_rate=0.005", "--runs-dir", runs, *extra]


def grpo_argv(sft_run, runs, *extra):
    return ["grpo", "--set", f"sft_run={sft_run}", "--set",
            f"prompts_file={SAMPLE / 'verifiable' / 'prompts_train.jsonl'}", "--set", "rewards=answer,length",
            "--set", "max_words=6", "--set", "batch_size=2", "--set", "max_new_tokens=8", "--set",
            "learning_rate=0.01", "--runs-dir", runs, *extra]


def training_steps(run_dir: Path, key: str) -> list[int]:
    return [row["step"] for row in Run(run_dir).metrics() if key in row]


def adapter(run_dir: Path) -> dict:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def max_abs_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def assert_resumed_to_the_end(run_dir: Path, max_steps: int, key: str) -> dict:
    status = read_json(run_dir / "status.json")
    assert status["state"] == "completed" and status["step"] == max_steps
    assert training_steps(run_dir, key) == list(range(1, max_steps + 1))  # every step exactly once, in order
    summary = read_json(run_dir / "summary.json")
    assert summary["resumed_from"] == [status["resumes"][0]["from_step"]] and summary["steps_redone"] >= 0
    assert "resumed from step" in (run_dir / "run.log").read_text()
    return summary


def straight_and_resumed(argv, max_steps: int, save_steps: int, tmp_path: Path) -> tuple[Path, Path]:
    """The same run twice: once uninterrupted, once SIGKILLed after its first checkpoint and resumed to the end.
    `argv(runs_dir, *extra)` builds the stage's command line."""
    steps = ["--set", f"max_steps={max_steps}", "--set", f"save_steps={save_steps}"]
    assert cli(*argv(tmp_path / "straight", *steps, "--run-id", "s")) == 0
    killed = tmp_path / "runs" / "killed"
    kill_after_first_checkpoint(argv(tmp_path / "runs", *steps), killed)
    assert cli("resume", killed) == 0
    return tmp_path / "straight" / "s", killed


def test_sft_killed_and_resumed_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    straight, killed = straight_and_resumed(lambda runs, *extra: sft_argv(tiny_model_dir, runs, *extra), 12, 3,
                                            tmp_path)
    assert_resumed_to_the_end(killed, 12, "loss")
    # The Trainer restores weights, optimizer, scheduler, RNG and the data position: the same run, within float noise.
    assert max_abs_difference(adapter(killed), adapter(straight)) < 1e-4
    straight_losses = {r["step"]: r["loss"] for r in Run(straight).metrics() if "loss" in r}
    resumed_losses = {r["step"]: r["loss"] for r in Run(killed).metrics() if "loss" in r}
    assert resumed_losses[12] == pytest.approx(straight_losses[12], abs=1e-4)


def test_reward_killed_and_resumed_matches_an_uninterrupted_run(tiny_model_dir, tiny_sft_run, tmp_path):
    straight, killed = straight_and_resumed(
        lambda runs, *extra: reward_argv(tiny_model_dir, tiny_sft_run, runs, *extra), 10, 3, tmp_path)
    summary = assert_resumed_to_the_end(killed, 10, "loss")
    assert max_abs_difference(adapter(killed), adapter(straight)) < 1e-4
    assert summary["eval_accuracy"] == pytest.approx(read_json(straight / "summary.json")["eval_accuracy"], abs=0.02)
    assert [r["step"] for r in Run(killed).metrics()].count(0) == 1  # the data accounting row is not repeated


def test_ppo_killed_and_resumed_equals_an_uninterrupted_run(tiny_sft_run, tiny_reward_run, tmp_path):
    straight, killed = straight_and_resumed(
        lambda runs, *extra: ppo_argv(tiny_sft_run, tiny_reward_run, runs, *extra), 8, 2, tmp_path)
    summary = assert_resumed_to_the_end(killed, 8, "objective/scores")
    assert max_abs_difference(adapter(killed), adapter(straight)) < 1e-5
    assert summary["mean_kl"] == pytest.approx(read_json(straight / "summary.json")["mean_kl"], abs=1e-4)
    assert [r["step"] for r in Run(killed).samples()] == [r["step"] for r in Run(straight).samples()]
    # the watch's probes (every checkpoint, so steps 0, 2, 4, 6, 8): each step once, the same answers
    probes = [(r["step"], r["prompt"], r["response"]) for r in Run(killed).probes()]
    assert probes == [(r["step"], r["prompt"], r["response"]) for r in Run(straight).probes()]
    assert sorted({step for step, _, _ in probes}) == [0, 2, 4, 6, 8]
    assert [r["step"] for r in Run(killed).metrics()].count(0) == 1  # the start's probes: one row of step 0


@pytest.mark.parametrize("stage", ["dpo", "grpo"])
def test_dpo_and_grpo_killed_and_resumed_match_an_uninterrupted_run(stage, tiny_sft_run, tmp_path):
    """The simpler approaches resume through the Trainer's own checkpoints, as SFT and reward do (GRPO's sampling
    RNG included: each step's rewards come back the same)."""
    argv, key = (dpo_argv, "rewards/chosen") if stage == "dpo" else (grpo_argv, "reward")
    straight, killed = straight_and_resumed(lambda runs, *extra: argv(tiny_sft_run, runs, *extra), 6, 2, tmp_path)
    assert_resumed_to_the_end(killed, 6, key)
    assert max_abs_difference(adapter(killed), adapter(straight)) < 1e-4
    values = {r["step"]: r[key] for r in Run(straight).metrics() if key in r}
    assert {r["step"]: r[key] for r in Run(killed).metrics() if key in r} == pytest.approx(values, abs=1e-4)


class Killed(BaseException):
    """Stands for SIGKILL arriving at one exact instant (a real signal cannot be aimed that precisely)."""


@pytest.mark.parametrize("stage", ["sft", "ppo"])
def test_a_save_killed_before_its_rename_leaves_the_previous_checkpoint(stage, tiny_model_dir, tiny_sft_run,
                                                                        tiny_reward_run, tmp_path, monkeypatch):
    real_publish = checkpoints.publish

    def publish_then_die_at_step_4(staged, run_path, keep):
        if staged.name == "checkpoint-4":
            raise Killed  # everything is written into .staging/, the rename never happens
        return real_publish(staged, run_path, keep)

    monkeypatch.setattr(checkpoints, "publish", publish_then_die_at_step_4)  # PPO's save
    monkeypatch.setattr(tracking, "publish", publish_then_die_at_step_4)  # the Trainer's save
    runs = tmp_path / "runs"
    steps = ["--set", "max_steps=6", "--set", "save_steps=2", "--run-id", "r"]
    argv = sft_argv(tiny_model_dir, runs, *steps) if stage == "sft" else \
        ppo_argv(tiny_sft_run, tiny_reward_run, runs, *steps)
    with pytest.raises(Killed):
        cli(*argv)
    run_dir = runs / "r"
    assert (run_dir / "checkpoints" / ".staging" / "checkpoint-4").is_dir()  # the new one, complete but unnamed
    assert [step for step, _ in checkpoints.list_checkpoints(run_dir)] == [2]
    monkeypatch.undo()
    assert cli("resume", run_dir) == 0
    assert "resumed from step 2" in (run_dir / "run.log").read_text()
    assert_resumed_to_the_end(run_dir, 6, "loss" if stage == "sft" else "objective/scores")
    assert not (run_dir / "checkpoints" / ".staging").exists()
    assert [step for step, _ in checkpoints.list_checkpoints(run_dir)] == [4, 6]  # save_total_limit: 2


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def stopped_ppo_run(tiny_sft_run, tiny_reward_run, tmp_path_factory):
    """A PPO run stopped (a stop request, as the Stop button makes) at step 3 of 6, with checkpoints at 2 and 3."""
    runs = tmp_path_factory.mktemp("stopped")
    run_dir = runs / "r"
    run_dir.mkdir()
    original = Run.stop_requested
    Run.stop_requested = lambda self: original(self) or (self.path == run_dir and self.status().get("step") == 3)
    try:
        assert cli(*ppo_argv(tiny_sft_run, tiny_reward_run, runs, "--set", "max_steps=6", "--set", "save_steps=2",
                             "--run-id", "r")) == 0
    finally:
        Run.stop_requested = original
    assert read_json(run_dir / "status.json")["state"] == "stopped"
    return run_dir


def resume_refused(run_dir: Path, capsys, *sets: str) -> str:
    before = tree_digest(run_dir)
    assert cli("resume", run_dir, *sets) == 2
    assert tree_digest(run_dir) == before  # left exactly as it was
    return capsys.readouterr().err.replace("\n", " ")


def test_resume_refuses_a_run_without_a_checkpoint(tmp_path, capsys):
    run = Run.create("sft", "stage: sft\ntrain_file: x.jsonl\n", tmp_path, run_id="r")
    run.set_status("failed", error="killed at step 1", step=1)
    err = resume_refused(run.path, capsys)
    assert "no checkpoint" in err and "Fix:" in err


def test_resume_refuses_a_damaged_checkpoint_and_names_the_file(stopped_ppo_run, tmp_path, capsys):
    run_dir = tmp_path / "r"
    shutil.copytree(stopped_ppo_run, run_dir)
    weights = run_dir / "checkpoints" / "checkpoint-3" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a disk that filled up mid-write, say
    err = resume_refused(run_dir, capsys)
    assert "damaged" in err and "weights.safetensors" in err and "checkpoint-2" in err and "Fix:" in err


def test_resume_refuses_a_change_that_cannot_continue(stopped_ppo_run, capsys):
    err = resume_refused(stopped_ppo_run, capsys, "--set", "lora_r=8")
    assert "lora_r" in err and "Fix:" in err


def test_resume_refuses_a_finished_run_unless_extended(tiny_sft_run, tmp_path, capsys):
    run_dir = tmp_path / "sft"
    shutil.copytree(tiny_sft_run, run_dir)
    err = resume_refused(run_dir, capsys)
    assert "already did all its 3 steps" in err and "max_steps" in err
    assert cli("resume", run_dir, "--set", "max_steps=5") == 0  # extended by two steps
    assert training_steps(run_dir, "loss") == [1, 2, 3, 4, 5]
    assert read_json(run_dir / "summary.json")["steps"] == 5


def test_a_stopped_run_resumes_where_it_stopped(stopped_ppo_run, tmp_path):
    run_dir = tmp_path / "r"
    shutil.copytree(stopped_ppo_run, run_dir)
    assert cli("resume", run_dir) == 0
    summary = assert_resumed_to_the_end(run_dir, 6, "objective/scores")
    assert summary["resumed_from"] == [3] and summary["steps_redone"] == 0  # a stop saves: nothing is lost
