"""``bench sharing --trace FILE``: requests arriving over time, replayed through the app's round function.

One request a line: seconds since the start, a tab, the prompt (or seconds, the tab it came from, the prompt).
The requests are batched into rounds by the app's window and cap (``RLLI_ROUND_WINDOW_S``,
``RLLI_ROUND_MAX_REQUESTS``) and each round runs through :func:`rlli.service.run_round` with one trunk cache
across rounds (as the in-process backend keeps one), against independent generation of the same requests in the
same run: passes saved within rounds, across rounds (a lone request starting from a kept trunk), and in all.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, Request, independent_groups
from rlli.diffusion.trunks import TrunkCache
from rlli.service import run_round


def read_trace(path: str | Path) -> list[tuple[float, str]]:
    """(seconds since the start, prompt) per non-empty line ``SECONDS<TAB>PROMPT`` (or ``SECONDS<TAB>TAB-NAME<TAB>PROMPT``,
    the tab it came from, which the replay does not need); a clear ValueError otherwise."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"trace line {n}: expected 'SECONDS<TAB>PROMPT'")
        at, prompt = line.split("\t", 1)
        if "\t" in prompt:  # SECONDS, TAB-NAME, PROMPT
            prompt = prompt.split("\t", 1)[1]
        try:
            t = float(at)
        except ValueError:
            raise ValueError(f"trace line {n}: {at!r} is not a number of seconds") from None
        if not (t >= 0) or not prompt.strip():
            raise ValueError(f"trace line {n}: needs seconds >= 0 and a prompt")
        out.append((t, prompt.strip()))
    if not out:
        raise ValueError("the trace holds no requests")
    return sorted(out, key=lambda x: x[0])


def rounds_of(trace: list[tuple[float, str]], window_s: float, cap: int) -> list[list[tuple[float, str]]]:
    """The app's batching: a round closes ``window_s`` after its first request or when it holds ``cap``."""
    rounds, cur = [], []
    for t, p in trace:
        if cur and (t - cur[0][0] > window_s or len(cur) >= cap):
            rounds.append(cur)
            cur = []
        cur.append((t, p))
    if cur:
        rounds.append(cur)
    return rounds


def bench_trace(settings: Settings, trace: list[tuple[float, str]], seed: int = 0, cache_mib: float = 64.0,
                split_tree: bool = True, policy: str = "fork_max") -> dict:
    """Replay ``trace`` in rounds (the app's window and cap) with a trunk cache across rounds, versus independent
    generation of the same requests in the same run. Time is the trace's, not the wall clock's. ``policy``: the
    allocation policy of the rounds (default ``fork_max``: what sharing itself can save)."""
    from rlli.calibration.guarantee import clopper_pearson_upper
    from rlli.commands.bench import _broken_reliable, _quality, _warm_up

    backbone = get_backbone(settings)
    plan = plan_from(settings)
    c = plan.passes_per_step
    now = [0.0]
    cache = TrunkCache(int(cache_mib * 2**20), clock=lambda: now[0])
    rounds = rounds_of(trace, settings.round_window_s, settings.round_max_requests)
    _warm_up(Engine(backbone), [Request(p, seed=seed) for _, p in trace[:2]], plan)
    tot = {"shared": 0, "indep": 0, "decision": 0, "cache_probe": 0, "within": 0, "across": 0}
    wall_s = wall_i = 0.0
    moved = broken = unreliable = 0
    hits_log, img_s, img_i, prompts_all = [], [], [], []
    i0, last = 0, None
    for rnd_reqs in rounds:
        now[0] = rnd_reqs[-1][0]  # the round runs when it closes
        requests = [Request(p, seed=seed + i0 + j, request_id=f"r{i0 + j}") for j, (_, p) in enumerate(rnd_reqs)]
        i0 += len(requests)
        t = time.perf_counter()
        report = run_round(requests, settings, policy=policy, backbone=backbone, trunks=cache, split_tree=split_tree)
        wall_s += time.perf_counter() - t
        t = time.perf_counter()
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)
        wall_i += time.perf_counter() - t
        a = report.accounting
        tot["shared"] += a.passes
        tot["indep"] += indep.denoiser_passes
        tot["decision"] += a.passes_fork_decision - a.passes_trunk_probe
        tot["cache_probe"] += a.passes_trunk_probe
        kept = [r for r in report.requests if r.output.start_origin is not None]
        tot["across"] += c * sum(r.output.foreign_steps for r in kept) - a.passes_trunk_probe
        tot["within"] += c * sum(r.output.foreign_steps for r in report.requests if r.output.start_origin is None) \
            - (a.passes_fork_decision - a.passes_trunk_probe)
        for r in kept:
            o = r.output
            hits_log.append({"request": o.request_id, "prompt": o.prompt, "own_seed": o.seed, "noise_seed": o.noise_seed,
                             "started_at_step": o.start_origin["step"], "from_request": o.start_origin.get("request_id"),
                             "from_prompt": o.start_origin.get("prompt"),
                             "note": f"shared with a request from {float(o.start_origin.get('age_s', 0)):.0f} seconds ago"})
        img_s += [r.image for r in report.requests]
        img_i += [o.image for o in indep.outputs]
        prompts_all += [r.prompt for r in requests]
        m, b, u = _broken_reliable(Engine(backbone), report, plan)
        moved, broken, unreliable = moved + m, broken + b, unreliable + u
        last = report
    q_s, metric = _quality(np.stack(img_s), prompts_all)
    q_i, _ = _quality(np.stack(img_i), prompts_all)
    st = cache.snapshot()
    return {
        "requests": len(trace), "rounds": len(rounds), "round_window_s": settings.round_window_s,
        "round_max_requests": settings.round_max_requests, "steps": plan.steps, "policy": policy,
        "calls_shared": tot["shared"], "calls_independent": tot["indep"],
        "calls_saved": round(1 - tot["shared"] / tot["indep"], 4),
        "saved_within_rounds": round(tot["within"] / tot["indep"], 4),
        "saved_across_rounds": round(tot["across"] / tot["indep"], 4),
        "calls_fork_decision": tot["decision"], "calls_cache_probe": tot["cache_probe"],
        "cache_hits": st["hits"], "cache_misses": st["misses"], "cache_evictions": st["evictions"],
        "cache_bytes": st["bytes"], "cache_entries": st["entries"], "cache_max_bytes": st["max_bytes"],
        "wall_shared_s": round(wall_s, 3), "wall_independent_s": round(wall_i, 3),
        "wall_ratio": round(wall_s / wall_i, 4), "pass_ratio": round(tot["shared"] / tot["indep"], 4),
        "quality_shared": None if q_s is None else round(q_s, 2),
        "quality_independent": None if q_i is None else round(q_i, 2), "quality_metric": metric,
        "members": len(trace), "members_sharing": moved, "broken": broken,
        "broken_upper95": round(clopper_pearson_upper(broken, len(trace)), 4), "broken_unreliable_only": unreliable,
        "hits": hits_log, "calibrated": last.accounting.calibrated if last else False,
        "notice": "; ".join(last.notices) or None if last else None, "backbone": backbone.name,
        "settings": settings.public_dict(),
    }
