"""The author: a persona writes the picture requests that it would send, fitting its personality and the backbone.

On the embedded model (backbone ``tiny``) the persona picks a scene from the embedded world's
vocabulary - every attribute an enum in the reply's JSON schema, so even a tiny model stays in the
world - and :func:`compose_caption` writes it in the world's own words. On any other backbone it
writes a short free-text prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        from rlli.diffusion import get_backbone

        return get_backbone(self.settings).world is not None

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
