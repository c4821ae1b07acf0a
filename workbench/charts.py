"""Plotly figures for the live panels and the Runs page. Each chart names the metric keys it draws, so a
stage's charts are a list of data, not code."""

from __future__ import annotations

import plotly.graph_objects as go

# (title, y-axis title, [(metric key, legend label)], optional horizontal line (value, label))
STAGE_CHARTS = {
    "sft": [("Loss", "loss (lower is better)", [("loss", "train"), ("eval_loss", "held-out")], None),
            ("Token accuracy", "share of next tokens right",
             [("mean_token_accuracy", "train"), ("eval_mean_token_accuracy", "held-out")], None)],
    "reward": [("Loss", "loss (lower is better)", [("loss", "train")], None),
               ("Accuracy (chosen scored above rejected)", "share of pairs right",
                [("accuracy", "train batch"), ("eval_accuracy", "held-out"),
                 ("length_baseline_accuracy", "pick-the-longer baseline")], "gate"),
               ("Margin (chosen - rejected score)", "score difference",
                [("margin", "train batch"), ("eval_margin", "held-out")], None)],
    "ppo": [("Judge score", "judge's score", [("objective/scores", "score"),
                                              ("objective/rlhf_reward", "score - KL penalty")], None),
            ("KL to the SFT model", "KL (nats per answer)", [("objective/kl", "KL (k1)"),
                                                             ("objective/kl_k3", "KL (k3)")], None),
            ("Losses", "loss", [("loss/policy", "policy"), ("loss/value", "value")], None),
            ("Entropy", "nats per token", [("objective/entropy", "entropy")], None),
            ("KL coefficient", "kl_coef", [("objective/kl_coef", "kl_coef")], None),
            ("Response length", "tokens", [("response_length", "tokens")], None),
            ("Seconds per step, by phase", "seconds",
             [("time/generate", "generate"), ("time/judge", "judge"), ("time/forward_policy", "policy forwards"),
              ("time/forward_reference", "reference forward"), ("time/forward_value", "value forwards"),
              ("time/backward", "backward"), ("time/all_reduce", "gradient exchange"),
              ("time/optimizer", "optimizer"), ("time/other", "other")], None)],
    "dpo": [("Loss", "loss (lower is better)", [("loss", "train"), ("eval_loss", "held-out")], None),
            ("Implicit rewards (log-prob ratio to the reference x beta)", "reward",
             [("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"), ("rewards/margins", "margin"),
              ("eval_rewards/margins", "held-out margin")], None),
            ("Preference accuracy (chosen above rejected)", "share of pairs right",
             [("rewards/accuracies", "train batch"), ("eval_rewards/accuracies", "held-out")], None)],
    "grpo": [("Reward", "reward per answer", [("reward", "mean"), ("reward_std", "spread within a batch")], None),
             ("Reward, by rule", "reward per answer",
              [("rewards/correct_answer/mean", "right answer"), ("rewards/matches_regex/mean", "matches the pattern"),
               ("rewards/within_length/mean", "short enough"), ("rewards/judge/mean", "judge")], None),
             ("KL to the starting model", "KL (per token)", [("kl", "KL")], None),
             ("Answer length", "tokens", [("completions/mean_length", "mean")], None),
             ("What the batch held", "share",
              [("frac_reward_zero_std", "groups scored all alike (they teach nothing)"),
               ("completions/clipped_ratio", "answers cut off at max_new_tokens"),
               ("clip_ratio/region_mean", "tokens whose update was clipped")], None)],
    "compare": [],
}
# Metric keys as people read them ("Judge score: score - KL penalty"), for the Runs page's overlay.
METRIC_NAMES = {key: f"{title}: {label}" for charts in STAGE_CHARTS.values() for title, _, keys, _ in charts
                for key, label in keys}


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key)



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


def stage_figures(stage: str, metrics: list[dict], gate: float | None = None) -> list[go.Figure]:
    """The stage's charts that have data."""
    figures = []
    for title, y_title, keys, line in STAGE_CHARTS.get(stage, []):
        traces = [(label, *series(metrics, key)) for key, label in keys]
        traces = [t for t in traces if t[1]]
        if not traces:
            continue
        hline = (gate, f"gate {gate:.2f}") if line == "gate" and gate is not None else None
        figures.append(line_chart(title, y_title, traces, hline))
    return figures


def overlay(runs: dict[str, list[dict]], key: str) -> go.Figure:
    """One metric of several runs on one chart."""
    return line_chart(metric_name(key), metric_name(key),
                      [(name, *series(metrics, key)) for name, metrics in runs.items()], height=380)


def compare_bars(mean_score: dict[str, float], names: dict[str, str]) -> go.Figure:
    """`names`: what to call each model key on the axis."""
    fig = go.Figure(go.Bar(x=[names.get(m, m) for m in mean_score], y=list(mean_score.values()),
                           marker_color=["#9aa5b1", "#5b8def", "#2bb673", "#e8a33d", "#b56bd6"][: len(mean_score)]))
    fig.update_layout(title="Mean judge score", height=280, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="model", yaxis_title="judge's score (higher: preferred)")
    return fig
