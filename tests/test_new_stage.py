"""A stage is one record: a stage defined here, and nowhere else, is offered by the CLI (`--help`, a run), the stage
page's form, the Runs page and the charts, with no other file changed."""

import dataclasses
import typing
from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from pipelines.cli import main
from pipelines.config import TrainingConfig, setting
from pipelines.runtime.runs import Run
from pipelines.stages import STAGES, register
from pipelines.stages.stage import Chart, Stage
from tests.conftest import REPO


@dataclass
class EchoConfig(TrainingConfig):
    """Echo: a stage that only counts, for the test that a stage lives in one place."""

    stage: typing.ClassVar[str] = "echo"

    loudness: float = setting(0.5, "How loud the echo starts.", min=0.0, max=1.0, group="method")


def run_echo(config: EchoConfig, run: Run, resume=None) -> dict:
    for step in range(1, config.max_steps + 1):
        run.log_metrics({"step": step, "echo/loudness": config.loudness / step})
    return {"steps": config.max_steps, "final_loudness": config.loudness / config.max_steps}


ECHO = Stage(config=EchoConfig, run=run_echo, title="Echo", page_title="Echo · a stage defined in a test",
             intro="It only counts.", icon=":material/graphic_eq:", section="Simpler approaches",
             figures=lambda summary: [("Final loudness", f"{summary['final_loudness']:.3f}")],
             charts=(Chart("How loud", "loudness", (("echo/loudness", "echo"),)),))


@pytest.fixture
def echo_stage(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "echo", ECHO)  # taken out again after the test
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_register_adds_a_stage_and_refuses_a_second_of_the_same_name():
    try:
        assert register(ECHO) is STAGES["echo"]
        with pytest.raises(ValueError, match="exists already"):
            register(dataclasses.replace(ECHO, title="another echo"))
    finally:
        STAGES.pop("echo", None)


def test_the_cli_offers_and_runs_a_stage_defined_in_one_place(echo_stage, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "echo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["echo", "--help"])
    help_text = capsys.readouterr().out
    assert "loudness" in help_text and "How loud the echo starts." in help_text
    assert main(["echo", "--set", "max_steps=3", "--set", "loudness=0.9", "--runs-dir", str(echo_stage)]) == 0
    run = Run(capsys.readouterr().out.strip().splitlines()[-1])
    assert run.stage == "echo" and run.completed
    assert [m["echo/loudness"] for m in run.metrics()] == pytest.approx([0.9, 0.45, 0.3])
    assert main(["echo", "--set", "loudness=2", "--runs-dir", str(echo_stage)]) == 2  # its bounds, checked
    assert "above its maximum 1.0" in capsys.readouterr().err


def test_the_stage_page_form_the_runs_page_and_the_charts_show_it(echo_stage, capsys):
    from workbench import charts, results

    assert main(["echo", "--set", "max_steps=4", "--runs-dir", str(echo_stage)]) == 0
    run = Run(capsys.readouterr().out.strip().splitlines()[-1])
    assert [f.layout.title.text for f in charts.stage_figures("echo", run.metrics())] == ["How loud"]
    assert charts.metric_name("echo/loudness") == "How loud: echo"
    assert results.summary_figures("echo", run.summary())[0] == ("Final loudness", "0.125")

    def echo_page():
        from workbench.panels import stage_page

        stage_page("echo")

    page = AppTest.from_function(echo_page, default_timeout=60).run()
    assert not page.exception, [e.value for e in page.exception]
    assert page.title[0].value == "Echo · a stage defined in a test"
    assert page.number_input(key="form.echo.loudness").value == 0.5  # the form, from the config's fields
    assert any(e.label == "Echo" for e in page.expander)  # its own settings, under its name
    assert any(b.label == "Start ECHO run" for b in page.button)

    frame = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()  # its page joins the navigation
    assert not frame.exception, [e.value for e in frame.exception]

    runs = AppTest.from_file(str(REPO / "app_pages" / "runs.py"), default_timeout=60).run()
    assert not runs.exception, [e.value for e in runs.exception]
    table = runs.dataframe[0].value
    row = table[table["run"] == run.id].iloc[0]
    assert row["stage"] == "echo" and row["key figure"] == "Final loudness 0.125"
    assert any("How loud: echo" in box.options for box in runs.selectbox)  # its curves, named, in the overlay
