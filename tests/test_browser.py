"""The page in a real browser: paste prompts, press Generate, see groups, images and messages."""

import os

import pytest

from rlli.config import Settings
from tests.browser import CHROMIUM, browser_page, free_port, run_round, running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is needed for the browser tests: scripts/test.sh installs it (as root)")
    with running_app(Settings(steps=6, port=free_port())) as url:
        yield url


def test_generate_shows_groups_images_and_accounting(app_url):
    with browser_page() as page:
        run_round(page, app_url, "a red house on grass at sunset\na red house on the grass at sunset\n"
                                 "two blue boats on a lake at night")
        assert page.get_by_text("3 prompts -> 2 groups").is_visible()
        assert page.get_by_text("denoiser passes").is_visible()
        images = page.locator("img[src*='/file='], img[src*='gradio_api/file']")
        images.first.wait_for(timeout=30_000)
        assert images.count() >= 3


def test_markup_is_shown_as_text_and_empty_input_gets_a_message(app_url):
    with browser_page() as page:
        run_round(page, app_url, "   \n  ")
        assert page.get_by_text("Enter at least one prompt").first.is_visible()
        run_round(page, app_url, "<img src=x onerror=alert(1)> a red house")
        assert page.get_by_text("1 prompts -> 1 groups").is_visible()
        assert page.locator("img[src='x']").count() == 0
