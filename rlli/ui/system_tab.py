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


def summary(view, report) -> str:
    a, e = report.allocation, html.escape
    saved = report.no_sharing.energy_j - a.energy_j
    lines = [f"## Round {view.number}: {len(view.who)} requests, {len(view.report.groups)} groups",
             f"- allocated by **{e(a.policy)}** in {a.decision_ms:.1f} ms; total QoE {a.total_qoe:.1f} "
             f"(no sharing {report.no_sharing.total_qoe:.1f}, equal split {report.equal.total_qoe:.1f})",
             f"- energy {a.energy_j:.1f} J: **{saved:+.1f} J saved** against no sharing, "
             f"{report.equal.energy_j - a.energy_j:+.1f} J against an equal split; mean delay {a.mean_delay_s:.2f} s"]
    acc = view.report.accounting
    lines.append(f"- denoiser passes {acc['denoiser_passes']} against {acc['denoiser_passes_independent']} "
                 f"without sharing ({acc['denoiser_passes_fork_decision']} of them for the fork decision)")
    if report.notice is not None:
        lines.append(f"- **Notice:** {e(report.notice.message)}")
    if view.report.notice:
        lines.append(f"- **Notice:** {e(view.report.notice)}")
    return "\n".join(lines)


def build(studio: Studio) -> None:
    with gr.Row():
        pick = gr.Dropdown(choices=_choices(studio), label="Recent rounds", interactive=True)
        policy = gr.Dropdown(choices=list(POLICY_NAMES), value=studio.settings.policy,
                             label="Policy (replay the same round to compare)")
        refresh = gr.Button("Refresh the list")
    head = gr.Markdown("Run a round in the Participate or Personas tab, then pick it here.")
    groups = gr.Dataframe(headers=GROUP_HEADERS, label="Groups", interactive=False, wrap=True)
    tree = gr.Plot(label="Sharing tree")
    bars = gr.Plot(label="Allocation per user")
    energy = gr.Plot(label="Energy and QoE against the references")

    def on_refresh():
        choices = _choices(studio)
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    def on_show(number, name):
        view = next((v for v in studio.recent if v.number == number), None)
        if view is None:
            return "Pick a round.", None, None, None, None
        try:
            report = studio.reallocate(view, name)
        except StudioError as e:
            return f"**{html.escape(str(e))}**", None, None, None, None
        rows = [[g.number, view.report.prompts[g.anchor], len(g.members), ", ".join(str(s) for s in g.member_steps)]
                for g in view.report.groups]
        return (summary(view, report), rows, sharing_tree(view.report),
                allocation_bars(report.allocation, view.who, view.report.prompts, view.report.accounting["steps"]),
                comparison_bars(report))

    refresh.click(on_refresh, None, [pick], api_name=False)
    pick.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
    policy.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
