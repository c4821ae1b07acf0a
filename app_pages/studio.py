"""Preference studio: people (or an AI judge) compare two responses and pick the better one; the labels become the
preference pairs stage 2 trains its judge on.

Everything lives in the set's folder (`runs/studio/<set>/`): each press of a button appends a line to its
labels.jsonl at once, so closing the tab loses nothing and typing the same name later resumes where you stopped.
Sampling the candidates and the AI judges need a model, so they run as `python -m pipelines studio ...` jobs.
"""

import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from pipelines.data.formats import hub_source, load_prompts
from pipelines.errors import WorkbenchError
from pipelines.runtime.runs import default_runs_dir, finished_runs
from pipelines.stages import JUDGE, generating_stages
from pipelines.studio.sets import (AI_PREFIX, INSTRUCTION_EXAMPLES, LabelingSet, agreement, check_labeler, check_name,
                                   describe_left_out, export, import_pairs, list_sets, model_wins, position_bias,
                                   prompt_text)
from workbench import access, jobs
from workbench.jobs import REPO
from workbench.forms import shown_path, uploads_dir
from workbench.panels import as_text, show_text

KEYS = {"left": ("A is better", "A"), "right": ("B is better", "B"), "tie": ("Tie", "T"), "skip": ("Skip", "S")}

st.title("Preference studio")
st.markdown("Read a prompt and two responses, and say which is better **by the instruction shown**. Your labels "
            "are the data stage 2 learns from: the judge it trains learns exactly the preference you express here. "
            "Shortcuts: **A** / **B** pick a side, **T** tie, **S** skip, **U** undo. Sides are shuffled per item "
            "and the model behind each side stays hidden, so neither position nor name can sway you.")


def repo_path(text: str) -> Path | str:
    """A path relative to the workbench folder, or a Hub dataset id (`owner/name[:config][:split]`) as typed."""
    path = Path(text.strip())
    if path.is_absolute():
        return path
    if not (REPO / path).exists() and hub_source(text.strip()):
        return text.strip()
    return REPO / path


def notify(message: str, kind: str = "success") -> None:
    """Callbacks cannot draw; they leave a message for the page body to show."""
    st.session_state["studio.notice"] = (kind, message)


def refused(*fields: tuple[str, str]) -> bool:
    """Leave the message of the first (field, value) whose path this page may not read; True when there is one."""
    problem = next((p for field, value in fields if (p := access.path_problem(field, value.strip()))), None)
    if problem:
        notify(problem, "error")
    return problem is not None


# ---- a new set ---------------------------------------------------------------------------------------------------


def fill_instruction() -> None:
    example = st.session_state["studio.new.dimension"]
    if example in INSTRUCTION_EXAMPLES:
        st.session_state["studio.new.instruction"] = INSTRUCTION_EXAMPLES[example]


def do_import() -> None:
    state = st.session_state
    if refused(("Pairs file", state["studio.new.file"])):
        return
    try:
        labeling_set = import_pairs(repo_path(state["studio.new.file"]), check_name(state["studio.new.name"]),
                                    state["studio.new.instruction"])
    except WorkbenchError as exc:
        notify(str(exc), "error")
        return
    state["studio.set"] = labeling_set.name
    notify(f"Created set `{labeling_set.name}` with {len(labeling_set.items())} pairs.")


def start_generate() -> None:
    state = st.session_state
    if refused(("Prompts file", state["studio.new.prompts"]), ("Base model", state["studio.new.model"])):
        return
    prompts = repo_path(state["studio.new.prompts"])
    try:
        name = check_name(state["studio.new.name"])
        # Check the prompts here, in a moment, rather than after the job has loaded a model.
        _, report = load_prompts(prompts)
        report.raise_if_errors()
    except WorkbenchError as exc:
        notify(str(exc), "error")
        return
    # `--key=value`: an instruction that starts with "-" must not read as an option
    args = ["studio", "generate", f"--set={name}", f"--prompts={prompts}", f"--a={state['studio.new.a']}",
            f"--b={state['studio.new.b']}", f"--instruction={state['studio.new.instruction']}",
            f"--model={state['studio.new.model'].strip() or 'default'}",
            "--num", str(state["studio.new.num"]), "--max-new-tokens", str(state["studio.new.tokens"]),
            "--temperature", str(state["studio.new.temperature"]), "--runs-dir", str(default_runs_dir())]
    start_job(args, f"Sampling pairs for set `{name}`", select=name)


