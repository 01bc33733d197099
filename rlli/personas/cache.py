"""A bounded, thread-safe in-memory cache of successful ratings, keyed by persona, image and context."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from rlli.personas.judge import Delivery, Persona, Rating


def image_key(delivery: Delivery) -> str:
    """The delivery's image hash, else the SHA-256 of its PNG bytes, else '' (no image)."""
    if delivery.image_hash:
        return delivery.image_hash
    return hashlib.sha256(delivery.image_png).hexdigest() if delivery.image_png else ""


def rating_key(persona: Persona, delivery: Delivery, context: dict) -> str:
    """SHA-256 over the persona (name, traits, description), the image hash and everything else the judge saw.

    ``context`` holds what the judge adds (endpoint, model, template version, temperature, seed, ...).
    Quality and delay are rounded to what the messages show (whole percent, tenth of a second).
    """
    payload = {
        "persona": [persona.name, persona.traits.as_tuple(), persona.description, persona.instrument],
        "image": image_key(delivery),
        "prompt": delivery.prompt,
        "description": delivery.description,
        "quality": round(100 * float(delivery.quality)),
        "delay": round(float(delivery.delay_s), 1),
        "context": context,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class RatingCache:
    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[str, Rating] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Rating | None:
        with self._lock:
            r = self._data.get(key)
            if r is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return r

    def put(self, key: str, rating: Rating) -> None:
        """Keep ``rating`` if it succeeded; failures are never cached (the next call tries again)."""
        if self.size <= 0 or rating.status != "ok":
            return
        with self._lock:
            self._data[key] = rating
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
