"""The web app end to end through its HTTP API (gradio_client), on the embedded model."""

import socket

import pytest

from rlli.config import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    from rlli.ui import build_demo

    settings = Settings(steps=6, port=_free_port(), persona_judge="trait", round_window_s=0.3)
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    finally:
        demo.close()


@pytest.mark.slow
def test_a_round_through_the_api(client):
    prompts = "a red house on grass at sunset\na red house on the grass at sunset\ntwo blue boats at night"
    summary, groups, table, tree, bars, energy, shared, independent = client.predict(prompts, 3, True,
                                                                                     api_name="/generate")
    assert "3 prompts" in summary and "fork decision" in summary
    assert sum(row[2] for row in groups["data"]) == 3
    assert len(table["data"]) == 3 and len(shared) == 3 and len(independent) == 3
    assert tree is not None and bars is not None and energy is not None  # sharing tree, allocation, energy
    assert "allocation by **gddpg**" in summary
    assert all("seed" in item["caption"] for item in shared)


@pytest.mark.slow
@pytest.mark.parametrize("text", ["", "x" * 5000, "\n".join(["a house"] * 40)])
def test_bad_input_gets_a_message_not_a_crash(client, text):
    summary, groups, table, tree, bars, energy, shared, independent = client.predict(text, 0, False,
                                                                                     api_name="/generate")
    assert summary.startswith("**Cannot run this round:**")
    assert not shared and not table["data"] and not groups["data"] and not tree and not bars


@pytest.mark.slow
def test_messages_are_escaped_and_show_no_server_paths(client):
    summary, *_ = client.predict("<b>x</b>\n" * 40, 0, False, api_name="/generate")
    assert summary.startswith("**Cannot run this round:**") and "<b>" not in summary
    summary, *_ = client.predict("a red house", 2**31, False, api_name="/generate")
    assert summary.startswith("**Cannot run this round:**") and "seed" in summary


KEY = "browser:api-test-visitor-01"


@pytest.mark.slow
def test_a_persons_journey_through_the_api(client):
    from gradio_client import Client

    me = Client(client.src, verbose=False)  # a session of its own (its TIPI profile and current image)
    assert "Your Big-Five scores" in me.predict(7, 2, 6, 3, 5, 4, 6, 2, 5, 3, api_name="/tipi")
    image, story, guests, stars, reason, rated, agents, native = me.predict(  # (buttons are not API outputs)
        KEY, "a red house on grass at sunset", [], api_name="/participate")
    assert image and "Round" in story and "allocation by" in story
    from PIL import Image

    native = native.get("value", native) if isinstance(native, dict) else native  # (a component update)
    native = native.get("path", native) if isinstance(native, dict) else native
    assert Image.open(native).size == (64, 64) and Image.open(image).size == (256, 256)  # native + crisp 4x
    assert not agents.get("visible", True), "agents' scores must stay hidden before the person rates"
    assert stars["interactive"] is True
    text, stars, reason, table, told = me.predict(KEY, 7, "<b>fine</b>", api_name="/rate")
    assert "What it was told" in told and "you (agent)" in told  # the panel beside the agents' scores
    assert text.startswith("Thanks") and stars["interactive"] is False and reason["interactive"] is False
    rows = table["value"]["data"]
    assert rows[0][0] == "you (agent)" and all(1 <= r[2] <= 10 for r in rows)
    again, *_ = me.predict(KEY, 2, "", api_name="/rate")
    assert "already rated" in again
    path, _ = me.predict(KEY, api_name="/my_ratings")
    mine = open(path, encoding="utf-8").read().splitlines()
    assert len(mine) == 2 and ",7," in mine[1] and "<b>fine</b>" in mine[1]  # header + the one rating, kept as text
    note, table, *figures = client.predict(api_name="/agreement")
    assert "pairs" in note and table["data"]


@pytest.mark.slow
@pytest.mark.parametrize("text", ["", "x" * 10_000, "\x00\x01\x02", "<script>alert(1)</script>"])
def test_participate_answers_bad_input_with_a_message(client, text):
    image, story, *_ = client.predict(KEY, text, [], api_name="/participate")
    if text.startswith("<script>"):
        assert "Round" in story and "<script>" not in story  # generated; the prompt shown escaped
    else:
        assert image is None and story.startswith("**Cannot run this request:**")


