"""The Gradio app: one module per tab; :func:`build_demo` assembles them, :func:`launch` starts it.

Tabs: Participate (a person's journey), Personas (LLM persona rounds), Shared round (paste several
prompts), System (what the backend decided), Agreement (people vs agents), Data (downloads, admin).
Named API endpoints for ``gradio_client``: ``/participate``, ``/tipi``, ``/rate``, ``/persona_round``,
``/generate``, ``/agreement``, ``/my_ratings``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import gradio as gr

from rlli.config import Settings
from rlli.session.studio import Studio, new_visitor_key
from rlli.ui import about

log = logging.getLogger(__name__)

WORLD_EXAMPLES = [
    "a red house on grass at sunset",
    "two blue boats on a lake at night",
    "a yellow car on a city street in the rain",
    "three green trees on snow during the day",
    "a purple mountain in the desert at sunset",
    "a single orange sailboat at sea on the left, calm",
]


def vocabulary_markdown() -> str:
    """What the embedded model knows, from the world's own word lists."""
    from rlli.diffusion.tiny import world

    def words(table) -> str:
        return ", ".join(v[0][0] if isinstance(v[0], tuple) else v[0] for v in table.values())

    return (about.EMBEDDED_MODEL_NOTE + "\n\n"
            f"- objects: {words(world.OBJECT_WORDS)}\n- colours: {words(world.COLOUR_WORDS)}\n"
            f"- counts: one, two, three\n- time: {words(world.TIME_WORDS)}\n- weather: {words(world.WEATHER_WORDS)}\n"
            f"- ground: {words(world.GROUND_WORDS)}\n- position: {words(world.POSITION_WORDS)}\n"
            f"- look: {words(world.WARMTH_WORDS)}, {words(world.DETAIL_WORDS)}")


def hf_login_enabled() -> bool:
    """True on a Hugging Face Space (which sets SPACE_ID) with ``hf_oauth: true`` in its README front matter
    (which sets OAUTH_CLIENT_ID and friends): the page offers "Sign in with Hugging Face". Off a Space,
    Gradio's login would need a local Hugging Face token, so the page never offers it there."""
    return bool(os.environ.get("OAUTH_CLIENT_ID")) and bool(os.environ.get("SPACE_ID"))


def build_demo(settings: Settings | None = None, studio: Studio | None = None) -> gr.Blocks:
    from rlli.ui import agreement_tab, data_tab, participate_tab, personas_tab, round_tab, system_tab

    settings = settings or Settings()
    studio = studio or Studio(settings)
    studio.store()  # migrations on start; a broken database URL stops the start with a clear message
    from rlli.diffusion import get_backbone

    embedded = get_backbone(settings).world is not None  # the embedded world: show what it can draw
    # generated images are written to Gradio's cache folder: files older than an hour are removed every 10 minutes
    with gr.Blocks(title=about.TITLE, delete_cache=(600, 3600)) as demo:
        browser_key = gr.BrowserState(None, storage_key="rlli-visitor")
        gr.Markdown(about.INTRO)
        if hf_login_enabled():
            gr.LoginButton()
            gr.Markdown(about.HF_LOGIN)
        if embedded:
            with gr.Accordion("What the embedded model can draw", open=False):
                gr.Markdown(vocabulary_markdown())
        with gr.Tab("Participate"):
            participate_tab.build(studio, browser_key, WORLD_EXAMPLES if embedded else [])
        with gr.Tab("Personas"):
            personas_tab.build(studio)
        with gr.Tab("Shared round"):
            round_tab.build(studio)
        with gr.Tab("System"):
            system_tab.build(studio)
        with gr.Tab("Agreement"):
            agreement_tab.build(studio)
        with gr.Tab("Data"):
            data_tab.build(studio, browser_key)
        demo.load(lambda key: key or new_visitor_key(), [browser_key], [browser_key], api_name=False)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


class CleanStop:
    """SIGTERM or SIGINT stops the app cleanly within ``RLLI_SHUTDOWN_GRACE_S`` plus a second or two: no new
    requests, the running round finishes (visitors still waiting for a round are told the server is stopping),
    agents get the grace period and their unfinished ratings are recorded as ``pending`` (``rlli rejudge`` fills
    them), the last backup snapshot is taken, the embedded LLM server is stopped, the web server closes."""

    def __init__(self, studio: Studio, backup=None):
        self.studio, self.backup = studio, backup
        self.requested = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.requested.set())

    def wait(self) -> None:
        while not self.requested.wait(0.5):
            pass

    def shutdown(self, demo: gr.Blocks | None = None) -> dict:
        t0 = time.monotonic()
        log.info("stopping: no new requests; finishing the running round and the agents' ratings")
        out = self.studio.close()
        if self.backup is not None:
            _bounded(lambda: self.backup.push_to_hub(), 2.0, "the last backup snapshot")
            _bounded(self.backup.stop, 0.5, "the backup scheduler")
        from rlli.personas.server import stop_server

        stop_server()
        if demo is not None:
            _bounded(demo.close, 2.0, "the web server")
        log.info("stopped in %.1f s (%s)", time.monotonic() - t0, out)
        return out


def _bounded(fn, timeout_s: float, what: str) -> None:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s``: a stop never hangs on one part."""
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - stopping goes on
            log.warning("%s failed while stopping: %s", what, e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name=f"stop-{what}").start()
    if not done.wait(timeout_s):
        log.warning("%s did not finish within %.1f s; stopping without it", what, timeout_s)


def launch(settings: Settings | None = None, demo: gr.Blocks | None = None, **kwargs) -> int:
    """Restore the store from its backup repo if the disk is fresh, start the backups, build and serve until
    SIGTERM or SIGINT, then stop cleanly (:class:`CleanStop`)."""
    from rlli.store.backup import start_backup

    settings = settings or Settings()
    backup = start_backup(settings)
    studio = Studio(settings)
    stop = CleanStop(studio, backup)
    stop.install()
    demo = demo or build_demo(settings, studio)
    demo.launch(server_name=settings.host, server_port=settings.port, theme=gr.themes.Soft(),
                prevent_thread_lock=True, **kwargs)
    stop.wait()
    stop.shutdown(demo)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    # threads still blocked in a judge's HTTP call would hold the interpreter's exit; their ratings are already
    # recorded as pending and every store write is one transaction, so leaving now loses nothing
    os._exit(0)
