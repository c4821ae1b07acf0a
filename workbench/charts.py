"""Plotly figures for the live panels and the Runs page. Each stage's record lists its charts and the metric keys
each draws (pipelines/stages), so a stage's charts are data, not code here."""

from __future__ import annotations

from typing import Callable

import plotly.graph_objects as go

from pipelines.stages import STAGES


def metric_name(key: str) -> str:
    """A metric key as people read it ("Judge score: score - KL penalty"), for the Runs page's overlay."""
    for stage in STAGES.values():
        for chart in stage.charts:
            for series_key, label in chart.series:
                if series_key == key:
                    return f"{chart.title}: {label}"
    return key


def series(metrics: list[dict], key: str) -> tuple[list, list]:
    points = [(m["step"], m[key]) for m in metrics if key in m and m[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def line_chart(title: str, y_title: str, traces: list[tuple[str, list, list]],
               hline: tuple[float, str] | None = None, height: int = 260) -> go.Figure:
    fig = go.Figure()
    for label, xs, ys in traces:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) < 40 else "lines", name=label))
    if hline is not None:
        fig.add_hline(y=hline[0], line_dash="dash", line_color="crimson", annotation_text=hline[1])
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step",
                      yaxis_title=y_title, legend=dict(orientation="h", y=-0.25))
    return fig


def stage_figures(stage: str, metrics: list[dict], config: dict | None = None) -> list[go.Figure]:
    """The stage's charts that have data; `config`: the run's settings, for a chart's dashed line (the gate)."""
    figures = []
    for chart in STAGES[stage].charts if stage in STAGES else ():
        traces = [(label, *series(metrics, key)) for key, label in chart.series]
        traces = [t for t in traces if t[1]]
        if not traces:
            continue
        line = (config or {}).get(chart.line_from) if chart.line_from else None
        hline = (line, f"{chart.line_label} {line:.2f}") if isinstance(line, (int, float)) else None
        figures.append(line_chart(chart.title, chart.y_title, traces, hline))
    return figures


def overlay(runs: dict[str, list[dict]], key: str) -> go.Figure:
    """One metric of several runs on one chart."""
    return line_chart(metric_name(key), metric_name(key),
                      [(name, *series(metrics, key)) for name, metrics in runs.items()], height=380)


def compare_bars(mean_score: dict[str, float], name: Callable[[str], str]) -> go.Figure:
    """`name`: what to call each model key on the axis."""
    fig = go.Figure(go.Bar(x=[name(m) for m in mean_score], y=list(mean_score.values()),
                           marker_color=["#9aa5b1", "#5b8def", "#2bb673", "#e8a33d", "#b56bd6"][: len(mean_score)]))
    fig.update_layout(title="Mean judge score", height=280, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="model", yaxis_title="judge's score (higher: preferred)")
    return fig


def reliability_chart(bins: list[dict]) -> go.Figure:
    """A judge's calibration: how often it is right (bars) at each level of its own confidence (the diagonal is a
    judge whose confidence means what it says)."""
    filled = [b for b in bins if b["pairs"]]
    fig = go.Figure(go.Bar(x=[b["confidence"] for b in filled], y=[b["accuracy"] for b in filled], width=0.08,
                           text=[f"{b['pairs']} pairs" for b in filled], name="right this often"))
    fig.add_trace(go.Scatter(x=[0.5, 1.0], y=[0.5, 1.0], mode="lines", line_dash="dash", name="perfectly calibrated"))
    fig.update_layout(title="Calibration", height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis_range=[0.45, 1.02],
                      yaxis_range=[0, 1.02], xaxis_title="the judge's confidence in its pick",
                      yaxis_title="share it got right", legend=dict(orientation="h", y=-0.35))
    return fig


def probes_chart(probes: dict[str, float], meaning: dict[str, str]) -> go.Figure:
    """The mean change of the judge's score for each one-way change to an answer."""
    names = list(probes)
    fig = go.Figure(go.Bar(x=[probes[n] for n in names], y=[meaning[n] for n in names], orientation="h",
                           marker_color=["#2bb673" if probes[n] > 0 else "#d9534f" for n in names]))
    fig.update_layout(title="What changes the score", height=280, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="mean change of the score")
    return fig
