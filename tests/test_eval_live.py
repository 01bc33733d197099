"""Live-like evaluation rounds: real prompt sets through the app's grouping, probe and fork rule, chunked."""

import numpy as np
import pytest

from rlli.config import Settings


@pytest.mark.slow
def test_live_like_rounds_go_through_the_apps_path():
    from rlli.policy.live_like import evaluate_live_like, live_rounds

    s = Settings(policy_k_max=4)  # rounds above 4 users are allocated in chunks
    rounds = live_rounds(2, s, k_range=(6, 6), log=lambda m: None)
    for groups, forks, traits, _ in rounds:
        assert sorted(k for g in groups for k in g.members) == list(range(6)) and len(traits) == 6
        assert all(0 <= f.max_shared_steps <= s.steps for f in forks)
    r = evaluate_live_like(2, s, methods=("greedy", "no_sharing"), log=lambda m: None)
    assert 2 <= r["users"][0] <= r["users"][1] <= 16 and r["rounds"] == 2
    assert r["methods"]["greedy"]["vs_greedy"]["mean"] == 0.0
    assert np.isfinite(r["methods"]["no_sharing"]["reward"])
