"""The LLM judge: a persona role-played by a chat model rates what the service delivered.

Each rating is one chat call (:mod:`rlli.personas.llm`) whose reply must be JSON
``{"score": 1..10, "reason": "..."}``, constrained by a schema where the server supports it; the reason
is capped (``MAX_REASON_CHARS``) and the reply's token budget covers that cap, so the JSON closes
before ``max_tokens``. The messages put everything ratings share first (instructions in the system
message, then the delivery) and the persona last, so consecutive ratings of one image share a long
prompt prefix. An invalid reply is retried (``RLLI_LLM_RETRIES`` times, each retry sampling at
temperature >= 0.7 with a new seed, since a greedy retry would repeat itself) and then recorded as
``invalid`` with its cause; timeouts and dead endpoints become ``timeout`` / ``unavailable``. No score
is ever made up.

Every rating says what the judge perceived (``perception``: ``image`` when the endpoint received the
pixels, ``probe-text`` when it was given the attribute probe's description, ``none`` otherwise), what
it was told (``told``: the exact messages), and how it was obtained (``extras``: attempts,
temperature, finish reason, template hash, request hash, the expected score from token
probabilities where the endpoint returns them). Calls in flight are bounded by
``RLLI_LLM_CONCURRENCY``; successful ratings are cached, keyed by a hash of the exact request.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pydantic import BaseModel, Field, ValidationError

from rlli.config import Settings
from rlli.personas.cache import RatingCache
from rlli.personas.judge import Delivery, Persona, Rating
from rlli.personas.llm import LLMClient, LLMError, Reply, client_for, request_hash
from rlli.personas.templates import MAX_REASON_CHARS, judge_messages, template_hash, told_text

RETRY_TEMPERATURE = 0.7
JSON_OVERHEAD_TOKENS = 24  # '{"score": 10, "reason": "' ... '"}' with room to spare

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


def reply_tokens(settings: Settings) -> int:
    """The reply's token budget: the setting, raised to what a reason of the full cap needs (a token per character)."""
    return max(settings.llm_max_tokens, MAX_REASON_CHARS + JSON_OVERHEAD_TOKENS)


def perception_of(delivery: Delivery, with_image: bool) -> str:
    """``image`` when the pixels went to the endpoint, ``probe-text`` when a description did, else ``none``."""
    if with_image:
        return "image"
    return "probe-text" if delivery.description.strip() else "none"


