"""The "Personas" tab: pick Big-Five personas, let them write prompts and run a round together."""

from __future__ import annotations

import contextvars
import html

import gradio as gr

from rlli.service import Phase
from rlli.session.studio import Delivered, Studio, StudioError
from rlli.ui import about
from rlli.ui.common import client_address, progress_fraction

ROW_HEADERS = ["persona", "O", "C", "E", "A", "N", "prompt", "written by", "group", "shared steps", "own score",
               "reason"]


def persona_rows(results: list[Delivered], presets, scores: dict) -> list[list]:
    """One row per persona of the round: traits, prompt, group, fork step and the score it gave its own image."""
    rows = []
    by_name = {p.name: p for p in presets}
    for d in results:
        got = scores.get(d.generation_id)
        own = got[0].rating if isinstance(got, list) and got else None
        traits = by_name[d.who].traits.as_tuple() if d.who in by_name else (None,) * 5
        rows.append([d.who, *[None if v is None else round(v, 2) for v in traits], d.prompt, d.written_by, d.group.number,
                     d.fork_step, own.score if own else None, (own.reason or own.status) if own else "pending"])
    return rows


def build(studio: Studio) -> None:
    presets = studio.presets()
    gr.Markdown("Each persona writes a prompt that fits its personality, the round groups and shares them, and "
                "each persona rates the image it got. " + about.LLM_NOTE)
    gr.Dataframe(value=[[p.name, *[round(v, 2) for v in p.traits.as_tuple()], p.description] for p in presets],
                 headers=["persona", "O", "C", "E", "A", "N", "description"], label="Preset personas",
                 interactive=False, wrap=True)
    with gr.Row():
        pick = gr.CheckboxGroup(choices=[p.name for p in presets], value=[p.name for p in presets[:4]],
                                label="Personas in the round")
        seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=2**31 - 1)
    go = gr.Button("Run a persona round", variant="primary")
    status = gr.Markdown("")
    gallery = gr.Gallery(label="What each persona got", columns=4, height="auto")
    table = gr.Dataframe(headers=ROW_HEADERS, label="Round", interactive=False, wrap=True)

    def on_go(names, seed_value, request: gr.Request, progress=gr.Progress()):
        here = contextvars.copy_context()

        def on_phase(phase: Phase) -> None:
            here.run(progress, progress_fraction(phase), desc=f"persona round: {phase.label}")

        try:
            progress(0.05, desc="personas are writing prompts")
            results = studio.persona_round(list(names or []), int(seed_value or 0), address=client_address(request),
                                           on_phase=on_phase)
        except (StudioError, ValueError) as e:
            return {status: f"**Cannot run this round:** {html.escape(str(e))}", gallery: None, table: None}
        progress(0.95, desc="personas are rating their images")
        own = {d.generation_id: studio.agent_scores(d.generation_id) for d in results}
        r = results[0]
        return {status: (f"Round {r.round_no}: {len(results)} requests, allocated by **{html.escape(r.policy)}** "
                         "(details in the System tab)."),
                gallery: [(d.image, f"{d.who}: {d.prompt}") for d in results],
                table: persona_rows(results, presets, own)}

    go.click(on_go, [pick, seed], [status, gallery, table], api_name="persona_round",
             concurrency_limit=studio.settings.round_max_requests, concurrency_id="rounds")
