import json
from pathlib import Path

import streamlit as st

from pipelines.data.formats import DATA_KINDS
from pipelines.stages import training_stages
from workbench import access, jobs
from workbench.forms import data_files, shown_path, uploads_dir
from workbench.jobs import REPO
from workbench.panels import as_text

st.title("Data")
st.markdown("Pick or upload a dataset for a stage and check it before training: the detected format, counts, a "
            "preview, token lengths against `max_length`, and every problem with its line.")
# `inspect --stage` reads each kind of data as the first stage that trains on it does.
READER = {kind: next(s.id for s in training_stages() if s.data == kind) for kind in DATA_KINDS}
kind = st.radio("For stage", list(DATA_KINDS), format_func=lambda k: DATA_KINDS[k].description)

default = DATA_KINDS[kind].sample
if st.session_state.get("data.kind") != kind:  # another stage: its sample file, as before
    st.session_state["data.kind"], st.session_state["data.file"] = kind, default
uploaded = st.file_uploader("Upload a file", type=["jsonl", "json", "csv", "parquet"])
if uploaded is not None:
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(uploaded.name).name
    if st.session_state.get("data.uploaded") != (uploaded.file_id, kind):
        target.write_bytes(uploaded.getvalue())
        st.session_state["data.uploaded"] = (uploaded.file_id, kind)
        st.session_state["data.file"] = shown_path(target)  # check the new file at once, not the one picked before
    st.success(f"Saved as `{shown_path(target)}`; it is now offered in the stage forms.")
files = data_files()
if st.session_state.get("data.file") not in files:
    st.session_state["data.file"] = default if default in files else files[0]
left, right = st.columns([3, 2])
path = left.selectbox("File", files, key="data.file")
hub = right.text_input("...or a Hub dataset or folder", placeholder="owner/name[:config][:split]",
                       help="A Hub dataset id (loaded through `datasets` into the Hugging Face cache; needs internet "
                            "the first time), or a local folder in the Hub layout (data files under `data/`). "
                            "`:split` picks a split (default `train`), `:config:split` a config too.")
if problem := access.path_problem("...or a Hub dataset or folder", hub.strip()):
    st.error(as_text(problem))
    st.stop()
path = hub.strip() or path
column_map = st.text_input("Column mapping (optional)", placeholder="question=prompt, response_j=chosen, "
                           "response_k=rejected", help="When the data's fields have other names: from=to pairs. "
                           "The stage forms have the same setting (`column map`, in Data).")
max_length = st.number_input("max_length (tokens)", min_value=16, max_value=131072, value=256 if kind == "prompts"
                             else 128, step=16)


def inspect(kind: str, path: str, max_length: int, column_map: str) -> dict:
    """The CLI's `inspect` report, with a progress bar while a large file is tokenized; remembered per file version."""
    key = (kind, path, version(REPO / path), max_length, column_map)
    cache = st.session_state.setdefault("data.reports", {})
    if key in cache:
        return cache[key]
    bar = st.progress(0.0, text="Reading the data and loading the tokenizer...")
    lines = jobs.stream_cli(["inspect", "--stage", READER[kind], "--file", path, "--max-length", str(max_length),
                             "--column-map", column_map])
    while True:
        try:
            line = next(lines)
        except StopIteration as end:
            done = end.value
            break
        if line.startswith("progress "):
            count, total = map(int, line.split()[1:3])
            bar.progress(count / total, text=f"Tokenizing: {count:,} of {total:,} records")
    bar.empty()
    if done.returncode != 0:
        report = {"fatal": jobs.last_error_line(done.stderr)}
    else:
        report = json.loads(done.stdout.strip().splitlines()[-1])
        cache[key] = report
        while len(cache) > 8:  # each report holds every record's length: keep the last few
            cache.pop(next(iter(cache)))
    return report


def version(path: Path) -> float:
    """When a file, or the newest file in a dataset folder, last changed (0 for a Hub id)."""
    if path.is_file():
        return path.stat().st_mtime
    if path.is_dir():
        return max((f.stat().st_mtime for f in path.rglob("*") if f.is_file()), default=0.0)
    return 0.0


report = inspect(kind, path, int(max_length), column_map)
if report.get("fatal"):
    st.error(as_text(report["fatal"]))
    st.stop()
st.markdown(f"**Checked:** {as_text(path)} · **format:** {report['format']}")  # as text: a metric would cut it off
cols = st.columns(3)
cols[0].metric("Records", report["total"])
cols[1].metric("Usable", report["kept"])
cols[2].metric("Problems", len(report["errors"]) + len(report["skipped"]))
PAGE = 200


