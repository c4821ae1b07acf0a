"""Faults tried, not assumed: a run killed while it writes its metrics, a disk that fills up during a checkpoint save,
a job lock left by a process that is gone, a pid that now names another process. Each leaves the run with its last
complete checkpoint, a status that says what happened, and a resume that works."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from pipelines.runtime import joblock
from pipelines.runtime.checkpoints import list_checkpoints
from pipelines.runtime.runs import Run, pid_alive, process_started
from tests.conftest import REPO, cli, read_json
from tests.test_resume import assert_resumed_to_the_end, ppo_argv, sft_argv, tree_digest


def test_a_run_killed_while_it_writes_metrics_resumes_with_every_step_once(tiny_model_dir, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "killed"
    argv = sft_argv(tiny_model_dir, runs, "--set", "max_steps=30", "--set", "save_steps=4", "--set", "logging_steps=1")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *argv, "--run-id", run_dir.name], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while (len(Run(run_dir).metrics()) < 10 or not list_checkpoints(run_dir)) and time.time() < deadline:
        time.sleep(0.01)  # polled as fast as it writes: the kill lands among its metric writes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What a kill in the middle of a write leaves: half a line, no newline.
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as out:
        out.write('{"step": 99, "loss": 1.2')
    status = Run(run_dir).status()
    assert status["state"] == "failed" and "ended without reporting" in status["error"]
    assert all(row["step"] != 99 for row in Run(run_dir).metrics())  # the torn line is skipped, the rest is read

    from tests.test_app import app_at

    os.environ["RLHF_WORKBENCH_RUNS"] = str(runs)
    try:
        at = app_at("app_pages/runs.py")
        assert not at.exception, [e.value for e in at.exception]
    finally:
        del os.environ["RLHF_WORKBENCH_RUNS"]
    assert cli("resume", run_dir) == 0
    assert_resumed_to_the_end(run_dir, 30, "loss")  # every step once, in order: the torn line is gone


def limited_file_size(limit: int):
    """For a child process: no file may grow past `limit` bytes, as on a full disk (SIGXFSZ ignored, so a write past
    the limit fails with EFBIG instead of killing the process)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


@pytest.mark.parametrize("stage", ["sft", "ppo"])
def test_a_disk_that_fills_during_a_checkpoint_save_keeps_the_previous_one(stage, tiny_model_dir, tiny_sft_run,
                                                                           tiny_reward_run, tmp_path):
    runs = tmp_path / "runs"
    first = ["--set", "max_steps=2", "--set", "save_steps=2", "--run-id", "r"]
    argv = sft_argv(tiny_model_dir, runs, *first) if stage == "sft" else \
        ppo_argv(tiny_sft_run, tiny_reward_run, runs, *first)
    assert cli(*argv) == 0
    run_dir = runs / "r"
    before = tree_digest(run_dir / "checkpoints" / "checkpoint-2")
    # Its next save needs files of 100 kB and more (the optimizer's state); logs and metrics stay far smaller.
    done = subprocess.run([sys.executable, "-m", "pipelines", "resume", str(run_dir), "--set", "max_steps=4"],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=limited_file_size(100_000))
    assert done.returncode == 1, done.stderr[-2000:]
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed"
    assert "Writing to disk failed" in status["error"] and "checkpoint-2, is intact" in status["error"], status
    assert f"resume {run_dir}" in status["error"]
    assert [step for step, _ in list_checkpoints(run_dir)] == [2]
    assert tree_digest(run_dir / "checkpoints" / "checkpoint-2") == before
    assert cli("resume", run_dir, "--set", "max_steps=4") == 0  # space freed: it carries on
    assert read_json(run_dir / "status.json")["state"] == "completed"
    assert [step for step, _ in list_checkpoints(run_dir)] == [2, 4]


def test_a_resave_at_the_same_step_keeps_a_checkpoint_at_every_instant(tmp_path, monkeypatch):
    from pipelines.runtime import checkpoints

    run_dir = tmp_path / "run"
    old = checkpoints.checkpoints_dir(run_dir) / "checkpoint-4"
    old.mkdir(parents=True)
    (old / "state.json").write_text("old")
    staged = checkpoints.staging_dir(run_dir) / "checkpoint-4"
    staged.mkdir(parents=True)
    (staged / "state.json").write_text("new")
    real_replace = os.replace
    calls = []

    def replace_and_look(src, dst):  # after each rename, step 4 still has one complete checkpoint
        real_replace(src, dst)
        calls.append([p.name for _, p in checkpoints.list_checkpoints(run_dir)])

    monkeypatch.setattr(checkpoints.os, "replace", replace_and_look)
    final = checkpoints.publish(staged, run_dir, keep=2)
    assert calls == [[".replaced-checkpoint-4"], ["checkpoint-4"]]
    assert (final / "state.json").read_text() == "new"
    assert [p.name for p in checkpoints.checkpoints_dir(run_dir).iterdir()] == ["checkpoint-4"]


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    """The lock is the kernel's: when its process dies (here SIGKILL, as on a reboot), it is free at once, whatever
    its file still says."""
    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pipelines.runtime import joblock\n"
                               f"with joblock.held({str(runs)!r}):\n print('held', flush=True); time.sleep(600)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert joblock.holder(runs)["pid"] == holder.pid
    with pytest.raises(joblock.JobBusy, match=f"process {holder.pid}"):
        with joblock.held(runs):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert joblock.lock_path(runs).read_text()  # the file still names the dead process...
    assert joblock.holder(runs) is None  # ...but nobody holds the lock
    with joblock.held(runs):
        assert joblock.holder(runs) is not None


