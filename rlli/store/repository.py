"""The store's one entry point: :class:`Store` (open it with :meth:`Store.from_settings`).

Each public write is one unit of work in one transaction: a round with its requests, groups and
generations; a rating; a batch of ratings; a participant's deletion. Images are written to the data
folder before that transaction commits. A unit either lands whole or not at all, whatever kills the
process. SQLite serialises writers (BEGIN IMMEDIATE + busy timeout); a writer that still meets a lock
retries the whole unit with backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from rlli.store import images
from rlli.store.db import StoreError, connect, redact, writer
from rlli.store.ids import load_salt, participant_id
from rlli.store.migrate import upgrade
from rlli.store.models import TRAIT_COLUMNS, Generation, Group, Participant, Rating, Request, Round, utcnow
from rlli.store.records import (
    RETRYABLE,
    ParticipantRecord,
    RatingRecord,
    RoundIds,
    RoundRecord,
    StoredGeneration,
    StoredRating,
)

T = TypeVar("T")
RETRIES = 8


def _is_transient(e: OperationalError) -> bool:
    msg = str(e.orig).lower() if e.orig else str(e).lower()
    return any(s in msg for s in ("database is locked", "database table is locked", "busy", "deadlock detected",
                                  "could not serialize", "server closed the connection"))


class Store:
    """Repository over the rating database and the image folder."""

    def __init__(self, engine: Engine, data_dir: Path, salt: bytes):
        self.engine = engine
        self._writer = writer(engine)
        self.data_dir = Path(data_dir)
        self._salt = salt
        dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        table = Rating.__table__
        stmt = dialect_insert(table)
        # a rating that could not be had (judge unavailable, or still pending at shutdown) is a placeholder the
        # next try replaces; a real outcome (ok, invalid, timeout, error) is never overwritten
        self._rating_insert = (stmt.on_conflict_do_update(
            index_elements=["rater_id", "generation_id"],
            set_={c: stmt.excluded[c] for c in ("score", "reason", "status", "backend", "model", "latency_s",
                                               "perception", "told", "extras", "created_at")},
            where=table.c.status.in_(RETRYABLE)).returning(table.c.id))

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, data_dir: Path, *, id_salt: str = "", timeout_s: float = 30.0,
             migrate: bool = True) -> Store:
        """Connect (clear :class:`StoreError` on a broken URL or unreachable server) and apply migrations."""
        engine = connect(url, timeout_s)
        try:
            if migrate:
                upgrade(engine)
            data_dir = Path(data_dir)
            try:
                (data_dir / "images").mkdir(parents=True, exist_ok=True)
                salt = load_salt(data_dir, id_salt)
            except (OSError, ValueError) as e:
                raise StoreError(f"RLLI_DATA_DIR={data_dir}: {e}") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, data_dir, salt)

    @classmethod
    def from_settings(cls, settings, *, migrate: bool = True) -> Store:
        return cls.open(settings.database_url, settings.data_dir, id_salt=settings.id_salt,
                        timeout_s=settings.database_timeout_s, migrate=migrate)

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return redact(self.engine.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- units of work -------------------------------------------------------------------------
    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction; retry the whole unit when the database is busy."""
        for attempt in range(RETRIES):
            try:
                with Session(self._writer, expire_on_commit=False) as s, s.begin():
                    return work(s)
            except OperationalError as e:
                if attempt == RETRIES - 1 or not _is_transient(e):
                    raise StoreError(f"the database {self.url} refused a write: {str(e.orig or e).strip()}") from None
                time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def participant_id(self, kind: str, key: str) -> str:
        """The salted-hash id a participant with this key gets (the key is not stored)."""
        return participant_id(self._salt, kind, key)

    def upsert_participant(self, p: ParticipantRecord) -> str:
        """Insert the participant, or update its name, traits, instrument and description; return its id."""
        pid = self.participant_id(p.kind, p.key)
        fields = {"kind": p.kind, "name": p.name, "description": p.description, "instrument": p.instrument,
                  "backend": p.backend, "model": p.model, "mirrors_id": p.mirrors,
                  **dict(zip(TRAIT_COLUMNS, p.traits or (None,) * len(TRAIT_COLUMNS)))}

        def work(s: Session) -> str:
            row = s.get(Participant, pid)
            if row is None:
                s.add(Participant(id=pid, **fields))
            else:
                if row.kind != p.kind:
                    raise StoreError(f"participant {pid} is a {row.kind}, not a {p.kind}")
                for k, v in fields.items():
                    setattr(row, k, v)
            return pid

        try:
            return self._write(work)
        except IntegrityError:
            raise StoreError(f"participant mirrors an unknown participant id {p.mirrors!r}") from None

    def record_round(self, r: RoundRecord) -> RoundIds:
        """Store a round with its requests, groups and generations in one transaction; images first."""
        encoded = [images.encode_png(g.image) for g in r.generations]
        hashes = images.write_pngs(self.data_dir, [png for png, _, _ in encoded])

        def work(s: Session) -> RoundIds:
            round_id = s.execute(insert(Round.__table__).returning(Round.id), {
                "seed": int(r.seed), "policy": r.policy, "backbone": r.backbone, "steps": r.steps,
                "settings": r.settings, "accounting": r.accounting, "created_at": utcnow()}).scalar_one()
            req_ids = self._insert_many(s, Request, [
                {"round_id": round_id, "position": i, "participant_id": q.participant_id, "prompt": q.prompt,
                 "seed": int(q.seed), "request_key": q.request_key} for i, q in enumerate(r.requests)])
            grp_ids = self._insert_many(s, Group, [
                {"round_id": round_id, "position": i, "anchor_position": g.anchor,
                 "anchor_prompt": r.requests[g.anchor].prompt, "members": list(g.members),
                 "similarity": list(g.similarity), "shared_steps": g.shared_steps} for i, g in enumerate(r.groups)])
            gen_ids = self._insert_many(s, Generation, [
                {"request_id": req_ids[g.request], "group_id": grp_ids[g.group], "image_sha256": sha, "width": w,
                 "height": h, "shared_steps": g.shared_steps, "own_steps": g.own_steps,
                 "handoff_bytes": int(g.handoff_bytes), "description": g.description, "fidelity": g.fidelity,
                 "quality": g.quality, "bandwidth_share": g.bandwidth_share, "compute_share": g.compute_share,
                 "delay_s": g.delay_s, "delays": dict(g.delays), "energy_j": g.energy_j, "extras": dict(g.extras)}
                for g, (_, w, h), sha in zip(r.generations, encoded, hashes)])
            return RoundIds(round_id, req_ids, grp_ids, gen_ids, hashes)

        try:
            return self._write(work)
        except IntegrityError as e:
            raise StoreError(f"the round refers to an unknown participant ({str(e.orig).splitlines()[0]})") from None

    @staticmethod
    def _insert_many(s: Session, model, rows: list[dict]) -> list[int]:
        """Insert rows (one multi-row statement where the driver allows); their new ids, in order."""
        if not rows:
            return []
        stmt = insert(model.__table__).returning(model.__table__.c.id, sort_by_parameter_order=True)
        return list(s.execute(stmt, rows).scalars())

    def _insert_rating(self, s: Session, r: RatingRecord) -> int | None:
        return s.execute(self._rating_insert, {**asdict(r), "created_at": utcnow()}).scalar_one_or_none()

    def add_rating(self, r: RatingRecord) -> tuple[int | None, bool]:
        """Append one rating: (its id, False), or (None, True) when this rater already rated this generation."""
        return self.add_ratings([r])[0]

    def add_ratings(self, ratings: Sequence[RatingRecord]) -> list[tuple[int | None, bool]]:
        """Append ratings in one transaction; duplicates (same rater and generation) are skipped, not errors.
        A rating of an unknown rater or generation fails the whole batch with :class:`StoreError`."""
        if not ratings:
            return []

        def work(s: Session) -> list[tuple[int | None, bool]]:
            out = []
            for r in ratings:
                rid = self._insert_rating(s, r)
                out.append((rid, rid is None))
            return out

        try:
            return self._write(work)
        except IntegrityError as e:
            raise StoreError("a rating refers to an unknown rater or generation "
                             f"({str(e.orig).splitlines()[0]}); nothing of this batch was stored") from None

    def delete_participant(self, pid: str) -> dict[str, int]:
        """Remove a participant and everything that holds their data (admin; one transaction): their ratings,
        their requests with the generations and all ratings of those, and agents given their Big-Five.
        Images no other generation uses are deleted after the commit. Returns counts of removed rows."""

        def work(s: Session) -> tuple[dict[str, int], set[str]]:
            agents = list(s.scalars(select(Participant.id).where(Participant.mirrors_id == pid)))
            people = [pid, *agents]
            req_ids = list(s.scalars(select(Request.id).where(Request.participant_id.in_(people))))
            gens = s.execute(select(Generation.id, Generation.image_sha256)
                             .where(Generation.request_id.in_(req_ids))).all()
            gen_ids = [g for g, _ in gens]
            n_ratings = s.execute(delete(Rating).where(Rating.rater_id.in_(people) | Rating.generation_id.in_(gen_ids))
                                  ).rowcount
            s.execute(delete(Generation).where(Generation.id.in_(gen_ids)))
            s.execute(delete(Request).where(Request.id.in_(req_ids)))
            n_people = s.execute(delete(Participant).where(Participant.id.in_(agents))).rowcount
            n_people += s.execute(delete(Participant).where(Participant.id == pid)).rowcount
            hashes = {h for _, h in gens}
            still = set(s.scalars(select(Generation.image_sha256).where(Generation.image_sha256.in_(hashes))))
            return ({"participants": n_people, "ratings": n_ratings, "requests": len(req_ids),
                     "generations": len(gen_ids)}, hashes - still)

        counts, orphans = self._write(work)
        for h in orphans:
            images.image_path(self.data_dir, h).unlink(missing_ok=True)
        counts["images"] = len(orphans)
        return counts

    # ---- reads ---------------------------------------------------------------------------------
    def ratings_for_participant(self, pid: str) -> list[StoredRating]:
        """Every rating this participant gave, oldest first, with the prompt and image hash it was about."""
        q = (select(Rating, Request.prompt, Generation.image_sha256)
             .join(Generation, Rating.generation_id == Generation.id).join(Request, Generation.request_id == Request.id)
             .where(Rating.rater_id == pid).order_by(Rating.id))
        with Session(self.engine) as s:
            return [StoredRating(r.id, r.rater_id, r.generation_id, r.score, r.reason, r.status, r.backend, r.model,
                                 r.latency_s, r.created_at, prompt, sha, r.perception, r.told, dict(r.extras or {}))
                    for r, prompt, sha in s.execute(q)]

    def generations(self, ids: Iterable[int] | None = None, *, rated_by_humans: bool = False) -> list[StoredGeneration]:
        """Stored generations (all, the given ids, or those at least one person rated with a score), by id."""
        q = (select(Generation, Request.prompt, Request.seed, Request.round_id, Request.participant_id)
             .join(Request, Generation.request_id == Request.id).order_by(Generation.id))
        if ids is not None:
            q = q.where(Generation.id.in_(list(ids)))
        if rated_by_humans:
            human = (select(Rating.generation_id).join(Participant, Rating.rater_id == Participant.id)
                     .where(Participant.kind == "human", Rating.status == "ok"))
            q = q.where(Generation.id.in_(human))
        with Session(self.engine) as s:
            return [StoredGeneration(g.id, round_id, prompt, seed, g.image_sha256, g.description, g.quality,
                                     g.delay_s, g.fidelity, who)
                    for g, prompt, seed, round_id, who in s.execute(q)]

    def next_to_rate(self, person_id: str, limit: int = 1) -> list[StoredGeneration]:
        """Images other people received and rated that this person has not rated yet, those with the fewest people's
        ratings first (so images gather two or more ratings: the human-human ceiling of agreement)."""
        human_ok = (select(Rating.generation_id, func.count().label("n")).join(Participant, Rating.rater_id == Participant.id)
                    .where(Participant.kind == "human", Rating.status == "ok").group_by(Rating.generation_id).subquery())
        mine = select(Rating.generation_id).where(Rating.rater_id == person_id)
        q = (select(Generation, Request.prompt, Request.seed, Request.round_id, Request.participant_id)
             .join(Request, Generation.request_id == Request.id)
             .join(human_ok, human_ok.c.generation_id == Generation.id)
             .where(Generation.id.not_in(mine),
                    (Request.participant_id.is_(None)) | (Request.participant_id != person_id))
             .order_by(human_ok.c.n, Generation.id.desc()).limit(limit))
        with Session(self.engine) as s:
            return [StoredGeneration(g.id, round_id, prompt, seed, g.image_sha256, g.description, g.quality,
                                     g.delay_s, g.fidelity, who)
                    for g, prompt, seed, round_id, who in s.execute(q)]

    def human_ratings(self, generation_id: int) -> list[tuple[str, tuple[float, ...] | None]]:
        """(participant id, Big-Five or None) of the people who scored this generation."""
        q = (select(Participant).join(Rating, Rating.rater_id == Participant.id)
             .where(Rating.generation_id == generation_id, Participant.kind == "human", Rating.status == "ok")
             .order_by(Participant.id))
        with Session(self.engine) as s:
            out = []
            for p in s.scalars(q):
                traits = tuple(getattr(p, t) for t in TRAIT_COLUMNS)
                out.append((p.id, None if any(v is None for v in traits) else traits))
            return out

    def rated_pairs(self, rater_ids: Iterable[str] | None = None) -> set[tuple[str, int]]:
        """(rater, generation) pairs that already have a final rating (a placeholder - unavailable, pending - can be
        retried, so it does not count)."""
        q = select(Rating.rater_id, Rating.generation_id).where(Rating.status.not_in(RETRYABLE))
        if rater_ids is not None:
            q = q.where(Rating.rater_id.in_(list(rater_ids)))
        with Session(self.engine) as s:
            return {(r, g) for r, g in s.execute(q)}

    def image_bytes(self, sha: str) -> bytes:
        return images.read_png(self.data_dir, sha)

    def image_file(self, sha: str) -> Path:
        return images.image_path(self.data_dir, sha)

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as s:
            return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                    for m in (Participant, Round, Request, Group, Generation, Rating)}

    def rating_frame(self, participant_id: str | None = None):
        """One row per rating with all its context (see :mod:`rlli.store.frame`), as a pandas DataFrame."""
        from rlli.store.frame import rating_frame

        return rating_frame(self.engine, participant_id)
