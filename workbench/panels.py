"""Reusable page parts: the live panel of a run (with the reward-hacking watch's alarms and probe answers), the stage
page (form -> command -> start/stop -> live panel).

The live panel is an `st.fragment(run_every=...)`: it re-reads the run directory every couple of seconds, so a
refresh or a second tab shows the same run, and a crashed job shows as failed with its log tail.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import streamlit as st

from pipelines.runtime.checkpoints import newest_checkpoint
from pipelines.runtime.runs import Run, RunState, format_seconds, list_runs
from pipelines.stages import STAGES
from workbench import access, charts, forms, jobs, results

# Material icons ship with Streamlit's fonts; emoji depend on the viewer's system fonts (absent on many servers).
STATE_BADGES = {RunState.RUNNING: ":blue[:material/autorenew:] running",
                RunState.COMPLETED: ":green[:material/check_circle:] completed",
                RunState.FAILED: ":red[:material/error:] failed",
                RunState.STOPPED: ":orange[:material/stop_circle:] stopped"}


def badge(state: str | None) -> str:
    """A run state as Markdown with an icon (for st.markdown; tables show the plain word)."""
    return STATE_BADGES.get(state or "", state or "starting")


def percent_sure(p: float) -> str:
    """A probability as people read it, never "100%": a difference of scores never makes a judge certain, even where
    floating point rounds the probability to 1."""
    if p >= 0.999:
        return ">99.9%"
    return f"{p:.1%}" if p >= 0.99 else f"{p:.0%}"


MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def as_text(value) -> str:
    """Data inside one of our Markdown lines (a labeler instruction, a file's name), shown as typed: every sign that
    Markdown, Streamlit's `:color[...]` or LaTeX would read is escaped, so no image in it is fetched and no Markdown
    link or colour takes effect. (A bare web address still shows underlined, as Markdown autolinks it: it opens only
    when clicked. Seen in the browser.)"""
    return MARKDOWN_SIGNS.sub(r"\\\1", str(value))


def show_text(text: str) -> None:
    """Model output is shown as escaped text in a box, never interpreted as Markdown or HTML."""
    st.code(text or "(empty)", language=None, wrap_lines=True)


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, modification time): changes whenever the file does."""
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return 0, 0


@st.cache_resource(max_entries=16, show_spinner=False)
def run_figures(run_path: str, stage: str, stamp: tuple[int, int]) -> list:
    """A run's charts, built once per version of its metrics file and shared by every session that watches it (an
    audience of ten redraws the same live run every two seconds). `stamp` keys the cache; the figures are only read."""
    run = Run(run_path)
    return charts.stage_figures(stage, run.metrics(), run.config())


def run_panel(run: Run, *, key: str) -> None:
    """Status, progress, charts, samples and log of one run, as they are on disk now."""
    status = run.status()
    state = status.get("state")
    step, max_steps = status.get("step", 0), status.get("max_steps") or 0
    cols = st.columns([3, 2, 2])
    cols[0].markdown(f"**{as_text(run.id)}** · {badge(state)}")
    if max_steps:
        cols[1].progress(min(step / max_steps, 1.0), text=f"step {step}/{max_steps}")
    if state == RunState.RUNNING:
        cols[2].markdown(f"ETA **{format_seconds(status.get('eta_s'))}**")
    elif status.get("ended_at") and status.get("started_at"):
        cols[2].markdown(f"took {format_seconds(status['ended_at'] - status['started_at'])}")
    if (world := status.get("world_size") or 1) > 1:
        batch = f", global batch {status['global_batch']}" if status.get("global_batch") else ""
        st.caption(f":material/lan: {world} processes (data-parallel{batch}); the log is rank 0's, the others' are "
                   "run.rank<K>.log in the run folder.")
    if state == RunState.FAILED:
        st.error(as_text(status.get("error") or "The run failed."))
    alarm_banner(run)
    if resumes := status.get("resumes"):
        redone = sum(r["lost_steps"] for r in resumes)
        st.caption(f"Resumed {len(resumes)}× (from step {', '.join(str(r['from_step']) for r in resumes)}); "
                   f"{redone} step{'s' if redone != 1 else ''} done again because of the interruption.")
    stage = status.get("stage") or run.config().get("stage", "")
    figures = run_figures(str(run.path), stage, file_stamp(run.path / "metrics.jsonl"))
    if figures:
        columns = st.columns(2)
        for i, fig in enumerate(figures):
            columns[i % 2].plotly_chart(fig, width="stretch", key=f"{key}.fig{i}")
    elif state == RunState.RUNNING:
        st.info("Loading the model and data; the first points appear after the first step.")
    summary = run.summary()
    if summary:
        labelled = results.summary_figures(stage, summary)
        if labelled:
            for column, (label, value) in zip(st.columns(min(len(labelled), 4)), labelled[:4]):
                column.metric(label, value)
            if len(labelled) > 4:
                st.caption(" · ".join(f"{label}: {value}" for label, value in labelled[4:]))
        with st.expander("Summary (all figures, as saved in summary.json)", expanded=not labelled):
            st.json(summary)
    if stage in STAGES and STAGES[stage].samples:
        samples = run.samples()[-4:]
        if samples:
            st.markdown(f"**Newest samples** (step {samples[-1]['step']})")
            for sample in reversed(samples):
                figures = " · ".join(sample_figures(sample))
                st.caption(f"{figures} · prompt: {as_text(sample['prompt'][:200])}")
                show_text(sample["response"])
    probe_slider(run, key)
    with st.expander("Log", expanded=state == RunState.FAILED):
        st.code(run.log_tail(40) or _console_tail(run), language=None)


def sample_figures(sample: dict) -> list[str]:
    """A sample's numbers as words: PPO's judge score and KL; GRPO's reward, and each rule's when there are
    several."""
    figures = [f"reward {sample['score']:+.2f}" if "rewards" in sample else f"score {sample['score']:+.2f}"]
    rewards = sample.get("rewards") or {}
    if len(rewards) > 1:
        figures.append(", ".join(f"{name} {value:g}" if value is not None else f"{name} -"
                                 for name, value in rewards.items()))
    if "kl" in sample:
        figures.append(f"KL {sample['kl']:.2f}")
    return figures


# ---- the reward-hacking watch (PPO, GRPO): alarms and probe answers, written by pipelines/runtime/watch.py ----

ALARM_SIGNALS = {"length": "answer length", "repetition": "repetition", "collapse": "one answer to everything",
                 "correctness": "score up, correctness down"}
SHOWN_PROBES = 8  # the rest are in probes.jsonl


def watch_alarms(run: Run) -> list[dict]:
    """The run's alarms: the summary's once it ended, the status' while it runs (a list of step, signal, message)."""
    alarms = run.summary().get("alarms") or run.status().get("alarms") or []
    return [a for a in alarms if isinstance(a, dict) and {"step", "signal", "message"} <= a.keys()] \
        if isinstance(alarms, list) else []


def alarm_banner(run: Run) -> None:
    raised = watch_alarms(run)
    if raised:
        lines = [f"**Step {a['step']}, {ALARM_SIGNALS.get(a['signal'], as_text(a['signal']))}:** "
                 f"{as_text(a['message'])}"
                 for a in raised]
        st.error("**The reward-hacking watch raised an alarm.** A rising score says the model pleases the judge, "
                 "not that it got better; the answers below say which.\n\n" + "\n\n".join(lines),
                 icon=":material/warning:")


def probe_mark(row: dict) -> str:
    if row.get("correct") is None:
        verdict = "not graded"
    else:
        verdict = ":green[:material/check: correct]" if row["correct"] else ":red[:material/close: wrong]"
    return f"score {row['score']:+.2f} · {verdict}" + (" · cut off" if row.get("cut_off") else "")


def probe_slider(run: Run, key: str) -> None:
    """A step slider over the probe answers: each probe's answer at that step beside the starting model's."""
    by_step: dict[int, list[dict]] = {}
    for row in run.probes():
        by_step.setdefault(row["step"], []).append(row)
    if 0 not in by_step:
        return
    start = by_step[0]
    st.markdown("**Probe questions**: the same questions, answered by the model as it was at the chosen step (its "
                "most likely answer, no sampling), beside the starting model's answers; each scored by the judge and "
                "checked against the known answer where there is one.")
    later = sorted(s for s in by_step if s > 0)
    if not later:
        st.caption("The starting model's answers are in; the first probed step's follow.")
        return
    slider, newest = f"{key}.probe_step", f"{key}.probe_newest"
    if st.session_state.get(slider) in (None, st.session_state.get(newest)) or \
            st.session_state.get(slider) not in later:
        st.session_state[slider] = later[-1]  # it follows the newest probed step until someone moves it
    st.session_state[newest] = later[-1]
    step = later[0] if len(later) == 1 else st.select_slider("Step", options=later, key=slider)
    st.caption(probe_figures(start, "starting model") + " → " + probe_figures(by_step[step], f"step {step}"))
    for first, row in zip(start[:SHOWN_PROBES], [*by_step[step], *[None] * len(start)]):  # the probes, in order
        reference = f" · reference answer: {as_text(first['answer'])}" if first.get("answer") else ""
        st.caption(f"prompt: {as_text(first['prompt'][:200])}{reference}")
        left, right = st.columns(2)
        with left:
            st.caption(f"Starting model · {probe_mark(first)}")
            show_text(first["response"])
        with right:
            if row is not None:
                st.caption(f"Step {step} · {probe_mark(row)}")
                show_text(row["response"])
    if len(start) > SHOWN_PROBES:
        st.caption(f"{len(start) - SHOWN_PROBES} more probes in {as_text(run.path / 'probes.jsonl')}.")


def probe_figures(rows: list[dict], who: str) -> str:
    graded = [row["correct"] for row in rows if row.get("correct") is not None]
    correct = f", {sum(graded)} of {len(graded)} correct" if graded else ""
    score = sum(row["score"] for row in rows) / len(rows)
    words = sum(row.get("words", 0) for row in rows) / len(rows)
    return f"{who}: mean score {score:+.2f}{correct}, {words:.0f} words on average"


def _console_tail(run: Run) -> str:
    console = run.path / "console.log"
    try:
        return "\n".join(console.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
    except OSError:
        return "(no log yet)"


def live_run_panel(run_path: str, *, key: str, every: float = 2.0) -> None:
    """The run panel, refreshed every `every` seconds while the run is live."""

    @st.fragment(run_every=every)
    def panel():
        run = Run(run_path)
        run_panel(run, key=key)
        state = run.state
        if not access.can_act():
            return
        if state is RunState.RUNNING:
            if st.button("Stop", key=f"{key}.stop", help="Ends the run after the current step; the adapter and a "
                                                          "checkpoint are saved."):
                run.request_stop()
                st.toast("Stop requested: the run saves its adapter at the end of this step.")
        elif state in (RunState.FAILED, RunState.STOPPED) and run.stage in STAGES and STAGES[run.stage].trains:
            resume_control(run, key)

    panel()


def resume_control(run: Run, key: str) -> None:
    """Resume a failed or stopped run from its newest checkpoint, as a job watched live in this same panel."""
    active = jobs.active_job(run.path.parent)
    if active and Path(active.run_dir) == run.path:
        st.caption("Resuming: loading the model and the checkpoint...")
        return
    newest = newest_checkpoint(run.path)
    if newest is None:
        st.caption("No checkpoint to resume from: the run ended before its first one (`save_steps`).")
        return
    step, _ = newest
    if st.button(f"Resume from step {step}", key=f"{key}.resume", type="primary",
                 help="Carries the run on in this folder from its newest checkpoint: weights, optimizer, random "
                      "state and data position, as if it had never stopped."):
        try:
            jobs.start_resume(run.path)
            st.toast(f"Resuming {run.id} from step {step}")
        except jobs.Busy as exc:
            st.warning(as_text(exc))


def processes_input(stage: str) -> int:
    """How many processes train the run: one per GPU on a CUDA machine; on a CPU they split the cores (which
    mostly shows that scale-out works: it rarely makes a CPU run faster)."""
    gpus = jobs.gpu_count()
    most = gpus if gpus else max(1, os.cpu_count() or 1)
    where = (f"This machine has {gpus} GPU{'s' if gpus != 1 else ''}: one process per GPU." if gpus else
             "No GPU here: the processes share the CPU's cores (gloo), which tests the set-up more than it speeds "
             "training.")
    return int(st.number_input("Processes", min_value=1, max_value=most, value=1, step=1, key=f"processes.{stage}",
                               help="Above 1 the run starts under `accelerate launch` (data-parallel, DDP): each "
                                    "process takes its own batch, so a step sees processes x batch size examples. "
                                    + where))


def stage_page(stage: str, results=None) -> None:
    """The live (or latest) run first, curves and all, so a visitor sees results before settings; then `results()`
    (a page's own findings, such as the judge's report card); then the settings form from the config dataclass, the
    exact command and Start."""
    st.title(STAGES[stage].page_title)
    st.markdown(STAGES[stage].intro)
    runs = list_runs(stage=stage)
    watched = st.session_state.get(f"watch.{stage}") or (str(runs[0].path) if runs else None)
    running = watched is not None and Run(watched).state is RunState.RUNNING
    if watched is None:
        st.info(f"No {stage.upper()} run yet. Pick a preset below and press Start.")
    else:
        st.subheader("Live run" if running else "Latest run")
        live_run_panel(watched, key=f"panel.{stage}")
        st.divider()
    if results is not None:
        results()
    if not access.can_act():
        st.caption(":material/visibility: You are watching: the owner starts and stops runs.")
        return
    st.subheader("New run")
    preset = st.radio("Preset", list(forms.PRESETS), format_func=forms.PRESETS.get, horizontal=True,
                      key=f"preset.{stage}")
    if st.session_state.get(f"preset.applied.{stage}") != preset:
        forms.apply_preset(stage, preset)
        st.session_state[f"preset.applied.{stage}"] = preset
    values = forms.settings_form(stage)
    processes = processes_input(stage)
    config, problem = forms.build_config(stage, values)
    cli_line, accelerate_line = forms.command_line(stage, values, preset, max(processes, 2))
    with st.expander("Show command", expanded=processes > 1):
        if processes > 1:
            st.caption(f"The workbench starts exactly this: {processes} processes, one run folder:")
            st.code(accelerate_line, language="bash")
        else:
            st.caption("The same run from a terminal (the workbench starts exactly this CLI):")
            st.code(cli_line, language="bash")
            st.caption("On several GPUs (one process per GPU):")
            st.code(accelerate_line, language="bash")
    if problem:
        st.error(as_text(problem))
    active = jobs.active_job()
    if st.button(f"Start {stage.upper()} run", type="primary", disabled=config is None, key=f"start.{stage}"):
        try:
            job = jobs.start_stage(stage, {k: v for k, v in config.to_dict().items() if k != "stage"},
                                   processes=processes)
            st.session_state[f"watch.{stage}"] = job.run_dir
            st.toast(f"Started {Path(job.run_dir).name}")
            time.sleep(0.5)
            st.rerun()
        except jobs.Busy as exc:
            st.warning(as_text(exc))
    if active and not st.session_state.get(f"watch.{stage}"):
        st.caption(as_text(jobs.busy_message(active)))
    elif running:
        st.caption(f":material/arrow_upward: {Run(watched).id} is running: its live curves are at the top of this "
                   "page.")
