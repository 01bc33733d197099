"""Allocation methods that do not learn: equal split, random, greedy heuristic, no sharing, fork_max, and
"best found", a search that optimises each round directly on the true reward. It is the best allocation we
know how to find, not a proven optimum: evaluation reports on how many rounds any other method beats it.
``oracle`` stays as an accepted alias of ``best_found`` so old configurations still load.

Each maps a batch of rounds to actions in [-1, 1] (see rlli/network/allocation.py), so every method
goes through the same feasible mapping and the same system model.
"""

from __future__ import annotations

import numpy as np

from rlli.network.allocation import action_for, evaluate
from rlli.network.channel import shannon_rate
from rlli.network.params import SystemParams
from rlli.network.state import RoundState

EQUAL_FRACTION = 1.0 / 3.0  # shared fraction of the equal baseline: "about a third of N" (HIS, ICC 2025)
GREEDY_TOLERANCE = 0.03  # the greedy heuristic's quality drop limit (RLLI_QUALITY_TOLERANCE's default)


def no_sharing(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None) -> np.ndarray:
    return action_for(st, np.zeros_like(st.max_shared))


def equal(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None) -> np.ndarray:
    """Equal bandwidth and compute, every member sharing min(round(N / 3), its cap) steps."""
    return action_for(st, np.minimum(int(round(EQUAL_FRACTION * p.steps)), st.max_shared))


def fork_max(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None) -> np.ndarray:
    """Every member shares its fork decision's maximum; equal bandwidth and compute (what sharing alone saves)."""
    return action_for(st, st.max_shared)


def random(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(st.batch, 3 * st.k_max))


def greedy_steps(st: RoundState, tolerance: float = GREEDY_TOLERANCE) -> np.ndarray:
    """Each member shares the most steps whose predicted quality (and every smaller step's) stays within
    the tolerance."""
    ok = np.minimum.accumulate(st.quality >= 1.0 - tolerance, axis=2)
    s = np.minimum(ok.sum(axis=2) - 1, st.max_shared)
    return np.where(st.mask & ~st.is_anchor, s, 0)  # the anchor forks with its last member anyway


def greedy(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None) -> np.ndarray:
    """Share within a quality tolerance; bandwidth so every hand-off takes the same time (share
    proportional to 1 / spectral efficiency at an equal split); compute in proportion to how many
    users wait on each group's prefix."""
    s = greedy_steps(st)
    n_users = np.maximum(st.mask.sum(axis=1, keepdims=True), 1)
    se = shannon_rate(np.full(st.mask.shape, p.bandwidth_hz) / n_users, np.where(st.mask, st.gain, 1.0), p)
    inv = np.where(st.mask, 1.0 / np.maximum(se, 1.0), 0.0)
    bw = inv / np.maximum(inv.max(axis=1, keepdims=True), 1e-30)
    waiting = np.zeros(st.mask.shape)
    for g in range(st.k_max):
        members = st.mask & (st.group == g)
        waiting = np.where(members, (members & (s > 0)).sum(axis=1, keepdims=True), waiting)
    comp = waiting / np.maximum(waiting.max(axis=1, keepdims=True), 1)
    return action_for(st, s, bw, comp)


def _refine_steps(st1: RoundState, a: np.ndarray, p: SystemParams, sweeps: int = 2) -> tuple[np.ndarray, float]:
    """Coordinate search: for each user in turn, try every shared-step count (others fixed)."""
    a = a.copy()
    k = st1.k_max
    best = float(evaluate(st1, a[None], p).reward[0])
    users = np.flatnonzero(st1.mask[0])
    for _ in range(sweeps):
        improved = False
        for u in users:
            cap = int(st1.max_shared[0, u])
            if cap == 0:
                continue
            cand = np.repeat(a[None], cap + 1, axis=0)
            cand[:, 2 * k + u] = 2.0 * np.arange(cap + 1) / cap - 1.0
            r = evaluate(st1.repeat(cap + 1), cand, p).reward
            j = int(np.argmax(r))
            if r[j] > best + 1e-12:
                best, a, improved = float(r[j]), cand[j], True
        if not improved:
            break
    return a, best


def equal_share_steps(st1: RoundState, p: SystemParams, steps: np.ndarray | None = None,
                      sweeps: int = 4) -> tuple[np.ndarray, float]:
    """Exhaustive per-user step search with equal bandwidth and compute shares: for each user in turn, every
    step count 0..cap (the others fixed), until a full sweep changes nothing. Starts from ``steps`` (default
    greedy's)."""
    s0 = greedy_steps(st1) if steps is None else steps
    return _refine_steps(st1, action_for(st1, s0)[0], p, sweeps=sweeps)


def _cross_entropy(st1: RoundState, p: SystemParams, rng: np.random.Generator, start: np.ndarray, start_r: float,
                   population: int, iterations: int, elite: int, std0: float) -> tuple[np.ndarray, float]:
    dim = start.shape[0]
    rep = st1.repeat(population)
    best_a, best_r = start.copy(), start_r
    mean, std = start.copy(), np.full(dim, std0)
    for _ in range(iterations):
        cand = np.clip(mean + std * rng.standard_normal((population, dim)), -1.0, 1.0)
        cand[0] = best_a
        r = evaluate(rep, cand, p).reward
        order = np.argsort(-r)[:elite]
        if r[order[0]] > best_r:
            best_r, best_a = float(r[order[0]]), cand[order[0]].copy()
        mean = 0.7 * cand[order].mean(axis=0) + 0.3 * mean
        std = np.maximum(0.7 * cand[order].std(axis=0) + 0.3 * std, 0.03)
    return best_a, best_r


def best_found_one(st1: RoundState, p: SystemParams, rng: np.random.Generator, population: int = 192,
                   iterations: int = 20, elite: int = 16, restarts: int = 2) -> np.ndarray:
    """The best action found for ONE round on the true reward: (1) the heuristics and the exhaustive per-user
    step search with equal shares as starts; (2) cross-entropy search from the best start and from
    ``restarts`` - 1 random starts; (3) a per-user step search on the winner."""
    starts = np.concatenate([greedy(st1, p), equal(st1, p), no_sharing(st1, p), fork_max(st1, p)])
    es, _ = equal_share_steps(st1, p)
    starts = np.concatenate([starts, es[None]])
    r0 = evaluate(st1.repeat(len(starts)), starts, p).reward
    best_a, best_r = starts[int(np.argmax(r0))], float(r0.max())
    for i in range(max(restarts, 1)):
        a0 = best_a if i == 0 else rng.uniform(-1.0, 1.0, best_a.shape)
        r_a0 = best_r if i == 0 else float(evaluate(st1, a0[None], p).reward[0])
        a, r = _cross_entropy(st1, p, rng, a0, r_a0, population, iterations, elite, 0.6 if i == 0 else 0.8)
        if r > best_r:
            best_a, best_r = a, r
    best_a, _ = _refine_steps(st1, best_a, p)
    return best_a


def best_found(st: RoundState, p: SystemParams, rng: np.random.Generator | None = None, **kw) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng(0)
    return np.stack([best_found_one(st.take(i), p, rng, **kw) for i in range(st.batch)])


oracle = best_found  # the old name


BASELINES = {"equal": equal, "fork_max": fork_max, "random": random, "greedy": greedy, "no_sharing": no_sharing,
             "best_found": best_found, "oracle": best_found}
