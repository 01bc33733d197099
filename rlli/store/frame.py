"""The flat view of the store: one row per rating with everything it was about.

Analytics and exports read this and nothing else, so a column added here reaches both. Columns:
the rating (``rating_id``, ``score``, ``reason``, ``status``, ``backend``, ``model``, ``latency_s``,
``created_at``), the rater (``rater_id``, ``rater_kind``, ``rater_name``, ``rater_instrument``,
``mirrors_id``, the five traits), the generation (``generation_id``, ``image_sha256``, steps, hand-off,
``description``, ``fidelity``, ``quality``, allocation, delays, ``energy_j``, ``extras``), its request
(``prompt``, ``seed``, ``requester_id``), group (``anchor_prompt``) and round (``round_id``, ``policy``,
``backbone``, ``steps``).
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from rlli.store.models import TRAIT_COLUMNS, Generation, Group, Participant, Rating, Request, Round


def _query(participant_id: str | None):
    q = (select(Rating.id.label("rating_id"), Rating.created_at, Rating.score, Rating.reason, Rating.status,
                Rating.backend, Rating.model, Rating.latency_s, Rating.perception, Rating.told,
                Rating.extras.label("rating_extras"),
                Participant.id.label("rater_id"), Participant.kind.label("rater_kind"),
                Participant.name.label("rater_name"), Participant.instrument.label("rater_instrument"),
                Participant.mirrors_id, *[getattr(Participant, t) for t in TRAIT_COLUMNS],
                Generation.id.label("generation_id"), Generation.image_sha256, Generation.width, Generation.height,
                Generation.shared_steps, Generation.own_steps, Generation.handoff_bytes, Generation.description,
                Generation.fidelity, Generation.quality, Generation.bandwidth_share, Generation.compute_share,
                Generation.delay_s, Generation.delays, Generation.energy_j, Generation.extras,
                Request.id.label("request_id"), Request.prompt, Request.seed, Request.participant_id.label("requester_id"),
                Group.id.label("group_id"), Group.anchor_prompt, Group.shared_steps.label("group_shared_steps"),
                Round.id.label("round_id"), Round.created_at.label("round_created_at"), Round.policy, Round.backbone,
                Round.steps)
         .join(Participant, Rating.rater_id == Participant.id)
         .join(Generation, Rating.generation_id == Generation.id)
         .join(Request, Generation.request_id == Request.id)
         .join(Group, Generation.group_id == Group.id)
         .join(Round, Request.round_id == Round.id)
         .order_by(Rating.id))
    if participant_id is not None:
        q = q.where(Rating.rater_id == participant_id)
    return q


def rating_frame(engine: Engine, participant_id: str | None = None) -> pd.DataFrame:
    """Every rating (or one participant's) with its context; an empty frame still has all the columns."""
    q = _query(participant_id)
    with Session(engine) as s:
        rows = [dict(r) for r in s.execute(q).mappings()]
    frame = pd.DataFrame(rows, columns=[c.name for c in q.selected_columns])
    return frame.astype({"score": "Int64"})
