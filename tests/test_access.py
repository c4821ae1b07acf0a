"""Who may do what from a browser: the token gate, the viewer mode, and what only the owner can allow where the app
starts (remote model code, paths outside sample_data/ and the runs folder). The real-browser check of the same is
in tests/test_browser.py."""

from __future__ import annotations

import pytest

from pipelines.runtime.runs import Run
from tests.conftest import shown
from tests.test_app import app_at
from workbench import access, forms, jobs

OWNER_TOKEN, VIEWER_TOKEN = "owner-secret-1", "viewer-secret-2"


@pytest.fixture
def shared(full_runs, monkeypatch):
    """The app as shared on a network, over the test chain's finished runs."""
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(full_runs))
    monkeypatch.setenv(access.TOKEN_ENV, OWNER_TOKEN)
    monkeypatch.setenv(access.VIEWER_TOKEN_ENV, VIEWER_TOKEN)
    access.tokens.cache_clear()
    yield full_runs
    access.tokens.cache_clear()


def test_tokens_are_asked_beyond_this_machine_only(monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    monkeypatch.delenv(access.VIEWER_TOKEN_ENV, raising=False)
    assert not access.tokens_required("localhost") and not access.tokens_required("127.0.0.1")
    assert access.tokens_required("0.0.0.0") and access.tokens_required("192.168.1.20")
    monkeypatch.setenv(access.TOKEN_ENV, "x")
    assert access.tokens_required("localhost")  # the owner set one: asked for here too


def test_without_a_token_a_visitor_sees_only_the_login(shared):
    at = app_at()
    assert [t.label for t in at.text_input] == ["Access token"]
    assert [b.label for b in at.button] == ["Open"]
    assert not at.get("plotly_chart") and not at.metric and not at.sidebar.caption  # nothing of the workbench
    at.text_input[0].set_value("guess")
    at.button[0].click().run()
    assert any("not right" in e.value for e in at.error)
    at.text_input[0].set_value(VIEWER_TOKEN)
    at.button[0].click().run()
    assert not at.text_input and any("Viewer" in c.value for c in at.sidebar.caption)


def test_a_viewer_watches_and_cannot_start_stop_delete_or_export(shared):
    home = app_at(token=VIEWER_TOKEN)
    assert [m.label for m in home.metric][:1] == ["Judge prefers Aligned (PPO) over SFT"]  # results are shown
    assert not [b for b in home.button if "demo" in b.label.lower() or "Align" in b.label]
    # kept in the address, so a refresh stays signed in
    assert home.query_params["token"] in (VIEWER_TOKEN, [VIEWER_TOKEN])
    sft = app_at("app_pages/sft.py", VIEWER_TOKEN)
    assert sft.get("plotly_chart") and not sft.button and not sft.text_input  # curves, no form, no Start
    assert any("You are watching" in c.value for c in sft.caption)
    runs = app_at("app_pages/runs.py", VIEWER_TOKEN)
    assert runs.dataframe and [t.label for t in runs.tabs] == ["Charts and log", "Config"]
    assert not runs.button and not runs.checkbox
    compare = app_at("app_pages/compare.py", VIEWER_TOKEN)
    assert compare.metric and not compare.button
    reward = app_at("app_pages/reward.py", VIEWER_TOKEN)
    assert not reward.get("form") and not reward.button
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a viewer's navigation
        app_at("app_pages/data.py", VIEWER_TOKEN)
    assert not jobs.all_jobs(shared)


def test_the_owner_gets_every_control(shared):
    home = app_at(token=OWNER_TOKEN)
    assert any(b.label.startswith("▶ Run the whole demo") for b in home.button)
    assert app_at("app_pages/sft.py", OWNER_TOKEN).button(key="start.sft")
    assert [t.label for t in app_at("app_pages/runs.py", OWNER_TOKEN).tabs][-2:] == ["Export", "Delete"]
    app_at("app_pages/data.py", OWNER_TOKEN)


def test_a_path_outside_the_allowed_folders_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv(access.ANY_PATH_ENV, raising=False)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text('{"prompt": "q", "completion": "a"}\n')
    inside = tmp_path / "runs" / "uploads" / "mine.jsonl"
    inside.parent.mkdir(parents=True)
    inside.write_text(outside.read_text())
    assert access.path_problem("train_file", "sample_data/sft_train.jsonl") is None
    assert access.path_problem("train_file", str(inside)) is None
    assert access.path_problem("model", "HuggingFaceTB/SmolLM2-135M") is None  # a Hub id
    problem = access.path_problem("train_file", str(outside))
    assert "`train_file`" in problem and "outside the folders" in problem and access.ANY_PATH_ENV in problem
    assert "outside the folders" in access.path_problem("model", "/etc")
    at = app_at("app_pages/sft.py")
    at.text_input(key="form.sft.model").set_value(str(tmp_path)).run()  # a model folder outside
    assert any("outside the folders" in shown(e.value) for e in at.error) and at.button(key="start.sft").disabled
    data = app_at("app_pages/data.py")
    data.text_input[0].set_value("/etc").run()
    assert any("outside the folders" in shown(e.value) for e in data.error) and not data.metric
    monkeypatch.setenv(access.ANY_PATH_ENV, "1")
    assert access.path_problem("train_file", str(outside)) is None


def test_remote_code_is_the_owners_choice_not_a_checkbox(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv(access.REMOTE_CODE_ENV, raising=False)
    at = app_at("app_pages/sft.py")
    box = at.checkbox(key="form.sft.trust_remote_code")
    assert box.disabled and box.value is False and access.REMOTE_CODE_ENV in box.help
    config, problem = forms.build_config("sft", {"trust_remote_code": True})
    assert config is None and access.REMOTE_CODE_ENV in problem
    monkeypatch.setenv(access.REMOTE_CODE_ENV, "1")
    at = app_at("app_pages/sft.py")
    assert not at.checkbox(key="form.sft.trust_remote_code").disabled


def test_a_running_run_offers_no_delete(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))
    Run.create("sft", "stage: sft\n", runs, run_id="live")  # this test's own process: alive
    at = app_at("app_pages/runs.py")
    assert any("stop it before deleting" in c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Delete run"] and not at.checkbox


def test_a_folder_hidden_in_a_dataset_id_or_a_run_list_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv(access.ANY_PATH_ENV, raising=False)
    (tmp_path / "runs").mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    assert "outside the folders" in access.path_problem("train_file", f"{elsewhere}:train")
    assert "outside the folders" in access.path_problem("train_file", f"sample_data:{elsewhere}:train")
    assert "outside the folders" in access.path_problem("ppo_run", f"{tmp_path / 'runs'},{elsewhere}")
    assert access.path_problem("train_file", "Anthropic/hh-rlhf:helpful-base:train") is None
    assert access.path_problem("ppo_run", "latest") is None
