"""The Ten-Item Personality Inventory (Gosling, Rentfrow & Swann 2003): ten answers 1..7 -> Big Five in [0, 1].

Items come from ``personas/tipi.toml``. Items 2, 4, 6, 8 and 10 are the TIPI's reverse-keyed items
(scored 8 - answer for their scale). A scale is the mean of its two items; neuroticism is the
reverse of the TIPI's emotional stability; every score maps to [0, 1] by (score - 1) / 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rlli.personas.judge import TRAITS, BigFive, Persona
from rlli.personas.presets import read_toml

N_ITEMS = 10
LOW, HIGH = 1, 7


class TipiError(ValueError):
    """Answers that are not ten whole numbers from 1 to 7."""


@dataclass(frozen=True)
class TipiItem:
    number: int  # 1..10
    text: str
    trait: str  # the Big-Five trait it scores (neuroticism for the two emotional-stability items)
    reverse: bool  # reverse-keyed for ``trait``


@dataclass(frozen=True)
class Questionnaire:
    stem: str
    scale: tuple[str, ...]
    items: tuple[TipiItem, ...]


@lru_cache(maxsize=1)
def questionnaire() -> Questionnaire:
    data = read_toml("tipi.toml")
    items = tuple(TipiItem(i + 1, r["text"], r["trait"], bool(r["reverse"])) for i, r in enumerate(data["item"]))
    if len(items) != N_ITEMS or {it.trait for it in items} != set(TRAITS):
        raise TipiError("tipi.toml must list ten items, two per Big-Five trait")
    return Questionnaire(data["stem"], tuple(data["scale"]), items)


def check_answers(answers) -> list[int]:
    """Ten whole numbers 1..7 (ints, or strings/floats that are whole numbers), or :class:`TipiError`."""
    try:
        values = list(answers)
    except TypeError:
        raise TipiError("the TIPI takes a list of ten answers") from None
    if len(values) != N_ITEMS:
        raise TipiError(f"the TIPI has {N_ITEMS} items; got {len(values)} answers")
    out = []
    for i, v in enumerate(values, 1):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TipiError(f"answer {i} is not a number: {v!r}") from None
        if isinstance(v, bool) or not f.is_integer() or not LOW <= f <= HIGH:
            raise TipiError(f"answer {i} must be a whole number from {LOW} to {HIGH}; got {v!r}")
        out.append(int(f))
    return out


def scale_scores(answers) -> dict[str, float]:
    """TIPI scale scores on the 1..7 scale, keyed by trait (neuroticism = 8 - emotional stability)."""
    values = check_answers(answers)
    keyed: dict[str, list[int]] = {t: [] for t in TRAITS}
    for item, v in zip(questionnaire().items, values):
        keyed[item.trait].append(LOW + HIGH - v if item.reverse else v)
    return {t: sum(vs) / len(vs) for t, vs in keyed.items()}


def score(answers) -> BigFive:
    """Big Five in [0, 1] from ten TIPI answers (1..7, in item order)."""
    return BigFive(**{t: (s - LOW) / (HIGH - LOW) for t, s in scale_scores(answers).items()})


def ideal_answers(traits: BigFive) -> list[int]:
    """The answers a respondent with exactly these traits gives (each item at its trait's level, rounded)."""
    out = []
    for item in questionnaire().items:
        level = LOW + (HIGH - LOW) * getattr(traits, item.trait)
        out.append(int(round(LOW + HIGH - level if item.reverse else level)))
    return out


def persona_from_tipi(answers, name: str = "you", description: str = "") -> Persona:
    """A person's own profile from their TIPI answers (instrument 'tipi'), to be rated as."""
    return Persona(name=name, traits=score(answers), description=description or "a person who took the TIPI",
                   instrument="tipi")
