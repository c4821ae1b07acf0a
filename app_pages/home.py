import streamlit as st

from pipelines.runs import list_runs
from workbench import jobs, texts
from workbench.panels import badge, run_panel

st.title("RLHF Workbench")
st.markdown(texts.PIPELINE)


@st.fragment(run_every=5)  # live while the demo (or any job) moves the pipeline along
def stage_cards():
    columns = st.columns(3)
    for column, stage in zip(columns, ("sft", "reward", "ppo")):
        title, body = texts.STAGES[stage]
        with column.container(border=True):
            st.subheader(title)
            st.markdown(body)
            runs = list_runs(stage=stage)
            done = [r for r in runs if r.status().get("state") == "completed"]
            if not runs:
                st.caption("No run yet.")
            elif stage == "reward" and done:
                summary = done[0].summary()
                accuracy, gate = summary.get("eval_accuracy", 0.0), summary.get("accuracy_gate", 0.7)
                passed = "passes" if accuracy >= gate else "does NOT pass"
                st.markdown(f"Latest judge: held-out accuracy **{accuracy:.0%}** ({passed} the {gate:.0%} gate; "
                            f"'pick the longer answer' scores {summary.get('length_baseline_accuracy', 0):.0%}).")
            else:
                st.markdown(f"Latest run: {runs[0].id} · {badge(runs[0].status().get('state'))}")


stage_cards()

st.divider()
st.subheader("Run the whole demo")
st.markdown(texts.DEMO)
st.caption("On a laptop CPU the whole demo takes about 15-20 minutes with the embedded SmolLM2-135M model; "
           "every stage appears here live.")

job = jobs.active_job()
if st.button("▶ Run the whole demo", type="primary", disabled=job is not None):
    try:
        job = jobs.start_demo()
        st.session_state["demo.job"] = job.id
        st.rerun()
    except jobs.Busy as exc:
        st.warning(str(exc))
if job is not None and job.kind != "demo":
    st.caption(jobs.busy_message(job))

demo = next((j for j in jobs.all_jobs() if j.kind == "demo"), None)
if demo is not None:

    @st.fragment(run_every=2)
    def demo_panel():
        current = jobs.all_jobs()
        watched = next((j for j in current if j.id == demo.id), demo)
        made = jobs.demo_runs(watched)
        order = ["sft", "reward", "ppo", "compare"]
        states = {r.stage: r.status().get("state") for r in made}
        st.markdown(" → ".join(f"{s.upper()} {badge(states.get(s)) if s in states else 'waiting'}"
                               for s in order))
        if watched.alive:
            if made:
                run_panel(made[-1], key="demo.panel")
            else:
                st.info("Starting: loading the model (the first start converts it, about 20 seconds).")
            if st.button("Stop the demo"):
                jobs.stop(watched)
        else:
            if states.get("compare") == "completed":
                st.success("The demo finished. See the aligned model side by side with the others.")
                st.page_link("app_pages/compare.py", label="Open the comparison →", icon="🆚")
                if st.session_state.get("demo.job") == watched.id and not st.session_state.get("demo.shown"):
                    st.session_state["demo.shown"] = True
                    st.switch_page("app_pages/compare.py")
            elif made:
                st.error("The demo stopped before the end. The log of the last stage:")
                st.code(made[-1].log_tail(20) or jobs.job_console_tail(watched), language=None)
            else:
                st.error("The demo did not start:")
                st.code(jobs.job_console_tail(watched), language=None)

    demo_panel()
