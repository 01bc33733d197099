"""The "Data" tab: everyone downloads their own ratings; with the admin token, bulk export and deletion."""

from __future__ import annotations

import html

import gradio as gr

from rlli.session.studio import Studio, StudioError
from rlli.ui.common import visitor_from


def build(studio: Studio, browser_key: gr.BrowserState) -> None:
    gr.Markdown("### Your ratings\nEverything stored about the images you rated, as CSV.")
    mine = gr.Button("Download my ratings")
    mine_file = gr.File(label="Your ratings", interactive=False)
    mine_msg = gr.Markdown("")

    def on_mine(key, account: gr.OAuthProfile | None):
        try:
            return str(studio.my_ratings_file(visitor_from(key, None, account))), ""
        except StudioError as e:
            return None, f"**{html.escape(str(e))}**"

    mine.click(on_mine, [browser_key], [mine_file, mine_msg], api_name="my_ratings")

    with gr.Accordion("Administration (needs RLLI_ADMIN_TOKEN)", open=False):
        token = gr.Textbox(label="Admin token", type="password")
        fmt = gr.Radio(["csv", "jsonl", "parquet"], value="csv", label="Format")
        export = gr.Button("Export everything (ratings with context + images, zip)")
        export_file = gr.File(label="Export", interactive=False)
        pid = gr.Textbox(label="Participant id to delete (with their requests' images and ratings)")
        delete = gr.Button("Delete participant", variant="stop")
        admin_msg = gr.Markdown("")

    def on_export(tok, f):
        try:
            return str(studio.admin_export(tok, f)), "Export ready."
        except StudioError as e:
            return None, f"**{html.escape(str(e))}**"

    def on_delete(tok, who):
        try:
            counts = studio.admin_delete(tok, who)
        except StudioError as e:
            return f"**{html.escape(str(e))}**"
        return "Deleted: " + ", ".join(f"{k} {v}" for k, v in counts.items())

    export.click(on_export, [token, fmt], [export_file, admin_msg], api_name=False)
    delete.click(on_delete, [token, pid], [admin_msg], api_name=False)
