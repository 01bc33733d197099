"""The rating store on both engines: SQLite (a file) and PostgreSQL (scripts/postgres.sh's server)."""

from __future__ import annotations

import io
import os
import stat
import threading

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rlli.store import (
    GenerationRecord,
    GroupRecord,
    ParticipantRecord,
    RatingRecord,
    RequestRecord,
    RoundRecord,
    Store,
    StoreError,
)
from rlli.store.db import parse_url
from rlli.store.testing import ENGINES, database_url, postgres_skip_reason


@pytest.fixture(params=ENGINES)
def url(request, tmp_path):
    if request.param == "postgresql" and postgres_skip_reason():
        pytest.skip(postgres_skip_reason())
    with database_url(request.param, tmp_path) as u:
        yield u


@pytest.fixture
def store(url, tmp_path):
    with Store.open(url, tmp_path / "data") as s:
        yield s


def image(seed: int, side: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def a_round(requesters: list[str | None], seed: int = 0) -> RoundRecord:
    n = len(requesters)
    requests = [RequestRecord(f"prompt {seed}-{i}", seed + i, p) for i, p in enumerate(requesters)]
    groups = [GroupRecord(tuple(range(n)), 0, 3, tuple(1.0 - 0.01 * i for i in range(n)))]
    gens = [GenerationRecord(i, 0, image(seed * 100 + i), 3, 17, 4096, quality=0.9, delay_s=1.5 + i,
                             delays={"transmit": 0.5}, bandwidth_share=1 / n, energy_j=2.0)
            for i in range(n)]
    return RoundRecord(seed, requests, groups, gens, policy="gddpg", backbone="tiny-t2i", steps=20,
                       settings={"steps": 20})


def human(store: Store, key: str = "browser-token-1", traits=(0.2, 0.4, 0.6, 0.8, 1.0)) -> str:
    return store.upsert_participant(ParticipantRecord("human", key, traits=traits, instrument="tipi"))


def test_round_ratings_and_images_round_trip(store):
    pid = human(store)
    ids = store.record_round(a_round([pid, None, None], seed=1))
    assert len(ids.generation_ids) == 3 and len(set(ids.image_hashes)) == 3
    for i, sha in enumerate(ids.image_hashes):
        path = store.image_file(sha)
        assert path.name == f"{sha}.png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(store.image_bytes(sha)))), image(100 + i))
    rid, dup = store.add_rating(RatingRecord(pid, ids.generation_ids[0], 7, reason="nice"))
    assert rid is not None and not dup
    got = store.ratings_for_participant(pid)
    assert [(r.id, r.score, r.reason, r.prompt, r.image_sha256) for r in got] == [
        (rid, 7, "nice", "prompt 1-0", ids.image_hashes[0])]
    assert store.counts() == {"participants": 1, "rounds": 1, "requests": 3, "groups": 1, "generations": 3,
                              "ratings": 1}
    frame = store.rating_frame()
    row = frame.iloc[0]
    assert (row.prompt, row.score, row.openness, row.delay_s, row.policy, row.delays) == (
        "prompt 1-0", 7, 0.2, 1.5, "gddpg", {"transmit": 0.5})


def test_one_rating_per_rater_and_generation(store):
    pid = human(store)
    gen = store.record_round(a_round([pid], seed=2)).generation_ids[0]
    first = store.add_rating(RatingRecord(pid, gen, 4))
    assert store.add_rating(RatingRecord(pid, gen, 9)) == (None, True)
    batch = store.add_ratings([RatingRecord(pid, gen, 5)])
    assert batch == [(None, True)]
    assert [r.score for r in store.ratings_for_participant(pid)] == [4]
    assert first[1] is False


def test_ratings_are_append_only_in_the_database(store):
    pid = human(store)
    gen = store.record_round(a_round([pid], seed=3)).generation_ids[0]
    store.add_rating(RatingRecord(pid, gen, 4))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as c:
        c.execute(text("UPDATE ratings SET score = 10"))
    assert store.ratings_for_participant(pid)[0].score == 4


def test_a_bad_rating_stores_nothing_of_its_batch(store):
    pid = human(store)
    gen = store.record_round(a_round([pid], seed=4)).generation_ids[0]
    other = store.upsert_participant(ParticipantRecord("human", "someone else"))
    with pytest.raises(StoreError, match="unknown rater or generation"):
        store.add_ratings([RatingRecord(pid, gen, 3), RatingRecord(other, gen + 999, 3)])
    assert store.counts()["ratings"] == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"score": 0}, "1..10"), ({"score": 11}, "1..10"), ({"score": True}, "whole number"),
    ({"score": 5.5}, "whole number"), ({"score": None}, "does not match"),
    ({"score": 3, "status": "timeout"}, "does not match"), ({"score": 3, "status": "weird"}, "status must be"),
    ({"score": 3, "reason": "x" * 5000}, "at most 4000"), ({"score": 3, "backend": ""}, "backend"),
    ({"score": 3, "latency_s": float("nan")}, "latency_s"),
])
def test_bad_ratings_are_refused_before_writing(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RatingRecord("r", 1, **kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: RoundRecord(0, [], [], []), "at least one request"),
    (lambda: RoundRecord(0, [RequestRecord("a", 1)], [GroupRecord((0, 1), 0, 2)], []), "distinct request positions"),
    (lambda: RoundRecord(0, [RequestRecord("a", 1)], [GroupRecord((0,), 0, 2)],
                         [GenerationRecord(0, 1, image(0), 2, 18)]), "lacks"),
    (lambda: GenerationRecord(0, 0, image(0), 2, 18, delay_s=float("inf")), "finite"),
    (lambda: RequestRecord("a", -1), "seed"),
    (lambda: ParticipantRecord("robot", "k"), "kind"),
    (lambda: ParticipantRecord("human", " "), "non-empty key"),
    (lambda: ParticipantRecord("human", "k", traits=(0.5, 0.5)), "expected 5"),
    (lambda: ParticipantRecord("human", "k", traits=(0.5, 0.5, 0.5, 0.5, 1.5)), r"\[0, 1\]"),
])
def test_bad_round_parts_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_images_are_refused_and_nothing_is_stored(store):
    bad = RoundRecord(0, [RequestRecord("a", 1)], [GroupRecord((0,), 0, 2)],
                      [GenerationRecord(0, 0, np.zeros((8, 8, 3), np.float32), 2, 18)])
    with pytest.raises(ValueError, match="uint8"):
        store.record_round(bad)
    not_png = RoundRecord(0, [RequestRecord("a", 1)], [GroupRecord((0,), 0, 2)],
                          [GenerationRecord(0, 0, b"GIF89a not really", 2, 18)])
    with pytest.raises(ValueError, match="not a readable PNG"):
        store.record_round(not_png)
    assert store.counts()["rounds"] == 0


