"""The "Shared round" tab: paste prompts, watch them grouped, shared and generated."""

from __future__ import annotations

import html

import gradio as gr

from rlli.prompts import PromptError
from rlli.service import StudioService

EXAMPLE = "\n".join([
    "a red house on grass at sunset",
    "a red house on the grass at sunset",
    "red house on a lawn at sunset, calm",
    "two blue boats on a lake at night",
    "two blue boats on the lake at night",
    "a yellow car on a city street in the rain",
    "a purple mountain in the desert at dusk",
])

ROW_HEADERS = ["prompt", "group", "similarity to anchor", "shared steps", "own steps", "hand-off KiB",
               "fidelity", "fidelity (independent)"]
GROUP_HEADERS = ["group", "anchor (medoid)", "members", "least similarity", "shared steps"]


def _summary(report) -> str:
    a = report.accounting
    lines = [f"**{len(report.prompts)} prompts -> {len(report.groups)} groups** on `{html.escape(a['backbone'])}`, "
             f"{a['steps']} steps ({a['scheduler']})",
             f"- denoiser passes: **{a['denoiser_passes']}** shared vs {a['denoiser_passes_independent']} "
             f"independent ({100 * (1 - a['denoiser_passes'] / a['denoiser_passes_independent']):.0f}% fewer)",
             f"- wall time: {a['wall_s']['total']:.2f} s (shared phase {a['wall_s']['shared']:.2f} s, "
             f"own steps {a['wall_s']['branches']:.2f} s)"
             + (f"; independent {a['wall_independent_s']:.2f} s" if "wall_independent_s" in a else ""),
             f"- hand-off payload: {a['handoff_bytes'] / 1024:.1f} KiB in all"]
    if not a.get("calibrated"):
        lines.append("- no calibration table for this backbone and scheduler: groups share no steps "
                     "(run `python -m rlli calibrate`)")
    fid = [f for f in report.fidelity if f is not None]
    if fid:
        lines.append(f"- mean fidelity (share of stated attributes the probe finds): {sum(fid) / len(fid):.3f}")
    return "\n".join(lines)


def build(service: StudioService) -> None:
    with gr.Row():
        with gr.Column(scale=2):
            prompts = gr.Textbox(label="Prompts, one per line", lines=8, value=EXAMPLE,
                                 max_length=service.settings.max_prompts * (service.settings.max_prompt_chars + 1))
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                compare = gr.Checkbox(label="Also generate each prompt independently", value=True)
            run = gr.Button("Generate", variant="primary")
        with gr.Column(scale=3):
            summary = gr.Markdown("Press **Generate** to group the prompts and run a shared round.")
            groups = gr.Dataframe(headers=GROUP_HEADERS, label="Groups", interactive=False, wrap=True)
    table = gr.Dataframe(headers=ROW_HEADERS, label="Requests", interactive=False, wrap=True)
    with gr.Row():
        shared = gr.Gallery(label="Shared generation", columns=4, height="auto", object_fit="contain")
        independent = gr.Gallery(label="Independent twins (same seeds)", columns=4, height="auto",
                                 object_fit="contain")

    def on_run(text, seed_value, compare_value):
        try:
            report = service.run_round(text, seed_value if seed_value is not None else 0, bool(compare_value))
        except PromptError as e:
            gr.Warning(str(e))
            return f"**Cannot run this round:** {html.escape(str(e))}", None, None, None, None
        except FileNotFoundError as e:
            return f"**The model is not available:** {html.escape(str(e))}", None, None, None, None
        cap = [f"g{o.group + 1} s={o.shared_steps}: {o.prompt}" for o in report.outputs]
        gal = [(o.image, c) for o, c in zip(report.outputs, cap)]
        twins = [(o.image, o.prompt) for o in report.independent] if report.independent else None
        return _summary(report), report.group_rows(), report.rows(), gal, twins

    run.click(on_run, [prompts, seed, compare], [summary, groups, table, shared, independent],
              concurrency_limit=1, api_name="generate")
