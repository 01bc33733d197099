"""Plain records that go into the store and come out of it (no ORM objects leave :mod:`rlli.store`).

The service maps its round (engine outputs, the policy's allocation, the judges' ratings) onto these;
every record checks its own values on construction, so bad input fails before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from rlli.store.models import TRAIT_COLUMNS

Kind = Literal["human", "agent"]
STATUSES: tuple[str, ...] = ("ok", "invalid", "timeout", "unavailable", "error", "pending")
RETRYABLE: tuple[str, ...] = ("unavailable", "pending")  # placeholders: the next try (rejudge) replaces them
MAX_TEXT = 4000  # prompts, reasons, descriptions: longer text is refused
MAX_TOLD = 16000  # what an agent was told: instructions, the delivery and the persona
PERCEPTIONS: tuple[str, ...] = ("image", "probe-text", "image-features", "none")  # as rlli.personas.judge
ENGINE_EXTRAS = ("image_source", "noise_seed", "anchor_request_id")  # engine Output fields kept in extras


def clean_text(value: str, what: str, limit: int = MAX_TEXT) -> str:
    """Text as stored: NUL characters dropped (PostgreSQL refuses them), at most ``limit`` characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    value = value.replace("\x00", "")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long; at most {limit} are stored")
    return value


def check_traits(traits: Sequence[float] | None) -> tuple[float, ...] | None:
    if traits is None:
        return None
    if hasattr(traits, "as_tuple"):  # rlli.personas.BigFive
        traits = traits.as_tuple()
    values = tuple(float(v) for v in traits)
    if len(values) != len(TRAIT_COLUMNS):
        raise ValueError(f"expected {len(TRAIT_COLUMNS)} Big-Five values ({', '.join(TRAIT_COLUMNS)}), got {len(values)}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"Big-Five values must be in [0, 1], got {values}")
    return values


@dataclass(frozen=True)
class ParticipantRecord:
    """Who requests or rates. ``key`` (a browser token, an account name, a persona's identity) is only hashed
    with the store's secret salt into the participant id; it is never stored."""

    kind: Kind
    key: str
    name: str = ""  # a persona's name for agents; leave empty for people
    traits: tuple[float, ...] | None = None  # Big-Five in [0, 1], TRAIT_COLUMNS order
    instrument: str = ""  # where the traits came from: tipi, preset, sampled, own-profile ...
    description: str = ""
    backend: str = ""  # agents: the judge backend ("llm", "trait")
    model: str = ""  # agents: the judge's model
    mirrors: str | None = None  # agents given a person's own Big-Five: that person's participant id

    def __post_init__(self) -> None:
        if self.kind not in ("human", "agent"):
            raise ValueError(f"participant kind must be 'human' or 'agent', got {self.kind!r}")
        if not isinstance(self.key, str) or not self.key.strip():
            raise ValueError("a participant needs a non-empty key to hash into its id")
        object.__setattr__(self, "traits", check_traits(self.traits))
        object.__setattr__(self, "name", clean_text(self.name, "name", 120))
        object.__setattr__(self, "description", clean_text(self.description, "description"))
        if self.kind == "human" and (self.backend or self.model or self.mirrors):
            raise ValueError("backend, model and mirrors describe agents, not people")

    @classmethod
    def agent(cls, name: str, traits, backend: str, model: str, *, mirrors: str | None = None,
              instrument: str = "preset", description: str = "") -> ParticipantRecord:
        """A judge playing a persona: one participant per (persona name, traits, backend, model); an agent given a
        person's own profile is one per (person, traits, backend, model) whatever it is called, so the app's live
        agent and ``rejudge`` are the same rater and never rate one image twice."""
        traits = check_traits(traits)
        key = f"mirror|{mirrors}|{traits}|{backend}|{model}" if mirrors else f"{name}|{traits}|{backend}|{model}|"
        return cls("agent", key, name=name, traits=traits, instrument=instrument, description=description,
                   backend=backend, model=model, mirrors=mirrors)


@dataclass(frozen=True)
class RequestRecord:
    prompt: str
    seed: int
    participant_id: str | None = None
    request_key: str = ""  # the engine's request id

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", clean_text(self.prompt, "prompt"))
        if not isinstance(self.seed, int | np.integer) or not 0 <= int(self.seed) < 2**31:
            raise ValueError(f"seed must be a whole number in [0, 2^31), got {self.seed!r}")


@dataclass(frozen=True)
class GroupRecord:
    members: tuple[int, ...]  # positions of the round's requests
    anchor: int  # one of members
    shared_steps: int
    similarity: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(int(m) for m in self.members))
        object.__setattr__(self, "similarity", tuple(float(s) for s in self.similarity))
        if not self.members or self.anchor not in self.members:
            raise ValueError(f"a group needs members and an anchor among them, got {self.members} / {self.anchor}")
        if self.shared_steps < 0:
            raise ValueError(f"shared_steps must be >= 0, got {self.shared_steps}")


@dataclass(frozen=True)
class GenerationRecord:
    """What one request got. ``image``: uint8 array (H, W, 3|4) or PNG bytes. Policy parts stay None until known."""

    request: int  # position in the round's requests
    group: int  # position in the round's groups
    image: np.ndarray | bytes
    shared_steps: int
    own_steps: int
    handoff_bytes: int = 0
    description: str = ""  # what a text-only judge is told the image shows
    fidelity: float | None = None
    quality: float | None = None
    bandwidth_share: float | None = None
    compute_share: float | None = None
    delay_s: float | None = None
    delays: dict[str, float] = field(default_factory=dict)  # e.g. transmit, server, device
    energy_j: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "description", clean_text(self.description, "description"))
        if self.shared_steps < 0 or self.own_steps < 0 or self.handoff_bytes < 0:
            raise ValueError("steps and hand-off bytes must be >= 0")
        for name in ("fidelity", "quality", "bandwidth_share", "compute_share", "delay_s", "energy_j"):
            v = getattr(self, name)
            if v is not None and not np.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number or None, got {v!r}")


