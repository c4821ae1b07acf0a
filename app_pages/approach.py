from pathlib import Path

import streamlit as st

from pipelines.data.formats import DATA_KINDS
from pipelines.errors import DataError
from pipelines.runtime.runs import finished_runs
from pipelines.stages import training_stages
from workbench import advice
from workbench.forms import data_files
from workbench.panels import as_text


@st.cache_data(show_spinner="Counting the records…", max_entries=16)
def count_records(kind: str, path: str, stamp: float) -> tuple[int, str | None]:
    """(usable records, the problem when the file cannot be read). Cached by file and modification time: every click
    on this page reruns it, and a user's file may hold 100,000 pairs."""
    try:
        return len(DATA_KINDS[kind].load(path)[0]), None
    except DataError as exc:
        return 0, str(exc)


def file_stamp(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


st.title("Which approach?")
st.markdown("Full RLHF (a judge, then PPO against it) is worth its cost for subjective quality, many comparisons and "
            "a model that lives long. Simpler roads serve better when answers can be checked, comparisons are few, "
            "the work is a prototype or compute is tight. Answer five questions; the counts come from your own data "
            "files and the costs from your own runs on this machine.")

left, right = st.columns(2)
with left:
    checkable = st.radio("Can a rule check whether an answer is right (a number, a word, a format)?",
                         ["yes", "partly", "no"], index=2, horizontal=True, key="approach.checkable")
    subjective = st.radio("How subjective is a good answer (tone, helpfulness, taste)?",
                          ["objective", "somewhat", "very"], index=2, horizontal=True, key="approach.subjective")
    lifetime = st.radio("Is this a prototype, or a model people will use for a long time?",
                        ["prototype", "long-lived"], horizontal=True, key="approach.lifetime")
    compute = st.radio("What will it train on?", ["cpu", "one-gpu", "several-gpus"], index=1, horizontal=True,
                       format_func={"cpu": "a CPU", "one-gpu": "one GPU", "several-gpus": "several GPUs"}.get,
                       key="approach.compute")
with right:
    st.markdown("**Your data**, counted against the guide's sizes (the demo's files until you pick yours)")
    files = ["", *data_files()]
    counts = {}
    for kind, label in (("examples", "Examples (SFT file)"), ("pairs", "Comparisons (pairs file)"),
                        ("prompts", "Prompts (prompts file)")):
        demo_file = DATA_KINDS[kind].sample
        picked = st.selectbox(label, files, index=files.index(demo_file) if demo_file in files else 0,
                              format_func=lambda v: v or "(none)", key=f"approach.{kind}")
        counts[kind], problem = count_records(kind, picked, file_stamp(picked)) if picked else (0, None)
        if problem:
            st.error(as_text(problem))
        if picked:
            st.caption(advice.size_verdict(kind, counts[kind]))

key, reasons = advice.recommend(advice.Answers(checkable, subjective, counts["pairs"], lifetime, compute))
with st.container(border=True):
    st.subheader(f"Recommended: {advice.APPROACHES[key]}")
    for reason in reasons:
        st.markdown(f"- {reason}")
    st.page_link(f"app_pages/{advice.PATHS[key][-1]}.py", label="Go to that stage", icon=":material/arrow_forward:")

st.subheader("What each path cost here")
costs = {}
for stage in (s.id for s in training_stages()):
    finished = finished_runs(stage)
    costs[stage] = finished[0].cost() if finished else (None, None)
st.table(advice.path_rows(costs))
st.caption("Wall time from each stage's latest finished run (loading included), summed along the path; memory is "
           "the largest peak of its stages. Run the methods demo on Home to measure every path on the same data.")
