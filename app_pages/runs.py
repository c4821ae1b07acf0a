import shutil
import time
from datetime import datetime
from pathlib import Path

import streamlit as st

from pipelines.runtime.checkpoints import newest_checkpoint
from pipelines.runtime.runs import RunState, format_seconds, list_runs
from pipelines.stages import STAGES
from workbench import access, charts, jobs, results
from workbench.panels import as_text, live_run_panel

st.title("Runs")
runs = list_runs()
if not runs:
    st.info("No runs yet. Start one from a stage page, or the whole demo from Home.")
    st.stop()

def key_figure(run) -> str:
    """The run's first labelled figure ("Training loss 2.14 → 1.65", "Held-out accuracy 100% vs 47% ...")."""
    figures = results.summary_figures(run.stage, run.summary())
    return f"{figures[0][0]} {figures[0][1]}" if figures else ""


table = []
for run in runs:
    status = run.status()
    started = status.get("started_at")
    ended = status.get("ended_at") or (time.time() if status.get("state") == RunState.RUNNING else None)
    checkpoint = newest_checkpoint(run.path)
    table.append({"run": run.id, "stage": run.stage, "status": status.get("state", "starting"),
                  "key figure": key_figure(run), "checkpoint": f"step {checkpoint[0]}" if checkpoint else "",
                  "resumed": f"{len(status['resumes'])}×" if status.get("resumes") else "",
                  "processes": status.get("world_size") or 1,
                  "started": datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M") if started else "",
                  "duration": format_seconds(ended - started) if started and ended else ""})
st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Overlay curves")
by_id = {r.id: r for r in runs}
training = [r for r in runs if r.stage in STAGES and STAGES[r.stage].trains]  # a comparison has no curves
default = [r.id for r in training if r.stage == training[0].stage][:2] if training else []
chosen = st.multiselect("Runs", list(by_id), default=default)
if chosen:
    metrics = {rid: by_id[rid].metrics() for rid in chosen}
    keys = sorted({k for rows in metrics.values() for row in rows for k in row if k not in ("step", "time")},
                  key=charts.metric_name)
    if keys:  # what each stage is about: the judge's score for PPO, else the loss
        default = next((k for k in ("objective/scores", "loss") if k in keys), keys[0])
        key = st.selectbox("Metric", keys, index=keys.index(default), format_func=charts.metric_name)
        st.plotly_chart(charts.overlay(metrics, key), width="stretch")

st.subheader("Open a run")
run = by_id[st.selectbox("Run", list(by_id))]
tabs = st.tabs(["Charts and log", "Config", *(["Export", "Delete"] if access.can_act() else [])])
with tabs[0]:
    live_run_panel(str(run.path), key=f"runs.{run.id}", every=3)
with tabs[1]:
    st.code((run.path / "config.yaml").read_text(encoding="utf-8") if (run.path / "config.yaml").exists() else "",
            language="yaml")
if not access.can_act():  # a viewer watches: no export, no delete
    st.stop()
with tabs[2]:
    if not run.adapter_dir.is_dir():
        st.caption("This run has no adapter to export.")
    else:
        if st.button("Prepare the adapter as a .zip"):  # zipped on request, not on every page render
            st.session_state[f"zip.{run.id}"] = shutil.make_archive(str(jobs.jobs_dir() / f"{run.id}-adapter"),
                                                                    "zip", run.adapter_dir)
        if zipped := st.session_state.get(f"zip.{run.id}"):
            with open(zipped, "rb") as fh:
                st.download_button("Download the adapter (.zip)", fh.read(), file_name=f"{run.id}-adapter.zip")
        if run.stage in STAGES and STAGES[run.stage].generates:  # a judge only scores: nothing to merge for it
            out = run.path / "merged"
            if out.exists():
                st.success(f"Merged model saved in `{out}`.")
            elif st.button("Save a merged model (base + adapter) next to the run"):
                with st.spinner("Merging the adapter into the base weights..."):
                    done = jobs.run_cli(["export", "--run", str(run.path), "--out", str(out), "--merged"])
                if done.returncode == 0:
                    st.success(f"Merged model saved in `{out}`: load it with `from_pretrained` (no PEFT needed).")
                else:
                    st.error(f"Export failed: {as_text(jobs.last_error_line(done.stderr))}")
with tabs[3]:
    active = jobs.active_job()
    if run.state is RunState.RUNNING or (active and active.run_dir and Path(active.run_dir).name == run.id):
        st.caption("This run is live: stop it before deleting it.")
    elif st.checkbox(f"Yes, delete {run.id} and its adapter"):
        if st.button("Delete run", type="primary"):
            shutil.rmtree(run.path)
            st.toast(f"Deleted {run.id}")
            st.rerun()
