import json
import time

import streamlit as st

from pipelines.runs import list_runs, read_jsonl
from workbench import charts, jobs
from workbench.panels import show_text

st.title("Compare: base vs SFT vs aligned")
st.markdown("The same prompts, answered by the untouched base model, the SFT model and the PPO (aligned) model with "
            "the same sampling seed; every answer scored by the judge. The winner of each prompt is marked :material/emoji_events:.")

compares = [r for r in list_runs(stage="compare") if r.status().get("state") == "completed"]

with st.expander("Ask your own prompts", expanded=not compares):
    typed = st.text_area("One prompt per line", "What is the capital of Italy?\nHow many legs does a spider have?")
    can_run = all(list_runs(stage=s) for s in ("sft", "reward", "ppo"))
    if not can_run:
        st.caption("Needs a finished SFT, reward and PPO run (the Home page's demo makes all three).")
    if st.button("Generate and score", disabled=not can_run or jobs.active_job() is not None):
        prompts = [line.strip() for line in typed.splitlines() if line.strip()]
        if not prompts:
            st.error("Type at least one prompt.")
        else:
            folder = jobs.jobs_dir() / "prompts"
            folder.mkdir(exist_ok=True)
            path = folder / f"typed-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
            path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
            try:
                jobs.start_stage("compare", {"prompts_file": str(path), "num_prompts": len(prompts),
                                             "run_name": "typed"})
                st.toast("Generating: the comparison appears below when it is done.")
            except jobs.Busy as exc:
                st.warning(str(exc))


@st.fragment(run_every=3)
def waiting():
    job = jobs.active_job()
    if job is not None and job.kind == "compare":
        st.info("Generating answers from the three models and scoring them…")


waiting()

if not compares:
    st.info("No comparison yet. Run the demo from the Home page, or the compare stage from the command line.")
    st.stop()

run = st.selectbox("Comparison", compares, format_func=lambda r: r.id)
summary = json.loads((run.path / "compare_summary.json").read_text(encoding="utf-8"))
rows = read_jsonl(run.path / "compare.jsonl")
models = summary["models"]

instruction = summary.get("labeler_instruction")  # copied from the judge's run when the comparison was made
if instruction:
    st.info(f"**What the judge measures.** The judge was trained on comparisons where people judged: "
            f"“{instruction}” It scores that, and nothing else: a higher score is not a more correct or more "
            "useful answer unless that is what the people were asked.", icon=":material/gavel:")
else:
    st.warning("This judge's reward run does not say what its labelers were asked to judge (`labeler_instruction`),"
               " so read its scores as what this judge prefers, and nothing more.", icon=":material/gavel:")
cols = st.columns(len([k for k in summary if k.startswith("win_rate_")]) + 1)
cols[0].plotly_chart(charts.compare_bars(summary["mean_score"]), width="stretch")
for col, (key, value) in zip(cols[1:], [(k, v) for k, v in summary.items() if k.startswith("win_rate_")]):
    a, b = key.removeprefix("win_rate_").split("_vs_")
    col.metric(f"{a.upper()} beats {b.upper()}", f"{value:.0%}", help="Share of prompts where the judge scored "
               f"{a.upper()}'s answer higher (ties count half).")
if summary.get("mean_kl") is not None:
    final = f"final KL to the SFT model {summary['final_kl']:.2f} (its last step: the model compared here); " \
        if summary.get("final_kl") is not None else ""
    st.caption(f"PPO run {summary.get('ppo_run', '')}: {final}training average {summary['mean_kl']:.2f}. "
               f"Judge: {summary['judge_run']}.")

names = {"base": "Base model", "sft": "SFT", "ppo": "Aligned (PPO)"}
shown = st.slider("Prompts shown", 1, len(rows), min(10, len(rows)))
for i, row in enumerate(rows[:shown]):
    st.markdown(f"**{i + 1}. Prompt**")
    show_text(row["prompt"])
    columns = st.columns(len(models))
    for column, model in zip(columns, models):
        with column:
            crown = " :orange[:material/emoji_events:] winner" if row["winner"] == model else ""
            st.markdown(f"**{names.get(model, model)}** · score {row[model]['score']:+.2f}{crown}")
            show_text(row[model]["response"])
    st.divider()
