"""The "Shared round" tab: paste prompts, watch them grouped, forked and generated.

Besides the tables and galleries it draws the round's *sharing tree* (:func:`sharing_tree`): per group,
the anchor's trunk over the steps and each member branching off at its own fork step s_k.
"""

from __future__ import annotations

import contextvars
import html

import gradio as gr
import plotly.graph_objects as go

from rlli.config import SettingsError
from rlli.diffusion.engine import IMAGE_ANCHORS
from rlli.service import Phase, RoundReport
from rlli.session.studio import Studio, StudioError
from rlli.ui.charts import allocation_bars, comparison_bars
from rlli.ui.common import client_address, progress_fraction

EXAMPLE = "\n".join([
    "a red house on grass at sunset",
    "a red house on the grass at sunset",
    "red house on a lawn at sunset, calm",
    "two blue boats on a lake at night",
    "two blue boats on the lake at night",
    "a yellow car on a city street in the rain",
    "a purple mountain in the desert at dusk",
])

ROW_HEADERS = ["prompt", "group", "anchor", "similarity to anchor", "x0 disagreement", "may share", "shared steps",
               "own steps", "noise from seed", "image", "hand-off KiB", "fidelity", "fidelity (independent)"]
GROUP_HEADERS = ["group", "anchor (medoid)", "members", "least similarity", "prefix steps", "fork steps"]
TRUNK = "#444444"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


# ----------------------------------------------------------------------------- what the page shows


def group_rows(report: RoundReport) -> list[list]:
    return [[g.number, report.prompts[g.anchor], len(g.members), g.min_similarity, g.prefix_steps,
             ", ".join(str(s) for s in g.fork_steps)] for g in report.groups]


def _image_kind(source: str) -> str:
    return {"own": "own", "forked": "forked from the anchor"}.get(source, "THE ANCHOR'S IMAGE")


def request_rows(report: RoundReport) -> list[list]:
    rows = []
    for r in report.requests:
        o, f = r.output, r.fork
        rows.append([r.prompt, report.groups[r.group].number, "yes" if r.is_anchor else report.prompts[o.anchor_index],
                     report.similarity_of(r.index), f.evidence.get("x0_disagreement"), f.max_shared_steps, r.fork_step,
                     o.own_steps, o.noise_seed, _image_kind(o.image_source), round(o.handoff_bytes / 1024, 1),
                     None if r.fidelity is None else round(r.fidelity, 3),
                     None if r.fidelity_independent is None else round(r.fidelity_independent, 3)])
    return rows


def summary(report: RoundReport) -> str:
    a, e = report.accounting, html.escape
    w = a.engine_wall_s
    lines = [f"**{len(report.requests)} prompts -> {len(report.groups)} groups** on `{e(a.backbone)}`, "
             f"{a.steps} steps ({e(a.scheduler)})",
             f"- denoiser passes: **{a.passes}** ({a.passes_generation} generating + {a.passes_fork_decision} for the "
             f"fork decision) vs {a.passes_independent} independent ({100 * a.saved_fraction:.0f}% fewer)",
             f"- wall time: {a.wall_s:.2f} s (fork decision {a.phases_s.get(Phase.FORK_DECISION, 0.0):.2f} s, "
             f"shared prefixes {w.shared:.2f} s, own steps {w.branches:.2f} s)"
             + (f"; independent {a.wall_independent_s:.2f} s" if a.wall_independent_s is not None else ""),
             f"- hand-off payload: {a.handoff_bytes / 1024:.1f} KiB in all"]
    al = report.allocation
    lines.append(f"- allocation by **{e(al.allocation.policy)}**: total QoE {al.allocation.total_qoe:.1f}, energy "
                 f"{al.allocation.energy_j:.1f} J (no sharing: {al.no_sharing.energy_j:.1f} J on the devices, "
                 f"{al.server_per_user_j:.1f} J with the server making each image; equal split "
                 f"{al.equal.energy_j:.1f} J), mean simulated delay {al.allocation.mean_delay_s:.2f} s")
    lines += [f"- **Notice:** {e(n)}" for n in report.notices]
    for r in report.requests:
        if r.output.is_anchors_image:
            lines.append(f"- **\"{e(r.prompt)}\" received the anchor's image** (it shared every step with "
                         f"\"{e(report.prompts[r.output.anchor_index])}\")")
    fid = [r.fidelity for r in report.requests if r.fidelity is not None]
    if fid:
        lines.append(f"- mean fidelity (share of stated attributes the probe finds): {sum(fid) / len(fid):.3f}")
    return "\n".join(lines)