@pytest.mark.slow
def test_twenty_concurrent_visitors_each_rate_once_and_nothing_is_lost(client):
    """The load check: 20 gradio_client users at once, each submitting a prompt and a rating."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    from rlli.config import Settings as S

    def visitor(i: int):
        c = Client(client.src, verbose=False)
        key = f"browser:load-{i:04d}-abcdef"
        _, story, *_ = c.predict(key, f"a red house on grass {'at sunset' if i % 2 else 'at night'}", [],
                                 api_name="/participate")
        text, *_ = c.predict(key, 1 + i % 10, "", api_name="/rate")
        return story, text

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(visitor, range(20)))
    assert all("Round" in story and text.startswith("Thanks") for story, text in results), results
    rounds = {story.split("**Round ")[1].split("**")[0] for story, _ in results}
    assert len(rounds) < 20, "concurrent visitors must share rounds"
    db = S().database_url.removeprefix("sqlite:///")
    con = sqlite3.connect(db)
    rows = con.execute("SELECT r.rater_id, r.generation_id, r.score FROM ratings r JOIN participants p "
                       "ON p.id = r.rater_id WHERE p.kind = 'human' AND r.backend = 'human'").fetchall()
    con.close()
    load = [r for r in rows if r[2] is not None]
    raters = {r[0] for r in load}
    assert len({(r[0], r[1]) for r in load}) == len(load), "no duplicated rating"
    assert len(raters) >= 20, "no lost rating"


@pytest.mark.slow
def test_a_hugging_face_login_is_one_rater_across_browsers(monkeypatch, tmp_path):
    """On a Space with hf_oauth: true the page offers a login; a signed-in person is one rater whatever
    browser they use, and nobody can claim an account key without the login. Gradio's local stand-in for
    the Hub's OAuth routes logs in a fixed profile (no network). Off a Space the login is not offered."""
    import gradio.oauth
    import httpx
    from gradio_client import Client

    from rlli.ui import build_demo, hf_login_enabled

    monkeypatch.setenv("OAUTH_CLIENT_ID", "test-client")
    monkeypatch.setenv("SPACE_ID", "someone/rlli-studio")  # (without SYSTEM=spaces Gradio mocks the Hub's routes)
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: {
        "access_token": "t", "token_type": "bearer", "expires_in": 3600, "id_token": "x", "scope": "openid profile",
        "userinfo": {"sub": "1", "name": "Alice", "preferred_username": "alice-rater", "profile": "", "picture": ""}})
    settings = Settings(steps=6, port=_free_port(), persona_judge="trait", round_window_s=0.3,
                        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir=tmp_path / "data")
    with monkeypatch.context() as off_a_space:
        off_a_space.delenv("SPACE_ID")
        assert not hf_login_enabled()
    demo = build_demo(settings)
    assert any(isinstance(b, gradio.LoginButton) for b in demo.blocks.values())
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{settings.port}/"
    try:
        login = httpx.get(url + "login/callback?_target_url=/", follow_redirects=False)
        session = login.cookies.get("session")
        assert session, "the login must set a session cookie"
        signed_in = {"Cookie": f"session={session}"}
        laptop = Client(url, verbose=False, headers=signed_in)
        image, story, *_ = laptop.predict("browser:laptop-key-0001", "a red house on grass at sunset", [],
                                          api_name="/participate")
        assert image and "Round" in story
        assert laptop.predict("browser:laptop-key-0001", 7, "", api_name="/rate")[0].startswith("Thanks")
        phone = Client(url, verbose=False, headers=signed_in)  # the same account in another browser
        path, _ = phone.predict("browser:phone-key-00002", api_name="/my_ratings")
        assert len(open(path, encoding="utf-8").read().splitlines()) == 2  # header + the laptop's rating
        stranger = Client(url, verbose=False)
        none, message = stranger.predict("huggingface:alice-rater", api_name="/my_ratings")
        assert none is None and "Sign in" in message
        anonymous, _ = stranger.predict("browser:phone-key-00002", api_name="/my_ratings")
        assert len(open(anonymous, encoding="utf-8").read().splitlines()) == 1  # that browser alone rated nothing
    finally:
        demo.close()


@pytest.mark.slow
def test_every_waiting_visitor_sees_its_rounds_phases(client):
    """Progress per phase reaches each visitor of a shared round, not only the one whose thread runs it."""
    import time

    from gradio_client import Client

    visitors = [Client(client.src, verbose=False) for _ in range(2)]
    jobs = [c.submit(f"browser:progress-key-{i:04d}", "a red house on grass", [], api_name="/participate")
            for i, c in enumerate(visitors)]
    seen: list[set[str]] = [set(), set()]
    while not all(j.done() for j in jobs):
        for i, j in enumerate(jobs):
            seen[i].update(p.desc for p in (j.status().progress_data or []) if p.desc)
        time.sleep(0.02)
    for descs in seen:
        assert any(d.startswith("your round: ") for d in descs), descs
