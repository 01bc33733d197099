"""The "System" tab: what the backend decided in recent rounds, readable on a projector.

Groups and similarities, the sharing tree, the allocation per user, shared versus own steps, delays,
energy against no sharing and an equal split, and which policy decided - any other policy can be
replayed on the same round (same fork decisions, same links) to compare.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import gradio as gr

from rlli.personas.judge import TRAITS, BigFive
from rlli.policy.api import POLICY_NAMES
from rlli.session.studio import Studio, StudioError
from rlli.ui.charts import allocation_bars, comparison_bars
from rlli.ui.round_tab import sharing_tree

GROUP_HEADERS = ["group", "anchor", "members", "shared steps per member"]
COMPARED = ("best_found", "greedy")  # shown beside the live policy, per persona, on the same round
WHAT_IF_HEADERS = ["#", "who", "shared steps", "band share", "delay s", "QoE"]


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
    "gddpg_li": "G-DDPG trained on the embedded LLM judge's ratings (the paper's -LI arm, through a reward model "
                "fitted on 144 of its answers): 0.32 reward per round below the trait-judge G-DDPG on held-out rounds; "
                "the 135M model's ratings barely depend on the wait or the persona",
    "greedy": "a heuristic: each member shares within a quality tolerance, bandwidth evens out hand-off times",
    "fork_max": "every member shares its fork decision's maximum, equal shares",
    "best_found": "a search per round on the model itself (slow; the bound the others are measured against)",
    "oracle": "a search per round on the model itself (slow; the bound the others are measured against)",
    "equal": "equal shares, a third of the steps", "random": "random shares and steps", "no_sharing": "no sharing",
}


def policy_line(policy) -> str:
    """Which method allocates and, for a learned one, which checkpoint, which judge and how many interactions
    (simulated rounds, logged rounds and stored ratings) it learned from."""
    name = policy.name
    line = f"- **{html.escape(name)}**: {POLICY_NOTES.get(name, '')}"
    learned = policy.learned_from()
    if learned:
        folder = Path(str(learned.get("checkpoint", "?")))
        rounds, ratings = int(learned.get("rounds") or 0), int(learned.get("ratings") or 0)
        simulated = int(learned.get("simulated_rounds") or 0)
        line += (f"; checkpoint `{html.escape(folder.parent.name + '/' + folder.name)}`, learned from "
                 f"{simulated:,} simulated rounds rated by the `{html.escape(str(learned.get('judge') or '?'))}` judge")
        line += (f" and {ratings:,} stored ratings of {rounds:,} logged rounds" if rounds else
                 " (no logged round or stored rating has reached it: `train policy --reward store` fine-tunes it on them)")
    return line


def group_rows(view) -> list[list]:
    return [[g.number, view.report.prompts[g.anchor], len(g.members), ", ".join(str(s) for s in g.fork_steps)]
            for g in view.report.groups]


def persona_headers(methods) -> list[str]:
    return ["#", "who", *(t[:1].upper() for t in TRAITS)] + [
        f"{m}: {col}" for m in methods for col in ("steps", "delay s", "QoE")]


def persona_rows(view, allocations: dict) -> list[list]:
    """One row per requester: its Big-Five, then the shared steps (of its cap), delay and predicted QoE each
    method gives it on the same round (``allocations``: method name -> AllocationReport)."""
    rows = []
    for k, (who, traits) in enumerate(zip(view.who, view.report.traits)):
        row = [k + 1, who, *(round(v, 2) for v in traits.as_tuple())]
        for a in allocations.values():
            u = a.allocation.users[k]
            row += [f"{u.shared_steps}/{u.max_shared_steps}", round(u.delay_s, 2), round(u.qoe, 2)]
        rows.append(row)
    return rows


def changed_traits(traits, index: int, trait: str, value: float) -> tuple[BigFive, ...]:
    """The round's Big-Five with one trait of one requester set to ``value``."""
    if trait not in TRAITS:
        raise ValueError(f"unknown trait {trait!r}")
    if not 0 <= index < len(traits):
        raise ValueError(f"no requester #{index + 1} in this round")
    out = list(traits)
    out[index] = replace(out[index], **{trait: float(value)})
    return tuple(out)


def _cell(before, after, fmt: str) -> str:
    b, a = format(before, fmt), format(after, fmt)
    return b if b == a else f"{b} -> {a}"


def what_if_rows(view, before, after) -> list[list]:
    """Per requester: shared steps, band share, delay and QoE before -> after (one value where nothing moved)."""
    rows = []
    for k, (u, v) in enumerate(zip(before.allocation.users, after.allocation.users)):
        rows.append([k + 1, view.who[k], _cell(u.shared_steps, v.shared_steps, "d"),
                     _cell(100 * u.bandwidth_share, 100 * v.bandwidth_share, ".0f") + "%",
                     _cell(u.delay_s, v.delay_s, ".2f"), _cell(u.qoe, v.qoe, ".2f")])
    return rows


