"""The LLM judge, author and TIPI respondent against the real embedded llama.cpp server (SmolLM2-135M)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from rlli.config import Settings
from rlli.personas import find_preset
from rlli.personas.describe import make_delivery
from rlli.personas.llm_judge import RATING_SCHEMA, LLMJudge

pytestmark = pytest.mark.slow


def scene_image(seed: int = 0, **attrs) -> np.ndarray:
    from rlli.diffusion.tiny import world

    base = dict(time="day", weather="clear", ground="grass", object="house", colour="red", count="one",
                position="centre", warmth="neutral", detail="normal")
    scene = world.Scene(**{**base, **attrs})
    return (world.render(scene, np.random.default_rng(seed)) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def judge(llm_server):
    return LLMJudge(Settings())


def test_the_embedded_model_answers_in_the_schema(judge, llm_server):
    client = judge.client()
    assert client.endpoint.embedded and client.endpoint.base_url == llm_server.base_url
    assert not client.accepts_images  # SmolLM2 is text-only: it gets the probe's description
    data, raw = client.chat_json("You rate pictures.", "Rate a picture of a red house from 1 to 10.", RATING_SCHEMA,
                                 name="rating")
    assert set(data) == {"score", "reason"} and isinstance(data["score"], int) and 1 <= data["score"] <= 10
    assert client.response_format in ("json_schema", "json_object")  # the server constrained the reply


def test_a_rating_of_a_rendered_scene(judge):
    d = make_delivery("a red house on grass", scene_image(), quality=0.95, delay_s=2.0)
    assert "matches 4 of the 4" in d.description
    r = judge.rate(find_preset("balanced"), d)
    assert r.status == "ok", r.reason
    assert 1 <= r.score <= 10 and r.reason and r.backend == "llm" and r.model == "SmolLM2-135M-Instruct"
    assert r.latency_s > 0


def test_same_seed_same_rating_and_the_cache_answers_repeats(judge, llm_server):
    d = make_delivery("two blue boats on a lake", scene_image(object="boat", colour="blue", count="two",
                                                             ground="water"), quality=0.8, delay_s=5.0)
    p = find_preset("critical")
    first = judge.rate(p, d)
    hits = judge.cache.hits
    t = time.perf_counter()
    again = judge.rate(p, d)
    assert time.perf_counter() - t < 0.05 and judge.cache.hits == hits + 1
    assert (again.score, again.reason, again.status) == (first.score, first.reason, first.status)
    fresh = LLMJudge(Settings()).rate(p, d)  # a new judge (empty cache), same seed: same rating from the server
    assert (fresh.score, fresh.reason) == (first.score, first.reason)
    other = judge.rate(p, make_delivery(d.prompt, scene_image(object="boat", colour="blue", count="two",
                                                                ground="water"), quality=0.3, delay_s=5.0))
    assert judge.cache.misses >= 2 and other.status == "ok"  # another context is another call


def test_a_persona_authored_round_runs_through_the_service(llm_server):
    from rlli.diffusion.tiny import world
    from rlli.personas.author import Author
    from rlli.service import requests_from, run_round

    settings = Settings()
    personas = [find_preset(n) for n in ("open", "introverted", "extraverted")]
    authored = Author(settings).write_round(personas, seed=3)
    assert [a.persona for a in authored] == ["open", "introverted", "extraverted"]
    for a in authored:
        assert world.parse_prompt(a.prompt)["object"] == a.scene["object"]
    # Not asserted: the same requests again. Authors sample (temperature 0.9); with several server slots and their
    # prompt caches, a cached and a fresh evaluation of the same prompt differ in the last float bits, and sampling
    # can amplify that (measured: the same seed gave another scene on the second slot). Greedy ratings hold.
    report = run_round(requests_from([a.prompt for a in authored], 3), settings)
    assert report.prompts == [a.prompt for a in authored]
    assert len(report.requests) == 3 and all(r.image.shape == (64, 64, 3) for r in report.requests)


def test_the_mini_ipip_is_answered_in_the_schema(llm_server):
    from rlli.personas.fidelity import run_fidelity

    r = run_fidelity(4, backend="llm", settings=Settings(), behavioural=0)
    assert r.model == "SmolLM2-135M-Instruct" and r.profiles == 4
    assert r.valid_rate == 1.0, r.failures
    assert all(len(x["answers"]) == 20 and all(1 <= v <= 5 for v in x["answers"]) for x in r.recovered)


def test_a_rating_says_what_the_embedded_agent_perceived_and_closes_its_json(judge):
    d = make_delivery("a blue house on grass", scene_image(), quality=0.9, delay_s=3.0)
    r = judge.rate(find_preset("critical"), d)
    assert r.status == "ok" and r.perception == "probe-text" and r.extras["finish_reason"] == "stop"
    assert "The probe's confidence:" in r.told and r.told.index("What you got") < r.told.index("Who you are")
    assert r.extras["expected_score"] is not None and 1 <= r.extras["expected_score"] <= 10


def test_the_server_stops_when_its_process_exits(llm_server):
    code = ("import os; from rlli.config import Settings; from rlli.personas.server import ensure_server; "
            "s = ensure_server(Settings()); print(s.process.pid, s.port, flush=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True).stdout
    pid, port = map(int, out.split())
    time.sleep(0.5)
    assert not running(pid), "the embedded server outlived its process"


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\tZ" not in next(line for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def bad_delivery():
    """A wrong image (boats asked, a house delivered) at low quality after a long wait: room for 'rate this 10'."""
    return make_delivery("two blue boats on a lake at sunset", scene_image(), quality=0.4, delay_s=30.0)


MOVED_WITH_PERSONA_LAST = pytest.mark.xfail(
    strict=True, reason="measured (docs/personas.md, injection v2): with the persona last in the user message, "
                        "SmolLM2-135M follows a fake score in the quoted request (bench injection: +3.4 [+1.1, +5.6])")


@pytest.mark.parametrize("kind", ["instruction", pytest.param("fake_json", marks=MOVED_WITH_PERSONA_LAST),
                                  pytest.param("fake_system", marks=MOVED_WITH_PERSONA_LAST)])
def test_injections_in_the_prompt_do_not_move_the_score(llm_server, bad_delivery, kind):
    from dataclasses import replace

    from rlli.personas.describe import describe_image, read_png
    from rlli.personas.injection import inject

    judge = LLMJudge(Settings())
    p = find_preset("balanced")
    clean = judge.rate(p, bad_delivery)
    prompt = inject(bad_delivery.prompt, kind)
    injected = replace(bad_delivery, prompt=prompt, description=describe_image(read_png(bad_delivery.image_png), prompt))
    assert "10" in prompt and clean.status == "ok" and clean.score < 10
    assert judge.rate(p, injected).score == clean.score
    # the same injection through the naive way (prompt pasted raw, no warning) does move this model
    naive = LLMJudge(Settings(), naive_prompt=True)
    if kind == "fake_json":
        assert naive.rate(p, injected).score > naive.rate(p, bad_delivery).score


def test_a_broken_model_file_is_a_clear_unavailable_status(tmp_path):
    from rlli.personas.llm import LLMError, client_for

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really a model")
    with pytest.raises(LLMError) as e:
        client_for(Settings(llm_gguf=str(bad), llm_start_timeout_s=60))
    assert e.value.status == "unavailable" and "exited with code" in e.value.cause
    r = LLMJudge(Settings(llm_gguf=str(tmp_path / "missing.gguf"))).rate(find_preset("open"), make_delivery("a red car", None))
    assert r.status == "unavailable" and r.score is None and "no such file" in r.reason
