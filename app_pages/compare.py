import json
import time

import streamlit as st

from pipelines.config import describe_fields
from pipelines.runtime.runs import finished_runs, read_jsonl
from pipelines.stages import STAGES, run_fields
from workbench import access, charts, forms, jobs, results, texts
from workbench.panels import as_text, show_text

st.title("Compare: base vs SFT vs aligned")
st.markdown("The same prompts, answered by the untouched base model, the SFT model and the aligned models (PPO, "
            "DPO, GRPO: those picked) with the same sampling seed; every answer scored by the judge (its pick of each "
            "prompt is marked :material/emoji_events:) and, where the prompt has a reference answer, marked correct "
            "or wrong.")

compares = finished_runs("compare")


def start_controls():
    """A new comparison of picked models, or of the latest ones on prompts typed here (the owner's)."""
    with st.expander("New comparison: pick the models, the judge and the prompts"):
        st.caption("Any finished SFT, PPO, DPO and GRPO runs of one base model, side by side; `(none)` leaves a "
                   "model out. For the checkable questions GRPO trains on, pick "
                   "`sample_data/verifiable/prompts_eval.jsonl`.")
        values = forms.settings_form("compare")
        config, problem = forms.build_config("compare", values)
        if problem:
            st.error(as_text(problem))
        if st.button("Start comparison", disabled=config is None or jobs.active_job() is not None,
                     key="start.compare"):
            try:
                jobs.start_stage("compare", {k: v for k, v in config.to_dict().items() if k != "stage"})
                st.toast("Comparing: the result appears below when it is done.")
            except jobs.Busy as exc:
                st.warning(as_text(exc))

    with st.expander("Ask your own prompts", expanded=not compares):
        typed = st.text_area("One prompt per line",
                             "What is the capital of Italy?\nHow many legs does a spider have?")
        # the models a comparison takes by default: the latest finished run of each
        needed = [run_fields()[f["name"]] for f in describe_fields(STAGES["compare"].config)
                  if f["name"] in run_fields() and f["default"] == "latest"]
        can_run = all(finished_runs(stage.id) for stage in needed)
        if not can_run:
            names = [s.title for s in needed]
            st.caption(f"Needs a finished {', '.join(names[:-1])} and {names[-1]} run (the Home page's demo makes "
                       "them all).")
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
                    st.warning(as_text(exc))


if access.can_act():
    start_controls()


@st.fragment(run_every=3)
def waiting():
    job = jobs.active_job()
    if job is not None and job.kind == "compare":
        st.info("Generating answers from the three models and scoring them…")


waiting()

if not compares:
    st.info("No comparison yet. Run the demo from the Home page, or the compare stage from the command line.")
    st.stop()


def read_summary(run) -> dict:
    return json.loads((run.path / "compare_summary.json").read_text(encoding="utf-8"))


by_id = {r.id: r for r in compares}
contrast = results.instruction_contrast([(r.id, read_summary(r)) for r in compares],
                                        lambda run_id: read_jsonl(by_id[run_id].path / "compare.jsonl"))
if contrast and not any(p in contrast[1][2] for p in contrast[0][2]):
    contrast = None  # no prompt in common (a comparison of typed prompts): nothing to put side by side
if contrast:  # the lesson in one view: one SFT model, two judges with different instructions, two aligned models
    with st.container(border=True):
        st.subheader("Same model, different labeler instructions")
        st.markdown("Both aligned models started from the same SFT model; each was trained against its own judge, "
                    "and each judge learned only what its labelers were asked.")
        for column, (run_id, summary, _) in zip(st.columns(2), contrast):
            with column:
                st.markdown(f"**Judge's labelers were asked:** “{as_text(summary['labeler_instruction'])}”")
                for label, value, why in results.headline(summary):
                    st.metric(label, value, help=why)
                st.caption(f"Comparison {run_id}")
        first, second = (rows for _, _, rows in contrast)
        shared = [p for p in first if p in second]
        shown = st.slider("Prompts shown", 1, max(len(shared), 2), min(5, len(shared)), key="contrast.shown")
        for prompt in shared[:shown]:
            answer = first[prompt].get("answer")
            st.markdown("**Prompt**" + (f" · reference answer: {as_text(answer)}" if answer else ""))
            show_text(prompt)
            columns = st.columns(3)
            sides = [("SFT (both started here)", first[prompt]["sft"])] + [
                (f"Aligned for: {as_text(summary['labeler_instruction'][:60])}…", rows[prompt]["ppo"])
                for _, summary, rows in contrast]
            for column, (label, side) in zip(columns, sides):
                right = {True: " :green[:material/check_circle:]", False: " :red[:material/cancel:]"}.get(
                    side.get("correct"), "")
                column.markdown(f"**{label}**{right}")
                with column:
                    show_text(side["response"])

