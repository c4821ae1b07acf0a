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
