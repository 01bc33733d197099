"""The rating store's tables (SQLAlchemy 2 ORM), one class per table.

participants -> requests -> generations <- ratings, grouped by rounds and groups. Every id a person
could be traced by is a salted hash (see :mod:`rlli.store.ids`); images live as PNG files in the data
folder, named by their sha256, and the database keeps the hash. Ratings are append-only (a database
trigger refuses updates, see the first migration) and unique per (rater, generation).

Schema changes go through an Alembic migration in ``db/migrations/versions`` (a test compares these
models with the migrated schema).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TRAIT_COLUMNS: tuple[str, ...] = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Participant(Base):
    """A rater or requester: a person (``kind='human'``) or a judge playing a persona (``'agent'``).

    An agent is one (persona, backend, model): the same persona under another judge is another
    participant, so "at most one rating per rater and generation" holds per judge. ``mirrors_id``
    names the person whose own Big-Five an agent was given (none for preset personas).
    """

    __tablename__ = "participants"
    __table_args__ = (CheckConstraint("kind IN ('human', 'agent')", name="ck_participants_kind"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(120), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    instrument: Mapped[str] = mapped_column(String(32), default="")
    openness: Mapped[float | None] = mapped_column(Float)
    conscientiousness: Mapped[float | None] = mapped_column(Float)
    extraversion: Mapped[float | None] = mapped_column(Float)
    agreeableness: Mapped[float | None] = mapped_column(Float)
    neuroticism: Mapped[float | None] = mapped_column(Float)
    backend: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    mirrors_id: Mapped[str | None] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Round(Base):
    """One batch of requests served together: the settings it ran under, its seed, which policy decided."""

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    seed: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(64), default="")
    backbone: Mapped[str] = mapped_column(String(200), default="")
    steps: Mapped[int] = mapped_column(Integer, default=0)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    accounting: Mapped[dict] = mapped_column(JSON, default=dict)

    requests: Mapped[list[Request]] = relationship(back_populates="round", order_by="Request.position")
    groups: Mapped[list[Group]] = relationship(back_populates="round", order_by="Group.position")


class Request(Base):
    """One prompt in a round, from a participant (a person or a persona) or from nobody (a benchmark)."""

    __tablename__ = "requests"
    __table_args__ = (UniqueConstraint("round_id", "position", name="uq_requests_round_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    participant_id: Mapped[str | None] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    request_key: Mapped[str] = mapped_column(String(64), default="")

    round: Mapped[Round] = relationship(back_populates="requests")


class Group(Base):
    """Requests that shared denoising steps: the anchor prompt, its members (request positions), shared steps."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("round_id", "position", name="uq_groups_round_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    anchor_position: Mapped[int] = mapped_column(Integer)
    anchor_prompt: Mapped[str] = mapped_column(Text)
    members: Mapped[list] = mapped_column(JSON)
    similarity: Mapped[list] = mapped_column(JSON, default=list)
    shared_steps: Mapped[int] = mapped_column(Integer)

    round: Mapped[Round] = relationship(back_populates="groups")


class Generation(Base):
    """What one request received: the image (file named by its sha256), steps, hand-off, allocation, delays,
    energy, quality and fidelity. Policy parts are plain nullable columns; anything newer goes to ``extras``."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    shared_steps: Mapped[int] = mapped_column(Integer)
    own_steps: Mapped[int] = mapped_column(Integer)
    handoff_bytes: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
    fidelity: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[float | None] = mapped_column(Float)
    bandwidth_share: Mapped[float | None] = mapped_column(Float)
    compute_share: Mapped[float | None] = mapped_column(Float)
    delay_s: Mapped[float | None] = mapped_column(Float)
    delays: Mapped[dict] = mapped_column(JSON, default=dict)
    energy_j: Mapped[float | None] = mapped_column(Float)
    extras: Mapped[dict] = mapped_column(JSON, default=dict)


class Rating(Base):
    """A QoE score 1..10 (or none, when a judge failed: ``status`` says why) by one rater of one generation."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("rater_id", "generation_id", name="uq_ratings_rater_generation"),
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 10)", name="ck_ratings_score"),
        CheckConstraint("(score IS NULL) = (status <> 'ok')", name="ck_ratings_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    score: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200), default="")
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    perception: Mapped[str] = mapped_column(String(16), default="none", server_default="none")  # what the rater saw
    told: Mapped[str] = mapped_column(Text, default="", server_default="")  # an agent: the exact text it was given
    extras: Mapped[dict | None] = mapped_column(JSON, default=dict)  # an agent: how the rating was obtained
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