def start_job(args: list[str], what: str, select: str | None = None) -> None:
    if refused(*[("Instruction model", a.removeprefix("--llm=")) for a in args if a.startswith("--llm=")]):
        return
    try:
        job = jobs.start_command("studio", args)
    except jobs.Busy as exc:
        notify(str(exc), "warning")
        return
    st.session_state.update({"studio.job": job.id, "studio.job.what": what, "studio.job.select": select})


sets = list_sets()
st.session_state.setdefault("studio.new.instruction", INSTRUCTION_EXAMPLES["politeness"])
st.session_state.setdefault("studio.new.name", f"set-{time.strftime('%Y%m%d-%H%M%S')}")
with st.expander("New labeling set", expanded=not sets):
    st.text_input("Set name", key="studio.new.name", help="A folder under runs/studio/. Letters, digits, - _ .")
    st.selectbox("Judge on", [*INSTRUCTION_EXAMPLES, "custom"], index=1, key="studio.new.dimension",
                 on_change=fill_instruction, help="Fills in the instruction below; edit it freely.")
    st.text_area("Instruction shown to the labeler (saved with the data)", key="studio.new.instruction",
                 help="The judge trained on these labels learns exactly this dimension, and nothing you did not ask.")
    generated, imported = st.tabs(["Sample two models", "Import a pairs file"])
    with generated:
        generating = generating_stages()
        runs = [r for stage in generating for r in finished_runs(stage.id)]
        options = ["base", *(str(r.path) for r in runs)]
        label = {str(r.path): f"{r.stage.upper()} · {r.id}" for r in runs} | {"base": "Base model (no adapter)"}
        st.text_input("Prompts file", "sample_data/prompts_eval.jsonl", key="studio.new.prompts",
                      help="`prompt` or `messages` records; relative to the workbench folder.")
        # Open on two different models where there are two: the SFT model against an aligned one (or the base).
        newest = {s.id: next((str(r.path) for r in runs if r.stage == s.id), None) for s in generating}
        start = next((newest[s.id] for s in generating if not s.aligns and newest[s.id]), None)
        aligned = next((newest[s.id] for s in generating if s.aligns and newest[s.id]), None)
        first = start or aligned or "base"
        second = aligned if start and aligned else "base"
        for key, value in (("studio.new.a", first), ("studio.new.b", second)):
            if st.session_state.get(key) not in options:
                st.session_state[key] = value
        left, right = st.columns(2)
        left.selectbox("Candidate A", options, key="studio.new.a", format_func=label.get)
        right.selectbox("Candidate B", options, key="studio.new.b", format_func=label.get,
                        help="The same as A: the model is sampled twice, with different seeds.")
        st.text_input("Base model (when both are the base model)", "default", key="studio.new.model")
        cols = st.columns(3)
        cols[0].number_input("Prompts", 1, 1000, 20, key="studio.new.num")
        cols[1].number_input("Max new tokens", 1, 1024, 48, key="studio.new.tokens")
        cols[2].number_input("Temperature", 0.0, 2.0, 0.8, step=0.1, key="studio.new.temperature")
        st.button("Generate pairs", type="primary", key="studio.generate", on_click=start_generate,
                  disabled=jobs.active_job() is not None,
                  help="Runs `python -m pipelines studio generate` as a job; the set opens when it is done.")
    with imported:
        st.text_input("Pairs file", "sample_data/prefs_eval.jsonl", key="studio.new.file",
                      help="prompt/response_a/response_b (optionally model_a/model_b), or preference pairs "
                           "prompt/chosen/rejected; relative to the workbench folder, or a Hub dataset "
                           "`owner/name[:config][:split]`.")
        st.button("Import", key="studio.import", on_click=do_import)