run = st.selectbox("Comparison", compares, format_func=lambda r: r.id)
summary, rows = read_summary(run), read_jsonl(run.path / "compare.jsonl")
models = summary["models"]

instruction = summary.get("labeler_instruction")  # copied from the judge's run when the comparison was made
if instruction:
    st.info(f"**What the judge measures.** The judge was trained on comparisons where people judged: "
            f"“{as_text(instruction)}” It scores that, and nothing else: a higher score is not a more correct or "
            "more useful answer unless that is what the people were asked.", icon=":material/gavel:")
else:
    st.warning("This judge's reward run does not say what its labelers were asked to judge (`labeler_instruction`),"
               " so read its scores as what this judge prefers, and nothing more.", icon=":material/gavel:")
for model, raised in summary.get("trained_alarms", {}).items():  # before the scores: they may be the hack's
    st.error(f"**While {as_text(results.model_name(model))} trained, the reward-hacking watch raised an alarm.** "
             "Its score below may be what the judge pays for rather than better answers. " + " ".join(
                 as_text(a["message"]) for a in raised), icon=":material/warning:")
top = results.headline(summary)
if top:  # the two numbers a visitor should leave with: what the judge prefers, and whether the answers are right
    for column, (label, value, why) in zip(st.columns(len(top)), top):
        column.metric(label, value, help=why)
    if summary.get("correct_rate"):
        fooled = summary.get("judge_picked_wrong", 0)
        st.caption(f"On {fooled} of the {summary['graded_prompts']} prompts with a known answer, the judge's "
                   "favourite answer was wrong: marked :red[:material/cancel: wrong] below.")
        with st.expander("Why can the judge's favourite be wrong? (reward hacking, and the KL leash)"):
            st.markdown(texts.REWARD_HACKING)
    else:
        st.caption("These prompts carry no reference answers (an `answer` field), so only the judge's view is shown.")

wins = [(k, v) for k, v in summary.items() if k.startswith("win_rate_")]
if len(wins) <= 3:  # base, SFT and one aligned model: three figures side by side
    cols = st.columns(len(wins) + 1)
    cols[0].plotly_chart(charts.compare_bars(summary["mean_score"], results.model_name), width="stretch")
    for col, (key, value) in zip(cols[1:], wins):
        a, b = key.removeprefix("win_rate_").split("_vs_")
        col.metric(f"{results.model_name(a)} beats {results.model_name(b)}", f"{value:.0%}",
                   help=f"Share of prompts where the judge scored {results.model_name(a)}'s answer higher (ties "
                        "count half).")
else:  # more models: every pair as a matrix
    left, right = st.columns([2, 3])
    left.plotly_chart(charts.compare_bars(summary["mean_score"], results.model_name), width="stretch")
    right.markdown("**How often the judge preferred the row's answer over the column's** (ties count half)")
    right.dataframe(results.win_rate_matrix(summary), hide_index=True)
if rates := summary.get("correct_rate"):
    st.markdown("**Correct answers** (of the prompts with a reference answer): " + " · ".join(
        f"{results.model_name(m)} {r:.0%}" for m, r in rates.items()))
if summary.get("mean_kl") is not None:
    final = f"final KL to the SFT model {summary['final_kl']:.2f} (its last step: the model compared here); " \
        if summary.get("final_kl") is not None else ""
    st.caption(f"PPO run {summary.get('ppo_run', '')}: {final}training average {summary['mean_kl']:.2f}. "
               f"Judge: {summary['judge_run']}.")

only_fooled = bool(summary.get("judge_picked_wrong")) and st.toggle(
    "Only prompts where the judge's favourite is wrong", key="compare.fooled")
listed = results.fooled_rows(rows, models) if only_fooled else rows
shown = st.slider("Prompts shown", 1, max(len(listed), 2), min(10, len(listed)))
for i, row in enumerate(listed[:shown]):
    known = f" · reference answer: {as_text(row['answer'])}" if row.get("answer") else ""
    st.markdown(f"**{i + 1}. Prompt**{known}")
    show_text(row["prompt"])
    columns = st.columns(len(models))
    for column, model in zip(columns, models):
        with column:
            crown = " :orange[:material/emoji_events:] judge's pick" if row["winner"] == model else ""
            right = {True: " · :green[:material/check_circle: correct]",
                     False: " · :red[:material/cancel: wrong]"}.get(row[model].get("correct"), "")
            st.markdown(f"**{results.model_name(model)}** · score {row[model]['score']:+.2f}{crown}{right}")
            show_text(row[model]["response"])
            if row[model].get("cut_off"):
                st.caption(":material/content_cut: cut off at the length limit (`max_new_tokens`)")
    st.divider()
