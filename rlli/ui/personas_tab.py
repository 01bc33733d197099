"""The "Personas" tab: pick Big-Five personas, let them write prompts and run a round together."""

from __future__ import annotations

import html

import gradio as gr

from rlli.session.studio import Studio, StudioError
from rlli.ui import about
from rlli.ui.common import client_address

ROW_HEADERS = ["persona", "O", "C", "E", "A", "N", "prompt", "group", "shared steps", "own score", "reason"]


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
        try:
            progress(0.1, desc="personas are writing prompts")
            results = studio.persona_round(list(names or []), int(seed_value or 0), address=client_address(request))
        except (StudioError, ValueError) as e:
            return f"**Cannot run this round:** {html.escape(str(e))}", None, None
        progress(0.7, desc="personas are rating their images")
        rows = []
        by_name = {p.name: p for p in presets}
        for d in results:
            scores = studio.agent_scores(d.generation_id) or []
            own = scores[0].rating if scores else None
            traits = by_name[d.who].traits.as_tuple() if d.who in by_name else (None,) * 5
            rows.append([d.who, *[None if v is None else round(v, 2) for v in traits], d.prompt, d.group_no,
                         d.shared_steps, own.score if own else None, (own.reason or own.status) if own else "pending"])
        gallery_items = [(d.image, f"{d.who}: {d.prompt}") for d in results]
        r = results[0]
        return (f"Round {r.round_no}: {len(results)} requests, allocated by **{html.escape(r.policy)}** "
                "(details in the System tab)."), gallery_items, rows

    go.click(on_go, [pick, seed], [status, gallery, table], api_name="persona_round",
             concurrency_limit=studio.settings.round_max_requests, concurrency_id="rounds")
