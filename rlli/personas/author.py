"""The author: a persona writes the picture requests that it would send, fitting its personality and the backbone.

On the embedded model (backbone ``tiny``) the persona picks a scene from the embedded world's
vocabulary - every attribute an enum in the reply's JSON schema, so even a tiny model stays in the
world - and :func:`compose_caption` writes it in the world's own words. On any other backbone it
writes a short free-text prompt.

An invitation never waits for an LLM: :class:`AuthorPool` keeps a few requests per persona written in
the background (refilled when a persona runs low); :meth:`AuthorPool.take` returns one at once or
None, and :meth:`AuthorPool.take_or_compose` falls back to :func:`compose_from_preferences` (a
request composed from the persona's trait preferences without any LLM). ``Authored.written_by``
says which (``llm`` or ``composed``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rlli.config import Settings
from rlli.personas.judge import Persona
from rlli.personas.llm import LLMClient, LLMError, client_for
from rlli.personas.templates import author_messages

ANY = "any"
OPTIONAL = ("ground", "position", "time", "weather")  # may be left unsaid ("any")
WORLD_KEYS = ("object", "colour", "count", "ground", "position", "time", "weather", "warmth", "detail")
AUTHOR_TEMPERATURE = 0.9  # authors should differ between rounds; the seed keeps each round reproducible


@dataclass(frozen=True)
class Authored:
    persona: str
    prompt: str
    scene: dict[str, str]  # the attributes the persona chose (empty for free text)
    written_by: str = "llm"  # "llm" (the persona's LLM wrote it) or "composed" (from trait preferences, no LLM)


def has_world(settings: Settings) -> bool:
    """Whether the configured backbone has its own world (the embedded model). Only the embedded backbone can;
    other backbones are not loaded just to ask."""
    if settings.backbone != "tiny":
        return False
    from rlli.diffusion import get_backbone

    return get_backbone(settings).world is not None


def world_schema() -> dict:
    from rlli.diffusion.tiny import world

    props = {}
    for k in WORLD_KEYS:
        values = list(world.ATTRIBUTES[k]) + ([ANY] if k in OPTIONAL else [])
        props[k] = {"type": "string", "enum": values}
    return {"type": "object", "properties": props, "required": list(WORLD_KEYS), "additionalProperties": False}


FREE_SCHEMA = {"type": "object", "properties": {"prompt": {"type": "string", "minLength": 3, "maxLength": 200}},
               "required": ["prompt"], "additionalProperties": False}


def compose_caption(scene: dict[str, str], rng: np.random.Generator) -> str:
    """A prompt in the embedded world's words stating exactly the chosen attributes ('any' is left out)."""
    from rlli.diffusion.tiny import world

    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    singular, plural = pick(world.OBJECT_WORDS[scene["object"]])
    count_word = pick(world.COUNT_WORDS[scene["count"]])
    colour_word = pick(world.COLOUR_WORDS[scene["colour"]])
    if count_word == "a" and colour_word[0] in "aeiou":
        count_word = "an"
    parts = [f"{count_word} {colour_word} {singular if scene['count'] == 'one' else plural}"]
    for name, words in (("ground", world.GROUND_WORDS), ("position", world.POSITION_WORDS),
                        ("time", world.TIME_WORDS), ("weather", world.WEATHER_WORDS)):
        if scene.get(name, ANY) != ANY:
            parts.append(pick(words[scene[name]]))
    look = [pick(world.WARMTH_WORDS[scene["warmth"]])] if scene.get("warmth") in world.WARMTH_WORDS else []
    look += [pick(world.DETAIL_WORDS[scene["detail"]])] if scene.get("detail") in world.DETAIL_WORDS else []
    body = " ".join(parts)
    return f"a {' and '.join(look)} picture of {body}" if look else body


def check_scene(data) -> dict[str, str]:
    """The chosen scene, or ValueError naming the first bad key."""
    from rlli.diffusion.tiny import world

    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    scene = {}
    for k in WORLD_KEYS:
        v = str(data.get(k, ANY if k in OPTIONAL else "")).strip().lower()
        if v not in world.ATTRIBUTES[k] and not (k in OPTIONAL and v == ANY):
            raise ValueError(f"{k}: {v!r} is not one of {', '.join(world.ATTRIBUTES[k])}")
        scene[k] = v
    return scene


