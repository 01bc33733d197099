"""The page in a real browser: paste prompts, press Generate, see groups, images and messages."""

import os
import re

import pytest

from rlli.config import Settings
from tests.browser import CHROMIUM, browser_page, free_port, run_round, running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is needed for the browser tests: scripts/test.sh installs it (as root)")
    with running_app(Settings(steps=6, port=free_port(), persona_judge="trait")) as url:
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


def test_a_persons_journey_and_every_tab(tmp_path):
    """Consent, TIPI, prompt, image, rating, the rating in the Agreement tab; a screenshot of every tab.

    RLLI_TEST_SCREENSHOTS=docs/screenshots keeps the pictures for the README."""
    from pathlib import Path

    shots = Path(os.environ.get("RLLI_TEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    settings = Settings(port=free_port(), persona_judge="trait", round_window_s=0.3,
                        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir=tmp_path / "data")
    with running_app(settings) as url, browser_page(height=1300) as page:
        page.goto(url)
        page.get_by_label("I have read this and agree to take part").check()
        items = page.locator("fieldset")
        items.nth(9).wait_for(timeout=30_000)
        for i, answer in enumerate([6, 2, 5, 3, 7, 2, 6, 2, 5, 1]):
            items.nth(i).get_by_text(str(answer), exact=True).click()
        page.get_by_role("button", name="Use my answers").click()
        page.get_by_text(re.compile(r"^Your Big-Five scores: ")).wait_for(timeout=30_000)
        page.get_by_label("Your prompt").fill("a red house on grass at sunset")
        page.get_by_role("button", name="Generate my image").click()
        page.get_by_text("allocation by").first.wait_for(timeout=240_000)
        assert page.get_by_text("agents' scores of your image", exact=False).count() == 0, "shown before rating"
        page.get_by_label("Why? (optional)").fill("the colours are right")
        page.screenshot(path=str(shots / "participate.png"), full_page=True)
        page.get_by_role("button", name="Submit my rating").click()
        page.get_by_text("your rating is stored").first.wait_for(timeout=180_000)
        # the rating is acknowledged at once; the agents' scores fill the table when they are in
        page.locator("text=you (agent) >> visible=true").first.wait_for(timeout=180_000)
        assert page.get_by_role("button", name="Submit my rating").is_disabled()

        page.get_by_role("tab", name="Agreement").click()
        page.get_by_role("button", name="Refresh").click()
        page.get_by_text("human-agent pairs").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "agreement.png"), full_page=True)

        page.get_by_role("tab", name="System").click()
        page.get_by_role("button", name="Refresh the list").click()
        page.get_by_text("Pick a round").or_(page.get_by_text("then pick it here")).first.wait_for(timeout=60_000)
        page.get_by_label("Recent rounds").click()
        page.get_by_role("option").first.click()
        page.get_by_text("energy against no sharing", exact=False).first.wait_for(timeout=60_000)
        assert page.get_by_text("best_found: steps").first.is_visible()  # per persona, beside best found
        page.get_by_text("What if a requester had another personality?").click()
        page.get_by_role("button", name="Re-allocate with this change").click()
        page.get_by_text(re.compile(r"What if #1 .* had neuroticism 0\.90 instead of")).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "system.png"), full_page=True)

        page.get_by_role("tab", name="Personas").click()
        page.get_by_role("button", name="Run a persona round").wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "personas.png"), full_page=True)
        page.get_by_role("tab", name="Data").click()
        page.get_by_role("button", name="Download my ratings").click()
        page.locator("a[href*='my-ratings']").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "data.png"), full_page=True)
        run_round(page, url)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "shared-round.png"), full_page=True)
    for name in ("participate", "agreement", "system", "personas", "data", "shared-round"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
