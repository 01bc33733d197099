"""The Gradio app: one module per tab; :func:`build_demo` assembles them."""

from __future__ import annotations

import gradio as gr

from rlli.config import Settings
from rlli.service import StudioService

INTRO = """# RLLI Studio
Users with similar text-to-image prompts share the first denoising steps of a diffusion model
(Du et al., *Reinforcement Learning With LLMs Interaction For Distributed Diffusion Model Services*,
IEEE TPAMI 2025). Paste several prompts: the backend groups them by meaning, runs each group's first
steps once with its anchor prompt, and every user finishes with their own prompt."""


def build_demo(settings: Settings | None = None) -> gr.Blocks:
    from rlli.ui import round_tab

    service = StudioService(settings or Settings())
    # generated images are written to Gradio's cache folder: files older than an hour are removed every 10 minutes
    with gr.Blocks(title="RLLI Studio", delete_cache=(600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Shared round"):
            round_tab.build(service)
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo


def launch(settings: Settings | None = None, demo: gr.Blocks | None = None, **kwargs):
    settings = settings or Settings()
    demo = demo or build_demo(settings)
    return demo.launch(server_name=settings.host, server_port=settings.port, theme=gr.themes.Soft(), **kwargs)