def _hover(report: RoundReport, k: int) -> str:
    r = report.requests[k]
    o, f = r.output, r.fork
    ev = f.evidence
    fid = r.fidelity
    parts = [f"<b>{html.escape(o.prompt)}</b>",
             f"group {report.groups[r.group].number}{' (anchor)' if f.is_anchor else ''}",
             f"similarity to anchor: {report.similarity_of(k):.3f}",
             f"forks at step {o.shared_steps} of {o.shared_steps + o.own_steps} (may share {f.max_shared_steps})",
             f"noise from seed {o.noise_seed}; image: {html.escape(o.image_source)}"]
    if "x0_disagreement" in ev:
        parts.append(f"x0 disagreement after {ev['probe_step']} shared step(s): {ev['x0_disagreement']:.3f}")
    elif "reason" in ev:
        parts.append(html.escape(str(ev["reason"])[:160]))
    if fid is not None:
        parts.append(f"fidelity: {fid:.2f}")
    return "<br>".join(parts)


def sharing_tree(report: RoundReport) -> go.Figure:
    """Groups stacked top to bottom, one lane per member, x = denoising step: the grey trunk is the group's
    shared prefix; each member leaves it at its fork step (dotted: its own seed, no sharing)."""
    fig = go.Figure()
    n = report.accounting.steps
    y, ticks, labels = 0.0, [], []
    for g in report.groups:
        colour = COLOURS[(g.number - 1) % len(COLOURS)]
        prefix = g.prefix_steps
        if prefix > 0:
            fig.add_trace(go.Scatter(x=[0, prefix], y=[y, y], mode="lines", line=dict(color=TRUNK, width=7),
                                     hoverinfo="text", showlegend=False,
                                     hovertext=f"group {g.number}: shared prefix of {prefix} steps on the anchor's "
                                               "prompt and seed"))
        lanes = [g.anchor] + [k for k in g.members if k != g.anchor]
        for lane, k in enumerate(lanes):
            o = report.requests[k].output
            ly = y - 0.6 * lane
            if o.shared_steps == 0 and (k != g.anchor or prefix == 0):
                xs, ys, dash = [0, n], [ly, ly], "dot"
            else:
                xs, ys, dash = [o.shared_steps, min(o.shared_steps + 1, n), n], [y, ly, ly], "solid"
            warn = o.image_source == IMAGE_ANCHORS
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", hoverinfo="text", hovertext=_hover(report, k), showlegend=False,
                line=dict(color="#d62728" if warn else colour, width=3, dash=dash),
                marker=dict(size=[0] * (len(xs) - 1) + [11], symbol="x" if warn else "circle")))
            ticks.append(ly)
            short = o.prompt if len(o.prompt) <= 38 else o.prompt[:36] + "..."
            labels.append(html.escape(f"g{g.number}{'*' if k == g.anchor else ''} {short}"))
        y -= 0.6 * len(lanes) + 0.8
    fig.update_layout(
        title="Sharing tree: grey trunk = shared prefix; each member forks at its own step "
              "(* anchor, dotted = own seed, red x = the anchor's image)",
        xaxis=dict(title="denoising step", range=[-0.5, n + 0.5]),
        yaxis=dict(tickvals=ticks, ticktext=labels, showgrid=False, zeroline=False),
        height=max(260, 34 * len(ticks) + 30 * len(report.groups) + 120), margin=dict(l=10, r=10, t=50, b=40),
        hovermode="closest", template="plotly_white", font=dict(size=11))
    return fig


