"""Live-like evaluation rounds: real prompt sets, grouped by the app's grouping, fork decisions by the configured
backbone's probe and the shipped fork rule, K = 2..16 users (rounds above K_max allocated in chunks, as the app
does), through the same ``build_round_state`` / ``Policy.allocate`` path the service calls.

Prompt sets: each round takes floor(K / 2) prompts from ``assets/bench/paraphrase_mix.txt`` (four scenes,
four paraphrases each: what a crowd of similar requests looks like) and the rest from
``assets/bench/heldout_prompts.json`` (64 held-out scenes of the embedded world), in random order.
"""

from __future__ import annotations

import json
import time

import numpy as np

from rlli.config import ASSETS, Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, Request
from rlli.grouping import group_prompts
from rlli.policy.api import build_round_state, load_policy
from rlli.policy.sharing import break_budget, decide_forks, fork_rule_path, load_fork_rule, measured_with

LIVE_SEED = 4_242


def prompt_pools() -> tuple[list[str], list[str]]:
    mix = [ln.strip() for ln in (ASSETS / "bench" / "paraphrase_mix.txt").read_text().splitlines() if ln.strip()]
    held = [d["prompt"] for d in json.loads((ASSETS / "bench" / "heldout_prompts.json").read_text())]
    return mix, held


def live_rounds(n: int, settings: Settings, k_range: tuple[int, int] = (2, 16), seed: int = LIVE_SEED, log=print):
    """``n`` rounds as (groups, forks, traits, seed), fork decisions from the backbone's probe."""
    rng = np.random.default_rng(seed)
    mix, held = prompt_pools()
    backbone = get_backbone(settings)
    engine, plan = Engine(backbone), plan_from(settings)
    rule, notice = load_fork_rule(fork_rule_path(settings), measured_with(backbone.name, plan, settings.text_model))
    if rule is None:
        raise ValueError(f"live-like rounds need a usable fork rule: {notice}")
    out = []
    t0 = time.perf_counter()
    for _ in range(n):
        k = int(rng.integers(k_range[0], k_range[1] + 1))
        prompts = list(rng.choice(mix, k // 2, replace=False)) + list(rng.choice(held, k - k // 2, replace=False))
        prompts = [prompts[j] for j in rng.permutation(k)]
        requests = [Request(p, int(rng.integers(0, 2**31 - 1)), f"r{j}") for j, p in enumerate(prompts)]
        groups = group_prompts(prompts, settings.group_threshold, settings.text_model)
        decision = decide_forks(engine, requests, groups, plan, rule, settings.quality_tolerance, break_budget(settings))
        traits = [tuple(rng.uniform(0, 1, 5)) for _ in range(k)]
        out.append((groups, decision.forks, traits, int(rng.integers(0, 2**31 - 1))))
    log(f"{n} live-like rounds in {time.perf_counter() - t0:.1f} s")
    return out


def evaluate_live_like(n: int, settings: Settings, methods=("gddpg", "ddpg", "greedy", "no_sharing", "equal", "best_found"),
                       payload_bytes: int | None = None, log=print) -> dict:
    """Per method: mean total QoE and reward per round with 95% t-intervals, paired reward against greedy, and
    rounds chunked; learned methods load as the app loads them (``RLLI_POLICY_SEED``)."""
    from rlli.policy.evaluate import paired, t_ci

    rounds = live_rounds(n, settings, log=log)
    if payload_bytes is None:  # the hand-off latent in float32, as the service passes it
        payload_bytes = int(np.prod(get_backbone(settings).latent_shape)) * 4
    lives = [build_round_state(g, f, t, settings, seed, payload_bytes) for g, f, t, seed in rounds]
    res, notices = {}, {}
    for name in methods:
        pol = load_policy(name, settings)
        if pol.notice:
            notices[name] = pol.notice.message
        allocs = [pol.allocate(live) for live in lives]
        res[name] = {"qoe": np.array([a.total_qoe for a in allocs]), "reward": np.array([a.reward for a in allocs]),
                     "energy": np.array([a.energy_j for a in allocs]), "ran_as": pol.name}
        log(f"{name}: done")
    sizes = [live.n_requests for live in lives]
    shared = [sum(1 for f in forks if not f.is_anchor and f.max_shared_steps > 0) for _, forks, _, _ in rounds]
    return {"rounds": n, "users": [int(min(sizes)), int(max(sizes))],
            "chunked_rounds": int(sum(len(v.chunks) > 1 for v in lives)),
            "members_allowed_to_share": float(np.sum(shared) / np.sum(sizes)), "notices": notices,
            "methods": {k: {"qoe": float(v["qoe"].mean()), "qoe_ci": t_ci(v["qoe"]), "reward": float(v["reward"].mean()),
                            "energy": float(v["energy"].mean()), "ran_as": v["ran_as"],
                            "vs_greedy": paired(v["reward"], res["greedy"]["reward"]) if "greedy" in res else None}
                        for k, v in res.items()}}
