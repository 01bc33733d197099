"""Trunks kept across rounds: a bounded, byte-counted memory of earlier trunks' fork-step latents.

A round's trunk (a request that ran from its own seed) leaves, at the few steps a fork can take, its latent
and scheduler state; a later request whose fork probe agrees with a kept trunk starts from it instead of
from noise (:func:`rlli.policy.sharing.kept_trunk_starts` decides; the engine resumes it through
:class:`rlli.diffusion.engine.Start`). Only latents at those steps are kept, never every step.

Entries are comparable only under one *key*: backbone, scheduler, steps, guidance scale, seed policy and fork
rule; a lookup never crosses keys. Eviction is least-recently-used by bytes, with hit, miss and eviction counts.
The clock is injectable so that tests and trace replays use their own time, never the wall clock's.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rlli.diffusion.engine import Plan, state_bytes


def trunk_key(backbone_name: str, plan: Plan, seed_policy: str, rule_id: str) -> tuple:
    """Everything that makes two trunks' latents comparable."""
    return (backbone_name, plan.scheduler, int(plan.steps), float(plan.guidance_scale), seed_policy, rule_id)


@dataclass
class KeptTrunk:
    entry: str
    key: tuple
    prompt: str
    embedding: np.ndarray  # unit-norm prompt embedding (the lookup's first filter)
    seed: int
    request_id: str
    created: float  # on the cache's clock
    probe_step: int
    latents: dict[int, tuple[torch.Tensor, object]]  # step -> (latent, scheduler state); includes probe_step
    nbytes: int = 0
    hits: int = 0

    def steps(self) -> list[int]:
        return sorted(self.latents)


@dataclass
class CacheStats:
    entries: int = 0
    bytes: int = 0
    max_bytes: int = 0
    puts: int = 0
    lookups: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    rejected: int = 0  # entries larger than the whole budget
    probe_passes: int = 0


@dataclass
class TrunkCache:
    """Kept trunks under a byte budget (least recently used goes first)."""

    max_bytes: int = 64 * 2**20
    clock: Callable[[], float] = field(default=None)  # type: ignore[assignment]
    _entries: OrderedDict = field(default_factory=OrderedDict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self):
        if self.max_bytes < 0:
            raise ValueError("the trunk cache budget cannot be negative")
        if self.clock is None:
            import time

            self.clock = time.monotonic
        self.stats.max_bytes = self.max_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: tuple, prompt: str, embedding: np.ndarray, seed: int, request_id: str, probe_step: int,
            latents: dict[int, tuple[torch.Tensor, object]]) -> KeptTrunk | None:
        """Keep a trunk's latents (copied); evicts the least recently used entries until it fits. None when one
        entry alone exceeds the budget."""
        kept = {int(s): (lat.detach().to("cpu").clone(), copy.deepcopy(sch)) for s, (lat, sch) in latents.items()}
        nbytes = sum(state_bytes(lat, sch) for lat, sch in kept.values())
        self.stats.puts += 1
        if nbytes > self.max_bytes:
            self.stats.rejected += 1
            return None
        while self.stats.bytes + nbytes > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.stats.bytes -= old.nbytes
            self.stats.evictions += 1
        e = KeptTrunk(f"t{next(self._ids)}", key, prompt, np.asarray(embedding, np.float32), int(seed), request_id,
                      float(self.clock()), int(probe_step), kept, nbytes)
        self._entries[e.entry] = e
        self.stats.bytes += nbytes
        self.stats.entries = len(self._entries)
        return e

    def candidates(self, key: tuple, embedding: np.ndarray, min_similarity: float, limit: int = 2) -> list[KeptTrunk]:
        """Entries under ``key`` whose prompt embedding is at least ``min_similarity`` cosine-similar, closest first."""
        self.stats.lookups += 1
        e = np.asarray(embedding, np.float32)
        scored = [(float(t.embedding @ e), t) for t in self._entries.values() if t.key == key]
        scored = sorted([x for x in scored if x[0] >= min_similarity], key=lambda x: -x[0])
        return [t for _, t in scored[:limit]]

    def hit(self, entry: KeptTrunk) -> float:
        """Record a hit (the entry becomes most recently used); returns its age in seconds on the cache's clock."""
        self.stats.hits += 1
        entry.hits += 1
        if entry.entry in self._entries:
            self._entries.move_to_end(entry.entry)
        return float(self.clock()) - entry.created

    def miss(self) -> None:
        self.stats.misses += 1

    def snapshot(self) -> dict:
        return dict(vars(self.stats), entries=len(self._entries))
