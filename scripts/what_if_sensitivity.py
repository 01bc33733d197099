"""How often does a method re-allocate when one user's trait changes? The System tab's what-if control, measured
over held-out rounds: for each round one user (drawn at random) gets TRAIT set to VALUE; we count the rounds whose
allocation moves (any member's shared steps, or a band share by more than 1 point) and the rounds where that user's
own shared steps move.

    python scripts/what_if_sensitivity.py [--states 200] [--trait neuroticism] [--value 0.95] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from rlli.network.allocation import evaluate  # noqa: E402
from rlli.network.params import SystemParams  # noqa: E402
from rlli.personas.judge import TRAITS  # noqa: E402
from rlli.policy.baselines import BASELINES  # noqa: E402
from rlli.policy.evaluate import heldout_states, learned_actions, seed_folders  # noqa: E402


def allocation(st, p, name: str):
    if name in BASELINES:
        a = BASELINES[name](st, p, np.random.default_rng(0))
    else:
        a = learned_actions(seed_folders(ROOT / "assets" / "policies", name)[0], st, p)
    return evaluate(st, a, p).allocation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=200)
    ap.add_argument("--trait", choices=TRAITS, default="neuroticism")
    ap.add_argument("--value", type=float, default=0.95)
    ap.add_argument("--methods", default="gddpg,gddpg_li,ddpg,greedy,best_found")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    p = SystemParams()
    st = heldout_states(p, a.states)
    rng = np.random.default_rng(0)
    user = np.array([rng.choice(np.flatnonzero(st.mask[b])) for b in range(st.batch)])
    changed = copy.deepcopy(st)
    changed.traits[np.arange(st.batch), user, TRAITS.index(a.trait)] = a.value
    out = {"states": a.states, "trait": a.trait, "value": a.value, "methods": {}}
    for name in a.methods.split(","):
        x, y = allocation(st, p, name), allocation(changed, p, name)
        moved = ((x.steps != y.steps) | (np.abs(x.bandwidth_share - y.bandwidth_share) > 0.01)).any(axis=1)
        own = x.steps[np.arange(st.batch), user] != y.steps[np.arange(st.batch), user]
        out["methods"][name] = {"rounds_reallocated": float(moved.mean()), "own_steps_moved": float(own.mean()),
                                "own_steps_change": float((y.steps - x.steps)[np.arange(st.batch), user].mean())}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{a.states} held-out rounds; one user per round gets {a.trait} = {a.value}")
    for name, m in out["methods"].items():
        print(f"{name:>11s}  rounds re-allocated {100 * m['rounds_reallocated']:5.1f}%  that user's shared steps moved "
              f"{100 * m['own_steps_moved']:5.1f}% (mean change {m['own_steps_change']:+.3f})")


if __name__ == "__main__":
    main()
