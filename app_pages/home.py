import streamlit as st

from pipelines.demo import presets
from pipelines.runtime.runs import RunState, finished_runs, list_runs, read_jsonl
from pipelines.stages import STAGES
from workbench import access, jobs, results, texts
from workbench.panels import as_text, badge, run_panel

st.title("RLHF Workbench")
st.markdown(texts.PIPELINE)


@st.fragment(run_every=5)  # live while the demo (or any job) moves the pipeline along
def stage_cards():
    toured = [s for s in STAGES.values() if s.tour]
    for column, stage in zip(st.columns(len(toured)), toured):
        title, body = stage.tour
        with column.container(border=True):
            st.subheader(title)
            st.markdown(body)
            runs = list_runs(stage=stage.id)
            done = [r for r in runs if r.completed]
            if not runs:
                st.caption("No run yet.")
            elif done and "accuracy_gate" in (summary := done[0].summary()):  # a judge: how it stands at the gate
                accuracy, gate = summary.get("eval_accuracy", 0.0), summary.get("accuracy_gate", 0.7)
                passed = "passes" if accuracy >= gate else "does NOT pass"
                st.markdown(f"Latest judge: held-out accuracy **{accuracy:.0%}** ({passed} the {gate:.0%} gate; "
                            f"'pick the longer answer' scores {summary.get('length_baseline_accuracy', 0):.0%}).")
            else:
                st.markdown(f"Latest run: {runs[0].id} · {badge(runs[0].status().get('state'))}")


stage_cards()


def results_card():
    """The newest comparison's two headline numbers and a few of its answers, for a visitor who just arrived."""
    compares = finished_runs("compare")
    if not compares or not (summary := compares[0].summary()) or not results.headline(summary):
        return
    rows = read_jsonl(compares[0].path / "compare.jsonl")
    models = summary["models"]
    with st.container(border=True):
        st.subheader("Latest results")
        if summary.get("labeler_instruction"):
            asked = as_text(summary["labeler_instruction"])
            st.caption(f"The judge scores what its labelers were asked: “{asked}”")
        for column, (label, value, why) in zip(st.columns(2), results.headline(summary)):
            column.metric(label, value, help=why)
        pair = results.main_pair(summary)
        for row in results.example_rows(rows, models, pair, 3):
            st.text(f"Q: {row['prompt']}" + (f"   (reference answer: {row['answer']})" if row.get("answer") else ""))
            for column, model in zip(st.columns(len(pair)), reversed(pair)):
                mark = {True: " :green[:material/check_circle:]", False: " :red[:material/cancel:]"}.get(
                    row[model].get("correct"), "")
                column.caption(f"{results.model_name(model)} · score {row[model]['score']:+.2f}{mark}")
                column.text(row[model]["response"])
        st.page_link("app_pages/compare.py", label="All answers side by side on Compare →",
                     icon=":material/compare_arrows:")


results_card()

st.divider()
st.subheader("Run the whole demo")
st.markdown(texts.DEMO)
st.caption("On a 2-core CPU the whole demo takes about 10 minutes with the embedded SmolLM2-135M model (measured: "
           "8.5-10.5 with AVX-512; an AVX2-only CPU takes nearly twice as long); every stage appears here live.")


def demo_button(label: str, preset: str, **button) -> None:
    """A button that starts the demo with `preset`; Home then follows it live (a viewer sees no button)."""
    if access.can_act() and st.button(label, **button):
        try:
            st.session_state["demo.job"] = jobs.start_demo(preset=preset).id
            st.rerun()
        except jobs.Busy as exc:
            st.warning(as_text(exc))


job = jobs.active_job()
demo_button("▶ Run the whole demo", "quick", type="primary", disabled=job is not None)
if job is not None and job.kind != "demo":
    st.caption(as_text(jobs.busy_message(job)))

st.subheader("Same model, different labeler instructions")
st.markdown(texts.BREVITY_DEMO)
starts_from = presets()["brevity"].starts_from
have_start = bool(finished_runs(starts_from))
demo_button("▶ Align the same model for brevity", "brevity", disabled=job is not None or not have_start,
            help=None if have_start else f"Needs a finished {STAGES[starts_from].title} run: run the whole demo "
                                         "first.")

st.subheader("Reward hacking, happening and caught")
st.markdown(texts.HACKING_DEMO)
demo_button("▶ Watch reward hacking happen", "hacking", disabled=job is not None,
            help="Starts from the latest finished SFT run when there is one (else trains it first).")

st.subheader("Full RLHF beside the simpler approaches")
st.markdown(texts.METHODS_DEMO)
demo_button("▶ Compare the methods: PPO, DPO and GRPO", "methods", disabled=job is not None,
            help="Starts from the latest finished SFT run when there is one (else trains it first).")

demo = next((j for j in jobs.all_jobs() if j.kind == "demo"), None)
if demo is not None:

    @st.fragment(run_every=2)
    def demo_panel():
        current = jobs.all_jobs()
        watched = next((j for j in current if j.id == demo.id), demo)
        made = jobs.demo_runs(watched)
        order = list(presets()[jobs.demo_preset(watched)].stages)
        states = {r.stage: r.state for r in made}

        def shown(i: int, stage: str) -> str:  # a stage the demo skipped (an SFT run it started from) is reused
            if stage in states:
                return badge(states[stage])
            return "(reused)" if any(later in states for later in order[i + 1:]) else "waiting"

        st.markdown(" → ".join(f"{s.upper()} {shown(i, s)}" for i, s in enumerate(order)))
        if watched.alive:
            if made:
                run_panel(made[-1], key="demo.panel")
            else:
                st.info("Starting: loading the model (the first start converts it, about 20 seconds).")
            if access.can_act() and st.button("Stop the demo"):
                jobs.stop(watched)
        else:
            if states.get(order[-1]) is RunState.COMPLETED:
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