@st.fragment(run_every=2)
def job_panel() -> None:
    """The studio job this tab started (or any studio job still running): its progress, then its outcome."""
    mine = st.session_state.get("studio.job")
    job = next((j for j in jobs.all_jobs() if j.kind == "studio" and (j.id == mine or j.alive)), None)
    if job is None:
        return
    tail = jobs.job_console_tail(job, 12)
    if job.alive:
        st.info(f"{st.session_state.get('studio.job.what') or 'A studio job is running'}…")
        st.code(tail or "starting (loading the model takes a few seconds)", language=None)
        st.session_state["studio.job.watching"] = True
        return
    if st.session_state.pop("studio.job.watching", False):
        st.rerun()  # the whole page: the new set or the AI labels appear
    if job.id != mine:
        return
    lines = tail.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    failed = bool(starts) or any(" ERROR " in line or line.startswith("Traceback") for line in lines)
    if starts:  # the CLI wraps its one-paragraph message over several lines: show all of it
        st.error(" ".join(lines[starts[-1]:]).removeprefix("error: "))
    elif failed:
        st.error(as_text(jobs.last_error_line(tail)))
    else:
        st.success(f"Done: {st.session_state.get('studio.job.what', 'studio job')}.")
    with st.expander("Job output", expanded=failed):
        st.code(tail, language=None)


job_panel()
notice = st.session_state.pop("studio.notice", None)
if notice:
    getattr(st, notice[0])(as_text(notice[1]))
sets = list_sets()
if not sets:
    st.info("No labeling set yet. Create one above: sample two models on some prompts, or import a file of pairs.")
    st.stop()

# ---- label -----------------------------------------------------------------------------------------------------

names = [s.name for s in sets]
pending = st.session_state.pop("studio.job.select", None)
if pending in names:
    st.session_state["studio.set"] = pending
if st.session_state.get("studio.set") not in names:
    st.session_state["studio.set"] = names[0]
name = st.selectbox("Labeling set", names, key="studio.set")
labeling_set = next(s for s in sets if s.name == name)
meta = labeling_set.meta()
st.info(f"**What to judge:** {as_text(meta.get('instruction', '(no instruction saved)'))}", icon=":material/gavel:")
st.caption(f"Source: {as_text(meta.get('source', '?'))} · created {as_text(meta.get('created_at', '?'))}")
left_out = describe_left_out(labeling_set)
if left_out:
    st.warning(as_text(left_out))
items = labeling_set.items()
if not items:
    st.error(f"Set `{name}` has no items (its items.jsonl is missing or empty). Fix: create the set again.")
    st.stop()

# Streamlit forgets a widget's value when another page is shown; the name is kept apart so it survives a visit.
st.session_state.setdefault("studio.labeler", st.session_state.get("studio.labeler.kept", ""))
labeler = st.text_input("Your name", key="studio.labeler", placeholder="e.g. alice",
                        help="Labels are saved under this name; type it again later to resume where you stopped. "
                             "Two people labeling the same set see their agreement below.")
st.session_state["studio.labeler.kept"] = labeler


def record(path: str, item_id: str, who: str, choice: str, shown_left: int) -> None:
    labeled = LabelingSet(Path(path))
    current = labeled.next_item(who)
    if current is None or current["id"] != item_id:  # a double press, or this name labeling in another tab
        notify(f"Item {item_id} was already labeled by {who}; showing the next one.", "warning")
        return
    labeled.add_label(item_id, who, choice, shown_left)
    st.session_state["studio.toast"] = f"Saved: {KEYS[choice][0]} (item {int(item_id) + 1})"


