"""``python -m rlli bench store``: concurrent rating writes into a fresh database, batched vs naive.

Eight writer threads each store ``per_thread`` ratings together with the generations they rate (a real
PNG per generation, written to the data folder), then re-submit some of them (double clicks) that must be
rejected as duplicates. The batched way writes a round of ``batch`` generations in one transaction and
their ratings in a second; the naive way writes each generation and each rating in its own transaction.
Both run in the same process against fresh databases of the same engine; nothing may be lost.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.store.db import parse_url, redact
from rlli.store.records import GenerationRecord, GroupRecord, ParticipantRecord, RatingRecord, RequestRecord, RoundRecord
from rlli.store.repository import Store


@dataclass(frozen=True)
class BenchConfig:
    threads: int = 8
    per_thread: int = 1000
    batch: int = 50
    naive_per_thread: int = 1000
    duplicates_per_thread: int = 50
    seed: int = 0


def _round(rng: np.random.Generator, n: int, tag: str) -> RoundRecord:
    return RoundRecord(int(rng.integers(2**31)), [RequestRecord(f"{tag} prompt {i}", i) for i in range(n)],
                       [GroupRecord(tuple(range(n)), 0, 5)],
                       [GenerationRecord(i, 0, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 5, 15, 4096,
                                         quality=0.9, delay_s=1.0) for i in range(n)],
                       policy="bench", backbone="bench", steps=20)


def _batched_writer(store: Store, t: int, cfg: BenchConfig, rejected: list[int]) -> None:
    rng = np.random.default_rng([cfg.seed, t])
    pid = store.upsert_participant(ParticipantRecord("human", f"bench-writer-{t}"))
    rated: list[int] = []
    left = cfg.per_thread
    while left > 0:
        n = min(cfg.batch, left)
        gens = store.record_round(_round(rng, n, f"t{t}")).generation_ids
        store.add_ratings([RatingRecord(pid, g, int(rng.integers(1, 11))) for g in gens])
        rated += gens
        left -= n
    again = rng.choice(rated, size=min(cfg.duplicates_per_thread, len(rated)), replace=False)
    results = store.add_ratings([RatingRecord(pid, int(g), 1) for g in again])
    rejected[t] = sum(dup for _, dup in results)


def _naive_writer(store: Store, t: int, cfg: BenchConfig, rejected: list[int]) -> None:
    rng = np.random.default_rng([cfg.seed, t, 1])
    pid = store.upsert_participant(ParticipantRecord("human", f"bench-writer-{t}"))
    for _ in range(cfg.naive_per_thread):
        gen = store.record_round(_round(rng, 1, f"t{t}")).generation_ids[0]
        store.add_rating(RatingRecord(pid, gen, int(rng.integers(1, 11))))


def _run(store: Store, cfg: BenchConfig, writer: Callable[[Store, int, BenchConfig, list[int]], None]) -> tuple[float, int]:
    rejected = [0] * cfg.threads
    errors: list[BaseException] = []

    def target(t: int) -> None:
        try:
            writer(store, t, cfg, rejected)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(t,)) for t in range(cfg.threads)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - start
    if errors:
        raise errors[0]
    return seconds, sum(rejected)


@contextmanager
def _fresh_database(url: str | None, folder: Path, name: str) -> Iterator[str]:
    """A new empty database: a SQLite file in ``folder``, or a new database on the given PostgreSQL server."""
    if url is None or parse_url(url).get_backend_name() == "sqlite":
        yield f"sqlite:///{folder / name}.sqlite3"
        return
    from rlli.store.testing import temporary_postgres_database

    with temporary_postgres_database(parse_url(url).render_as_string(hide_password=False)) as u:
        yield u


def cpu_name() -> str:
    from rlli.machine import cpu_model

    return f"{cpu_model()} ({os.cpu_count()} cores)"


def bench_store(url: str | None = None, cfg: BenchConfig = BenchConfig()) -> dict:
    """Figures of the batched and the naive way, measured in the same run. ``url`` = None: fresh SQLite files;
    a PostgreSQL URL: fresh databases created on that server (needs the CREATEDB privilege)."""
    with tempfile.TemporaryDirectory(prefix="rlli-bench-store-") as tmp:
        folder = Path(tmp)
        with _fresh_database(url, folder, "batched") as u, Store.open(u, folder / "data-batched") as store:
            engine = store.dialect
            seconds, rejected = _run(store, cfg, _batched_writer)
            found = store.counts()["ratings"]
        with _fresh_database(url, folder, "naive") as u, Store.open(u, folder / "data-naive") as store:
            seconds_naive, _ = _run(store, cfg, _naive_writer)
            found_naive = store.counts()["ratings"]
    expected, expected_naive = cfg.threads * cfg.per_thread, cfg.threads * cfg.naive_per_thread
    per_second, per_second_naive = expected / seconds, expected_naive / seconds_naive
    return {
        "engine": engine, "url": redact(url) if url else "sqlite (fresh files in a temporary folder)",
        "threads": cfg.threads, "ratings_per_thread": cfg.per_thread, "batch": cfg.batch,
        "expected": expected, "found": found, "lost": expected - found,
        "duplicates_attempted": cfg.threads * min(cfg.duplicates_per_thread, cfg.per_thread),
        "duplicates_rejected": rejected,
        "seconds": round(seconds, 3), "per_second": round(per_second, 1),
        "naive_ratings_per_thread": cfg.naive_per_thread, "naive_expected": expected_naive, "naive_found": found_naive,
        "seconds_naive": round(seconds_naive, 3), "per_second_naive": round(per_second_naive, 1),
        "speedup": round(per_second / per_second_naive, 2), "cpu": cpu_name(),
    }