def what_if_summary(view, index: int, trait: str, value: float, before, after) -> str:
    """Whether the policy re-allocates when one requester's trait changes, or only the predicted QoE moves."""
    a, b = after.allocation, before.allocation
    old = view.report.traits[index].as_tuple()[TRAITS.index(trait)]
    moved = [k for k, (u, v) in enumerate(zip(b.users, a.users))
             if (u.shared_steps, round(u.bandwidth_share, 3), round(u.compute_share, 3))
             != (v.shared_steps, round(v.bandwidth_share, 3), round(v.compute_share, 3))]
    who = html.escape(view.who[index])
    lines = [f"### What if #{index + 1} ({who}) had {trait} {value:.2f} instead of {old:.2f}?",
             f"- **{html.escape(a.policy)}** re-allocated the same round (same prompts, groups, fork decisions and links)."]
    if moved:
        lines.append(f"- The allocation changed for {len(moved)} of {len(a.users)} requesters: "
                     + ", ".join(f"#{k + 1}" for k in moved) + ".")
    else:
        lines.append("- **The allocation did not change**: every requester keeps its shared steps, band and server "
                     "share; this policy does not act on this trait here. Only the predicted QoE moves.")
    lines.append(f"- Total QoE {b.total_qoe:.2f} -> {a.total_qoe:.2f}; reward {b.reward:.2f} -> {a.reward:.2f}; "
                 f"energy {b.energy_j:.1f} -> {a.energy_j:.1f} J.")
    return "\n".join(lines)


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
    personas = gr.Dataframe(label="Per persona: the policy beside best found and greedy on the same round",
                            interactive=False, wrap=True)
    with gr.Accordion("What if a requester had another personality?", open=False):
        with gr.Row():
            whom = gr.Dropdown(choices=[], label="Requester", interactive=True)
            trait = gr.Dropdown(choices=list(TRAITS), value="neuroticism", label="Trait", interactive=True)
            value = gr.Slider(0.0, 1.0, value=0.9, step=0.05, label="New value")
            again = gr.Button("Re-allocate with this change")
        what_if = gr.Markdown()
        what_if_table = gr.Dataframe(headers=WHAT_IF_HEADERS, interactive=False, wrap=True)

    def _view(number):
        return next((v for v in list(studio.recent) if v.number == number), None)

    def on_refresh():
        choices = _choices(studio)
        return {pick: gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)}

    def on_show(number, name):
        view = _view(number)
        if view is None:
            return {head: "Pick a round."}
        try:
            allocation = studio.reallocate(view, name)
            compared = {name: allocation, **{m: studio.reallocate(view, m) for m in COMPARED if m != name}}
        except StudioError as e:
            return {head: f"**{html.escape(str(e))}**"}
        from rlli.policy.api import get_policy

        text = summary(view, allocation) + "\n" + policy_line(get_policy(allocation.allocation.policy, studio.settings))
        return {head: text, groups: group_rows(view), tree: sharing_tree(view.report),
                bars: allocation_bars(allocation.allocation, list(view.who), view.report.prompts,
                                      view.report.accounting.steps),
                energy: comparison_bars(allocation),
                personas: gr.Dataframe(value=persona_rows(view, compared), headers=persona_headers(compared)),
                whom: gr.Dropdown(choices=[(f"#{k + 1} {w}", k) for k, w in enumerate(view.who)], value=0),
                what_if: "", what_if_table: []}

    def on_what_if(number, name, index, trait_name, new_value):
        view = _view(number)
        if view is None or index is None:
            return {what_if: "Pick a round and a requester."}
        try:
            traits = changed_traits(view.report.traits, int(index), trait_name, float(new_value))
            before = studio.reallocate(view, name)
            after = studio.reallocate(view, name, traits=traits)
        except (StudioError, ValueError) as e:
            return {what_if: f"**{html.escape(str(e))}**"}
        return {what_if: what_if_summary(view, int(index), trait_name, float(new_value), before, after),
                what_if_table: what_if_rows(view, before, after)}

    shown = [head, groups, tree, bars, energy, personas, whom, what_if, what_if_table]
    refresh.click(on_refresh, None, [pick], api_name=False)
    pick.change(on_show, [pick, policy], shown, api_name=False)
    policy.change(on_show, [pick, policy], shown, api_name=False)
    again.click(on_what_if, [pick, policy, whom, trait, value], [what_if, what_if_table], api_name=False)
