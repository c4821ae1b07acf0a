import json
import math
import tempfile
from pathlib import Path

import streamlit as st

from pipelines.runtime.runs import finished_runs
from pipelines.stages import JUDGE
from workbench import access, jobs
from workbench.panels import as_text, percent_sure, stage_page
from workbench.report_card import report_card



def latest_report_card() -> None:
    """Above the settings: what the latest judge rewards, before anyone trains PPO against it."""
    if finished := finished_runs(JUDGE.id):
        st.subheader(f"Report card of {as_text(finished[0].id)}")
        st.caption("What this judge rewards, measured on held-out pairs it never trained on: read it before PPO "
                   "optimises against it.")
        report_card(finished[0])
        st.divider()


stage_page("reward", results=latest_report_card)

st.divider()
st.subheader("Playground: ask the judge")
st.caption("Type a prompt and two responses. The judge scores each; under its training objective (Bradley-Terry), "
           "the difference of scores says how sure it is that one is better.")
judges = finished_runs("reward")
if not access.can_act():  # each question loads the judge: the owner's to spend
    st.caption(":material/visibility: The owner can ask the judge here.")
    st.stop()
if not judges:
    st.info("Train a reward model first; the playground uses a finished reward run.")
    st.stop()
judge = st.selectbox("Judge", judges, format_func=lambda r: f"{r.id} (held-out accuracy "
                     f"{r.summary().get('eval_accuracy', float('nan')):.2f})")
if instruction := judge.summary().get("labeler_instruction"):
    st.caption(f"This judge learned from people who were asked: “{as_text(instruction)}” Its scores measure that, "
               "and nothing else.")
with st.form("playground"):
    prompt = st.text_area("Prompt", "What is the capital of France?")
    left, right = st.columns(2)
    response_a = left.text_area("Response A", "Happy to help! The capital of France is Paris. Have a lovely day!")
    response_b = right.text_area("Response B", "Obviously. The capital of France is Paris. Look it up next time.")
    asked = st.form_submit_button("Score both", type="primary")
if asked:
    if not prompt.strip() or not response_a.strip() or not response_b.strip():
        st.error("Fill in the prompt and both responses.")
        st.stop()
    with tempfile.TemporaryDirectory() as tmp:
        request, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        request.write_text("".join(json.dumps({"prompt": prompt, "response": r}) + "\n"
                                   for r in (response_a, response_b)), encoding="utf-8")
        with st.spinner("The judge is reading both responses (loading the model takes a few seconds)..."):
            done = jobs.run_cli(["score", "--reward", str(judge.path), "--file", str(request), "--out", str(out)])
        if done.returncode != 0:
            st.error(f"Scoring failed: {as_text(jobs.last_error_line(done.stderr))}")
            st.stop()
        score_a, score_b = (json.loads(line)["score"] for line in out.read_text(encoding="utf-8").splitlines())
    left, right, verdict = st.columns(3)
    left.metric("Score A", f"{score_a:+.3f}")
    right.metric("Score B", f"{score_b:+.3f}")
    p_a = 1 / (1 + math.exp(-(score_a - score_b)))
    better, p = ("A", p_a) if score_a >= score_b else ("B", 1 - p_a)
    verdict.metric("The judge prefers", better, f"{percent_sure(p)} sure (margin {abs(score_a - score_b):.2f})")
