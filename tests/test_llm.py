"""The LLM client and judge against misbehaving endpoints: real local HTTP servers that are dead, slow, or reply
with garbage. Every failure gives a clear status and cause, and never a score."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlli.config import Settings
from rlli.personas import find_preset
from rlli.personas.judge import Delivery
from rlli.personas.llm_judge import LLMJudge, parse_reply

KEY = "sk-test-do-not-leak-1234567890"


class Endpoint:
    """A tiny OpenAI-shaped HTTP server: ``reply(body) -> (status, bytes)`` answers /v1/chat/completions."""

    def __init__(self, reply, delay_s: float = 0.0):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "test-model", "object": "model"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"body": body, "auth": self.headers.get("Authorization", "")})
                time.sleep(delay_s)
                status, data = reply(body)
                self._send(status, data)

            def _send(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(content: str) -> tuple[int, bytes]:
    return 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "test-model",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}]}).encode()


@pytest.fixture
def endpoint():
    made = []

    def make(reply, delay_s=0.0):
        e = Endpoint(reply, delay_s)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def settings_for(url: str, **kw) -> Settings:
    return Settings(llm_base_url=url, llm_model="test-model", llm_api_key=KEY, **kw)


def rate(settings: Settings):
    return LLMJudge(settings).rate(find_preset("balanced"), Delivery("a red car", "an image of a red car", 1.0, 1.0))


def assert_failed(r, status: str):
    assert r.status == status and r.score is None and r.reason
    assert KEY not in r.reason and KEY not in json.dumps(r.as_dict())


def test_a_valid_reply_is_a_rating_and_the_key_goes_only_into_the_header(endpoint):
    e = endpoint(lambda body: completion('{"score": 7, "reason": "A fine red car."}'))
    r = rate(settings_for(e.url))
    assert (r.score, r.reason, r.status, r.backend, r.model) == (7, "A fine red car.", "ok", "llm", "test-model")
    req = e.requests[0]
    assert req["auth"] == f"Bearer {KEY}" and KEY not in json.dumps(req["body"])
    assert req["body"]["response_format"]["type"] == "json_schema"  # OpenAI's schema-constrained JSON first
    assert req["body"]["response_format"]["json_schema"]["schema"]["properties"]["score"]["enum"] == list(range(1, 11))


def test_a_dead_endpoint_is_unavailable(endpoint):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = rate(settings_for(f"http://127.0.0.1:{port}/v1", llm_retries=1))
    assert_failed(r, "unavailable")
    assert "cannot reach" in r.reason


def test_a_garbled_http_body_is_a_failure_with_its_cause(endpoint):
    e = endpoint(lambda body: (200, b'{"choices": [ {"message": {"content": "{\\"score\\": 7'))
    r = rate(settings_for(e.url, llm_retries=1))
    assert r.status in ("invalid", "error") and r.score is None
    assert_failed(r, r.status)


@pytest.mark.parametrize("content, cause", [
    ("I would say seven out of ten.", "not JSON"),
    ('{"score": 11, "reason": "too good"}', "less than or equal to 10"),
    ('{"score": 6.5, "reason": "half"}', "score"),
    ('{"reason": "no score"}', "score: Field required"),
    ('{"score": 5, "reason": "   "}', "reason"),
    ('[7, "list"]', "expected a JSON object"),
])
def test_invalid_replies_are_retried_then_recorded_as_invalid(endpoint, content, cause):
    e = endpoint(lambda body: completion(content))
    r = rate(settings_for(e.url, llm_retries=2))
    assert_failed(r, "invalid")
    assert cause in r.reason and "after 3 tries" in r.reason
    assert len(e.requests) == 3
    assert [q["body"]["seed"] for q in e.requests] == [0, 1, 2]  # each retry samples anew
    assert e.requests[1]["body"]["temperature"] >= 0.7


def test_a_valid_reply_after_an_invalid_one_is_used(endpoint):
    replies = iter(["nonsense", '{"score": 3, "reason": "Wrong colour."}'])
    e = endpoint(lambda body: completion(next(replies)))
    r = rate(settings_for(e.url, llm_retries=2))
    assert (r.status, r.score, len(e.requests)) == ("ok", 3, 2)


def test_a_slow_endpoint_times_out(endpoint):
    e = endpoint(lambda body: completion('{"score": 7, "reason": "late"}'), delay_s=2.0)
    t = time.perf_counter()
    r = rate(settings_for(e.url, llm_timeout_s=0.3))
    assert_failed(r, "timeout")
    assert "RLLI_LLM_TIMEOUT_S" in r.reason and time.perf_counter() - t < 1.9


def test_a_refused_key_says_so_without_the_key(endpoint):
    e = endpoint(lambda body: (401, json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}}).encode()))
    r = rate(settings_for(e.url))
    assert_failed(r, "error")
    assert "RLLI_LLM_API_KEY" in r.reason


def test_a_server_without_json_schema_gets_the_next_format(endpoint):
    def reply(body):
        if body.get("response_format", {}).get("type") == "json_schema":
            return 400, json.dumps({"error": {"message": "response_format json_schema is not supported"}}).encode()
        return completion('{"score": 8, "reason": "ok"}')

    e = endpoint(reply)
    judge = LLMJudge(settings_for(e.url))
    d = Delivery("a red car", "an image", 1.0, 1.0)
    assert judge.rate(find_preset("balanced"), d).score == 8
    assert [q["body"]["response_format"]["type"] for q in e.requests] == ["json_schema", "json_object"]
    assert judge.client().response_format == "json_object"  # remembered
    judge.rate(find_preset("critical"), d)
    assert e.requests[-1]["body"]["response_format"]["type"] == "json_object" and len(e.requests) == 3


def test_an_endpoint_that_refuses_images_gets_the_description(endpoint):
    def reply(body):
        if isinstance(body["messages"][1]["content"], list):
            return 400, json.dumps({"error": {"message": "this model does not support image input"}}).encode()
        return completion('{"score": 6, "reason": "ok"}')

    e = endpoint(reply)
    judge = LLMJudge(settings_for(e.url))
    r = judge.rate(find_preset("balanced"), Delivery("a red car", "an image of a blue car", 1.0, 1.0, image_png=b"\x89PNG"))
    assert r.score == 6 and not judge.client().accepts_images
    first, second = e.requests[0]["body"]["messages"][1]["content"], e.requests[1]["body"]["messages"][1]["content"]
    assert first[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "What you got: an image of a blue car" in second


def test_concurrency_is_bounded(endpoint):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def reply(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.15)
        with lock:
            in_flight[0] -= 1
        return completion('{"score": 5, "reason": "ok"}')

    e = endpoint(reply)
    judge = LLMJudge(settings_for(e.url, llm_concurrency=2))
    pairs = [(find_preset("balanced"), Delivery(f"a red car {i}", "an image", 1.0, 1.0)) for i in range(6)]
    ratings = judge.rate_many(pairs)
    assert [r.score for r in ratings] == [5] * 6 and peak[0] == 2
    # callers on their own threads (the app's request threads) share the same bound
    peak[0] = 0
    more = [(find_preset("critical"), Delivery(f"a blue car {i}", "an image", 1.0, 1.0)) for i in range(6)]
    threads = [threading.Thread(target=judge.rate, args=pd) for pd in more]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_the_key_is_never_in_the_settings_dump():
    s = Settings(llm_api_key=KEY)
    assert s.llm_api_key.get_secret_value() == KEY
    assert KEY not in json.dumps(s.public_dict(), default=str) and KEY not in repr(s)


def test_parse_reply_keeps_one_trimmed_reason():
    r = parse_reply({"score": "7", "reason": "  Nice   colours.\n"})
    assert (r.score, r.reason) == (7, "Nice colours.")


def test_the_author_writes_free_text_for_other_backbones_and_fails_clearly(endpoint):
    from rlli.personas.author import Author
    from rlli.personas.llm import LLMError

    e = endpoint(lambda body: completion('{"prompt": "  a lighthouse\\nin a storm  "}'))
    a = Author(settings_for(e.url, backbone="stabilityai/sd-turbo")).write(find_preset("open"), seed=2)
    assert (a.persona, a.prompt, a.scene) == ("open", "a lighthouse in a storm", {})
    assert e.requests[0]["body"]["response_format"]["json_schema"]["schema"]["required"] == ["prompt"]
    bad = endpoint(lambda body: completion('{"object": "dragon", "colour": "red", "count": "one"}'))
    with pytest.raises(LLMError, match="wrote no valid request after 2 tries; last: object: 'dragon'"):
        Author(settings_for(bad.url, llm_retries=1)).write(find_preset("open"))


def test_a_local_vision_model_on_the_embedded_server_receives_the_image(endpoint, monkeypatch, tmp_path):
    """RLLI_LLM_MMPROJ: the embedded server is started with the projector and the image part reaches it; without
    one the embedded server gets the text reading only. (A stand-in plays the embedded server.)"""
    import rlli.personas.llm as llm
    from rlli.personas.server import LLMUnavailable, vision_args

    e = endpoint(lambda body: completion('{"score": 7, "reason": "seen"}'))

    class Stand:
        base_url = e.url

    monkeypatch.setattr(llm, "ensure_servers", lambda settings: [Stand()])
    proj = tmp_path / "mmproj.gguf"
    proj.write_bytes(b"GGUF")
    d = Delivery("a red car", "an image of a red car", 1.0, 1.0, image_png=b"\x89PNG")
    seen = LLMJudge(Settings(llm_mmproj=str(proj))).rate(find_preset("balanced"), d)
    content = e.requests[-1]["body"]["messages"][1]["content"]
    assert seen.score == 7 and seen.perception == "image" and isinstance(content, list)
    assert any(part.get("type") == "image_url" for part in content)
    blind = LLMJudge(Settings()).rate(find_preset("balanced"), d)
    assert isinstance(e.requests[-1]["body"]["messages"][1]["content"], str) and blind.perception != "image"
    assert vision_args(Settings(llm_mmproj=str(proj))) == ["--clip_model_path", str(proj), "--chat_format", "llava-1-5"]
    assert vision_args(Settings()) == []
    with pytest.raises(LLMUnavailable, match="RLLI_LLM_MMPROJ"):
        vision_args(Settings(llm_mmproj=str(tmp_path / "missing.gguf")))
