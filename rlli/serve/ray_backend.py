"""Rounds on Ray Serve (``RLLI_BACKEND=ray``): the web process routes each job to an engine shard.

The web process (Gradio, the session layer, the store) stays outside Ray; it only hands jobs to the engine
replicas and gets :class:`~rlli.serve.backend.RoundSlice` objects back. ``RLLI_RAY_ADDRESS`` joins a running
cluster (``scripts/ray_local.sh`` starts one); empty starts a local cluster in this process. Jobs are routed by
routing key (:mod:`rlli.serve.routing`) so that similar prompts meet in one replica's batch; a job whose replica
dies is sent to the next shard (Serve restarts the dead one), and after ``retries`` failed tries the caller gets a
:class:`RayBackendError` with a message that says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rlli.config import ROOT, Settings
from rlli.serve.backend import BackendUnavailable
from rlli.serve.batcher import BatcherClosed
from rlli.serve.routing import ROUTINGS, Router, SemanticClusters, sampler_key

if TYPE_CHECKING:  # the round's records cross from the replicas; this module needs no torch to route
    from rlli.serve.backend import Job, RoundSlice
    from rlli.service import Phase, RoundReport

DEFAULT_ROUTE_THRESHOLD = 0.5  # cosine similarity to a cluster's leader prompt (see docs/scale-out.md)


class RayBackendError(BackendUnavailable):
    """The Ray backend could not answer a job (every try hit a dead replica, or the cluster cannot be reached)."""


def _replica_lost_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean 'the replica went away', not 'the round failed': those are retried elsewhere."""
    from ray import exceptions as rex

    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
             "ObjectLostError", "OwnerDiedError")
    return tuple(getattr(rex, n) for n in names if hasattr(rex, n))