def captions(report: RoundReport) -> list[str]:
    out = []
    for r in report.requests:
        o, g = r.output, report.groups[r.group].number
        if o.image_source == IMAGE_ANCHORS:
            out.append(f"g{g} THE ANCHOR'S IMAGE (shared all {r.fork_step} steps): {o.prompt}")
        elif r.fork_step:
            out.append(f"g{g} shared {r.fork_step} steps, noise of seed {o.noise_seed}: {o.prompt}")
        else:
            out.append(f"g{g} own steps, seed {o.noise_seed}: {o.prompt}")
    return out


def gallery(report: RoundReport) -> list[tuple]:
    return list(zip([r.image for r in report.requests], captions(report)))


def twin_gallery(report: RoundReport) -> list[tuple] | None:
    if not report.compared:
        return None
    return [(r.independent.image, f"independent, own seed {r.seed}: {r.prompt}") for r in report.requests]


# ----------------------------------------------------------------------------- the tab


def build(studio: Studio) -> None:
    service_settings = studio.settings
    with gr.Row():
        with gr.Column(scale=2):
            prompts = gr.Textbox(label="Prompts, one per line", lines=8, value=EXAMPLE,
                                 max_length=service_settings.max_prompts * (service_settings.max_prompt_chars + 1))
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                compare = gr.Checkbox(label="Also generate each prompt independently", value=True)
            run = gr.Button("Generate", variant="primary")
        with gr.Column(scale=3):
            summary_md = gr.Markdown("Press **Generate** to group the prompts and run a shared round.")
            groups = gr.Dataframe(headers=GROUP_HEADERS, label="Groups", interactive=False, wrap=True)
    tree = gr.Plot(label="Sharing tree")
    table = gr.Dataframe(headers=ROW_HEADERS, label="Requests", interactive=False, wrap=True)
    bars = gr.Plot(label="Allocation per user (the policy's bandwidth, compute, shared steps and simulated delays)")
    energy = gr.Plot(label="Energy and QoE against no sharing and an equal split")
    with gr.Row():
        shared = gr.Gallery(label="Shared generation (members that shared steps start from the anchor's noise)",
                            columns=4, height="auto", object_fit="contain")
        independent = gr.Gallery(label="Independent twins (each from its own seed, no sharing)", columns=4,
                                 height="auto", object_fit="contain")
    outputs = [summary_md, groups, table, tree, bars, energy, shared, independent]

    def refuse(message: str) -> dict:
        gr.Warning(html.escape(message))
        return {summary_md: f"**Cannot run this round:** {html.escape(message)}", groups: None, table: None,
                tree: None, bars: None, energy: None, shared: None, independent: None}

    def run_it(text, seed_value, compare_value, request: gr.Request, progress=gr.Progress()):
        here = contextvars.copy_context()

        def on_phase(phase: Phase) -> None:
            here.run(progress, progress_fraction(phase), desc=f"round: {phase.label}")

        try:
            view = studio.shared_round(text, seed_value if seed_value is not None else 0, bool(compare_value),
                                       address=client_address(request), on_phase=on_phase)
        except StudioError as e:
            return refuse(str(e))
        except SettingsError as e:
            return refuse(f"a setting does not work here: {e}")
        except FileNotFoundError:  # never show the server's paths
            return refuse("the model's weights are not installed on this server (see the README's set-up)")
        return page(view.report, {summary_md: summary, groups: group_rows, table: request_rows, tree: sharing_tree,
                                  shared: gallery, independent: twin_gallery}, bars, energy)

    run.click(run_it, [prompts, seed, compare], outputs, concurrency_limit=1, api_name="generate")


def page(report: RoundReport, builders: dict, bars, energy) -> dict:
    """{component: value} for a round: each builder is a pure function of the report."""
    out = {component: build_(report) for component, build_ in builders.items()}
    who = [f"request {i + 1}" for i in range(len(report.requests))]
    out[bars] = allocation_bars(report.allocation.allocation, who, report.prompts, report.accounting.steps)
    out[energy] = comparison_bars(report.allocation)
    return out
