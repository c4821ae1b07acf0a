import json
import time
from pathlib import Path

import streamlit as st

from workbench import jobs
from workbench.forms import data_files, shown_path, uploads_dir
from workbench.jobs import REPO

st.title("Data")
st.markdown("Pick or upload a dataset for a stage and check it before training: the detected format, counts, a "
            "preview, token lengths against `max_length`, and every problem with its line.")
KINDS = {"sft": "SFT examples (messages, prompt/completion, Alpaca, text)",
         "reward": "Preference pairs (prompt/chosen/rejected, or chosen/rejected transcripts)",
         "ppo": "Prompts (prompt, or messages)"}
kind = st.radio("For stage", list(KINDS), format_func=KINDS.get)

uploaded = st.file_uploader("Upload a file", type=["jsonl", "json", "csv", "parquet"])
if uploaded is not None:
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(uploaded.name).name
    target.write_bytes(uploaded.getvalue())
    st.success(f"Saved as `{shown_path(target)}`; it is now offered in the stage forms.")
files = data_files()
default = {"sft": "sample_data/sft_train.jsonl", "reward": "sample_data/prefs_train.jsonl",
           "ppo": "sample_data/prompts_train.jsonl"}[kind]
path = st.selectbox("File", files, index=files.index(default) if default in files else 0)
max_length = st.number_input("max_length (tokens)", min_value=16, max_value=131072, value=128 if kind != "ppo"
                             else 256, step=16)


@st.cache_data(show_spinner=False, max_entries=32)
def inspect(kind: str, path: str, mtime: float, max_length: int) -> dict:
    done = jobs.run_cli(["inspect", "--stage", kind, "--file", path, "--max-length", str(max_length)])
    if done.returncode != 0:
        return {"fatal": jobs.last_error_line(done.stderr)}
    return json.loads(done.stdout.strip().splitlines()[-1])


with st.spinner("Reading and tokenizing (the tokenizer loads in a few seconds)..."):
    report = inspect(kind, path, (REPO / path).stat().st_mtime if (REPO / path).exists() else time.time(),
                     int(max_length))
if report.get("fatal"):
    st.error(report["fatal"])
    st.stop()
cols = st.columns(4)
cols[0].metric("Format", report["format"])
cols[1].metric("Records", report["total"])
cols[2].metric("Usable", report["kept"])
cols[3].metric("Problems", len(report["errors"]) + len(report["skipped"]))
if report["errors"]:
    st.error(f"{len(report['errors'])} record(s) make this file unusable until fixed:")
    st.dataframe([{"line": line, "problem": msg} for line, msg in report["errors"]], hide_index=True)
if report["skipped"]:
    st.warning(f"{len(report['skipped'])} record(s) will be skipped:")
    st.dataframe([{"line": line, "reason": msg} for line, msg in report["skipped"]], hide_index=True)
tokens = report.get("tokens")
if tokens:
    over = tokens["over_max_length"]
    st.markdown(f"**Token lengths** (prompt + response, chat template applied): min {tokens['min']}, median "
                f"{tokens['median']}, 95th percentile {tokens['p95']}, max {tokens['max']}.")
    if over:
        action = "dropped or have their prompt cut" if kind == "reward" else "truncated"
        st.warning(f"{over} of {report['kept']} records are longer than max_length={tokens['max_length']} and will "
                   f"be {action}. Raise max_length to keep them whole.")
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=tokens["lengths"], nbinsx=40))
    fig.add_vline(x=tokens["max_length"], line_dash="dash", line_color="crimson", annotation_text="max_length")
    fig.update_layout(height=250, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="tokens")
    st.plotly_chart(fig, width="stretch")
st.markdown("**Preview** (normalised to chat messages, as the trainer sees them)")
st.json(report["preview"], expanded=False)
