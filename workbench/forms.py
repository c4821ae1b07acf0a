"""Settings forms built from the stage config dataclasses: labels, help, bounds and choices all come from the
fields' metadata, so the form, `--help` and the YAML recipes can never disagree."""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st
import yaml

from pipelines.config import DATA_FIELDS, StageConfig, describe_fields
from pipelines.errors import ConfigError
from pipelines.runtime.runs import default_runs_dir, finished_runs
from pipelines.stages import STAGES, run_fields
from workbench import access
from workbench.jobs import REPO, launcher_args

RECIPES = REPO / "sample_data" / "recipes"
PRESETS = {"quick": "Quick CPU demo", "gpu": "Consumer GPU (QLoRA)"}
# The sections of a form, by the fields' `group`; "method" holds the stage's own algorithm settings and takes its name.
GROUP_TITLES = {"model": "Model", "data": "Data", "training": "Training", "lora": "LoRA adapter",
                "generation": "Sampling", "rewards": "Reward", "run": "Run", "checkpoints": "Checkpoints",
                "watch": "Reward-hacking watch"}
FILE_FIELDS = set(DATA_FIELDS)


def preset_values(stage: str, preset: str) -> dict:
    path = RECIPES / f"{stage}_{preset}.yaml"
    values = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    values.pop("stage", None)
    return values


def uploads_dir() -> Path:
    """Where uploaded and exported datasets go: beside the runs, so one folder holds a user's own work."""
    return default_runs_dir().resolve() / "uploads"


def shown_path(path: Path) -> str:
    """Relative to the repository where possible (what a recipe would say), absolute otherwise."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(Path(path).resolve())


def data_files() -> list[str]:
    """Sample data, and everything uploaded on the Data page or exported from the preference studio."""
    files = sorted(shown_path(p) for pattern in ("*.jsonl", "*/*.jsonl") for p in (REPO / "sample_data").glob(pattern))
    if uploads_dir().is_dir():
        files += sorted(shown_path(p) for p in uploads_dir().iterdir() if p.is_file())
    return files


def _key(stage: str, name: str) -> str:
    return f"form.{stage}.{name}"


def _shown_value(row: dict, values: dict):
    """A field's value from a preset's values (or the dataclass default), as its widget holds it."""
    value = values.get(row["name"], row["default"])
    return ", ".join(value) if isinstance(value, list) else value


def apply_preset(stage: str, preset: str) -> None:
    """Reset every widget of the form to the preset's value (or the dataclass default)."""
    values = preset_values(stage, preset)
    for row in describe_fields(STAGES[stage].config):
        st.session_state[_key(stage, row["name"])] = _shown_value(row, values)


def settings_form(stage: str) -> dict:
    """Draw the form; return the values the user set, as a dict keyed by field name.

    Each widget's value is written to the session before it is drawn, on every run: the current value, else the
    form's own copy of what it last showed (`form.saved.<stage>`), else the quick preset's. Two Streamlit behaviours
    make both parts necessary. It forgets a widget's value after any run that does not draw it (a visit to another
    page), and a forgotten widget comes back at its bare default: a number input's minimum, a selectbox's first
    option. And a value reaches the browser only with the run that wrote it; the browser otherwise keeps its own
    copy, which is that bare default for a widget it first drew from a later run. That happened when a first edit
    landed while the page's first run was still being drawn: the browser sent learning rate 0 and the first file of
    the list back with the next edit, and Start launched an SFT run on them."""
    saved = st.session_state.setdefault(f"form.saved.{stage}", {})
    rows = describe_fields(STAGES[stage].config)
    quick = None
    for row in rows:
        key = _key(stage, row["name"])
        if key in st.session_state:
            value = st.session_state[key]
        elif row["name"] in saved:
            value = saved[row["name"]]
        else:
            quick = preset_values(stage, "quick") if quick is None else quick
            value = _shown_value(row, quick)
        st.session_state[key] = value
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("group", "training"), []).append(row)
    values = {}
    for group, fields in groups.items():
        title = STAGES[stage].title if group == "method" else GROUP_TITLES.get(group, group.title())
        with st.expander(title, expanded=group in ("model", "data", "training")):
            columns = st.columns(2)
            for i, row in enumerate(fields):
                with columns[i % 2]:
                    values[row["name"]] = _widget(stage, row)
    saved.update({row["name"]: st.session_state[_key(stage, row["name"])] for row in rows
                  if _key(stage, row["name"]) in st.session_state})
    return values


