"""The rating store: SQLAlchemy models, migrations on start, one repository (:class:`Store`), export.

    store = Store.from_settings(settings)            # RLLI_DATABASE_URL, RLLI_DATA_DIR
    pid = store.upsert_participant(ParticipantRecord("human", key=browser_token, traits=..., instrument="tipi"))
    ids = store.record_round(RoundRecord.from_engine(outputs, group_plans, seed, participants=[pid, ...]))
    rating_id, duplicate = store.add_rating(RatingRecord(pid, ids.generation_ids[0], score=7))
"""

from rlli.store.db import StoreError
from rlli.store.records import (
    GenerationRecord,
    GroupRecord,
    ParticipantRecord,
    RatingRecord,
    RequestRecord,
    RoundIds,
    RoundRecord,
    StoredGeneration,
    StoredRating,
)
from rlli.store.repository import Store

__all__ = ["GenerationRecord", "GroupRecord", "ParticipantRecord", "RatingRecord", "RequestRecord", "RoundIds",
           "RoundRecord", "Store", "StoreError", "StoredGeneration", "StoredRating"]
