"""The "System" tab: what the backend decided in recent rounds, readable on a projector.

Groups and similarities, the sharing tree, the allocation per user, shared versus own steps, delays,
energy against no sharing and an equal split, and which policy decided - any other policy can be
replayed on the same round (same fork decisions, same links) to compare.
"""

from __future__ import annotations

import html

import gradio as gr

from rlli.policy.api import POLICY_NAMES
from rlli.session.studio import Studio, StudioError
from rlli.ui.charts import allocation_bars, comparison_bars
from rlli.ui.round_tab import sharing_tree

GROUP_HEADERS = ["group", "anchor", "members", "shared steps per member"]


def _choices(studio: Studio) -> list[tuple[str, int]]:
    return [(f"round {v.number}: {len(v.who)} requests", v.number) for v in studio.recent]


def summary(view, allocation) -> str:
    """The round's decisions on a projector; energy is signed: positive = sharing used less than not sharing."""
    a, e = allocation.allocation, html.escape
    saved = allocation.no_sharing.energy_j - a.energy_j
    acc = view.report.accounting
    lines = [f"## Round {view.number}: {len(view.who)} requests, {len(view.report.groups)} groups",
             f"- allocated by **{e(a.policy)}** in {a.decision_ms:.1f} ms; total QoE {a.total_qoe:.1f} "
             f"(no sharing {allocation.no_sharing.total_qoe:.1f}, equal split {allocation.equal.total_qoe:.1f})",
             f"- energy {a.energy_j:.1f} J; energy against no sharing (every image on its own device): "
             f"**{saved:+.1f} J** ({'saved' if saved >= 0 else 'spent more'}); against the server making every "
             f"image separately: {allocation.energy_saved_vs_server_j:+.1f} J; against an equal split "
             f"{allocation.equal.energy_j - a.energy_j:+.1f} J; mean delay {a.mean_delay_s:.2f} s",
             f"- denoiser passes {acc.passes} against {acc.passes_independent} without sharing "
             f"({acc.passes_fork_decision} of them for the fork decision)"]
    if allocation.notice is not None:
        lines.append(f"- **Notice:** {e(allocation.notice.message)}")
    lines += [f"- **Notice:** {e(n)}" for n in view.report.notices
              if allocation.notice is None or n != allocation.notice.message]
    return "\n".join(lines)


def group_rows(view) -> list[list]:
    return [[g.number, view.report.prompts[g.anchor], len(g.members), ", ".join(str(s) for s in g.fork_steps)]
            for g in view.report.groups]


def build(studio: Studio) -> None:
    with gr.Row():
        pick = gr.Dropdown(choices=_choices(studio), label="Recent rounds", interactive=True)
        policy = gr.Dropdown(choices=list(POLICY_NAMES), value=studio.settings.policy,
                             label="Policy (replay the same round to compare)")
        refresh = gr.Button("Refresh the list")
    head = gr.Markdown("Run a round in the Participate, Personas or Shared round tab, then pick it here.")
    groups = gr.Dataframe(headers=GROUP_HEADERS, label="Groups", interactive=False, wrap=True)
    tree = gr.Plot(label="Sharing tree")
    bars = gr.Plot(label="Allocation per user")
    energy = gr.Plot(label="Energy and QoE against the references")

    def on_refresh():
        choices = _choices(studio)
        return {pick: gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)}

    def on_show(number, name):
        view = next((v for v in list(studio.recent) if v.number == number), None)
        if view is None:
            return {head: "Pick a round."}
        try:
            allocation = studio.reallocate(view, name)
        except StudioError as e:
            return {head: f"**{html.escape(str(e))}**"}
        return {head: summary(view, allocation), groups: group_rows(view), tree: sharing_tree(view.report),
                bars: allocation_bars(allocation.allocation, list(view.who), view.report.prompts,
                                      view.report.accounting.steps),
                energy: comparison_bars(allocation)}

    refresh.click(on_refresh, None, [pick], api_name=False)
    pick.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
    policy.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
