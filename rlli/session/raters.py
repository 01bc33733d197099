"""Who rates a delivery: one rule for live rounds and for ``rejudge``.

- A persona's own image is rated by that persona.
- A person's image is rated by an agent given that person's own Big-Five (the *mirror*, named
  :data:`MIRROR_NAME`, when the person took the questionnaire) and by every preset persona.

The store keys a mirror agent by the person it mirrors, the traits, the backend and the model, whatever its
name, so a live round's mirror and ``rejudge``'s are the same rater and never rate one image twice. A rating
that could not be had (judge ``unavailable``, or ``pending`` when the app stopped) is a placeholder: the next
try replaces it (:data:`rlli.store.records.RETRYABLE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlli.personas.judge import BigFive, Persona
from rlli.store.records import ParticipantRecord

MIRROR_NAME = "you (agent)"
MIRROR_INSTRUMENT = "own-profile"
MIRROR_DESCRIPTION = "an agent given this person's own Big-Five scores"


@dataclass(frozen=True)
class Rater:
    persona: Persona
    mirrors: str | None = None  # the participant id of the person this agent is given the profile of

    @property
    def as_you(self) -> bool:
        return self.mirrors is not None

    def record(self, backend: str, model: str) -> ParticipantRecord:
        """The agent as a store participant (one per persona, traits, backend and model; a mirror per person)."""
        p = self.persona
        return ParticipantRecord.agent(p.name, p.traits.as_tuple(), backend, model, mirrors=self.mirrors,
                                       instrument=p.instrument, description=p.description)


def mirror(person_id: str, traits: BigFive) -> Rater:
    return Rater(Persona(MIRROR_NAME, traits, MIRROR_DESCRIPTION, instrument=MIRROR_INSTRUMENT), person_id)


def raters_for(presets: Sequence[Persona], *, persona: Persona | None = None,
               people: Sequence[tuple[str, BigFive | None]] = (),
               controls: Sequence[tuple[str, BigFive]] = ()) -> list[Rater]:
    """The raters of one delivery: ``persona`` alone for a persona's own image; otherwise a mirror for each of
    ``people`` (participant id, Big-Five or None when they skipped the questionnaire) who has a profile, then
    every preset, then the shuffled-profile ``controls``: mirrors of *other* people (their id and traits) rating
    this image, which separates "the agent predicts this person" from "the agent predicts this image"."""
    if persona is not None:
        return [Rater(persona)]
    out = [mirror(pid, traits) for pid, traits in people if traits is not None]
    mine = {r.mirrors for r in out}
    return out + [Rater(p) for p in presets] + [mirror(pid, t) for pid, t in controls if pid not in mine]


__all__ = ["MIRROR_NAME", "Rater", "mirror", "raters_for"]
