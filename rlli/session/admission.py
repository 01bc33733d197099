"""Admission: what a request must pass before it joins a round.

The raw size is checked before any cleaning (a huge paste costs nothing), then the prompt is cleaned
(:func:`rlli.prompts.clean_prompt`) and checked; each network address may send at most
``RLLI_RATE_LIMIT_PER_MIN`` image requests a minute (addresses are kept only hashed, in memory). The batching
window itself belongs to the backend (:mod:`rlli.serve.backend`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque

from rlli.config import Settings
from rlli.prompts import PromptError, clean_prompt, parse_prompts
from rlli.service import check_seed

MAX_RAW_PROMPT = 2000  # characters accepted from the page before any cleaning (the cleaned limit is a setting)


class StudioError(ValueError):
    """A problem the visitor can fix or should know about; the message is shown as it is (escaped)."""


def check_prompt(raw, settings: Settings) -> str:
    """One prompt from the page: the raw size checked before any cleaning, then cleaned and checked."""
    if not isinstance(raw, str):
        raise StudioError("The prompt must be text.")
    if len(raw) > MAX_RAW_PROMPT:
        raise StudioError(f"The prompt has {len(raw)} characters; the limit is {settings.max_prompt_chars}.")
    text = clean_prompt(raw)
    if not text:
        raise StudioError("Enter a prompt: a short description of the picture you want.")
    if len(text) > settings.max_prompt_chars:
        raise StudioError(f"The prompt has {len(text)} characters; the limit is {settings.max_prompt_chars}.")
    return text


def check_pasted(text, seed, settings: Settings) -> tuple[list[str], int]:
    """Prompts pasted one per line (the Shared round tab) and the round's first seed (request i uses seed + i)."""
    try:
        prompts = parse_prompts(text, settings.max_prompts, settings.max_prompt_chars)
        return prompts, check_seed(seed, len(prompts))
    except PromptError as e:
        raise StudioError(str(e)) from None


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds for each key (0 = no limit); keys are hashed addresses."""

    def __init__(self, limit: int, window_s: float = 60.0, clock=time.monotonic):
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str | None) -> bool:
        if not self.limit or not address:
            return True
        key = hashlib.sha256(address.encode()).hexdigest()  # raw addresses are not kept, even in memory
        now = self._clock()
        with self._lock:
            q = self._events.setdefault(key, deque())
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True

    def check(self, address: str | None) -> None:
        if not self.allow(address):
            raise StudioError(f"Too many requests from your network address: at most {self.limit} a minute. "
                              "Please wait a moment.")


__all__ = ["MAX_RAW_PROMPT", "RateLimiter", "StudioError", "check_pasted", "check_prompt"]