@dataclass(frozen=True)
class RoundRecord:
    seed: int
    requests: Sequence[RequestRecord]
    groups: Sequence[GroupRecord]
    generations: Sequence[GenerationRecord]
    policy: str = ""
    backbone: str = ""
    steps: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.requests)
        if n == 0:
            raise ValueError("a round needs at least one request")
        seen: set[int] = set()
        for g in self.groups:
            if any(not 0 <= m < n for m in g.members) or seen & set(g.members):
                raise ValueError(f"group members {g.members} must be distinct request positions in [0, {n})")
            seen |= set(g.members)
        gen_requests = [g.request for g in self.generations]
        if len(set(gen_requests)) != len(gen_requests):
            raise ValueError("at most one generation per request")
        for g in self.generations:
            if not 0 <= g.request < n or not 0 <= g.group < len(self.groups):
                raise ValueError(f"generation refers to request {g.request} / group {g.group}, which the round lacks")
            if g.request not in self.groups[g.group].members:
                raise ValueError(f"request {g.request} is not a member of group {g.group}")

    @classmethod
    def from_engine(cls, outputs: Sequence[Any], groups: Sequence[Any], seed: int, *,
                    participants: Sequence[str | None] | None = None, similarity: Sequence[Sequence[float]] = (),
                    extras: Sequence[dict[str, Any]] | None = None, **round_fields: Any) -> RoundRecord:
        """From the engine's outputs (prompt, seed, group, shared_steps, own_steps, handoff_bytes, image) and its
        group plans (members, anchor, shared_steps). ``extras[i]`` adds GenerationRecord fields for output i
        (fidelity, quality, allocation, delays, energy, description)."""
        participants = participants or [None] * len(outputs)
        requests = [RequestRecord(o.prompt, int(o.seed), p, str(getattr(o, "request_id", "")))
                    for o, p in zip(outputs, participants)]
        group_recs = [GroupRecord(tuple(g.members), g.anchor, g.shared_steps,
                                  tuple(similarity[i]) if i < len(similarity) else ())
                      for i, g in enumerate(groups)]
        gens = []
        for i, o in enumerate(outputs):
            fields = dict(extras[i]) if extras else {}
            engine_bits = {k: getattr(o, k) for k in ENGINE_EXTRAS if hasattr(o, k)}
            fields["extras"] = {**engine_bits, **fields.get("extras", {})}
            gens.append(GenerationRecord(i, o.group, o.image, o.shared_steps, o.own_steps, o.handoff_bytes, **fields))
        return cls(seed, requests, group_recs, gens, **round_fields)


@dataclass(frozen=True)
class RoundIds:
    round_id: int
    request_ids: list[int]
    group_ids: list[int]
    generation_ids: list[int]  # in the order of RoundRecord.generations
    image_hashes: list[str]


@dataclass(frozen=True)
class RatingRecord:
    rater_id: str
    generation_id: int
    score: int | None
    reason: str = ""
    status: str = "ok"
    backend: str = "human"
    model: str = ""
    latency_s: float = 0.0
    perception: str = "image"  # what the rater saw (a person: the image; an agent: see rlli.personas.judge)
    told: str = ""  # an agent: the exact text it was given
    extras: dict = field(default_factory=dict)  # an agent: attempts, temperature, finish reason, hashes ...

    def __post_init__(self) -> None:
        if self.perception not in PERCEPTIONS:
            raise ValueError(f"perception must be one of {', '.join(PERCEPTIONS)}, got {self.perception!r}")
        object.__setattr__(self, "told", clean_text(self.told, "told", MAX_TOLD))
        if not isinstance(self.extras, dict):
            raise ValueError("extras must be a JSON object")
        if self.score is not None:
            if isinstance(self.score, bool) or not isinstance(self.score, int | np.integer):
                raise ValueError(f"score must be a whole number 1..10 or None, got {self.score!r}")
            object.__setattr__(self, "score", int(self.score))
            if not 1 <= self.score <= 10:
                raise ValueError(f"score must be 1..10 or None, got {self.score}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if (self.score is None) == (self.status == "ok"):
            raise ValueError(f"status {self.status!r} does not match score {self.score!r}")
        object.__setattr__(self, "reason", clean_text(self.reason, "reason"))
        if not self.backend:
            raise ValueError("backend must name who rated: 'human', 'llm', 'trait', ...")
        if not np.isfinite(self.latency_s) or self.latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {self.latency_s}")

    @classmethod
    def from_rating(cls, rater_id: str, generation_id: int, rating: Any) -> RatingRecord:
        """From a judge's :class:`rlli.personas.judge.Rating`."""
        return cls(rater_id, generation_id, rating.score, rating.reason, rating.status, rating.backend,
                   rating.model, float(rating.latency_s), getattr(rating, "perception", "none"),
                   getattr(rating, "told", ""), dict(getattr(rating, "extras", {}) or {}))


@dataclass(frozen=True)
class StoredRating:
    id: int
    rater_id: str
    generation_id: int
    score: int | None
    reason: str
    status: str
    backend: str
    model: str
    latency_s: float
    created_at: datetime
    prompt: str
    image_sha256: str
    perception: str = "image"
    told: str = ""
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StoredGeneration:
    id: int
    round_id: int
    prompt: str
    seed: int
    image_sha256: str
    description: str
    quality: float | None
    delay_s: float | None
    fidelity: float | None
    requester_id: str | None
