"""The "Data" tab: everyone downloads their own ratings; with the admin token, bulk export and deletion
(:mod:`rlli.store.admin`)."""

from __future__ import annotations

import html

import gradio as gr

from rlli.session.studio import Studio, StudioError
from rlli.store.admin import AdminError, admin_delete, admin_export, my_ratings_file
from rlli.ui.common import visitor_from


def deleted_text(counts: dict[str, int]) -> str:
    return "Deleted: " + ", ".join(f"{k} {v}" for k, v in counts.items())


def build(studio: Studio, browser_key: gr.BrowserState) -> None:
    gr.Markdown("### Your ratings\nEverything stored about the images you rated, as CSV.")
    mine = gr.Button("Download my ratings")
    mine_file = gr.File(label="Your ratings", interactive=False)
    mine_msg = gr.Markdown("")

    def on_mine(key, account: gr.OAuthProfile | None):
        try:
            path = my_ratings_file(studio.store(), visitor_from(key, None, account).key)
        except StudioError as e:
            return {mine_file: None, mine_msg: f"**{html.escape(str(e))}**"}
        return {mine_file: str(path), mine_msg: ""}

    mine.click(on_mine, [browser_key], [mine_file, mine_msg], api_name="my_ratings")

    with gr.Accordion("Administration (needs RLLI_ADMIN_TOKEN)", open=False):
        token = gr.Textbox(label="Admin token", type="password")
        fmt = gr.Radio(["csv", "jsonl", "parquet"], value="csv", label="Format")
        export = gr.Button("Export everything (ratings with context + images, zip)")
        export_file = gr.File(label="Export", interactive=False)
        pid = gr.Textbox(label="Participant id to delete (with their requests' images and ratings)")
        delete = gr.Button("Delete participant", variant="stop")
        admin_msg = gr.Markdown("")

    expected = studio.settings.admin_token.get_secret_value

    def on_export(tok, f):
        try:
            path = admin_export(studio.store(), expected(), tok, f)
        except (AdminError, StudioError) as e:
            return {export_file: None, admin_msg: f"**{html.escape(str(e))}**"}
        return {export_file: str(path), admin_msg: "Export ready."}

    def on_delete(tok, who):
        try:
            return {admin_msg: deleted_text(admin_delete(studio.store(), expected(), tok, who))}
        except (AdminError, StudioError) as e:
            return {admin_msg: f"**{html.escape(str(e))}**"}

    export.click(on_export, [token, fmt], [export_file, admin_msg], api_name=False)
    delete.click(on_delete, [token, pid], [admin_msg], api_name=False)
