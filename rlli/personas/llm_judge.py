"""The LLM judge: a persona role-played by a chat model rates what the service delivered.

Each rating is one chat call (:mod:`rlli.personas.llm`) whose reply must be JSON
``{"score": 1..10, "reason": "..."}``, constrained by a schema where the server supports it. An
invalid reply is retried (``RLLI_LLM_RETRIES`` times, each retry sampling at temperature >= 0.7
with a new seed, since a greedy retry would repeat itself) and then recorded as ``invalid`` with
its cause; timeouts and dead endpoints become ``timeout`` / ``unavailable``. No score is ever
made up. Calls in flight are bounded by ``RLLI_LLM_CONCURRENCY``; successful ratings are cached,
keyed by persona, image hash and context.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pydantic import BaseModel, Field, ValidationError

from rlli.config import Settings
from rlli.personas.cache import RatingCache, rating_key
from rlli.personas.judge import Delivery, Persona, Rating
from rlli.personas.llm import LLMClient, LLMError, client_for
from rlli.personas.templates import judge_messages, version

MAX_REASON_CHARS = 300
RETRY_TEMPERATURE = 0.7

RATING_SCHEMA = {
    "type": "object",
    "properties": {
        # an enum rather than minimum/maximum: llama.cpp's grammar enforces enums, not integer bounds
        "score": {"type": "integer", "enum": list(range(1, 11))},
        "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}


class JudgeReply(BaseModel):
    score: int = Field(ge=1, le=10)
    reason: str = Field(min_length=1)


def parse_reply(data) -> JudgeReply:
    """A validated reply; ValueError with the cause otherwise (a fractional or out-of-range score is invalid)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    try:
        reply = JudgeReply.model_validate(data)
    except ValidationError as e:
        raise ValueError("; ".join(f"{'.'.join(map(str, x['loc'])) or 'reply'}: {x['msg']}" for x in e.errors())) from None
    reason = " ".join(reply.reason.split())
    if not reason:
        raise ValueError("reason: empty")
    return JudgeReply(score=reply.score, reason=reason[:MAX_REASON_CHARS])


class LLMJudge:
    """A :class:`~rlli.personas.judge.Judge` backed by any OpenAI-compatible chat endpoint."""

    backend = "llm"

    def __init__(self, settings: Settings | None = None, model: str | None = None, client: LLMClient | None = None,
                 naive_prompt: bool = False):
        self.settings = settings or Settings()
        self.naive_prompt = naive_prompt  # the injection benchmark's undefended baseline only
        self._model_override = model
        self._client = client
        self._client_error: LLMError | None = None
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.settings.llm_concurrency)
        self.cache = RatingCache(self.settings.llm_cache_size)

    # the endpoint is resolved (and the embedded server started) on first use, not on construction
    def client(self) -> LLMClient:
        with self._client_lock:
            if self._client is None:
                self._client = client_for(self.settings, self._model_override)
            return self._client

    @property
    def model(self) -> str:
        try:
            return self.client().model
        except LLMError:
            return self._model_override or self.settings.llm_model or "unknown"

    def _context(self, client: LLMClient) -> dict:
        s = self.settings
        return {"endpoint": client.endpoint.base_url, "model": client.model, "templates": version(),
                "naive": self.naive_prompt,
                "temperature": s.llm_temperature, "seed": s.llm_seed, "images": client.accepts_images,
                "retries": s.llm_retries}

    def _fail(self, status: str, cause: str, started: float, model: str) -> Rating:
        return Rating(score=None, reason=cause, status=status, backend=self.backend, model=model,
                      latency_s=time.perf_counter() - started)

    def rate(self, persona: Persona, delivery: Delivery) -> Rating:
        started = time.perf_counter()
        try:
            client = self.client()
        except LLMError as e:
            return self._fail(e.status, e.cause, started, self.model)
        key = rating_key(persona, delivery, self._context(client))
        cached = self.cache.get(key)
        if cached is not None:
            return replace(cached, latency_s=time.perf_counter() - started)
        rating = self._ask(client, persona, delivery, started)
        self.cache.put(key, rating)
        return rating

    @staticmethod
    def _delivered_text(delivery: Delivery, with_image: bool) -> str:
        if with_image:
            extra = f" (an automatic reading of it: {delivery.description})" if delivery.description else ""
            return "the attached image" + extra
        return delivery.description or "an image (no description of it is available; judge from the request, " \
                                       "the quality and the wait)"

    def _ask(self, client: LLMClient, persona: Persona, delivery: Delivery, started: float) -> Rating:
        s = self.settings
        causes: list[str] = []
        for attempt in range(s.llm_retries + 1):
            def user(with_image: bool) -> str:
                delivered = self._delivered_text(delivery, with_image)
                return judge_messages(persona, delivery, delivered, naive=self.naive_prompt)[1]

            system = judge_messages(persona, delivery, "", naive=self.naive_prompt)[0]
            temperature = s.llm_temperature if attempt == 0 else max(s.llm_temperature, RETRY_TEMPERATURE)
            try:
                with self._slots:
                    data, _raw = client.chat_json(system, user, RATING_SCHEMA, name="rating", image_png=delivery.image_png,
                                                  temperature=temperature, seed=s.llm_seed + attempt)
                reply = parse_reply(data)
            except LLMError as e:
                if e.status in ("timeout", "error"):  # retrying a timeout or a refused request only costs more time
                    return self._fail(e.status, e.cause, started, client.model)
                causes.append(e.cause)
                if e.status == "unavailable" and attempt == s.llm_retries:
                    return self._fail("unavailable", e.cause, started, client.model)
                continue
            except ValueError as e:
                causes.append(f"invalid reply: {e}")
                continue
            return Rating(score=reply.score, reason=reply.reason, status="ok", backend=self.backend,
                          model=client.model, latency_s=time.perf_counter() - started)
        status = "unavailable" if causes and all("cannot reach" in c for c in causes) else "invalid"
        return self._fail(status, f"no valid rating after {s.llm_retries + 1} tries; last: {causes[-1]}",
                          started, client.model)

    def rate_many(self, pairs: list[tuple[Persona, Delivery]]) -> list[Rating]:
        """Ratings for many (persona, delivery) pairs, ``RLLI_LLM_CONCURRENCY`` at a time, in input order."""
        if not pairs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.llm_concurrency, len(pairs))) as pool:
            return list(pool.map(lambda pd: self.rate(*pd), pairs))