def expected_score(logprobs: list[dict]) -> dict | None:
    """The expected score and the score distribution from the token probabilities at the score's position.

    The first token of the score is read where the reply's text first has a digit; the distribution is
    renormalised over the tokens that spell a score. "10" may be one token or "1" then "0": when the reply
    took "1", the next position's probability of "0" splits the "1" mass between 1 and 10; when it did not,
    the split is unknown, the "1" mass counts as 1 and ``ambiguous_one_or_ten`` says how much mass that was.
    None when there are no usable probabilities.
    """
    if not logprobs:
        return None
    text = ""
    for i, t in enumerate(logprobs):
        tok = t["token"]
        if any(c.isdigit() for c in tok) and "score" in text:
            top = dict(t.get("top") or {})
            top.setdefault(tok, t["logprob"])
            probs: dict[int, float] = {}
            for s, lp in top.items():
                v = s.strip()
                if v.isdigit() and 1 <= int(v) <= 10:
                    probs[int(v)] = probs.get(int(v), 0.0) + math.exp(lp)
            total = sum(probs.values())
            if total <= 0:
                return None
            probs = {k: v / total for k, v in probs.items()}
            ambiguous = 0.0
            if probs.get(1):
                if tok.strip() == "1" and i + 1 < len(logprobs):
                    nxt = dict(logprobs[i + 1].get("top") or {})
                    nxt.setdefault(logprobs[i + 1]["token"], logprobs[i + 1]["logprob"])
                    zero = sum(math.exp(lp) for s, lp in nxt.items() if s.strip() == "0" and s.strip() == s)
                    rest = sum(math.exp(lp) for s, lp in nxt.items() if not s.strip().isdigit())
                    split = zero / (zero + rest) if zero + rest > 0 else 0.0
                    one = probs[1]
                    probs[1], probs[10] = one * (1 - split), probs.get(10, 0.0) + one * split
                else:
                    ambiguous = probs[1]
            mean = sum(k * v for k, v in probs.items())
            return {"expected_score": round(mean, 4), "score_probs": {str(k): round(v, 4) for k, v in sorted(probs.items())},
                    "ambiguous_one_or_ten": round(ambiguous, 4)}
        text += tok
    return None


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
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.settings.llm_concurrency)
        self.cache = RatingCache(self.settings.llm_cache_size)
        self.template_hash = template_hash("judge_naive" if naive_prompt else "judge")

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

    def _fail(self, status: str, cause: str, started: float, model: str, perception: str = "none", told: str = "",
              extras: dict | None = None) -> Rating:
        return Rating(score=None, reason=cause, status=status, backend=self.backend, model=model,
                      latency_s=time.perf_counter() - started, perception=perception, told=told,
                      extras={"template_hash": self.template_hash, **(extras or {})})

    @staticmethod
    def _delivered_text(delivery: Delivery, with_image: bool) -> str:
        if with_image:
            extra = f" (an automatic reading of it: {delivery.description})" if delivery.description else ""
            return "the attached image" + extra
        return delivery.description or "an image you cannot see (no description of it is available; judge from " \
                                       "the request, the quality and the wait)"

    def messages(self, persona: Persona, delivery: Delivery):
        """(system text, user text as a function of whether the image goes along) of a rating request."""
        system = judge_messages(persona, delivery, "", naive=self.naive_prompt)[0]

        def user(with_image: bool) -> str:
            return judge_messages(persona, delivery, self._delivered_text(delivery, with_image),
                                  naive=self.naive_prompt)[1]

        return system, user

    def rate(self, persona: Persona, delivery: Delivery) -> Rating:
        started = time.perf_counter()
        try:
            client = self.client()
        except LLMError as e:
            return self._fail(e.status, e.cause, started, self.model)
        s = self.settings
        system, user = self.messages(persona, delivery)
        kwargs, with_image, text = client.prepare(system, user, RATING_SCHEMA, name="rating",
                                                  image_png=delivery.image_png, temperature=s.llm_temperature,
                                                  seed=s.llm_seed, max_tokens=reply_tokens(s), logprobs=True)
        key = request_hash(kwargs, delivery.image_png if with_image else None)
        cached = self.cache.get(key)
        if cached is not None:
            return replace(cached, latency_s=time.perf_counter() - started, extras={**cached.extras, "cached": True})
        rating = self._ask(client, system, user, delivery, started)
        self.cache.put(key, rating)
        return rating

    def _ask(self, client: LLMClient, system: str, user, delivery: Delivery, started: float) -> Rating:
        s = self.settings
        causes: list[str] = []
        perception = perception_of(delivery, delivery.image_png is not None and client.accepts_images)
        told = told_text(system, user(perception == "image"))
        for attempt in range(s.llm_retries + 1):
            temperature = s.llm_temperature if attempt == 0 else max(s.llm_temperature, RETRY_TEMPERATURE)
            extras = {"attempts": attempt + 1, "temperature": temperature, "seed": s.llm_seed + attempt}
            try:
                with self._slots:
                    reply: Reply = client.chat(system, user, RATING_SCHEMA, name="rating", image_png=delivery.image_png,
                                               temperature=temperature, seed=s.llm_seed + attempt,
                                               max_tokens=reply_tokens(s), logprobs=True)
                perception = perception_of(delivery, reply.with_image)
                told = told_text(system, reply.user)
                extras.update(finish_reason=reply.finish_reason, request_hash=reply.request_hash[:16],
                              response_format=reply.response_format, prompt_tokens=reply.prompt_tokens,
                              completion_tokens=reply.completion_tokens)
                parsed = parse_reply(reply.data)
            except LLMError as e:
                causes.append(e.cause)
                if e.status in ("timeout", "error"):  # retrying a timeout or a refused request only costs more time
                    return self._fail(e.status, e.cause, started, client.model, perception, told, extras)
                if e.status == "unavailable" and attempt == s.llm_retries:
                    return self._fail("unavailable", e.cause, started, client.model, perception, told, extras)
                continue
            except ValueError as e:
                causes.append(f"invalid reply: {e}")
                continue
            extras.update(expected_score(reply.logprobs) or {})
            if causes:
                extras["failed_attempts"] = [c[:160] for c in causes]
            return Rating(score=parsed.score, reason=parsed.reason, status="ok", backend=self.backend,
                          model=client.model, latency_s=time.perf_counter() - started, perception=perception,
                          told=told, extras={"template_hash": self.template_hash, **extras})
        status = "unavailable" if causes and all("cannot reach" in c for c in causes) else "invalid"
        return self._fail(status, f"no valid rating after {s.llm_retries + 1} tries; last: {causes[-1]}",
                          started, client.model, perception, told,
                          {"attempts": s.llm_retries + 1, "failed_attempts": [c[:160] for c in causes]})

    def rate_many(self, pairs: list[tuple[Persona, Delivery]]) -> list[Rating]:
        """Ratings for many (persona, delivery) pairs, ``RLLI_LLM_CONCURRENCY`` at a time, in input order.

        Pairs are submitted grouped by delivery (the order the server's prompt cache likes best: one image's
        raters one after another share everything but the persona) and returned in input order."""
        if not pairs:
            return []
        order = sorted(range(len(pairs)), key=lambda i: (pairs[i][1].image_hash, pairs[i][1].prompt, i))
        with ThreadPoolExecutor(max_workers=min(self.settings.llm_concurrency, len(pairs))) as pool:
            done = dict(zip(order, pool.map(lambda i: self.rate(*pairs[i]), order)))
        return [done[i] for i in range(len(pairs))]
