"""Drive the app in Debian's headless Chromium with Playwright (no browser download)."""

from __future__ import annotations

import shutil
import socket
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(settings):
    from rlli.ui import build_demo

    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}/"
    finally:
        demo.close()


@contextmanager
def browser_page(width: int = 1400, height: int = 1100):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def run_round(page, url: str, prompts: str | None = None, timeout_ms: int = 240_000) -> None:
    page.goto(url)
    page.get_by_role("tab", name="Shared round").click()
    page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
    if prompts is not None:
        box = page.get_by_label("Prompts, one per line")
        box.fill(prompts)
    page.get_by_role("button", name="Generate", exact=True).click()
    done = page.get_by_text("denoiser passes").or_(page.get_by_text("Cannot run this round"))
    done.or_(page.get_by_text("The model is not available")).first.wait_for(timeout=timeout_ms)