def problems_table(rows: list, column: str, key: str) -> None:
    """One page of a problem list at a time: 100,000 rows would take the browser minutes to draw."""
    page = 1
    if len(rows) > PAGE:
        pages = -(-len(rows) // PAGE)
        page = st.number_input(f"Page (of {pages}, {PAGE} per page)", min_value=1, max_value=pages, value=1,
                               key=key)
    shown = rows[(page - 1) * PAGE:page * PAGE]
    st.dataframe([{"line": line, column: msg} for line, msg in shown], hide_index=True)


if report["errors"]:
    st.error(f"{len(report['errors'])} record(s) make this file unusable until fixed:")
    problems_table(report["errors"], "problem", "data.errors.page")
if report["skipped"]:
    st.warning(f"{len(report['skipped'])} record(s) will be skipped:")
    problems_table(report["skipped"], "reason", "data.skipped.page")
tokens = report.get("tokens")
if tokens:
    over = tokens["over_max_length"]
    st.markdown(f"**Token lengths** (prompt + response, chat template applied): min {tokens['min']}, median "
                f"{tokens['median']}, 95th percentile {tokens['p95']}, max {tokens['max']}.")
    if over:
        st.warning(f"{over} of {report['kept']} records are longer than max_length={tokens['max_length']} and will "
                   f"be {DATA_KINDS[kind].too_long}. Raise max_length to keep them whole.")
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=tokens["lengths"], nbinsx=40))
    fig.add_vline(x=tokens["max_length"], line_dash="dash", line_color="crimson", annotation_text="max_length")
    fig.update_layout(height=250, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="tokens", yaxis_title="records")
    st.plotly_chart(fig, width="stretch")
st.markdown("**Preview** (normalised to chat messages, as the trainer sees them)")
st.json(report["preview"], expanded=False)


def audit(path: str, eval_path: str, column_map: str) -> dict:
    """The CLI's `audit` report of a pairs file; remembered per file version."""
    key = (path, version(REPO / path), eval_path, version(REPO / eval_path) if eval_path else 0, column_map)
    cache = st.session_state.setdefault("data.audits", {})
    if key not in cache:
        args = ["audit", "--stage", READER[kind], "--file", path, "--column-map", column_map]
        with st.spinner("Auditing the pairs..."):
            done = jobs.run_cli(args + (["--eval-file", eval_path] if eval_path else []))
        if done.returncode != 0:
            return {"fatal": jobs.last_error_line(done.stderr)}
        cache[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return cache[key]


if kind == "pairs" and not report["errors"]:
    st.subheader("Audit: what a judge would learn from these pairs")
    st.caption("Repeated pairs weigh more, pairs preferred both ways are noise, and when the chosen answer is nearly "
               "always the longer one a judge can score well by counting words.")
    eval_path = st.selectbox("Held-out pairs (optional): the prompts they share with this file are counted",
                             ["", *[f for f in files if f != path]], format_func=lambda v: v or "(none)",
                             key="data.audit.eval")
    found = audit(path, eval_path, column_map)
    if found.get("fatal"):
        st.error(as_text(found["fatal"]))
    else:
        cols = st.columns(5)
        cols[0].metric("Pairs", found["pairs"])
        cols[1].metric("Duplicates", found["duplicates"], help="exact, or the same up to case and punctuation")
        cols[2].metric("Identical answers", found["identical"], help="left out of training")
        cols[3].metric("Contradictions", found["contradictions"], help="the same answers, preferred both ways")
        share = found["chosen_longer_share"]
        cols[4].metric("Chosen is longer", f"{share:.0%}" if share is not None else "-",
                       help="of the pairs whose answers differ in length; about half is what unbiased labels give")
        if found.get("eval_overlap") is not None:
            st.caption(f"{found['eval_overlap']} of {found['eval_pairs']} held-out pairs share a prompt with this "
                       "file.")
        for warning in found["warnings"]:
            st.warning(as_text(warning))
        lines = {"duplicate of": [(d["line"], f"line {d['same_as']}") for d in found["duplicate_lines"]],
                 "preferred both ways": [(group[0], "lines " + ", ".join(map(str, group)))
                                         for group in found["contradiction_lines"]]}
        shown = [{"line": line, "finding": f"{what} {detail}"} for what, rows in lines.items() for line, detail in rows]
        if shown:
            st.dataframe(shown, hide_index=True)
        if found.get("groups"):
            st.caption("Pairs per " + "; ".join(f"{field}: " + ", ".join(f"{as_text(k)} {v}" for k, v in counts.items())
                                              for field, counts in found["groups"].items()))
