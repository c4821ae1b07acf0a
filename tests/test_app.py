"""Every page under streamlit.testing.v1.AppTest, and the UI flow that launches a tiny run and watches it."""

import json
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from pipelines.runtime.runs import Run
from tests.conftest import REPO, shown
from workbench import jobs

PAGES = [f"app_pages/{name}.py" for name in ("home", "data", "sft", "reward", "ppo", "dpo", "grpo", "approach",
                                                  "compare", "runs")]


def app_at(page: str | None = None, token: str | None = None) -> AppTest:
    """The app in AppTest, on `page`; `token`: as a shared app's link carries it (`?token=...`)."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    if token is not None:
        at.query_params["token"] = token
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def empty_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_empty(empty_runs, page):
    at = app_at(page)
    assert at.title


def test_pages_with_runs_show_their_controls(full_runs, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(full_runs))
    home = app_at()
    assert any(b.label.startswith("▶ Run the whole demo") for b in home.button)
    assert any("held-out accuracy" in m.value for m in home.markdown)
    # the results card: both headline figures, answers as plain text, the way to Compare
    assert [m.label for m in home.metric] == ["Judge prefers Aligned (PPO) over SFT",
                                              "Correct answers, SFT → Aligned (PPO)"]
    assert any(t.value.startswith("Q: ") for t in home.text)
    assert any(link.value.startswith("All answers side by side on Compare") for link in home.get("page_link"))
    sft = app_at("app_pages/sft.py")
    assert sft.button(key="start.sft").label == "Start SFT run"
    assert sft.text_input(key="form.sft.model").value == "default"
    assert any("python -m pipelines sft --config sample_data/recipes/sft_quick.yaml" in c.value for c in sft.code)
    assert any("accelerate launch --config_file sample_data/accelerate/ddp.yaml --num_processes 2 -m pipelines sft"
               in c.value for c in sft.code)
    assert sft.number_input(key="processes.sft").value == 1
    assert sft.get("plotly_chart")  # the latest run's charts
    assert sft.metric[0].label == "Training loss" and "→" in sft.metric[0].value  # labelled, not raw JSON
    ppo = app_at("app_pages/ppo.py")
    assert ppo.get("plotly_chart") and any("Newest samples" in m.value for m in ppo.markdown)
    assert {"Judge's score", "Final KL to the SFT model"} <= {m.label for m in ppo.metric}
    compare = app_at("app_pages/compare.py")
    labels = [m.label for m in compare.metric]
    assert labels[:2] == ["Judge prefers Aligned (PPO) over SFT", "Correct answers, SFT → Aligned (PPO)"]
    assert "Aligned (PPO) beats SFT" in labels
    judged = " ".join(i.value for i in compare.info)
    assert "people judged: “Which reply is more polite and warm" in judged and "nothing else" in judged
    assert any("final KL to the SFT model" in c.value and "training average" in c.value for c in compare.caption)
    assert any("emoji_events:] judge's pick" in m.value for m in compare.markdown)
    assert any("Correct answers" in m.value and "Base model" in m.value for m in compare.markdown)
    assert any("reference answer: knives" in m.value for m in compare.markdown)  # as text, not code
    graded = [m.value for m in compare.markdown if "correct]" in m.value or "wrong]" in m.value]
    assert len(graded) == 2 * 3  # two graded prompts, three models each
    assert any("reward hacking" in e.label for e in compare.expander)
    runs = app_at("app_pages/runs.py")
    assert runs.dataframe and runs.multiselect and runs.tabs
    studio = app_at("app_pages/studio.py")  # opens on two different models: SFT against the aligned one
    a, b = studio.selectbox(key="studio.new.a").value, studio.selectbox(key="studio.new.b").value
    assert a.endswith("-sft") and b.endswith("-ppo")


def test_compare_contrasts_two_labeler_instructions_and_home_offers_the_second(full_runs, tmp_path, monkeypatch):
    """After the brevity demo: two comparisons from one SFT model whose judges learned different instructions.
    (Made here by copying the demo's comparison and changing what its judge's labelers were asked.)"""
    runs = tmp_path / "runs"
    shutil.copytree(full_runs, runs)
    original = max(runs.glob("*-compare"))
    brevity = runs / (original.name + "-brevity")
    shutil.copytree(original, brevity)
    for name in ("compare_summary.json", "summary.json"):
        summary = json.loads((brevity / name).read_text())
        summary["labeler_instruction"] = "Which reply answers more briefly?"
        (brevity / name).write_text(json.dumps(summary))
    status = json.loads((brevity / "status.json").read_text())
    status["started_at"] += 60  # the newer one
    (brevity / "status.json").write_text(json.dumps(status))
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))

    compare = app_at("app_pages/compare.py")
    assert "Same model, different labeler instructions" in [h.value for h in compare.subheader]
    asked = [m.value for m in compare.markdown if m.value.startswith("**Judge's labelers were asked:**")]
    assert "Which reply answers more briefly?" in asked[0] and "Which reply is more polite and warm" in asked[1]
    assert any(m.value.startswith("**Aligned for: Which reply answers more briefly?") for m in compare.markdown)
    home = app_at()
    brevity_button = next(b for b in home.button if b.label == "▶ Align the same model for brevity")
    assert not brevity_button.disabled  # an SFT run exists


def test_methods_pages_after_the_methods_demo(methods_runs, monkeypatch):
    """DPO and GRPO pages show their latest run labelled; Compare offers a picker of runs and shows five models as a
    matrix; "Which approach?" follows the answers and reads every path's cost from the runs."""
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(methods_runs))
    dpo = app_at("app_pages/dpo.py")
    assert dpo.get("plotly_chart") and dpo.metric[0].label == "Loss"
    grpo = app_at("app_pages/grpo.py")
    assert grpo.get("plotly_chart") and grpo.metric[0].label == "Reward (answer)"
    assert any("Newest samples" in m.value for m in grpo.markdown)
    assert grpo.text_input(key="form.grpo.rewards").value == "answer"
    compare = app_at("app_pages/compare.py")
    assert compare.button(key="start.compare").label == "Start comparison"
    picker = compare.selectbox(key="form.compare.grpo_run")
    assert picker.value == "" and "latest" in picker.options  # left out by the quick recipe, one pick away
    assert len(compare.dataframe) == 1  # the win-rate matrix
    assert any("Aligned (GRPO)" in m.value and "Aligned (DPO)" in m.value for m in compare.markdown)
    approach = app_at("app_pages/approach.py")
    # the demo's 400 pairs are far below the guide's sizes for a judge: DPO
    assert any("400 comparisons: below the guide's 10,000-100,000" in c.value for c in approach.caption)
    assert approach.subheader[0].value == "Recommended: DPO (SFT → DPO)"
    approach.radio(key="approach.checkable").set_value("yes").run()
    assert approach.subheader[0].value == "Recommended: GRPO with a verifiable reward (SFT → GRPO)"
    approach.selectbox(key="approach.pairs").set_value("").run()
    approach.radio(key="approach.checkable").set_value("no").run()
    assert approach.subheader[0].value == "Recommended: SFT alone"
    costs = approach.table[0].value
    assert list(costs["measured from"]) == ["sft + reward + ppo", "sft + dpo", "sft + grpo", "sft"]
    assert all(value.endswith(" min") for value in costs["wall time"])