def test_a_pid_reused_by_another_process_is_not_the_run(tmp_path):
    """After a restart the run's old pid may name some unrelated process: its start time gives it away."""
    run = Run.create("sft", "stage: sft\n", tmp_path, run_id="old")
    assert run.status()["state"] == "running"  # this very process, same start time
    started = process_started(os.getpid())
    run.set_status(pid_started=started - 3600)  # the same pid, but a process that started an hour earlier
    status = run.status()
    assert status["state"] == "failed" and "ended without reporting" in status["error"]
    assert pid_alive(os.getpid(), started) and not pid_alive(os.getpid(), started - 3600)


def test_the_cli_refuses_a_second_job_in_the_same_runs_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import time; from pipelines.runtime import joblock\n"
                               f"with joblock.held({str(runs)!r}, ['python', '-m', 'pipelines', 'sft']):\n"
                               " print('held', flush=True); time.sleep(600)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli("demo", "--runs-dir", runs) == 2
        err = capsys.readouterr().err
        assert "(`sft ...`, process" in err and "one job runs at a time" in " ".join(err.split())
        assert not [p for p in runs.iterdir() if p.name != ".jobs"]  # nothing was started
    finally:
        holder.kill()
        holder.wait()


def test_a_broken_model_folder_and_a_truncated_adapter_are_refused_before_a_run(tiny_model_dir, tiny_sft_run,
                                                                                 tmp_path, capsys):
    import shutil

    from tests.conftest import SAMPLE

    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": \n')
    runs = tmp_path / "runs"
    assert cli("sft", "--set", f"model={broken}", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}",
               "--runs-dir", runs) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"`{broken / 'config.json'}` is not a valid model config" in said and "line 2" in said and "Fix:" in said
    sft = tmp_path / "sft"
    shutil.copytree(tiny_sft_run, sft)
    weights = sft / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    assert cli("dpo", "--set", f"sft_run={sft}", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}",
               "--runs-dir", runs) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"`{weights}` is unreadable" in said and "truncated" in said and "Fix:" in said
    assert cli("export", "--run", sft, "--out", tmp_path / "out") == 2
    assert "adapter is damaged" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert not runs.exists()  # no run folder was made for any of them


def test_an_export_that_fails_midway_leaves_no_folder_that_looks_saved(tiny_sft_run, tmp_path, monkeypatch):
    import shutil

    from pipelines.model import loading

    real_copytree = shutil.copytree

    def copy_then_fail(src, dst, **kwargs):  # half the files written, then the disk is full
        real_copytree(src, dst, ignore=lambda folder, names: sorted(names)[len(names) // 2:])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loading.shutil, "copytree", copy_then_fail)
    out = tmp_path / "exported"
    with pytest.raises(OSError):
        loading.export_run(Run(tiny_sft_run), out)
    assert not out.exists() and not list(tmp_path.glob(".exported.partial-*"))
    monkeypatch.undo()
    assert (loading.export_run(Run(tiny_sft_run), out) / "adapter_model.safetensors").is_file()


def test_starts_pressed_together_start_one_job(tmp_path):
    """Eight tabs pressing Start at the same instant: one job starts, seven are told one is running."""
    import threading

    from workbench import jobs

    runs = tmp_path / "runs"
    barrier, started, refused = threading.Barrier(8), [], []

    def press():
        barrier.wait()
        try:
            started.append(jobs.start_demo(runs))
        except jobs.Busy as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=press) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(started) == 1 and len(refused) == 7, (started, refused)
        assert all("already running: the demo" in message for message in refused)
        assert jobs.active_job(runs).id == started[0].id and len(jobs.all_jobs(runs)) == 1
    finally:
        os.killpg(started[0].pid, signal.SIGKILL)  # as a crash or a reboot would end it
    deadline = time.time() + 30  # its threads end a moment after its main one
    while jobs.active_job(runs) is not None and time.time() < deadline:
        time.sleep(0.05)
    assert jobs.active_job(runs) is None  # the lock went with the process

