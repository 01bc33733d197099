"""The Ray Serve application: engine deployments whose ``@serve.batch`` is the round batcher.

Each engine replica gathers jobs for ``RLLI_ROUND_WINDOW_S`` seconds or ``RLLI_ROUND_MAX_REQUESTS`` jobs (the
same two knobs, and the same counting, as the in-process batcher) and runs them as one round through the
unchanged :func:`rlli.service.run_round`, in a worker thread (``asyncio.to_thread``) so the replica keeps
answering health checks while it denoises. Every job gets back its :class:`~rlli.serve.backend.RoundSlice`.

Sharing-aware routing needs to send a job to one chosen replica, so the application is a set of *shards*: one
deployment of one replica each (``engine-0`` ... ``engine-{n-1}``); Serve restarts a shard's replica when it
dies. The router in the web process (:mod:`rlli.serve.routing`) picks the shard.
"""

from __future__ import annotations

import asyncio
import os

from ray import serve

from rlli.diffusion.engine import Request
from rlli.serve.backend import Job, RoundSlice

APP_PREFIX = "rlli-engine-"


def shard_name(i: int) -> str:
    return f"{APP_PREFIX}{i}"


@serve.deployment(max_ongoing_requests=256, health_check_period_s=2.0, health_check_timeout_s=30.0)
class EngineReplica:
    """One engine replica: loads the backbone, the text model and the policy once, then runs rounds."""

    def __init__(self, settings, threads: int = 1):
        import torch

        from rlli.diffusion import get_backbone
        from rlli.policy.api import get_policy

        torch.set_num_threads(max(1, threads))
        self.settings = settings
        self.rounds_started = 0
        self.rounds_done = 0
        self.run_jobs.set_max_batch_size(settings.round_max_requests)
        self.run_jobs.set_batch_wait_timeout_s(settings.round_window_s)
        get_backbone(settings)  # warm: the first round should not pay the load
        get_policy(settings.policy, settings)

    def pid(self) -> int:
        return os.getpid()

    def counters(self) -> dict:
        """Rounds started and finished by this replica (the kill benchmark waits for a round in flight)."""
        return {"pid": os.getpid(), "rounds_started": self.rounds_started, "rounds_done": self.rounds_done}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=3.0)  # both replaced from the settings in __init__
    async def run_jobs(self, jobs: list[Job]) -> list[RoundSlice]:
        requests, traits, spans = [], [], []
        for job in jobs:
            start = len(requests)
            requests += [Request(r.prompt, seed=r.seed, request_id=str(start + i)) for i, r in enumerate(job.requests)]
            traits += list(job.traits)
            spans.append(tuple(range(start, len(requests))))
        self.rounds_started += 1
        report = await asyncio.to_thread(_round, requests, self.settings, traits, False)
        self.rounds_done += 1
        return [RoundSlice(report, span) for span in spans]

    async def exclusive(self, job: Job, compare: bool = False):
        """A round of this job alone (the Shared round tab); it does not wait for a batch window."""
        return await asyncio.to_thread(_round, list(job.requests), self.settings, list(job.traits), compare)

    async def __call__(self, job: Job) -> RoundSlice:
        return await self.run_jobs(job)


def _round(requests, settings, traits, compare):
    from rlli.service import run_round

    return run_round(requests, settings, traits=traits, compare=compare)


def deploy_shards(settings, replicas: int, num_cpus: float, num_gpus: float, threads: int = 1,
                  env: dict[str, str] | None = None) -> list:
    """Deploy ``replicas`` engine shards (one replica each) and return their handles, shard order."""
    opts = {"num_cpus": num_cpus}
    if num_gpus:
        opts["num_gpus"] = num_gpus
    if env:
        opts["runtime_env"] = {"env_vars": dict(env)}
    from ray.serve.api import RunTarget

    targets = [RunTarget(EngineReplica.options(name="engine", num_replicas=1, ray_actor_options=opts).bind(settings, threads),
                         name=shard_name(i), route_prefix=None) for i in range(replicas)]
    return list(serve.run_many(targets))  # all shards start at once; returns when every one is running