class Author:
    """Writes requests for personas through the configured LLM (the same endpoint as the LLM judge)."""

    def __init__(self, settings: Settings | None = None, client: LLMClient | None = None):
        self.settings = settings or Settings()
        self._client = client

    def client(self) -> LLMClient:
        if self._client is None:
            self._client = client_for(self.settings)
        return self._client

    @property
    def world(self) -> bool:
        """Whether the backbone has its own world (the embedded model): then prompts use its vocabulary."""
        return has_world(self.settings)

    def write(self, persona: Persona, seed: int = 0) -> Authored:
        """One request by ``persona``; raises :class:`LLMError` when no valid request came back after the retries."""
        from rlli.prompts import clean_prompt

        client = self.client()
        system, user = author_messages(persona, list(WORLD_KEYS) if self.world else None)
        schema = world_schema() if self.world else FREE_SCHEMA
        cause = ""
        for attempt in range(self.settings.llm_retries + 1):
            try:
                data, _ = client.chat_json(system, user, schema, name="request", temperature=AUTHOR_TEMPERATURE,
                                           seed=seed + 1000 * attempt, max_tokens=160)
            except LLMError as e:
                if e.status != "invalid":  # a dead or refusing endpoint: no point in asking again
                    raise
                cause = e.cause
                continue
            try:
                if self.world:
                    scene = check_scene(data)
                    rng = np.random.default_rng([seed, attempt, len(persona.name)])
                    return Authored(persona.name, compose_caption(scene, rng), scene)
                text = clean_prompt(data.get("prompt", "") if isinstance(data, dict) else "")
                if 3 <= len(text) <= self.settings.max_prompt_chars:
                    return Authored(persona.name, text, {})
                cause = f"prompt of {len(text)} characters"
            except ValueError as e:
                cause = str(e)
        raise LLMError("invalid", f"{persona.name} wrote no valid request after "
                                  f"{self.settings.llm_retries + 1} tries; last: {cause}")

    def write_round(self, personas: list[Persona], seed: int = 0) -> list[Authored]:
        """One request per persona (seeds ``seed + i``), in order; a failing persona raises :class:`LLMError`."""
        return [self.write(p, seed + i) for i, p in enumerate(personas)]


# ---------------------------------------------------------------------------------------- without an LLM

# Trait preferences for composing a request without an LLM (the directions of the parametric judge's
# look model: open people like colourful, unusual scenes; extraverts bright, busy ones with people;
# neurotic people calm ones; conscientious people state every part of the scene).
_UNUSUAL_COLOURS = ("purple", "orange")
_FREE_SUBJECTS = {"high": ("a purple lighthouse on a floating island", "a glass whale drifting over a city",
                           "an orange forest under two moons"),
                  "low": ("a red barn in a green field", "a white house by a quiet road", "a sailboat on a calm lake")}