def _widget(stage: str, row: dict):
    name, key, help_text = row["name"], _key(stage, row["name"]), row["help"]
    label = name.replace("_", " ")
    default = row["default"]
    if name in run_fields():
        runs = [str(r.path) for r in finished_runs(run_fields()[name].id)]
        options = ["latest", *runs] + ([""] if name != "reward_run" else [])
        current = st.session_state[key]  # settings_form wrote it
        if current not in options:
            options.append(current)
        return st.selectbox(label, options, key=key, help=help_text,
                            format_func=lambda v: "(none)" if v == "" else Path(v).name if "/" in v else v)
    if name in FILE_FIELDS:
        options = ([""] if name == "eval_file" else []) + data_files()
        current = st.session_state[key]  # settings_form wrote it
        if current not in options:
            options.append(current)
        # accept_new_options: a Hub dataset id (or any path) can be typed in as well as picked
        return st.selectbox(label, options, key=key, help=help_text + " Pick a file (upload more on the Data page) "
                            "or type a Hub dataset id.", format_func=lambda v: v or "(none)",
                            accept_new_options=True)
    if "choices" in row:
        return st.selectbox(label, row["choices"], key=key, help=help_text)
    if name == "trust_remote_code" and not access.remote_code_allowed():  # never a visitor's to switch on
        st.session_state[key] = False
        return st.checkbox(label, key=key, disabled=True, help=help_text + f" Off: the owner allows it by starting "
                           f"the app with {access.REMOTE_CODE_ENV}=1.")
    if isinstance(default, bool):
        return st.checkbox(label, key=key, help=help_text)
    if isinstance(default, int):
        return st.number_input(label, key=key, help=help_text, step=1, min_value=row.get("min"),
                               max_value=row.get("max"))
    if isinstance(default, float):
        return st.number_input(label, key=key, help=help_text, min_value=float(row["min"]) if "min" in row else None,
                               max_value=float(row["max"]) if "max" in row else None, format="%g",
                               step=_float_step(default))
    if isinstance(default, list):
        text = st.text_input(label, key=key, help=help_text + " Comma-separated.")
        return [v.strip() for v in str(text).split(",") if v.strip()]
    return st.text_input(label, key=key, help=help_text)


def _float_step(default: float) -> float:
    """A tenth of the default: fine enough for learning rates, coarse enough for temperatures."""
    return abs(default) / 10 if default else 0.01


def build_config(stage: str, values: dict) -> tuple[StageConfig | None, str | None]:
    """The validated config, or the message of the first problem (named field and fix): a setting out of bounds, a
    path outside what the pages may read, remote code the owner did not allow."""
    for name, value in values.items():
        if name in FILE_FIELDS or name == "model" or name in run_fields():
            if problem := access.path_problem(name, value):
                return None, problem
    if problem := access.remote_code_problem(values.get("trust_remote_code", False)):
        return None, problem
    try:
        return STAGES[stage].config.from_dict(values, "the form"), None
    except ConfigError as exc:
        return None, str(exc)


def command_line(stage: str, values: dict, preset: str, processes: int = 2) -> tuple[str, str]:
    """The CLI line that does what the form says (the preset recipe plus `--set` for every change), and the same
    under `accelerate launch` with `processes` processes."""
    base = preset_values(stage, preset)
    defaults = {row["name"]: row["default"] for row in describe_fields(STAGES[stage].config)}
    changes = []
    for name, value in values.items():
        if value != base.get(name, defaults[name]):
            shown = ",".join(value) if isinstance(value, list) else value
            changes += ["--set", f"{name}={shown}"]
    recipe = RECIPES / f"{stage}_{preset}.yaml"
    args = [stage, "--config", str(recipe.relative_to(REPO)), *changes]
    return (shlex.join(["python", "-m", "pipelines", *args]),
            shlex.join(["accelerate", *launcher_args(processes), "-m", "pipelines", *args]))