def undo(path: str, who: str) -> None:
    taken = LabelingSet(Path(path)).undo(who)
    st.session_state["studio.toast"] = (f"Undone: item {int(taken['item']) + 1} ({taken['choice']})" if taken
                                        else "Nothing to undo.")


if not labeler.strip():
    st.info("Type your name to start labeling (or to resume: your earlier labels are kept).")
else:
    try:
        labeler = check_labeler(labeler)
    except WorkbenchError as exc:
        st.error(as_text(exc))
        st.stop()
    toast = st.session_state.pop("studio.toast", None)
    if toast:
        st.toast(toast)
    done, total = labeling_set.progress(labeler)
    st.progress(done / total, text=f"{done} / {total} labeled by {labeler}")
    item = labeling_set.next_item(labeler)
    path = str(labeling_set.path)
    if item is None:
        st.success(f"All {total} items labeled. Export them below, or ask a second person to label the same set.")
    else:
        shown_left = labeling_set.shown_left(item["id"], labeler)
        st.markdown(f"**Prompt** · item {int(item['id']) + 1} of {total}")
        show_text(prompt_text(item["prompt"]))
        columns = st.columns(2)
        for column, side, candidate in ((columns[0], "A", shown_left), (columns[1], "B", 3 - shown_left)):
            with column:
                st.markdown(f"**Response {side}**")
                show_text(item[f"response_{candidate}"])
    buttons = st.columns(5)
    for column, (choice, (text, key)) in zip(buttons, KEYS.items()):
        column.button(text, key=f"studio.{choice}", shortcut=key, disabled=item is None, width="stretch",
                      type="primary" if choice in ("left", "right") else "secondary", on_click=record,
                      args=(path, item["id"] if item else "", labeler, choice, shown_left if item else 1))
    buttons[4].button("Undo", key="studio.undo", shortcut="U", disabled=done == 0, width="stretch",
                      on_click=undo, args=(path, labeler))

# ---- what the labels say ---------------------------------------------------------------------------------------

st.divider()
st.subheader("Agreement")
rows = agreement(labeling_set)
if not rows:
    st.caption("Agreement appears once two labelers (two names, or a person and an AI judge) have labeled this set.")
else:
    st.caption("On the items both picked a side for (ties and skips apart): how often they picked the same "
               "response. For scale: InstructGPT's trained labelers agreed with each other about 73% of the time.")
    st.dataframe([{"labeler 1": r["labeler 1"], "labeler 2": r["labeler 2"], "AI vs person": r["ai vs human"],
                   "both picked a side": r["both picked a side"], "agree": r["agree"],
                   "agreement": "n/a" if r["agreement"] is None else f"{r['agreement']:.0%}",
                   "with a tie": r["with a tie"]} for r in rows], hide_index=True, key="studio.agreement")

bias = position_bias(labeling_set)
wins = model_wins(labeling_set)
if bias or wins:
    left_col, right_col = st.columns(2)
    if bias:
        fig = go.Figure(go.Bar(x=[r["labeler"] for r in bias], y=[r["share left"] for r in bias],
                               error_y=dict(type="data", array=[r["margin95"] for r in bias]),
                               text=[f"{r['share left']:.0%} of {r['decided']}" for r in bias]))
        fig.add_hline(y=0.5, line_dash="dash", line_color="crimson", annotation_text="no position bias")
        fig.update_layout(title="Position bias: share of picks on the left (A) side", height=300,
                          yaxis=dict(range=[0, 1], tickformat=".0%", title="picks on the left"),
                          xaxis_title="labeler", margin=dict(l=10, r=10, t=40, b=10))
        left_col.plotly_chart(fig, width="stretch", key="studio.bias")
        left_col.caption("Sides are random, so a labeler without bias lands near 50%. The whiskers are a 95% "
                         "range for this many labels: while they cross the dashed line, the lean may be chance.")
    if wins:
        right_col.markdown("**Which candidate people preferred**")
        right_col.dataframe([{**r, "win rate": f"{r['win rate']:.0%}"} for r in wins], hide_index=True,
                            key="studio.wins")

