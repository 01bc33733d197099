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


# what each method is, said plainly on the page (measured: docs/policy.md, `python -m rlli eval policy`)
POLICY_NOTES = {
    "gddpg": "G-DDPG, the paper's method: a diffusion-model actor; on 500 held-out rounds 0.06 reward per round "
             "below the greedy heuristic (97.8% of the gain the best-found search captures)",
    "ddpg": "DDPG, a plain actor-critic: 0.11 reward per round below greedy on held-out rounds",
    "greedy": "a heuristic: each member shares within a quality tolerance, bandwidth evens out hand-off times",
    "fork_max": "every member shares its fork decision's maximum, equal shares",
    "best_found": "a search per round on the model itself (slow; the bound the others are measured against)",
    "oracle": "a search per round on the model itself (slow; the bound the others are measured against)",
    "equal": "equal shares, a third of the steps", "random": "random shares and steps", "no_sharing": "no sharing",
}


def policy_line(policy) -> str:
    """Which method allocates and, for a learned one, which checkpoint and how much it learned from."""
    name = policy.name
    line = f"- **{html.escape(name)}**: {POLICY_NOTES.get(name, '')}"
    meta = getattr(policy, "meta", None)
    if meta:
        args = meta.get("args") or {}
        rounds = int(meta.get("iterations_done") or 0) * int(args.get("rounds_per_iteration") or 0)
        folder = getattr(policy, "folder", None)
        line += (f"; checkpoint `{html.escape(str(folder.parent.name + '/' + folder.name) if folder else '?')}`, "
                 f"learned from {rounds:,} simulated rounds rated by the `{html.escape(str(meta.get('judge', '?')))}` "
                 "judge (no people's or LLM agents' ratings reach it yet)")
    return line


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
        from rlli.policy.api import get_policy

        text = summary(view, allocation) + "\n" + policy_line(get_policy(allocation.allocation.policy, studio.settings))
        return {head: text, groups: group_rows(view), tree: sharing_tree(view.report),
                bars: allocation_bars(allocation.allocation, list(view.who), view.report.prompts,
                                      view.report.accounting.steps),
                energy: comparison_bars(allocation)}

    refresh.click(on_refresh, None, [pick], api_name=False)
    pick.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
    policy.change(on_show, [pick, policy], [head, groups, tree, bars, energy], api_name=False)
