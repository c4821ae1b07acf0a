"""A judge's report card on the page (its figures come from summary.json's `judge_report`, written by the reward
stage: pipelines/stages/reward/report.py). Each figure has a line that says what it means."""

from __future__ import annotations

import streamlit as st

from pipelines.runtime.runs import Run
from pipelines.stages.reward.report import PROBE_MEANINGS, probe_sentence
from pipelines.studio.sets import AI_PREFIX, agreement, list_sets
from workbench import charts
from workbench.panels import as_text, show_text


def judge_warnings(run: Run) -> list[str]:
    """What the judge's report card warns about (empty for a judge without one)."""
    return list((run.summary().get("judge_report") or {}).get("warnings") or [])


def studio_agreement(run: Run) -> list[str]:
    """How often this judge agreed with people, where it labeled a studio set they labeled too (the studio's "Label
    with this reward model")."""
    judge = f"{AI_PREFIX}reward:{run.id}"
    lines = []
    for labeling_set in list_sets(run.path.parent):
        for row in agreement(labeling_set):
            names = (row["labeler 1"], row["labeler 2"])
            if judge in names and row["ai vs human"] and row["both picked a side"]:
                person = names[1 - names.index(judge)]
                lines.append(f"agreed with {as_text(person)} on {row['agree']} of {row['both picked a side']} "
                             f"items of the studio set {as_text(labeling_set.name)} ({row['agreement']:.0%})")
    return lines


def report_card(run: Run) -> None:
    report = run.summary().get("judge_report")
    if not report or report.get("accuracy") is None:
        st.caption(f"{as_text(run.id)} has no report card (it ended before reward runs wrote one). "
                   f"`python -m pipelines judge-report {as_text(run.path)} --save` makes one.")
        return
    low, high = report["accuracy_interval"]
    cols = st.columns(4)
    cols[0].metric("Held-out accuracy", f"{report['accuracy']:.0%}",
                   help=f"95% interval {low:.0%}-{high:.0%}, on {report['pairs']} pairs")
    if report.get("length_baseline_accuracy") is not None:
        cols[1].metric("“Pick the longer”", f"{report['length_baseline_accuracy']:.0%}",
                       help="what counting words alone scores on the same pairs")
    if report.get("length_correlation") is not None:
        cols[2].metric("Follows length", f"{report['length_correlation']:+.2f}",
                       help="rank correlation of score and answer length: 0 ignores length, 1 is length alone")
    if report.get("calibration_error") is not None:
        cols[3].metric("Calibration error", f"{report['calibration_error']:.2f}",
                       help="how far its confidence is from how often it is right: 0 is perfect")
    st.caption(f"Right on {report['accuracy']:.0%} of {report['pairs']} held-out pairs (somewhere between {low:.0%} "
               f"and {high:.0%} with 95% confidence).")
    for warning in report.get("warnings", []):
        st.warning(as_text(warning))
    if agreed := studio_agreement(run):
        st.caption("With people, in the preference studio: this judge " + "; ".join(agreed) + ".")
    left, right = st.columns(2)
    if report.get("probes"):
        left.plotly_chart(charts.probes_chart(report["probes"], PROBE_MEANINGS), width="stretch")
        left.caption(" ".join(probe_sentence(name, change) for name, change in report["probes"].items()) +
                     f" (on {report['probe_answers']} held-out answers)")
    right.plotly_chart(charts.reliability_chart(report["reliability"]), width="stretch")
    if report.get("confidently_wrong"):
        with st.expander(f"The {len(report['confidently_wrong'])} held-out pairs it gets most confidently wrong "
                         "(label noise, or its blind spots)"):
            for pair in report["confidently_wrong"]:
                st.caption(f"line {pair['line']} · margin {pair['margin']:+.2f}")
                show_text(f"Prompt: {pair['prompt']}\nChosen by the labelers: {pair['chosen']}\nPreferred by the "
                          f"judge: {pair['rejected']}")
