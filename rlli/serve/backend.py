"""Where rounds run: the backend seam between the session layer and the round function.

The session layer hands each party's requests (a person and the personas they invited) to a
:class:`Backend` as a :class:`Job` and gets back a :class:`RoundSlice`: the whole round that took the job
and where the job's requests sit in it. The web process keeps the store and the page; a backend only turns
requests into a :class:`~rlli.service.RoundReport` through :func:`rlli.service.run_round`.

- :class:`InProcessBackend` (the default; CI and Spaces): a :class:`~rlli.serve.batcher.RoundBatcher`
  gathers jobs for ``RLLI_ROUND_WINDOW_S`` seconds or ``RLLI_ROUND_MAX_REQUESTS`` requests and runs one round
  at a time in this process.
- Ray Serve (``RLLI_BACKEND=ray``, :mod:`rlli.serve.ray_backend`): the same function in engine replicas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rlli.config import Settings
from rlli.diffusion.engine import Request
from rlli.personas.judge import BigFive
from rlli.serve.batcher import BatcherClosed, RoundBatcher
from rlli.service import Phase, RoundReport, run_round

BACKENDS = ("inprocess", "ray")


class BackendUnavailable(RuntimeError):
    """A backend could not answer a job (a remote one lost its replicas or cannot be reached); the message says so
    and can be shown to the visitor."""


@dataclass(frozen=True)
class Job:
    """One party's requests, in order, with each requester's Big-Five (picklable: it may cross processes)."""

    requests: tuple[Request, ...]
    traits: tuple[BigFive, ...]

    def __post_init__(self) -> None:
        if not self.requests or len(self.requests) != len(self.traits):
            raise ValueError(f"a job needs requests and one trait vector each ({len(self.requests)} / {len(self.traits)})")


@dataclass(frozen=True)
class RoundSlice:
    """The round that took a job, and where the job's requests sit in ``report.requests``."""

    report: RoundReport
    indices: tuple[int, ...]


class Backend(Protocol):
    name: str

    def submit(self, job: Job, on_phase: Callable[[Phase], None] | None = None) -> RoundSlice:
        """Blocks until the round that took ``job`` ran; raises :class:`BatcherClosed` once closed."""

    def exclusive(self, job: Job, compare: bool = False,
                  on_phase: Callable[[Phase], None] | None = None) -> RoundReport:
        """A round of this job alone (the Shared round tab), between batched rounds."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop admitting; jobs still waiting for a round fail with :class:`BatcherClosed`; a running round gets up
        to ``timeout_s`` to finish."""


@dataclass
class _Pending:
    job: Job
    on_phase: Callable[[Phase], None] | None


class InProcessBackend:
    """Rounds in this process, one at a time, batched over a window."""

    name = "inprocess"

    def __init__(self, settings: Settings, run: Callable[..., RoundReport] = run_round):
        from rlli.diffusion.trunks import TrunkCache

        self.settings = settings
        self._run = run
        # trunks kept across this backend's rounds (bounded by bytes): a lone request may start from a similar
        # earlier request's trunk
        self.trunks = TrunkCache(max_bytes=int(settings.trunk_cache_mib * 2**20)) if settings.trunk_cache_mib else None
        self.batcher: RoundBatcher[_Pending, RoundSlice] = RoundBatcher(
            self._run_jobs, settings.round_window_s, settings.round_max_requests)

    def submit(self, job: Job, on_phase: Callable[[Phase], None] | None = None) -> RoundSlice:
        return self.batcher.submit(_Pending(job, on_phase))

    def exclusive(self, job: Job, compare: bool = False,
                  on_phase: Callable[[Phase], None] | None = None) -> RoundReport:
        return self.batcher.exclusive(lambda: self._run(list(job.requests), self.settings, traits=list(job.traits),
                                                        compare=compare, on_phase=on_phase))

    def close(self, timeout_s: float = 5.0) -> None:
        self.batcher.close(timeout_s)

    def _run_jobs(self, pending: list[_Pending]) -> list[RoundSlice]:
        requests, traits, spans = [], [], []
        for p in pending:
            start = len(requests)
            requests += [Request(r.prompt, seed=r.seed, request_id=str(start + i)) for i, r in enumerate(p.job.requests)]
            traits += list(p.job.traits)
            spans.append(tuple(range(start, len(requests))))
        listeners = [p.on_phase for p in pending if p.on_phase is not None]
        report = self._run(requests, self.settings, traits=traits, on_phase=fan_out(listeners), trunks=self.trunks)
        return [RoundSlice(report, span) for span in spans]


def fan_out(listeners: list[Callable[[Phase], None]]) -> Callable[[Phase], None]:
    """One phase callback for every visitor of the round; a progress bar that fails never fails the round."""

    def tell(phase: Phase) -> None:
        for listener in listeners:
            try:
                listener(phase)
            except Exception:  # noqa: BLE001 - a dead browser's progress bar
                pass

    return tell


def backend_for(settings: Settings) -> Backend:
    """The configured backend (``RLLI_BACKEND``): in-process by default, Ray Serve with ``ray``."""
    kind = getattr(settings, "backend", "inprocess")
    if kind == "ray":
        from rlli.serve.ray_backend import RayBackend  # optional: needs ray[serve]

        return RayBackend(settings)
    return InProcessBackend(settings)


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "BatcherClosed", "InProcessBackend", "Job", "RoundSlice",
           "backend_for", "fan_out"]
