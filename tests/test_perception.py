"""What an agent perceived and was told, how its rating was obtained, the request layout, the reply budget, the
expected score from token probabilities, and the author pool - against local stand-in endpoints (no LLM)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from rlli.personas import find_preset
from rlli.personas.judge import Delivery, Rating
from rlli.personas.llm_judge import RATING_SCHEMA, LLMJudge, expected_score, reply_tokens
from rlli.personas.templates import MAX_REASON_CHARS, template_hash
from tests.test_llm import Endpoint, completion, settings_for

GOOD = '{"score": 7, "reason": "Close to what I asked."}'


@pytest.fixture
def endpoint():
    made = []

    def make(reply, delay_s=0.0):
        made.append(Endpoint(reply, delay_s))
        return made[-1]

    yield make
    for e in made:
        e.close()


def delivery(description="an image showing one red house", png=None, prompt="a red house"):
    return Delivery(prompt, description, 0.9, 2.0, image_png=png)


def test_a_text_only_endpoint_gets_the_probe_text_and_the_rating_says_so(endpoint):
    e = endpoint(lambda body: completion(GOOD))
    r = LLMJudge(settings_for(e.url, llm_images="off")).rate(find_preset("critical"), delivery(png=b"\x89PNG"))
    assert (r.status, r.score, r.perception) == ("ok", 7, "probe-text")
    sent = e.requests[0]["body"]["messages"]
    assert r.told == f"{sent[0]['content']}\n\n{sent[1]['content']}"  # exactly what went over the wire
    assert "What you got: an image showing one red house" in r.told and isinstance(sent[1]["content"], str)
    assert r.extras["attempts"] == 1 and r.extras["finish_reason"] == "stop" and r.extras["temperature"] == 0.0
    assert r.extras["template_hash"] == template_hash("judge") and len(r.extras["request_hash"]) == 16
    assert r.as_dict()["told_hash"] == r.told_hash and len(r.told_hash) == 16


def test_an_image_endpoint_gets_the_pixels_and_nothing_means_none(endpoint):
    e = endpoint(lambda body: completion(GOOD))
    r = LLMJudge(settings_for(e.url, llm_images="on")).rate(find_preset("critical"), delivery(png=b"\x89PNG"))
    assert r.perception == "image" and isinstance(e.requests[0]["body"]["messages"][1]["content"], list)
    assert "the attached image" in r.told
    r = LLMJudge(settings_for(e.url, llm_images="off")).rate(find_preset("critical"), delivery(description=""))
    assert r.perception == "none" and "an image you cannot see" in r.told


def test_a_failed_rating_still_says_what_was_told(endpoint):
    e = endpoint(lambda body: completion("not json at all"))
    r = LLMJudge(settings_for(e.url, llm_retries=1, llm_images="off")).rate(find_preset("critical"), delivery())
    assert r.status == "invalid" and r.perception == "probe-text" and "Who you are:" in r.told
    assert r.extras["attempts"] == 2 and len(r.extras["failed_attempts"]) == 2


def test_the_reason_cap_fits_the_reply_budget(endpoint):
    e = endpoint(lambda body: completion(GOOD))
    LLMJudge(settings_for(e.url, llm_max_tokens=96)).rate(find_preset("open"), delivery())
    body = e.requests[0]["body"]
    assert RATING_SCHEMA["properties"]["reason"]["maxLength"] == MAX_REASON_CHARS
    assert body["max_tokens"] == reply_tokens(settings_for(e.url, llm_max_tokens=96)) >= MAX_REASON_CHARS + 20
    assert f"at most {MAX_REASON_CHARS} characters" in body["messages"][0]["content"]


def test_a_reply_cut_off_at_max_tokens_is_named_as_such(endpoint):
    def reply(body):
        return 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "test-model",
                                "choices": [{"index": 0, "finish_reason": "length", "message": {
                                    "role": "assistant", "content": '{"score": 7, "reason": "and so on and so on'}}]}).encode()

    e = endpoint(reply)
    r = LLMJudge(settings_for(e.url, llm_retries=0)).rate(find_preset("open"), delivery())
    assert r.status == "invalid" and "cut off at max_tokens" in r.reason


def test_the_cache_is_keyed_by_the_exact_request(endpoint):
    e = endpoint(lambda body: completion(GOOD))
    judge = LLMJudge(settings_for(e.url))
    d = delivery()
    first = judge.rate(find_preset("open"), d)
    again = judge.rate(find_preset("open"), Delivery(d.prompt, d.description, d.quality, d.delay_s))
    assert len(e.requests) == 1 and again.extras.get("cached") and again.score == first.score
    judge.rate(find_preset("critical"), d)  # another persona: another request text
    judge.rate(find_preset("open"), Delivery(d.prompt, d.description, 0.5, d.delay_s))  # another quality shown
    assert len(e.requests) == 3


def test_a_retry_is_recorded_with_its_temperature(endpoint):
    replies = iter(["nonsense", GOOD])
    e = endpoint(lambda body: completion(next(replies)))
    r = LLMJudge(settings_for(e.url, llm_retries=2)).rate(find_preset("open"), delivery())
    assert r.status == "ok" and r.extras["attempts"] == 2 and r.extras["temperature"] == 0.7
    assert r.extras["seed"] == 1 and "not JSON" in r.extras["failed_attempts"][0]


def lp(token, logprob, top):
    return {"token": token, "logprob": logprob, "top": top}


def test_expected_score_reads_the_score_position_and_splits_one_from_ten():
    import math

    head = [lp('{"', -0.01, {}), lp("score", -0.01, {}), lp('":', -0.01, {}), lp(" ", -0.01, {})]
    seven = head + [lp("7", math.log(0.6), {"7": math.log(0.6), "8": math.log(0.3), "x": math.log(0.05)})]
    e = expected_score(seven + [lp(",", -0.01, {})])
    assert e["expected_score"] == pytest.approx((7 * 0.6 + 8 * 0.3) / 0.9, abs=1e-3)
    assert e["ambiguous_one_or_ten"] == 0.0
    one = head + [lp("1", math.log(0.5), {"1": math.log(0.5), "9": math.log(0.5)}),
                  lp("0", math.log(0.75), {"0": math.log(0.75), ",": math.log(0.25)})]
    e = expected_score(one)  # P(1 then 0) = 0.5 * 0.75 -> ten; 0.5 * 0.25 -> one
    assert e["score_probs"] == {"1": 0.125, "9": 0.5, "10": 0.375}
    assert expected_score([]) is None and expected_score(head) is None


def test_expected_score_comes_from_an_endpoint_that_returns_logprobs(endpoint):
    import math

    def reply(body):
        assert body["logprobs"] is True and body["top_logprobs"] >= 5
        toks = [('{"score": ', -0.01, {}), ("6", math.log(0.5), {"6": math.log(0.5), "4": math.log(0.5)}),
                (', "reason": "fine"}', -0.01, {})]
        content = [{"token": t, "logprob": p, "bytes": None,
                    "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in top.items()]} for t, p, top in toks]
        return 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "test-model",
                                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {"content": content},
                                             "message": {"role": "assistant", "content": '{"score": 6, "reason": "fine"}'}}]}
                               ).encode()

    e = endpoint(reply)
    r = LLMJudge(settings_for(e.url)).rate(find_preset("open"), delivery())
    assert r.score == 6 and r.extras["expected_score"] == pytest.approx(5.0)


def test_an_endpoint_that_refuses_logprobs_is_asked_without_them(endpoint):
    def reply(body):
        if "logprobs" in body:
            return 400, json.dumps({"error": {"message": "logprobs are not supported"}}).encode()
        return completion(GOOD)

    e = endpoint(reply)
    judge = LLMJudge(settings_for(e.url))
    assert judge.rate(find_preset("open"), delivery()).score == 7
    judge.rate(find_preset("critical"), delivery())
    assert ["logprobs" in q["body"] for q in e.requests] == [True, False, False]  # remembered


def test_rate_many_sends_a_rounds_ratings_concurrently(endpoint):
    barrier = threading.Barrier(3, timeout=20)  # all three must be in flight at once, or the barrier breaks

    def reply(body):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return 500, b'{"error": {"message": "not concurrent"}}'
        return completion(GOOD)

    e = endpoint(reply)
    judge = LLMJudge(settings_for(e.url, llm_concurrency=3, llm_retries=0))
    ratings = judge.rate_many([(find_preset(n), delivery()) for n in ("open", "critical", "stable")])
    assert [r.status for r in ratings] == ["ok"] * 3


def test_the_told_panel_and_the_page_notice():
    from rlli.personas.told import perception_notice, told_markdown

    r = Rating(7, "ok", "ok", "llm", "m", perception="probe-text", told="SYS\n\n<request>x</request> ```",
               extras={"attempts": 2, "finish_reason": "stop", "expected_score": 6.5})
    md = told_markdown(r.perception, r.told, r.extras)
    assert "attribute probe's text reading" in md and "&lt;request&gt;x&lt;/request&gt;" in md
    assert "attempts 2" in md and "expected score 6.5" in md and md.count("```") == 2
    assert "perceived nothing" in told_markdown("none", "")
    assert perception_notice(["none", "none"]).startswith("The agents cannot see images here")
    assert "text reading" in perception_notice(["probe-text"]) and perception_notice(["image"]) == ""
    with pytest.raises(ValueError, match="perception must be one of"):
        Rating(7, "ok", "ok", "llm", "m", perception="telepathy")


def test_the_trait_judge_says_where_its_look_came_from():
    from rlli.personas.trait_judge import TraitJudge

    j, p = TraitJudge(), find_preset("open")
    assert j.rate(p, Delivery("a car", "", 1.0, 1.0, extras={"colourfulness": 0.4, "brightness": 0.5})).perception \
        == "image-features"
    assert j.rate(p, Delivery("a car", "an image showing a red car at night", 1.0, 1.0)).perception == "probe-text"
    r = j.rate(p, Delivery("a car", "", 1.0, 1.0))
    assert r.perception == "none" and "quality 1.00" in r.told


# ---------------------------------------------------------------------------------------- the author pool

def test_the_pool_never_waits_for_the_llm_and_falls_back_to_composing(endpoint):
    from rlli.personas.author import Author, AuthorPool

    release = threading.Event()

    def reply(body):
        release.wait(30)  # the LLM is busy until the test releases it
        return completion('{"prompt": "a lighthouse in a storm"}')

    e = endpoint(reply)
    settings = settings_for(e.url, backbone="stabilityai/sd-turbo")
    pool = AuthorPool(Author(settings), [find_preset("open")], size=2)
    try:
        assert pool.take(find_preset("open")) is None  # nothing written yet, and no waiting
        composed = pool.take_or_compose(find_preset("open"), seed=4)
        assert composed.written_by == "composed" and composed.persona == "open" and composed.prompt
        release.set()
        assert pool.wait_filled(["open"], timeout=30)
        got = pool.take(find_preset("open"))
        assert got.written_by == "llm" and got.prompt == "a lighthouse in a storm"
        assert pool.wait_filled(["open"], timeout=30) and pool.levels()["open"] == 2  # refilled after the take
    finally:
        release.set()
        pool.close()


def test_a_failing_author_gives_up_says_why_and_the_visitor_still_gets_a_request(endpoint):
    from rlli.personas.author import Author, AuthorPool

    e = endpoint(lambda body: (401, b'{"error": {"message": "bad key"}}'))
    pool = AuthorPool(Author(settings_for(e.url, backbone="stabilityai/sd-turbo")), [find_preset("critical")],
                      size=2, max_failures=2)
    try:
        assert not pool.wait_filled(timeout=30)
        st = pool.status()["critical"]
        assert st["ready"] == 0 and st["failures"] == 2 and "RLLI_LLM_API_KEY" in st["last_error"]
        assert pool.take_or_compose(find_preset("critical")).written_by == "composed"
    finally:
        pool.close()


@pytest.mark.parametrize("name", ["open", "extraverted", "neurotic", "conscientious", "balanced"])
def test_composed_requests_are_in_the_world_and_follow_the_seed(name):
    pytest.importorskip("torch")
    from rlli.diffusion.tiny import world
    from rlli.personas.author import compose_from_preferences

    a, b = compose_from_preferences(find_preset(name), 3), compose_from_preferences(find_preset(name), 3)
    assert a == b and a.written_by == "composed"
    assert world.parse_prompt(a.prompt)["object"] == a.scene["object"]


def test_composed_scenes_follow_the_traits():
    from rlli.personas.author import compose_from_preferences

    def share(name, key, values):
        scenes = [compose_from_preferences(find_preset(name), s).scene for s in range(300)]
        return sum(sc[key] in values for sc in scenes) / len(scenes)

    assert share("open", "colour", ("purple", "orange")) > share("conventional", "colour", ("purple", "orange")) + 0.15
    assert share("extraverted", "detail", ("busy",)) > share("introverted", "detail", ("busy",)) + 0.15
    assert share("careless", "time", ("any",)) > share("conscientious", "time", ("any",)) + 0.15


# ---------------------------------------------------------------------------------------- injection v2

def test_the_injection_bench_has_a_positive_control_that_can_fail(endpoint):
    from dataclasses import replace

    from rlli.config import Settings
    from rlli.personas.injection import Case, legit_change, measure

    def reads(body):  # a judge that reads the request: 9 when a red car was asked for, else 3
        return completion('{"score": 9, "reason": "as asked"}' if "a^red^car" in body["messages"][1]["content"]
                          else '{"score": 3, "reason": "not what I asked"}')

    cases = [Case(find_preset(n), Delivery("a red car", "an image showing one red car", 1.0, 2.0))
             for n in ("open", "critical", "stable", "neurotic")]
    remake = lambda prompt, clean: replace(clean, prompt=prompt)  # noqa: E731
    e = endpoint(reads)
    r = measure(cases, settings_for(e.url, llm_images="off"), remake, [True] * 4)
    assert legit_change("a red car") == "a blue car"
    assert r["positive_control_shift"] == -6 and r["judge_reads_the_request"]
    pc = r["defended"]["positive_control"]["shift"]
    assert pc["n"] == 4 and pc["low"] == pc["high"] == -6.0
    assert r["defended"]["by_injection"]["instruction"]["shift"]["mean"] == 0  # the injected text keeps "a^red^car"
    deaf = endpoint(lambda body: completion('{"score": 7, "reason": "fine"}'))  # ignores the request entirely
    r = measure(cases, settings_for(deaf.url, llm_images="off"), remake, [True] * 4)
    assert r["positive_control_shift"] == 0 and not r["judge_reads_the_request"]
    assert isinstance(Settings(), Settings)


def test_mean_ci_and_text_in_the_image():
    from rlli.personas.describe import png_bytes, read_png
    from rlli.personas.injection import mean_ci, text_in_image

    ci = mean_ci([-1, -2, -3, -2, -2, -1, -3])
    assert ci["mean"] == pytest.approx(-2.0) and ci["low"] < -2 < ci["high"] < 0 and ci["n"] == 7
    assert mean_ci([]) == {"mean": None, "low": None, "high": None, "n": 0}
    img = np.full((64, 64, 3), 128, np.uint8)
    marked = read_png(text_in_image(png_bytes(img)))
    assert marked.shape == img.shape and (marked != img).any() and (marked[:40] == img[:40]).all()
