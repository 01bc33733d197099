"""plotly figures of one round's allocation: per-user bars and the energy / QoE comparison."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _labels(who: list[str], prompts: list[str]) -> list[str]:
    return [f"{i + 1}. {w}: {p[:28]}{'...' if len(p) > 28 else ''}" for i, (w, p) in enumerate(zip(who, prompts))]


def allocation_bars(allocation, who: list[str], prompts: list[str], steps: int) -> go.Figure:
    """Per user: bandwidth and server-compute shares, shared vs own steps, and the delay's parts."""
    users = allocation.users
    x = _labels(who, prompts)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("bandwidth / compute share", "shared vs own steps",
                                                        "simulated delay (s)"), horizontal_spacing=0.08)
    fig.add_bar(x=x, y=[u.bandwidth_share for u in users], name="bandwidth share", row=1, col=1)
    fig.add_bar(x=x, y=[u.compute_share for u in users], name="server compute share", row=1, col=1)
    fig.add_bar(x=x, y=[u.shared_steps for u in users], name="shared steps", row=1, col=2)
    fig.add_bar(x=x, y=[steps - u.shared_steps for u in users], name="own steps", row=1, col=2)
    for part, attr in (("server", "delay_server_s"), ("transmit", "delay_tx_s"), ("device", "delay_device_s")):
        fig.add_bar(x=x, y=[getattr(u, attr) for u in users], name=f"{part} delay", row=1, col=3)
    fig.update_layout(barmode="group", height=420, margin={"t": 60, "b": 10}, legend={"orientation": "h"},
                      font={"size": 15})
    fig.update_xaxes(tickangle=-35)
    return fig


def comparison_bars(report) -> go.Figure:
    """Total energy and total QoE under the policy, under no sharing and under an equal split."""
    names = [f"{report.allocation.policy} (this round)", "no sharing", "equal split"]
    rows = [report.allocation, report.no_sharing, report.equal]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("energy (J)", "total QoE (trait judge)"))
    fig.add_bar(x=names, y=[r.energy_j for r in rows], marker_color=["#2a9d8f", "#999", "#bbb"], row=1, col=1,
                showlegend=False)
    fig.add_bar(x=names, y=[r.total_qoe for r in rows], marker_color=["#2a9d8f", "#999", "#bbb"], row=1, col=2,
                showlegend=False)
    fig.update_layout(height=360, margin={"t": 60, "b": 10}, font={"size": 15})
    return fig