class RayBackend:
    """Engine shards on Ray Serve; see the module docstring."""

    name = "ray"

    def __init__(self, settings: Settings, *, replicas: int | None = None, routing: str | None = None,
                 num_cpus: float | None = None, num_gpus: float | None = None, address: str | None = None,
                 route_threshold: float | None = None, retries: int = 2, seed: int = 0,
                 embed: Callable | None = None):
        import ray
        from ray import serve

        from rlli.serve.ray_app import deploy_shards

        self.settings = settings
        self.replicas = int(replicas or getattr(settings, "ray_replicas", 1))
        routing = routing or getattr(settings, "ray_routing", "affinity")
        if routing not in ROUTINGS:
            raise RayBackendError(f"RLLI_RAY_ROUTING must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        gpu_default = 1.0 if settings.device.startswith("cuda") else 0.0
        self.num_cpus = float(num_cpus if num_cpus is not None else getattr(settings, "ray_replica_cpus", 0.5))
        if num_gpus is None:  # RLLI_RAY_REPLICA_GPUS unset (None) = one GPU per replica with a CUDA device, else none
            num_gpus = getattr(settings, "ray_replica_gpus", None)
        self.num_gpus = float(gpu_default if num_gpus is None else num_gpus)
        address = address if address is not None else getattr(settings, "ray_address", "")
        self.retries = retries
        self._lost = _replica_lost_errors()
        self._started_local = False  # this backend started a local cluster (and stops it on close)
        self._connected = False  # this backend connected this process to Ray (and disconnects on close)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
                else:
                    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
                             runtime_env={"env_vars": env})
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at RLLI_RAY_ADDRESS={address}" if address else "a local Ray cluster"
                raise RayBackendError(f"cannot start or join {where}: {e}") from e
            self._connected, self._started_local = True, not address
        if self._started_local:  # a local cluster cannot grow: refuse what would wait for resources forever
            have = ray.cluster_resources()
            for kind, each in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
                if each and self.replicas * each > have.get(kind, 0.0) + 1e-9:
                    ray.shutdown()
                    raise RayBackendError(
                        f"{self.replicas} engine replicas x {each:g} {kind} each do not fit this machine's "
                        f"{have.get(kind, 0.0):g} {kind}s: lower RLLI_RAY_REPLICAS or RLLI_RAY_REPLICA_{kind}S")
        serve.start(proxy_location="Disabled")
        self.handles = deploy_shards(settings, self.replicas, self.num_cpus, self.num_gpus, env=env)
        if embed is None:
            from rlli.text import embed as embed_text

            def embed(prompts):
                return embed_text(prompts, settings.text_model)

        threshold = route_threshold if route_threshold is not None else getattr(settings, "ray_route_threshold",
                                                                                DEFAULT_ROUTE_THRESHOLD)
        self.router = Router(self.replicas, routing, SemanticClusters(embed, threshold), sampler_key(settings), seed)
        self.retried = 0  # jobs sent again after their replica died
        self._closed = False
        self._inflight = 0
        self._idle = threading.Condition()

    def reroute(self, replicas: int, routing: str, seed: int = 0) -> None:
        """Route over the first ``replicas`` shards with ``routing`` from now on (benchmarks compare routings on
        one set of warm shards); call it while no job is in flight."""
        if not 1 <= replicas <= len(self.handles):
            raise RayBackendError(f"replicas must be between 1 and {len(self.handles)}, got {replicas}")
        self.router = Router(replicas, routing, SemanticClusters(self.router.clusters._embed, self.router.clusters.threshold),
                             self.router.sampler, seed)

    @property
    def routing(self) -> str:
        return self.router.routing

    def _call(self, shard: int, method: str, *args) -> object:
        """Call ``method`` on ``shard``; on a lost replica, try the next shards on the ring."""
        with self._idle:
            if self._closed:
                raise BatcherClosed("the Ray backend is closed")
            self._inflight += 1
        try:
            last: BaseException | None = None
            for attempt in range(self.retries + 1):
                target = self.router.fallback(shard, attempt)
                try:
                    return getattr(self.handles[target], method).remote(*args).result()
                except self._lost as e:
                    last = e
                    self.retried += 1
            raise RayBackendError(f"the job was not answered: {self.retries + 1} engine replicas went away while "
                                  f"it ran ({type(last).__name__}); please try again") from last
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def submit(self, job: Job, on_phase: Callable[[Phase], None] | None = None) -> RoundSlice:
        """Route ``job`` to its shard and block until that shard's round ran. ``on_phase`` is not told the phases
        of a remote round (they happen in another process); it hears nothing."""
        return self._call(self.router.pick([r.prompt for r in job.requests]), "run_jobs", job)

    def exclusive(self, job: Job, compare: bool = False,
                  on_phase: Callable[[Phase], None] | None = None) -> RoundReport:
        return self._call(self.router.pick([r.prompt for r in job.requests]), "exclusive", job, compare)

    def counters(self) -> list[dict]:
        return [h.counters.remote().result() for h in self.handles]

    def kill_replica(self, shard: int) -> str:
        """Kill the replica actor of ``shard`` (as a crash would); Serve starts a new one. Returns its actor name."""
        import ray

        from rlli.serve.ray_app import shard_name

        prefix = f"SERVE_REPLICA::{shard_name(shard)}#"
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == "serve" and a["name"].startswith(prefix)]
        if not names:
            raise RayBackendError(f"no live replica of shard {shard}")
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        return names[0]

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop admitting jobs, wait up to ``timeout_s`` for those in flight, then remove the shards: the whole local
        cluster when this backend started it; only its own shards on a cluster it joined."""
        import ray
        from ray import serve

        from rlli.serve.ray_app import shard_name

        with self._idle:
            self._closed = True
            deadline = time.monotonic() + timeout_s
            while self._inflight and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
        if not ray.is_initialized():
            return
        if self._started_local:  # the local cluster goes, and the shards with it
            serve.shutdown()
            ray.shutdown()
            return
        for i in range(len(self.handles)):  # a joined cluster keeps running; only this backend's shards go
            try:
                serve.delete(shard_name(i))
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._connected:
            ray.shutdown()