def test_text_with_nul_and_odd_unicode_is_kept_safely(store):
    pid = human(store)
    odd = "<script>alert(1)</script> \u202e\U0001f600 caf\u00e9\x00!"
    r = a_round([pid], seed=5)
    r = RoundRecord(r.seed, [RequestRecord(odd, 1, pid)], r.groups, r.generations)
    gen = store.record_round(r).generation_ids[0]
    store.add_rating(RatingRecord(pid, gen, 6, reason=odd))
    got = store.ratings_for_participant(pid)[0]
    assert got.prompt == got.reason == odd.replace("\x00", "")


def test_participant_ids_are_salted_hashes_never_the_key(url, tmp_path):
    key = "203.0.113.7"
    with Store.open(url, tmp_path / "a") as s:
        pid = s.upsert_participant(ParticipantRecord("human", key))
        salt_file = tmp_path / "a" / "id-salt"
        assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
        assert key not in pid and len(pid) == 32
        with s.engine.connect() as c:
            dumped = " ".join(str(v) for row in c.execute(text("SELECT * FROM participants")) for v in row)
        assert key not in dumped
    with Store.open(url, tmp_path / "a") as s:  # same data folder, same salt: the same person keeps their id
        assert s.participant_id("human", key) == pid
    with Store.open(url, tmp_path / "b", id_salt="a configured secret salt of enough length") as s:
        assert s.participant_id("human", key) != pid


def test_delete_participant_removes_their_data_and_only_theirs(store):
    alice, bob = human(store, "alice"), human(store, "bob")
    mirror = store.upsert_participant(ParticipantRecord.agent("own profile", (0.2, 0.4, 0.6, 0.8, 1.0), "trait",
                                                              "parametric-v1", mirrors=alice, instrument="tipi"))
    preset = store.upsert_participant(ParticipantRecord.agent("Ava", (0.9, 0.5, 0.5, 0.5, 0.5), "trait", "p"))
    ids = store.record_round(a_round([alice, bob], seed=6))
    ga, gb = ids.generation_ids
    store.add_ratings([RatingRecord(alice, ga, 8), RatingRecord(bob, gb, 5), RatingRecord(alice, gb, 6),
                       RatingRecord(mirror, ga, 7, backend="trait", model="parametric-v1"),
                       RatingRecord(preset, ga, 7, backend="trait", model="p"),
                       RatingRecord(preset, gb, 4, backend="trait", model="p")])
    counts = store.delete_participant(alice)
    assert counts == {"participants": 2, "ratings": 4, "requests": 1, "generations": 1, "images": 1}
    assert not store.image_file(ids.image_hashes[0]).exists() and store.image_file(ids.image_hashes[1]).exists()
    assert store.ratings_for_participant(alice) == []
    assert [r.score for r in store.ratings_for_participant(bob)] == [5]
    assert [r.score for r in store.ratings_for_participant(preset)] == [4]


