"""Which engine replica takes a job: sharing-aware routing.

Sharing only happens between requests of one round, and a round is one replica's batch. With N replicas and
random routing, two similar prompts meet in the same batch about 1/N as often as on one replica, so sharing
falls with the replica count. The router gives every job a **routing key** -- the sampler settings plus a
coarse semantic cluster of its first prompt (the person's; the personas they invited write versions of it) --
and sends every job with one key to the same replica, so similar, compatible requests keep meeting.

The clusters are formed online (leader clustering on the prompt embeddings of the configured text model): a
prompt joins the nearest known cluster leader when their cosine similarity reaches ``threshold``, else it leads
a new cluster. A new key goes to the replica holding the fewest keys (then the fewest jobs), and stays there.
The router lives in the one web process; its state is only a cache (losing it costs affinity for a moment,
never a request).
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

ROUTINGS = ("affinity", "random")


def sampler_key(settings) -> str:
    """What requests must agree on to share steps at all: backbone, steps, sampler and guidance."""
    return f"{settings.backbone}|{settings.steps}|{settings.scheduler}|{settings.guidance_scale:g}"


class SemanticClusters:
    """Online leader clustering of unit-length prompt embeddings; at most ``max_clusters`` leaders (least
    recently used forgotten first)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], threshold: float = 0.6, max_clusters: int = 1024):
        if not -1.0 <= threshold <= 1.0 or max_clusters < 1:
            raise ValueError(f"threshold must be in [-1, 1] and max_clusters >= 1, got {threshold}, {max_clusters}")
        self._embed = embed
        self.threshold = threshold
        self.max_clusters = max_clusters
        self._leaders: OrderedDict[int, np.ndarray] = OrderedDict()  # cluster id -> leader embedding
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._leaders)

    def cluster_of(self, prompt: str) -> int:
        e = np.asarray(self._embed([prompt]), dtype=np.float32)[0]
        with self._lock:
            if self._leaders:
                ids = list(self._leaders)
                sims = np.stack([self._leaders[i] for i in ids]) @ e
                best = int(np.argmax(sims))
                if sims[best] >= self.threshold:
                    self._leaders.move_to_end(ids[best])
                    return ids[best]
            cid = self._next
            self._next += 1
            self._leaders[cid] = e
            if len(self._leaders) > self.max_clusters:
                self._leaders.popitem(last=False)
            return cid


class Router:
    """Picks a replica (0..n-1) for each job: by routing key (``affinity``) or at random (``random``)."""

    def __init__(self, replicas: int, routing: str = "affinity", clusters: SemanticClusters | None = None,
                 sampler: str = "", seed: int = 0):
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        if routing == "affinity" and clusters is None:
            raise ValueError("affinity routing needs semantic clusters")
        self.replicas = replicas
        self.routing = routing
        self.clusters = clusters
        self.sampler = sampler
        self._rng = random.Random(seed)
        self._home: OrderedDict[str, int] = OrderedDict()  # routing key -> replica
        self._keys = [0] * replicas  # keys homed on each replica
        self._jobs = [0] * replicas  # jobs routed to each replica
        self._lock = threading.Lock()

    def key(self, prompts: Sequence[str]) -> str:
        """The routing key of a job: the sampler settings and the cluster of its first prompt."""
        assert self.clusters is not None
        return f"{self.sampler}|c{self.clusters.cluster_of(prompts[0])}"

    def pick(self, prompts: Sequence[str]) -> int:
        if self.routing == "random":
            with self._lock:
                r = self._rng.randrange(self.replicas)
                self._jobs[r] += 1
                return r
        key = self.key(prompts)
        with self._lock:
            r = self._home.get(key)
            if r is None:
                r = min(range(self.replicas), key=lambda i: (self._keys[i], self._jobs[i], i))
                self._home[key] = r
                self._keys[r] += 1
                if len(self._home) > 4 * (self.clusters.max_clusters if self.clusters else 1024):
                    old, rr = self._home.popitem(last=False)
                    self._keys[rr] -= 1
            else:
                self._home.move_to_end(key)
            self._jobs[r] += 1
            return r

    def fallback(self, replica: int, attempt: int) -> int:
        """Where a job goes after its replica failed ``attempt`` times: the next replica on the ring."""
        return (replica + attempt) % self.replicas

    @property
    def jobs_per_replica(self) -> list[int]:
        return list(self._jobs)
