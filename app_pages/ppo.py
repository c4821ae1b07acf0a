import streamlit as st

from pipelines.runtime.runs import finished_runs
from pipelines.stages import JUDGE
from workbench.panels import as_text, stage_page
from workbench.report_card import judge_warnings

if (judges := finished_runs(JUDGE.id)) and (warnings := judge_warnings(judges[0])):
    # before PPO spends hours on it: what the latest judge's report card found (the Reward page has the whole card)
    st.warning(f"The latest judge, {as_text(judges[0].id)}: " + " ".join(as_text(w) for w in warnings))
stage_page("ppo")