def test_a_form_keeps_its_edits_across_a_visit_to_another_page(empty_runs):
    """Streamlit forgets the widgets of a page it does not draw; the form puts the user's values back."""
    at = app_at("app_pages/sft.py")
    at.number_input(key="form.sft.lora_r").set_value(8).run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.switch_page("app_pages/sft.py")
    at.run()
    assert at.number_input(key="form.sft.lora_r").value == 8
    assert at.text_input(key="form.sft.model").value == "default"  # and the rest is still the preset's


def test_a_form_whose_session_holds_only_the_first_edit_shows_the_preset_elsewhere(empty_runs):
    """A user's first edit can land while the page's first run is still drawing: the session then holds that one
    value and nothing the form showed. Every other field still gets the quick preset's value, not its widget's
    bare default (learning rate 0, the first data file in the list), which is what a run would then start with."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state["preset.applied.sft"] = "quick"  # the cut-short run got as far as the preset
    at.session_state["form.saved.sft"] = {}
    at.session_state["form.sft.model"] = "my-model"
    at.run()
    at.switch_page("app_pages/sft.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    quick = yaml.safe_load((REPO / "sample_data" / "recipes" / "sft_quick.yaml").read_text())
    assert at.text_input(key="form.sft.model").value == "my-model"
    assert at.selectbox(key="form.sft.train_file").value == quick["train_file"]
    assert at.number_input(key="form.sft.learning_rate").value == pytest.approx(quick["learning_rate"])
    assert at.number_input(key="form.sft.max_steps").value == quick["max_steps"]


def test_a_bad_setting_is_shown_and_blocks_start(empty_runs):
    at = app_at("app_pages/sft.py")
    at.text_input(key="form.sft.lora_target_modules").set_value("")
    at.run()
    assert any("`lora_target_modules`" in shown(e.value) and "Fix" in shown(e.value) for e in at.error)
    assert at.button(key="start.sft").disabled


def test_reward_playground_scores_two_responses(full_runs, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(full_runs))
    at = app_at("app_pages/reward.py")
    at.button(key="FormSubmitter:playground-Score both").click()
    at.run(timeout=180)
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label: m.value for m in at.metric}
    assert "Score A" in labels and "Score B" in labels and labels["The judge prefers"] in ("A", "B")


def test_data_page_reports_problems_with_lines(empty_runs, tmp_path):
    uploads = empty_runs / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    bad = uploads / "test-broken.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n'
                   '{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    try:
        at = app_at("app_pages/data.py")
        at.radio[0].set_value("pairs")
        at.run()
        at.selectbox[0].set_value(str(bad.resolve()))
        at.run(timeout=120)
        assert not at.exception
        shown = str([d.value for d in at.dataframe])
        assert "missing field" in shown and "chosen == rejected" in shown
        assert {m.label: m.value for m in at.metric}["Records"] == "3"
    finally:
        bad.unlink()


def test_data_page_reads_a_hub_layout_folder_and_pages_long_problem_lists(empty_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_ANY_PATH", "1")  # the owner's choice: the page reads the test's folder
    folder = tmp_path / "paired"
    (folder / "data").mkdir(parents=True)
    rows = [{"question": f"q{i}", "response_j": f"yes {i}", "response_k": f"no {i}"} for i in range(450)]
    rows += [{"question": f"q{i}", "response_j": "same", "response_k": "same"} for i in range(450)]  # skipped
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    at = app_at("app_pages/data.py")
    at.radio[0].set_value("pairs")
    at.run()
    at.text_input[0].set_value(str(folder))  # "...or a Hub dataset or folder"
    at.text_input[1].set_value("question=prompt, response_j=chosen, response_k=rejected")
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Records"] == "900"
    assert {m.label: m.value for m in at.metric}["Usable"] == "450"
    pager = next(n for n in at.number_input if n.label.startswith("Page (of 3"))  # 450 problems, 200 a page
    pager.set_value(3)
    at.run(timeout=120)
    assert len(at.dataframe[0].value) == 50


def test_ui_launches_a_tiny_run_and_sees_its_metrics(empty_runs, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_ANY_PATH", "1")  # the owner's choice: a model folder outside the runs
    at = app_at("app_pages/sft.py")
    at.text_input(key="form.sft.model").set_value(str(tiny_model_dir))
    at.number_input(key="form.sft.max_steps").set_value(3)
    at.run()
    at.button(key="start.sft").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    job = jobs.active_job(empty_runs) or jobs.all_jobs(empty_runs)[0]
    assert job.command[:3] == [sys.executable, "-m", "pipelines"] and "--run-id" in job.command
    # A second start while it runs (the job needs seconds just to import torch) is refused, naming the run.
    assert job.alive
    with pytest.raises(jobs.Busy, match=f"already running: run `{job.run_dir.split('/')[-1]}`"):
        jobs.start_stage("sft", {"train_file": "x"}, empty_runs)
    deadline = time.time() + 180
    while job.alive and time.time() < deadline:
        time.sleep(0.5)
    run = Run(job.run_dir)
    assert run.status()["state"] == "completed", run.log_tail()
    at = app_at("app_pages/sft.py")  # a fresh session (a refresh) re-attaches from the run directory
    assert at.get("plotly_chart")
    assert any(run.id in shown(m.value) for m in at.markdown)
    assert len(run.metrics()) >= 3


def test_a_crashed_job_shows_as_failed(empty_runs):
    path = empty_runs / "crashed-sft"
    path.mkdir(parents=True)
    run = Run.create("sft", "stage: sft\n", empty_runs, run_id="crashed-sft")
    run.set_status(pid=999999999)  # a process that no longer exists, and never said goodbye
    assert run.status()["state"] == "failed" and "ended without reporting" in run.status()["error"]
    at = app_at("app_pages/runs.py")
    assert "failed" in str(at.dataframe[0].value)


def test_the_app_process_never_imports_torch(empty_runs):
    """Pages start jobs; only the jobs load torch (GPU memory is freed when a job exits)."""
    script = ("import sys; from streamlit.testing.v1 import AppTest\n"
              f"for page in {PAGES!r}:\n"
              f"    at = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=120); at.run()\n"
              "    at.switch_page(page); at.run(); assert not at.exception, page\n"
              "print('torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_a_crashed_run_with_a_checkpoint_offers_resume(empty_runs, tiny_sft_run):
    """A run whose process died after checkpointing: the Runs table shows its newest checkpoint, the panel a Resume
    button, and the button starts `python -m pipelines resume` on that run as a job."""
    import shutil

    path = empty_runs / "crashed-sft"
    shutil.copytree(tiny_sft_run, path)
    Run(path).set_status("running", pid=999999999, step=3)  # what a kill leaves: a dead pid that never reported
    (path / "summary.json").unlink()
    at = app_at("app_pages/runs.py")
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["step 3"] and list(table["status"]) == ["failed"]
    resume = at.button(key="runs.crashed-sft.resume")
    assert resume.label == "Resume from step 3"
    # Extend it rather than redo its three steps: set max_steps through the job runner as the CLI would.
    job = jobs.start_resume(path, ["max_steps=4"])
    assert job.command[3:] == ["resume", str(path), "--set", "max_steps=4"] and job.run_dir == str(path)
    deadline = time.time() + 180
    while job.alive and time.time() < deadline:
        time.sleep(0.5)
    status = Run(path).status()
    assert status["state"] == "completed" and status["step"] == 4, Run(path).log_tail()
    at = app_at("app_pages/runs.py")
    assert list(at.dataframe[0].value["resumed"]) == ["1×"]
    assert any("Resumed 1× (from step 3)" in c.value for c in at.caption)


def test_the_judge_is_never_shown_as_certain():
    from workbench.panels import percent_sure

    assert [percent_sure(p) for p in (0.5, 0.874, 0.9912, 0.99949, 1 / (1 + 2.718 ** -40))] == \
        ["50%", "87%", "99.1%", ">99.9%", ">99.9%"]


def test_damaged_run_folders_are_listed_as_damaged_and_break_no_page(full_runs, tmp_path, monkeypatch):
    """Run folders edited by hand or left by a failing disk: every page still renders, each damaged run says what
    is wrong with it, and `latest` goes on to the newest sound run."""
    from pipelines.runtime.runs import RunState, list_runs, resolve_run

    runs = tmp_path / "runs"
    shutil.copytree(full_runs, runs)
    damage = {"a-list": "[1, 2]", "not-json": "{\"state\": \"compl", "pid-word": json.dumps(
        {"state": "running", "stage": "sft", "pid": "abc", "started_at": "yesterday"}),
        "far-future": json.dumps({"state": "completed", "stage": "sft", "started_at": 1e300})}
    for name, text in damage.items():
        folder = runs / f"29991231-0000{len(name)}-{name}-sft"
        (folder / "adapter").mkdir(parents=True)
        (folder / "status.json").write_text(text, encoding="utf-8")
        (folder / "config.yaml").write_text("stage: sft\nmodel: [unclosed\n", encoding="utf-8")
        (folder / "summary.json").write_text("[\"not\", \"a\", \"summary\"]", encoding="utf-8")
        (folder / "metrics.jsonl").write_text("[1, 2]\n{\"step\": 1, \"loss\": 2.0}\n", encoding="utf-8")
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))
    damaged = [r for r in list_runs(runs) if r.status().get("damaged")]
    assert len(damaged) == 4 and all(r.state is RunState.FAILED for r in damaged)
    assert all("status.json is damaged" in r.status()["error"] for r in damaged)
    assert resolve_run("latest", "sft", runs).path.name == max(full_runs.glob("*-sft")).name
    for page in PAGES:
        app_at(page)  # asserts no exception
    page = app_at("app_pages/runs.py")
    table = page.dataframe[0].value
    assert set(table[table["run"].isin([r.id for r in damaged])]["status"]) == {"failed"}
    next(box for box in page.selectbox if box.label == "Run").set_value(damaged[0].id).run()
    assert not page.exception
    assert any("status.json is damaged" in shown(e.value) for e in page.error)  # the open run says what's wrong


def test_a_labeler_instruction_is_shown_as_typed_never_as_markdown(full_runs, tmp_path, monkeypatch):
    """An instruction comes from the data (a field, a README): an image link in it must not make every viewer's
    browser fetch the image, nor a colour or a link take effect."""
    runs = tmp_path / "runs"
    shutil.copytree(full_runs, runs)
    typed = "Which is politer? ![x](http://example.invalid/x.png) :red[loud] [link](http://example.invalid)"
    for folder in (max(runs.glob("*-compare")), max(runs.glob("*-reward"))):
        for name in ("compare_summary.json", "summary.json"):
            if (folder / name).exists():
                summary = json.loads((folder / name).read_text())
                summary["labeler_instruction"] = typed
                (folder / name).write_text(json.dumps(summary))
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))
    shown = []
    for page in ("app_pages/compare.py", "app_pages/reward.py", None):
        at = app_at(page)
        shown += [e.value for kind in ("markdown", "caption", "info") for e in getattr(at, kind)
                  if "Which is politer" in e.value]
    assert len(shown) >= 3  # Compare's note, the Reward page's caption, Home's results card
    for source in shown:
        assert "![x](" not in source and ":red[" not in source and "](http" not in source, source
        assert "\\!\\[x\\]\\(http\\://example\\.invalid/x\\.png\\)" in source, source


def test_shared_run_figures_are_the_plain_ones_and_follow_the_metrics(full_runs, tmp_path):
    """The live panel's charts are built once per version of metrics.jsonl and shared by every session: the same
    figures as built directly, and new ones as soon as the file changes."""
    import shutil

    from workbench import charts
    from workbench.panels import file_stamp, run_figures

    path = tmp_path / "ppo"
    shutil.copytree(next(full_runs.glob("*-ppo")), path)
    run = Run(path)
    plain = [f.to_plotly_json() for f in charts.stage_figures("ppo", run.metrics(), run.config())]
    shared = run_figures(str(path), "ppo", file_stamp(path / "metrics.jsonl"))
    assert plain and [f.to_plotly_json() for f in shared] == plain
    assert run_figures(str(path), "ppo", file_stamp(path / "metrics.jsonl")) is shared  # one build, shared
    rows = run.metrics()
    last = {**rows[-1], "step": rows[-1]["step"] + 1}
    with open(path / "metrics.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(last) + "\n")
    grown = run_figures(str(path), "ppo", file_stamp(path / "metrics.jsonl"))
    assert [f.to_plotly_json() for f in grown] == [f.to_plotly_json() for f in
                                                    charts.stage_figures("ppo", run.metrics(), run.config())]
    assert len(grown[0].data[0].x) == len(shared[0].data[0].x) + 1