# ---- AI judge --------------------------------------------------------------------------------------------------

st.divider()
st.subheader("AI judge (RLAIF)")
st.caption("Label the same items with a machine, then read its agreement with the people above.")
busy = jobs.active_job() is not None
judge_col, llm_col = st.columns(2)
with judge_col:
    judges = finished_runs(JUDGE.id)
    if judges:
        judge = st.selectbox("Reward run", [str(r.path) for r in judges], format_func=lambda p: Path(p).name,
                             key="studio.judge.run")
        st.button("Label with this reward model", key="studio.judge.reward", disabled=busy, on_click=start_job,
                  args=(["studio", "judge", f"--set={name}", f"--reward={judge}", f"--runs-dir={default_runs_dir()}"],
                        f"The reward model {Path(judge).name} is labeling `{name}`"))
    else:
        st.caption("No finished reward run yet (stage 2).")
with llm_col:
    model = st.text_input("Instruction model", "default", key="studio.judge.model",
                          help="`default` (the embedded SmolLM2-135M-Instruct), a local folder or a Hub id.")
    st.button("Ask the instruction model", key="studio.judge.llm", disabled=busy, on_click=start_job,
              args=(["studio", "judge", f"--set={name}", f"--llm={model.strip() or 'default'}",
                     f"--runs-dir={default_runs_dir()}"], f"The instruction model `{model}` is labeling `{name}`"),
              help="It reads the instruction and both responses and answers A or B; each pair is asked in both "
                   "orders and kept only when both answers pick the same response.")

machines = {n: labels for n, labels in labeling_set.labels().items() if n.startswith(AI_PREFIX)}
if machines:
    st.dataframe([{"AI judge": n, "items labeled": len(labels),
                   "picked a side": sum(e["winner"] is not None for e in labels.values()),
                   "order-dependent (kept as skips)": sum("reason" in e for e in labels.values())}
                  for n, labels in machines.items()], hide_index=True)
    st.caption("An instruction model that answers by position (always A, say) is caught by the two orders: those "
               "items are skipped rather than labeled. Its agreement with people is in the table above.")

# ---- export ----------------------------------------------------------------------------------------------------

st.divider()
st.subheader("Export for stage 2")
everyone = labeling_set.labelers()
if not everyone:
    st.caption("Nothing labeled yet.")
    st.stop()
# No key: a new labeler changes the options, which resets the choice to "every person" rather than keeping a
# selection made before that labeler existed.
chosen = st.multiselect("Labels from", everyone, default=[n for n in everyone if not n.startswith(AI_PREFIX)])
agreed = st.checkbox("One pair per item, only where these labelers agree", key="studio.export.agreed")
filename = st.text_input("File name", f"studio-{name}.jsonl", key=f"studio.export.file.{name}",
                         help="Written to the uploads folder beside the runs, which the stage forms offer as data files.").strip()
if st.button("Export preference pairs", type="primary", key="studio.export", disabled=not chosen):
    if "/" in filename or not filename.endswith(".jsonl"):
        st.error(f"The file name `{filename}` must be a plain name ending in `.jsonl`. Fix: e.g. "
                 f"`studio-{name}.jsonl`.")
    else:
        try:
            result = export(labeling_set, uploads_dir() / filename, chosen, agreed)
        except WorkbenchError as exc:
            st.error(as_text(exc))
        else:
            where = shown_path(Path(result["file"]))
            st.success(f"Wrote {result['pairs']} preference pairs to `{where}` (left out: {result['ties']} ties, "
                       f"{result['skips']} skips, {result['disagreements']} disagreements). Stage 2 takes it as "
                       "it is: pick it as `train_file` on the reward page.")
            st.page_link("app_pages/reward.py", label="Train a judge on it →", icon=":material/balance:")
