"""A writer killed (SIGKILL) in the middle of a unit of work leaves nothing half-written, on both engines.

A child process opens the store, commits one round and its ratings, then starts a second round (or a
batch of ratings) and kills itself from inside the transaction - after some of the generation (or
rating) rows were sent to the database but before the commit. The parent reopens the store and finds
exactly the first unit of work: no requests, groups, generations or ratings of the killed one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from rlli.store import RatingRecord, Store
from rlli.store.testing import ENGINES, database_url, postgres_skip_reason

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    from sqlalchemy import event
    from rlli.store import (GenerationRecord, GroupRecord, ParticipantRecord, RatingRecord, RequestRecord,
                            RoundRecord, Store)

    url, data, table, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def round_of(n, seed):
        rng = np.random.default_rng(seed)
        return RoundRecord(seed, [RequestRecord(f"p{seed}-{i}", i) for i in range(n)],
                           [GroupRecord(tuple(range(n)), 0, 4)],
                           [GenerationRecord(i, 0, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 4, 16)
                            for i in range(n)])

    store = Store.open(url, data)
    pid = store.upsert_participant(ParticipantRecord("human", "survivor"))
    first = store.record_round(round_of(3, 1))
    store.add_ratings([RatingRecord(pid, g, 5) for g in first.generation_ids])
    second = store.record_round(round_of(6, 2)) if table == "ratings" else None
    print(json.dumps({"pid": pid, "first": first.generation_ids,
                      "second": second.generation_ids if second else []}), flush=True)

    seen = 0

    @event.listens_for(store.engine, "after_cursor_execute")
    def kill_mid_transaction(conn, cursor, statement, params, context, executemany):
        global seen
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            # rows sent so far (one multi-row INSERT on PostgreSQL, one per row on SQLite)
            seen += len(params) if executemany and isinstance(params, list) else max(cursor.rowcount, 1)
            if seen >= after:
                assert conn.in_transaction()
                os.kill(os.getpid(), signal.SIGKILL)

    if table == "generations":
        store.record_round(round_of(6, 3))
    else:
        store.add_ratings([RatingRecord(pid, g, 9) for g in second.generation_ids])
    print("survived", flush=True)
""")


@pytest.fixture(params=ENGINES)
def url(request, tmp_path):
    if request.param == "postgresql" and postgres_skip_reason():
        pytest.skip(postgres_skip_reason())
    with database_url(request.param, tmp_path) as u:
        yield u


@pytest.mark.parametrize("table, after", [("generations", 1), ("generations", 4), ("ratings", 3)])
def test_killed_writer_leaves_no_half_written_round_or_batch(url, tmp_path, table, after):
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-c", CHILD, url, str(data), table, str(after)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "survived" not in proc.stdout
    before = json.loads(proc.stdout.splitlines()[0])
    with Store.open(url, data) as store:
        counts = store.counts()
        expected_rounds = 2 if table == "ratings" else 1
        expected_gens = 3 + (6 if table == "ratings" else 0)
        assert counts == {"participants": 1, "rounds": expected_rounds, "requests": expected_gens,
                          "groups": expected_rounds, "generations": expected_gens, "ratings": 3}
        assert [r.score for r in store.ratings_for_participant(before["pid"])] == [5, 5, 5]
        with store.engine.connect() as c:
            orphans = c.execute(text("SELECT count(*) FROM generations g LEFT JOIN requests r ON g.request_id = r.id "
                                     "WHERE r.id IS NULL")).scalar()
            assert orphans == 0
            if store.dialect == "sqlite":
                assert c.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        for g in store.generations():  # every stored generation has its image, intact
            assert store.image_bytes(g.image_sha256)
        # the store keeps working after the crash
        gen = before["second"][0] if before["second"] else before["first"][0]
        rid, duplicate = store.add_rating(RatingRecord(before["pid"], gen, 9))
        assert duplicate is (gen in before["first"]) and (rid is None) is duplicate
