"""Requests from many browser sessions join one round through a batching window.

The first request of a round opens a window; the round closes when the window has passed or when it
holds ``max_requests``, whichever comes first, and its requests run together in one call of
``run(batch) -> results`` (one result per request, in order). Every submitter blocks until its own
result is back. Rounds run one at a time (the engine and the models are shared); requests that
arrive while a round runs gather in the next one, so concurrent visitors really share steps.

:meth:`RoundBatcher.close` stops admitting: later submissions and the requests still waiting for
their round get :class:`BatcherClosed`; a round already running finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The server is stopping: this request did not run."""


@dataclass
class _Batch(Generic[T, R]):
    opened: float
    items: list[T] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)


class RoundBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], list[R]], window_s: float, max_requests: int):
        if window_s < 0 or max_requests < 1:
            raise ValueError(f"window_s must be >= 0 and max_requests >= 1, got {window_s}, {max_requests}")
        self._run = run
        self.window_s = window_s
        self.max_requests = max_requests
        self._lock = threading.Lock()  # guards _open and _closed
        self._run_lock = threading.Lock()  # one round at a time
        self._open: _Batch | None = None
        self._closed = False
        self.rounds_run = 0

    def submit(self, item: T, timeout: float | None = None) -> R:
        """Add ``item`` to the open round (opening one if none) and wait for its result."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("The server is stopping and takes no new requests.")
            batch = self._open
            leader = batch is None
            if leader:
                batch = self._open = _Batch(opened=time.monotonic())
            batch.items.append(item)
            batch.futures.append(future)
            if len(batch.items) >= self.max_requests:
                self._open = None  # closed: later requests open the next round
                batch.full.set()
        if leader:
            self._lead(batch)
        return future.result(timeout=timeout)

    def exclusive(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` alone, between rounds (under the same lock as rounds): a round that is not batched."""
        if self._closed:
            raise BatcherClosed("The server is stopping and takes no new requests.")
        with self._run_lock:
            return fn()

    def close(self, timeout_s: float = 0.0) -> bool:
        """Stop admitting; requests waiting for a round that has not started get :class:`BatcherClosed`. Waits up to
        ``timeout_s`` for a round already running to finish; True when none is running any more."""
        with self._lock:
            self._closed = True
            batch, self._open = self._open, None
        if batch is not None:
            batch.full.set()  # its leader wakes up, sees the server closed and fails the batch
        if self._run_lock.acquire(timeout=max(0.0, timeout_s)):
            self._run_lock.release()
            return True
        return False

    def _lead(self, batch: _Batch) -> None:
        """The request that opened a round closes it when the window ends, then runs it."""
        batch.full.wait(timeout=max(0.0, batch.opened + self.window_s - time.monotonic()))
        with self._lock:
            if self._open is batch:
                self._open = None
        with self._run_lock:
            if self._closed:
                for f in batch.futures:
                    f.set_exception(BatcherClosed("The server is stopping: this request did not run. Try again "
                                                  "when it is back."))
                return
            try:
                results = self._run(list(batch.items))
                if len(results) != len(batch.items):
                    raise RuntimeError(f"a round of {len(batch.items)} requests returned {len(results)} results")
            except BaseException as e:  # every submitter of the round sees the failure
                for f in batch.futures:
                    f.set_exception(e)
                return
            finally:
                self.rounds_run += 1
            for f, r in zip(batch.futures, results):
                f.set_result(r)
