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

    settings = Settings(steps=6, port=_free_port())
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    finally:
        demo.close()


@pytest.mark.slow
def test_a_round_through_the_api(client):
    prompts = "a red house on grass at sunset\na red house on the grass at sunset\ntwo blue boats at night"
    summary, groups, table, tree, shared, independent = client.predict(prompts, 3, True, api_name="/generate")
    assert "3 prompts" in summary and "fork decision" in summary
    assert sum(row[2] for row in groups["data"]) == 3
    assert len(table["data"]) == 3 and len(shared) == 3 and len(independent) == 3
    assert tree is not None  # the sharing tree (a plotly figure)
    assert all("seed" in item["caption"] for item in shared)


@pytest.mark.slow
@pytest.mark.parametrize("text", ["", "x" * 5000, "\n".join(["a house"] * 40)])
def test_bad_input_gets_a_message_not_a_crash(client, text):
    summary, groups, table, tree, shared, independent = client.predict(text, 0, False, api_name="/generate")
    assert summary.startswith("**Cannot run this round:**")
    assert not shared and not table["data"] and not groups["data"] and not tree


@pytest.mark.slow
def test_messages_are_escaped_and_show_no_server_paths(client):
    summary, *_ = client.predict("<b>x</b>\n" * 40, 0, False, api_name="/generate")
    assert summary.startswith("**Cannot run this round:**") and "<b>" not in summary
    summary, *_ = client.predict("a red house", 2**31, False, api_name="/generate")
    assert summary.startswith("**Cannot run this round:**") and "seed" in summary
