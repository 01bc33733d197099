"""The persona agents' messages, filled from ``personas/templates.toml``.

The user's prompt is data: :func:`quote_request` joins its words with ``^`` (datamarking) and turns it
into one JSON string literal with quotes, backslashes, newlines, control characters and angle
brackets escaped, so it can neither leave its ``<request>`` tags nor start a line of its own
("SYSTEM: ..."), and no stretch of it reads like an instruction.
"""

from __future__ import annotations

import json
from functools import lru_cache
from string import Template

from rlli.personas.judge import TRAITS, Delivery, Persona
from rlli.personas.presets import read_toml, title_of

MAX_REQUEST_CHARS = 1000  # longer prompts are cut (and marked) before they reach a model
DATAMARK = "^"  # joins the words of the user's prompt, so that no part of it reads as an instruction


@lru_cache(maxsize=1)
def templates() -> dict:
    return read_toml("templates.toml")


def version() -> str:
    return str(templates().get("version", "v0"))


def trait_phrase(persona: Persona) -> str:
    """'very curious and imaginative, somewhat reserved and quiet' from the trait levels.

    Traits near the average (0.4 to 0.6) are left out; a persona average on all five is 'average in every way'.
    """
    t = templates()
    bounds, words = t["levels"]["bounds"], t["levels"]["words"]
    parts = []
    for name in TRAITS:
        v = getattr(persona.traits, name)
        if 0.4 <= v < 0.6:
            continue
        word = next(w for b, w in zip(bounds, words) if v < b)
        parts.append(f"{word} {t['traits'][name]['high' if v >= 0.5 else 'low']}".strip())
    return ", ".join(parts) or "average in every way"


def persona_block(persona: Persona) -> dict[str, str]:
    desc = persona.description.strip() or "You are an ordinary user of the service."
    title = title_of(persona)
    title = title[0].lower() + title[1:] if title.startswith("The ") else title
    return {"title": title, "traits": trait_phrase(persona), "description": desc}


def quote_request(prompt: str) -> str:
    """The prompt as data: its words joined by ``^`` (datamarking, after Hines et al. 2024, "Defending against
    indirect prompt injection attacks with spotlighting"), as one JSON string literal with quotes, newlines
    and angle brackets escaped, cut to MAX_REQUEST_CHARS."""
    text = prompt if len(prompt) <= MAX_REQUEST_CHARS else prompt[:MAX_REQUEST_CHARS] + " [cut]"
    marked = DATAMARK.join(text.split())
    return json.dumps(marked, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def judge_messages(persona: Persona, delivery: Delivery, delivered: str, naive: bool = False) -> tuple[str, str]:
    """(system, user) text of a rating request; ``delivered`` is the description or 'the attached image'.

    ``naive`` pastes the prompt raw with no warning (the injection benchmark's baseline, never used to rate).
    """
    t = templates()["judge_naive" if naive else "judge"]
    system = Template(t["system"]).substitute(persona_block(persona))
    user = Template(t["user"]).substitute(
        request=delivery.prompt if naive else quote_request(delivery.prompt), delivered=delivered,
        quality=f"{100 * max(0.0, min(1.0, float(delivery.quality))):.0f}", delay=f"{float(delivery.delay_s):.1f}")
    return system, user


def tipi_messages(persona: Persona) -> tuple[str, str]:
    from rlli.personas.tipi import questionnaire

    q = questionnaire()
    t = templates()["tipi"]
    items = "\n".join(f"{it.number}. {it.text}" for it in q.items)
    return (Template(t["system"]).substitute(persona_block(persona)),
            Template(t["user"]).substitute(stem=q.stem, items=items))


def author_messages(persona: Persona, world_keys: list[str] | None) -> tuple[str, str]:
    """Messages asking the persona for a picture request: a world scene (keys given) or free text."""
    t = templates()
    system = Template(t["tipi"]["system"]).substitute(persona_block(persona))
    if world_keys:
        return system, Template(t["author"]["world_user"]).substitute(keys=", ".join(world_keys))
    return system, t["author"]["free_user"]
