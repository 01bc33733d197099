"""The agents' jobs: ratings that run in the background after a round is stored.

One worker pool (``workers`` threads; the judge itself may send a job's ratings concurrently), one future
per generation, a bounded backlog and pruning of finished jobs. A person never waits for agents they did not
ask for: their image comes back before any agent rates, and when the backlog is full a new job is not queued
but its ratings are recorded as ``pending`` at once (``rejudge`` fills them later) and the page says the agents
are busy. On :meth:`AgentJobs.close` jobs that have not started are cancelled and recorded as ``pending``;
running ones get ``grace_s`` to finish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
R = TypeVar("R")

BUSY = "busy"  # what agent_scores says for a job that was not queued because the backlog was full


@dataclass
class _Job(Generic[R]):
    future: Future
    pending: Callable[[], None]  # records the job's ratings as pending (a placeholder rejudge replaces)


class AgentJobs(Generic[R]):
    def __init__(self, workers: int = 1, backlog: int = 32, keep: int = 2000):
        if workers < 1 or backlog < 1:
            raise ValueError("workers and backlog must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agents")
        self.backlog, self.keep = backlog, keep
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.Lock()
        self._closed = False

    def waiting(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(not j.future.done() for j in self._jobs.values())

    def submit(self, key: int, work: Callable[[], R], pending: Callable[[], None]) -> bool:
        """Queue ``work`` for generation ``key``; False (and ``pending()`` called now) when the backlog is full or
        the runner is closed."""
        with self._lock:
            busy = self._closed or sum(not j.future.done() for j in self._jobs.values()) >= self.backlog
            if not busy:
                self._jobs[key] = _Job(self._pool.submit(work), pending)
                self._prune()
                return True
            done: Future = Future()
            done.set_result(BUSY)
            self._jobs[key] = _Job(done, pending)
        _safely(pending)
        return False

    def result(self, key: int, wait_s: float) -> R | str | None:
        """The job's result (waiting up to ``wait_s``); None while it runs, [] for an unknown or failed job, and
        :data:`BUSY` when it was recorded as pending instead of queued."""
        with self._lock:
            job = self._jobs.get(int(key))
        if job is None:
            return []
        try:
            return job.future.result(timeout=wait_s)
        except FutureTimeout:
            return None
        except Exception as e:  # noqa: BLE001 - a judge that broke: the person's rating is stored all the same
            log.error("agents could not rate generation %s: %s", key, e)
            return []

    def done(self, key: int) -> bool:
        with self._lock:
            job = self._jobs.get(int(key))
        return job is None or job.future.done()

    def close(self, grace_s: float = 5.0) -> dict[str, int]:
        """Stop taking jobs; cancel those not started (recorded as pending) and give running ones ``grace_s``.
        Returns counts: cancelled, finished, still running."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        cancelled = 0
        for j in jobs:
            if j.future.cancel():
                cancelled += 1
                _safely(j.pending)
        running = [j.future for j in jobs if not j.future.done()]
        finished, still = wait_futures(running, timeout=grace_s)
        for j in jobs:
            if j.future in still:
                _safely(j.pending)  # recorded as pending now; a late real rating replaces the placeholder
        self._pool.shutdown(wait=False, cancel_futures=True)
        return {"cancelled": cancelled, "finished": len(finished), "still_running": len(still)}

    def _prune(self) -> None:
        """Finished jobs beyond the newest ``keep`` are forgotten (their ratings are in the store)."""
        if len(self._jobs) <= self.keep:
            return
        for key in sorted(self._jobs)[:len(self._jobs) - self.keep]:
            if self._jobs[key].future.done():
                del self._jobs[key]


def _safely(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - recording a placeholder must never take the app down
        log.exception("could not record pending agent ratings")


__all__ = ["AgentJobs", "BUSY"]