def test_concurrent_writers_lose_nothing(store):
    pids = [human(store, f"p{i}") for i in range(4)]
    gens = store.record_round(a_round([None] * 30, seed=7)).generation_ids
    errors = []

    def rate(pid):
        try:
            for g in gens:
                store.add_rating(RatingRecord(pid, g, 1 + g % 10))
                store.add_rating(RatingRecord(pid, g, 2))  # a double click
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=rate, args=(p,)) for p in pids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.counts()["ratings"] == 4 * 30
    assert all([r.score for r in store.ratings_for_participant(p)] == [1 + g % 10 for g in gens] for p in pids)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    with Store.open(f"sqlite:///{tmp_path}/x.sqlite3", tmp_path / "data") as s, s.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_migrations_match_the_models_and_rerun_cleanly(url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from rlli.store.migrate import current_revision, head_revision
    from rlli.store.models import Base

    with Store.open(url, tmp_path / "d") as s:
        with s.engine.connect() as c:
            diffs = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
        assert diffs == []
        assert current_revision(s.engine) == head_revision()
        pid = human(s)
    with Store.open(url, tmp_path / "d") as s:  # second start: nothing to do, data kept
        assert s.ratings_for_participant(pid) == [] and s.counts()["participants"] == 1


def test_a_database_from_a_newer_version_is_refused_clearly(url, tmp_path):
    with Store.open(url, tmp_path / "d") as s, s.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    with pytest.raises(StoreError, match="ffff9999.*does not\\s+know"):
        Store.open(url, tmp_path / "d")


@pytest.mark.parametrize("bad, match", [
    ("", "empty"), ("not a url", "not a database URL"), ("mysql://u:secret@h/db", "sqlite and postgresql"),
    ("sqlite:///:memory:", "SQLite file"), ("sqlite://", "SQLite file"),
    ("postgresql+asyncpg://u:secret@h/db", "psycopg"), ("postgresql://u:secret@h", "names no database"),
])
def test_broken_urls_get_a_clear_message(bad, match):
    with pytest.raises(StoreError, match=match) as e:
        parse_url(bad)
    assert "secret" not in str(e.value)


def test_an_unreachable_server_is_a_clear_message_at_start(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match="cannot open the database") as e:
        Store.open(f"postgresql://rlli:hunter2@127.0.0.1:{port}/x", tmp_path, timeout_s=2)
    assert "hunter2" not in str(e.value) and "***" in str(e.value)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(f"sqlite:///{blocked}/sub/x.sqlite3", tmp_path)
    with pytest.raises(StoreError, match="RLLI_DATA_DIR"):
        Store.open(f"sqlite:///{tmp_path}/ok.sqlite3", blocked / "data")


def test_settings_never_show_the_database_password():
    from rlli.config import Settings

    s = Settings(database_url="postgresql+psycopg://rlli:hunter2@db:5432/rlli", id_salt="pepper-pepper")
    shown = str(s.public_dict())
    assert "hunter2" not in shown and "pepper" not in shown and s.database_url.endswith("@db:5432/rlli")
    assert os.path.basename(Settings().database_url) == "rlli.sqlite3"


@pytest.mark.slow
def test_a_real_engine_round_is_stored_as_it_ran(tmp_path):
    from rlli.config import Settings
    from rlli.diffusion import get_backbone
    from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request

    prompts = ["a red car on a street", "a blue car on a street", "a green tree in a park"]
    requests = [Request(p, seed=10 + i, request_id=f"r{i}") for i, p in enumerate(prompts)]
    groups = [GroupPlan((0, 1), 0, member_steps=(3, 2)), GroupPlan((2,), 2, shared_steps=0)]
    result = Engine(get_backbone(Settings())).run(requests, groups, Plan(steps=6))
    with Store.open(f"sqlite:///{tmp_path}/e.sqlite3", tmp_path / "data") as store:
        pid = human(store)
        record = RoundRecord.from_engine(result.outputs, groups, seed=10, participants=[pid, None, None],
                                         similarity=[(1.0, 0.93), (1.0,)], extras=[{"quality": 0.97, "delay_s": 2.0}] * 3,
                                         policy="test", steps=6, accounting=result.accounting())
        ids = store.record_round(record)
        stored = store.generations(ids.generation_ids)
        for o, g, sha in zip(result.outputs, stored, ids.image_hashes):
            assert (g.prompt, g.seed, g.quality) == (o.prompt, o.seed, 0.97)
            assert np.array_equal(np.asarray(Image.open(store.image_file(sha)).convert("RGB")), o.image)
        frame = store.rating_frame()
        assert frame.empty
        store.add_rating(RatingRecord(pid, ids.generation_ids[1], 6))
        row = store.rating_frame().iloc[0]
        o = result.outputs[1]
        assert (row.shared_steps, row.own_steps, row.handoff_bytes, row.anchor_prompt, row.group_shared_steps) == (
            o.shared_steps, o.own_steps, o.handoff_bytes, prompts[0], 3)
        assert row.extras.get("image_source") == o.image_source