def _weighted(rng: np.random.Generator, options: tuple[str, ...], weights: list[float]) -> str:
    w = np.asarray(weights, float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def compose_scene(persona: Persona, rng: np.random.Generator) -> dict[str, str]:
    """A world scene chosen from the persona's trait preferences (no LLM); traits weigh by their percentile."""
    from rlli.diffusion.tiny import world
    from rlli.personas.judge import TRAITS
    from rlli.personas.population import percentiles

    pct = percentiles(persona.traits)
    o, c, e, _a, n = (pct[t] / 100 for t in TRAITS)
    A = world.ATTRIBUTES
    scene = {
        "object": _weighted(rng, A["object"], [1 + (x == "person") * 2 * e + (x in ("house", "car")) * (1 - o)
                                              for x in A["object"]]),
        "colour": _weighted(rng, A["colour"], [1 + (x in _UNUSUAL_COLOURS) * 3 * o for x in A["colour"]]),
        "count": _weighted(rng, A["count"], [1 + (1 - e), 1, 1 + 2 * e]),
        "time": _weighted(rng, A["time"], [1 + 2 * e, 1 + o, 1 + (1 - e)]),
        "weather": _weighted(rng, A["weather"], [1 + 2 * n, 1 + o * (1 - n), 1 + o * (1 - n)]),
        "ground": str(rng.choice(A["ground"])),
        "position": str(rng.choice(A["position"])),
        "warmth": _weighted(rng, A["warmth"], [1 + (1 - o), 1 + e, 1 + o * (1 - e)]),
        "detail": _weighted(rng, A["detail"], [1, 1 + 3 * n, 1 + 3 * e]),
    }
    for k in OPTIONAL:  # the less conscientious leave more of the scene unsaid
        if rng.random() > 0.35 + 0.6 * c:
            scene[k] = ANY
    return scene


def compose_from_preferences(persona: Persona, seed: int = 0, world: bool = True) -> Authored:
    """A request composed from the persona's trait preferences, with no LLM (``written_by='composed'``)."""
    rng = np.random.default_rng([seed, sum(map(ord, persona.name))])
    if world:
        scene = compose_scene(persona, rng)
        return Authored(persona.name, compose_caption(scene, rng), scene, "composed")
    from rlli.personas.population import percentiles

    pct = percentiles(persona.traits)
    pool = _FREE_SUBJECTS["high" if pct["openness"] >= 60 else "low"]
    text = str(rng.choice(pool)) + (", lively and bright" if pct["extraversion"] >= 70 else "")
    return Authored(persona.name, text, {}, "composed")


# ---------------------------------------------------------------------------------------- the background pool

@dataclass
class _Shelf:
    persona: Persona
    items: deque = field(default_factory=deque)
    failures: int = 0
    last_error: str = ""
    next_seed: int = 0


class AuthorPool:
    """Requests written ahead per persona by a background thread, so that taking one never waits for an LLM.

    ``size`` requests are kept per persona, refilled as soon as one is taken. A persona
    whose author fails ``max_failures`` times in a row stops being refilled (``status()`` says why) until
    :meth:`take` asks for it again. Thread-safe; :meth:`close` stops the thread.
    """

    def __init__(self, author: Author, personas: list[Persona] = (), size: int = 3, seed: int = 0,
                 max_failures: int = 3):
        if size < 1:
            raise ValueError(f"the pool must keep at least one request per persona, not {size}")
        self.author, self.size, self.seed, self.max_failures = author, size, seed, max_failures
        self._shelves: dict[str, _Shelf] = {}
        self._wanted: deque[str] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._world: bool | None = None
        with self._cond:
            for p in personas:
                self._register(p)
        self._thread = threading.Thread(target=self._run, name="rlli-author-pool", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the visitor's side (never blocks on the LLM)

    def take(self, persona: Persona) -> Authored | None:
        """A request written ahead for ``persona``, or None at once when none is ready (a refill is scheduled)."""
        with self._cond:
            shelf = self._register(persona)
            got = shelf.items.popleft() if shelf.items else None
            if shelf.failures >= self.max_failures and not shelf.items:
                shelf.failures = 0  # asked again: try again
            self._want(shelf)
            return got

    def take_or_compose(self, persona: Persona, seed: int = 0) -> Authored:
        """A request from the pool, else one composed from the persona's preferences (no LLM)."""
        got = self.take(persona)
        if got is not None:
            return got
        return compose_from_preferences(persona, seed, world=self._has_world())

    def levels(self) -> dict[str, int]:
        with self._cond:
            return {name: len(s.items) for name, s in self._shelves.items()}

    def status(self) -> dict[str, dict]:
        with self._cond:
            return {name: {"ready": len(s.items), "failures": s.failures, "last_error": s.last_error}
                    for name, s in self._shelves.items()}

    def wait_filled(self, names: list[str] | None = None, timeout: float | None = None) -> bool:
        """Wait until every named persona (default: all) holds ``size`` requests or has given up; True when full."""
        def done() -> bool:
            shelves = [self._shelves[n] for n in (names or list(self._shelves)) if n in self._shelves]
            return self._closed or all(len(s.items) >= self.size or s.failures >= self.max_failures for s in shelves)

        with self._cond:
            self._cond.wait_for(done, timeout)
            shelves = [self._shelves[n] for n in (names or list(self._shelves)) if n in self._shelves]
            return all(len(s.items) >= self.size for s in shelves)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ the background side

    def _has_world(self) -> bool:
        if self._world is None:
            self._world = has_world(self.author.settings)
        return self._world

    def _register(self, persona: Persona) -> _Shelf:
        shelf = self._shelves.get(persona.name)
        if shelf is None:
            shelf = self._shelves[persona.name] = _Shelf(persona, next_seed=self.seed)
            self._want(shelf)
        return shelf

    def _want(self, shelf: _Shelf) -> None:
        name = shelf.persona.name
        if len(shelf.items) < self.size:
            if name not in self._wanted and shelf.failures < self.max_failures:
                self._wanted.append(name)
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._wanted))
                if self._closed:
                    return
                shelf = self._shelves[self._wanted.popleft()]
                seed = shelf.next_seed
                shelf.next_seed += 1
            try:
                written = self.author.write(shelf.persona, seed)
                error = ""
            except LLMError as e:
                written, error = None, f"{e.status}: {e.cause}"
            except Exception as e:  # noqa: BLE001 - the pool must outlive any one failure; the cause is kept
                written, error = None, f"{type(e).__name__}: {e}"
            with self._cond:
                if written is not None:
                    shelf.items.append(written)
                    shelf.failures = 0
                else:
                    shelf.failures += 1
                    shelf.last_error = error[:300]
                if len(shelf.items) < self.size and shelf.failures < self.max_failures:
                    if shelf.persona.name not in self._wanted:
                        self._wanted.append(shelf.persona.name)
                self._cond.notify_all()
