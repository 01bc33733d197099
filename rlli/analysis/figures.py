"""plotly figures of human-versus-agent agreement; each function returns a ``go.Figure``.

Inputs are the pairs of :func:`rlli.analysis.agreement.pair_ratings` (or the rows of
:func:`~rlli.analysis.agreement.agreement_table`). With nothing to show, a figure says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rlli.analysis.agreement import AgreementRow

SCORE_BINS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10))
_AXIS = {"range": [0.3, 10.7], "dtick": 1}


def _empty(title: str, why: str = "no paired human and agent ratings yet") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 15})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def scatter(pairs: pd.DataFrame, *, jitter: float = 0.18, seed: int = 0, color: str = "pairing") -> go.Figure:
    """Human score (x) against agent score (y), jittered so equal scores stay visible, with the identity line."""
    title = "Human vs agent QoE score"
    if pairs.empty:
        return _empty(title)
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    for name, part in pairs.groupby(color, sort=True):
        fig.add_trace(go.Scatter(
            x=part["human_score"] + rng.uniform(-jitter, jitter, len(part)),
            y=part["agent_score"] + rng.uniform(-jitter, jitter, len(part)), mode="markers", name=str(name),
            marker={"size": 7, "opacity": 0.6},
            customdata=np.stack([part["human_score"], part["agent_score"], part["agent_name"]], axis=1),
            hovertemplate="human %{customdata[0]}, agent %{customdata[1]}<br>%{customdata[2]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[1, 10], y=[1, 10], mode="lines", name="agreement (y = x)",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title=title, xaxis={"title": "human score", **_AXIS},
                      yaxis={"title": "agent score", **_AXIS, "scaleanchor": "x"})
    return fig


def bland_altman(pairs: pd.DataFrame) -> go.Figure:
    """Mean of the two scores (x) against agent minus human (y); bias line and 95% limits of agreement."""
    title = "Bland-Altman: agent minus human"
    if pairs.empty:
        return _empty(title)
    h, a = pairs["human_score"].to_numpy(float), pairs["agent_score"].to_numpy(float)
    mean, diff = (h + a) / 2, a - h
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    fig = go.Figure(go.Scatter(x=mean, y=diff, mode="markers", name="pairs", marker={"size": 7, "opacity": 0.5}))
    for y, name, dash in ((bias, f"bias {bias:+.2f}", "solid"), (bias + 1.96 * sd, f"+1.96 SD {bias + 1.96 * sd:+.2f}", "dash"),
                          (bias - 1.96 * sd, f"-1.96 SD {bias - 1.96 * sd:+.2f}", "dash")):
        fig.add_trace(go.Scatter(x=[1, 10], y=[y, y], mode="lines", name=name, line={"dash": dash}))
    fig.update_layout(title=title, xaxis={"title": "mean of human and agent score", **_AXIS},
                      yaxis={"title": "agent - human"})
    return fig


def trait_bars(rows: list[AgreementRow], statistic: str = "spearman") -> go.Figure:
    """Agreement per trait level (high / low) with 95% bootstrap intervals, one bar group per judge."""
    title = f"Agreement by trait level ({statistic}, 95% bootstrap interval)"
    rows = [r for r in rows if r.slice == "trait" and r.statistics[statistic].value is not None]
    if not rows:
        return _empty(title, "no trait-level agreement yet (people with a Big-Five profile, rated by agents)")
    fig = go.Figure()
    for judge in sorted({(r.backend, r.model) for r in rows}):
        part = [r for r in rows if (r.backend, r.model) == judge]
        est = [r.statistics[statistic] for r in part]
        fig.add_trace(go.Bar(
            x=[r.label for r in part], y=[e.value for e in est], name=f"{judge[0]}/{judge[1]}",
            error_y={"type": "data", "symmetric": False,
                     "array": [None if e.high is None else e.high - e.value for e in est],
                     "arrayminus": [None if e.low is None else e.value - e.low for e in est]},
            customdata=[r.n_pairs for r in part], hovertemplate="%{x}: %{y:.2f} (%{customdata} pairs)<extra></extra>"))
    fig.update_layout(title=title, barmode="group", yaxis={"title": statistic}, xaxis={"title": "trait level"})
    return fig


def _bin(scores: pd.Series) -> np.ndarray:
    edges = [hi for _, hi in SCORE_BINS]
    return np.searchsorted(edges, scores.to_numpy(), side="left")


def confusion(pairs: pd.DataFrame) -> go.Figure:
    """Counts of (human score bin, agent score bin); the diagonal is agreement."""
    title = "Score bins: human (rows) vs agent (columns)"
    if pairs.empty:
        return _empty(title)
    k = len(SCORE_BINS)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (_bin(pairs["human_score"]), _bin(pairs["agent_score"])), 1)
    labels = [f"{lo}-{hi}" for lo, hi in SCORE_BINS]
    fig = go.Figure(go.Heatmap(z=counts, x=labels, y=labels, colorscale="Blues", text=counts, texttemplate="%{text}",
                               hovertemplate="human %{y}, agent %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title, xaxis={"title": "agent score"}, yaxis={"title": "human score"})
    return fig


def all_figures(pairs: pd.DataFrame, rows: list[AgreementRow], seed: int = 0) -> dict[str, go.Figure]:
    return {"scatter": scatter(pairs, seed=seed), "bland_altman": bland_altman(pairs), "trait_bars": trait_bars(rows),
            "confusion": confusion(pairs)}
