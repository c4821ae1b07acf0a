"""The workbench frame: page config, navigation over app_pages/ and the stages, and the sidebar's active-run badge."""

from functools import partial
from pathlib import Path

import streamlit as st

from pipelines.stages import STAGES
from workbench import access, jobs
from workbench.panels import stage_page

st.set_page_config(page_title="RLHF Workbench", page_icon=":material/explore:", layout="wide")
role = access.gate()  # on a network: the login until a right token is given


def stage_pages(section: str) -> list:
    """The pages of the stages in `section`, in the stages' order: a stage's own page file (app_pages/<id>.py) where
    it has one, else the plain stage page. The three classic stages are numbered, as the tour numbers them."""
    pages = []
    for stage in (s for s in STAGES.values() if s.section == section):
        title = f"{len(pages) + 1} · {stage.title}" if section == "Stages" else stage.title
        own = Path(__file__).parent / "app_pages" / f"{stage.id}.py"
        page = own if own.is_file() else partial(stage_page, stage.id)
        pages.append(st.Page(page, title=title, icon=stage.icon, url_path=stage.id))
    return pages


# A viewer watches: the pages that read files or label data are the owner's.
OWNER_ONLY = [st.Page("app_pages/data.py", title="Data", icon=":material/description:"),
              st.Page("app_pages/studio.py", title="Preference studio", icon=":material/thumbs_up_down:")]
PAGES = {
    "Workbench": [st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
                  *(OWNER_ONLY if role == access.OWNER else [])],
    "Stages": stage_pages("Stages"),
    "Simpler approaches": [*stage_pages("Simpler approaches"),
                           st.Page("app_pages/approach.py", title="Which approach?", icon=":material/alt_route:")],
    "Results": [*stage_pages("Results"), st.Page("app_pages/runs.py", title="Runs", icon=":material/folder_open:")],
}


@st.fragment(run_every=3)
def active_run_badge():
    job = jobs.active_job()
    if job is None:
        st.caption("No job running.")
        return
    from pipelines.runtime.runs import Run, RunState

    name = job.kind.upper()
    if job.run_dir:
        status = Run(job.run_dir).status()
        step, total = status.get("step", 0), status.get("max_steps")
        st.markdown(f":blue[:material/autorenew:] **{name}** running" + (f" · step {step}/{total}" if total else ""))
    elif job.kind == "demo":
        running = [r for r in jobs.demo_runs(job) if r.state is RunState.RUNNING]
        st.markdown(":blue[:material/autorenew:] **Demo** running" +
                    (f" · {running[-1].stage.upper()}" if running else ""))
    else:  # the studio's, or a job started from a terminal
        st.markdown(f":blue[:material/autorenew:] **{'Command-line job' if job.kind == 'cli' else name}** running")


with st.sidebar:
    active_run_badge()
    if role == access.VIEWER:
        st.caption(":material/visibility: Viewer: you watch runs and results; the owner starts and stops them.")

st.navigation(PAGES).run()
