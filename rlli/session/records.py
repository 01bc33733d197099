"""The session layer's records: a visitor, a request into a round, what it delivered, a finished round."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from rlli.personas.judge import BigFive, Persona, Rating
from rlli.service import RequestResult, RoundGroup, RoundReport
from rlli.session.admission import StudioError


@dataclass(frozen=True)
class Visitor:
    """One browser: an anonymous token kept in the browser (or a Hugging Face login), and its profile."""

    key: str
    traits: BigFive | None = None
    instrument: str = ""  # "tipi" when the questionnaire was taken

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not 8 <= len(self.key) <= 200:
            raise StudioError("This browser has no valid visitor id; reload the page.")


def new_visitor_key() -> str:
    return "browser:" + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Ask:
    """One request into a round: a person's prompt, or a persona's."""

    prompt: str
    seed: int
    visitor: Visitor | None = None
    persona: Persona | None = None
    written_by: str = ""  # a persona's prompt: how it was written (the LLM author, ...)

    @property
    def who(self) -> str:
        return self.persona.name if self.persona else "you"

    @property
    def traits(self) -> BigFive:
        if self.persona is not None:
            return self.persona.traits
        return self.visitor.traits if self.visitor and self.visitor.traits else BigFive()


@dataclass(frozen=True)
class Delivered:
    """What one request got, as the page shows it: the round's record of it, plus who and where it is stored."""

    round_no: int
    generation_id: int
    who: str
    result: RequestResult
    group: RoundGroup
    anchor_prompt: str
    steps: int
    policy: str
    notices: tuple[str, ...] = ()
    written_by: str = ""  # a persona's prompt: how it was written (the LLM, or composed without one)

    @property
    def prompt(self) -> str:
        return self.result.prompt

    @property
    def image(self) -> np.ndarray:
        return self.result.image

    @property
    def fork_step(self) -> int:
        return self.result.fork_step

    @property
    def own_steps(self) -> int:
        return self.steps - self.result.fork_step

    @property
    def is_anchor(self) -> bool:
        return self.result.is_anchor


@dataclass(frozen=True)
class RoundView:
    """A finished round for the System tab."""

    number: int
    finished: float
    who: tuple[str, ...]
    report: RoundReport
    deliveries: tuple[Delivered, ...]


@dataclass(frozen=True)
class AgentScore:
    persona: str
    as_you: bool
    rating: Rating
