"""Baselines for the sequential environment (rlli/network/env.py, ``SequentialAllocationEnv``).

* **myopic**: the best found allocation of each round on that round's reward (it sees the server queue and the
  batteries in the state, and ignores what its choice does to later rounds).
* **mpc**: a lookahead. Candidates: the myopic action, the same with every member's shared steps scaled by
  0.75, 0.5, 0.25 and 0 (equal shares), and greedy. Each is scored by its reward now plus the discounted reward
  of ``horizon`` later rounds simulated ``samples`` times from the environment's own dynamics (arrivals, stays,
  fading, queue, batteries) with greedy acting in them; the same simulated futures for every candidate.
"""

from __future__ import annotations

import numpy as np

from rlli.network.allocation import action_for, evaluate, map_actions
from rlli.network.env import SequentialAllocationEnv, advance
from rlli.network.state import RoundState
from rlli.policy.baselines import best_found, greedy

SCALES = (0.75, 0.5, 0.25, 0.0)


def myopic(env: SequentialAllocationEnv, st: RoundState, rng: np.random.Generator, **kw) -> np.ndarray:
    return best_found(st, env.params, rng, **kw)[0]


def mpc(env: SequentialAllocationEnv, st: RoundState, rng: np.random.Generator, horizon: int = 3, samples: int = 4,
        **kw) -> np.ndarray:
    p = env.params
    base = best_found(st, p, rng, **kw)
    steps = map_actions(st, base).steps
    members = st.mask & ~st.is_anchor
    cands = [base[0]] + [action_for(st, np.where(members, np.floor(steps * a + 1e-9), 0))[0] for a in SCALES]
    cands.append(greedy(st, p)[0])
    seeds = rng.integers(0, 2**31 - 1, size=samples)
    scores = []
    for a in cands:
        out = evaluate(st, a[None], p, env.qoe_fn)
        total = float(out.reward[0])
        future = 0.0
        for sd in seeds:
            r = np.random.default_rng(int(sd))
            cur, last = st, out
            for h in range(1, horizon + 1):
                cur = advance(r, cur, last, p, env.curves, env.arrival_rate, env.mean_stay, env.background_load)
                last = evaluate(cur, greedy(cur, p), p, env.qoe_fn)
                future += env.gamma**h * float(last.reward[0])
        scores.append(total + future / samples)
    return cands[int(np.argmax(scores))]


SEQ_BASELINES = {"myopic": myopic, "mpc": mpc}
