"""The persona agents' messages, filled from ``personas/templates.toml``.

The user's prompt is data: :func:`quote_request` joins its words with ``^`` (datamarking) and turns it
into one JSON string literal with quotes, backslashes, newlines, control characters and angle
brackets escaped, so it can neither leave its ``<request>`` tags nor start a line of its own
("SYSTEM: ..."), and no stretch of it reads like an instruction.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from string import Template

from rlli.personas.judge import TRAITS, Delivery, Persona
from rlli.personas.presets import read_toml, title_of

MAX_REQUEST_CHARS = 1000  # longer prompts are cut (and marked) before they reach a model
DATAMARK = "^"  # joins the words of the user's prompt, so that no part of it reads as an instruction
MAX_REASON_CHARS = 120  # the judge's reason: short enough that the reply's JSON closes inside its token budget


@lru_cache(maxsize=1)
def templates() -> dict:
    return read_toml("templates.toml")


def version() -> str:
    return str(templates().get("version", "v0"))


def template_hash(section: str) -> str:
    """A short hash (12 hex digits) of one template section's text, recorded with every rating it produced."""
    t = templates()[section]
    text = json.dumps({"section": section, "templates": t, "traits": templates()["traits"],
                       "levels": templates()["levels"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trait_phrase(persona: Persona, norm_set: str = "") -> str:
    """'very inquisitive and inventive, somewhat solitary and shy' from where each trait sits among people.

    A level is phrased from its percentile under the norms (``personas/norms.toml``), not from its place
    on the scale: typical levels (30th to 70th percentile) are left out, and a persona typical on all five
    is 'typical in every way'.
    """
    from rlli.personas.population import percentile

    t = templates()
    bounds, words = t["levels"]["percentile_bounds"], t["levels"]["words"]
    parts = []
    for name in TRAITS:
        pct = percentile(name, getattr(persona.traits, name), norm_set)
        i = next(i for i, b in enumerate(bounds) if pct < b)
        if not words[i]:
            continue
        parts.append(f"{words[i]} {t['traits'][name]['high' if pct >= 50 else 'low']}")
    return ", ".join(parts) or "typical in every way"


def persona_block(persona: Persona) -> dict[str, str]:
    desc = persona.description.strip() or "You are an ordinary user of the service."
    title = "someone" if persona.instrument == "sampled" else title_of(persona)
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

    The system message holds only what every rating shares; the user message gives the delivery, then the
    persona, last. ``naive`` pastes the prompt raw with no warning and the persona first (the injection
    benchmark's baseline, never used to rate).
    """
    t = templates()["judge_naive" if naive else "judge"]
    fields = {**persona_block(persona), "reason_chars": str(MAX_REASON_CHARS),
              "request": delivery.prompt if naive else quote_request(delivery.prompt), "delivered": delivered,
              "quality": f"{100 * max(0.0, min(1.0, float(delivery.quality))):.0f}",
              "delay": f"{float(delivery.delay_s):.1f}"}
    return Template(t["system"]).substitute(fields), Template(t["user"]).substitute(fields)


def told_text(system: str, user: str) -> str:
    """What an LLM judge was told, as one text: the system message, a blank line, the user message."""
    return f"{system}\n\n{user}"


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
