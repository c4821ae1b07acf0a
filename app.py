"""The workbench frame: page config, navigation over app_pages/, and the sidebar's active-run badge."""

import streamlit as st

from workbench import jobs

st.set_page_config(page_title="RLHF Workbench", page_icon=":material/explore:", layout="wide")

PAGES = {
    "Workbench": [st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
                  st.Page("app_pages/data.py", title="Data", icon=":material/description:"),
                  st.Page("app_pages/studio.py", title="Preference studio", icon=":material/thumbs_up_down:")],
    "Stages": [st.Page("app_pages/sft.py", title="1 · SFT", icon=":material/school:"),
               st.Page("app_pages/reward.py", title="2 · Reward model", icon=":material/balance:"),
               st.Page("app_pages/ppo.py", title="3 · PPO", icon=":material/trending_up:")],
    "Simpler approaches": [st.Page("app_pages/dpo.py", title="DPO", icon=":material/join:"),
                           st.Page("app_pages/grpo.py", title="GRPO", icon=":material/checklist:"),
                           st.Page("app_pages/approach.py", title="Which approach?", icon=":material/alt_route:")],
    "Results": [st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
                st.Page("app_pages/runs.py", title="Runs", icon=":material/folder_open:")],
}


@st.fragment(run_every=3)
def active_run_badge():
    job = jobs.active_job()
    if job is None:
        st.caption("No job running.")
        return
    from pipelines.runs import Run

    name = job.kind.upper()
    if job.run_dir:
        status = Run(job.run_dir).status()
        step, total = status.get("step", 0), status.get("max_steps")
        st.markdown(f":blue[:material/autorenew:] **{name}** running" + (f" · step {step}/{total}" if total else ""))
    else:
        running = [r for r in jobs.demo_runs(job) if r.status().get("state") == "running"]
        st.markdown(":blue[:material/autorenew:] **Demo** running" + (f" · {running[-1].stage.upper()}" if running else ""))


with st.sidebar:
    active_run_badge()

st.navigation(PAGES).run()
