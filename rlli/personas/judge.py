"""The judge protocol: (persona, what was delivered) -> a QoE rating 1..10 with a reason.

Every judge - the parametric trait judge the policy trains on, the LLM judges that role-play a
persona through an OpenAI-compatible endpoint - takes the same inputs and returns the same
:class:`Rating`. A judge that cannot produce a valid score returns ``score=None`` with a status
and the cause; it never invents a score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

TRAITS: tuple[str, ...] = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")

Status = Literal["ok", "invalid", "timeout", "unavailable", "error"]

# What a judge perceived of the image it rated:
#   image           the endpoint received the pixels (a vision-language model)
#   probe-text      a text account of the image read by the embedded world's attribute probe (with confidences)
#   image-features  numbers computed from the pixels (the parametric judge's colourfulness and brightness)
#   none            nothing of the image: the judge rated the request, the quality number and the wait only
PERCEPTIONS: tuple[str, ...] = ("image", "probe-text", "image-features", "none")


@dataclass(frozen=True)
class BigFive:
    """Big-Five trait levels, each in [0, 1]: the position on the questionnaire's scale (TIPI 1..7 -> (x - 1) / 6).

    0.5 is the middle of the scale, not the population average: under the shipped norms the average
    person sits at 0.73 (openness), 0.73 (conscientiousness), 0.57 (extraversion), 0.70 (agreeableness)
    and 0.36 (neuroticism); :func:`rlli.personas.population.percentile` places a level among people.
    """

    openness: float = 0.5
    conscientiousness: float = 0.5
    extraversion: float = 0.5
    agreeableness: float = 0.5
    neuroticism: float = 0.5

    def __post_init__(self) -> None:
        for t in TRAITS:
            v = getattr(self, t)
            if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{t} must be a number in [0, 1], got {v!r}")

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, t)) for t in TRAITS)

    @classmethod
    def from_sequence(cls, values) -> BigFive:
        values = [float(v) for v in values]
        if len(values) != len(TRAITS):
            raise ValueError(f"expected {len(TRAITS)} trait values ({', '.join(TRAITS)}), got {len(values)}")
        return cls(*values)


@dataclass(frozen=True)
class Persona:
    """Who rates: a preset persona or a person's own profile (name 'you', instrument 'tipi')."""

    name: str
    traits: BigFive
    description: str = ""
    instrument: str = "preset"  # where the traits came from: preset, tipi, sampled, ...


@dataclass(frozen=True)
class Delivery:
    """What the service delivered to one user, as a judge may see it.

    ``description`` is a faithful text account of the image (on the embedded model: the attributes
    the probe reads back); ``image_png`` the image itself for judges that accept images.
    ``quality`` is the relative quality in [0, 1] (1 = as good as unshared generation);
    ``delay_s`` the total simulated delay the user waited.
    """

    prompt: str
    description: str
    quality: float
    delay_s: float
    image_png: bytes | None = None
    image_hash: str = ""
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rating:
    """One judge's rating, with what the judge perceived and what it was told.

    ``perception`` is one of :data:`PERCEPTIONS`; ``told`` the exact text the judge was given (for an LLM
    judge: the system message, a blank line and the user message; for the parametric judge: the numbers
    it read). ``extras`` holds how the rating was obtained: ``attempts``, ``temperature``,
    ``finish_reason``, ``template_hash``, ``request_hash``, ``expected_score`` (from token
    probabilities, where the endpoint returns them), ``prompt_tokens``, ``cached`` ...
    """

    score: int | None  # 1..10, None when the judge failed
    reason: str
    status: Status
    backend: str
    model: str
    latency_s: float = 0.0
    perception: str = "none"
    told: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score is not None and not 1 <= self.score <= 10:
            raise ValueError(f"score must be 1..10 or None, got {self.score}")
        if (self.score is None) == (self.status == "ok"):
            raise ValueError(f"status {self.status!r} does not match score {self.score!r}")
        if self.perception not in PERCEPTIONS:
            raise ValueError(f"perception must be one of {', '.join(PERCEPTIONS)}, got {self.perception!r}")

    @property
    def told_hash(self) -> str:
        """A short hash of what the judge was told (16 hex digits), '' when nothing was recorded."""
        import hashlib

        return hashlib.sha256(self.told.encode()).hexdigest()[:16] if self.told else ""

    def as_dict(self) -> dict:
        return {"score": self.score, "reason": self.reason, "status": self.status, "backend": self.backend,
                "model": self.model, "latency_s": round(self.latency_s, 4), "perception": self.perception,
                "told": self.told, "told_hash": self.told_hash, "extras": dict(self.extras)}


@runtime_checkable
class Judge(Protocol):
    backend: str  # "trait", "llm", ...
    model: str  # the model name ("parametric-v1", "SmolLM2-135M-Instruct", "gpt-4o-mini", ...)

    def rate(self, persona: Persona, delivery: Delivery) -> Rating: ...

    def rate_many(self, pairs: list[tuple[Persona, Delivery]]) -> list[Rating]:
        """One rating per (persona, delivery), in order (an LLM judge runs them concurrently)."""
        ...
