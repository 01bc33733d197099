"""Sharing benchmarks for split trees and trunks kept across rounds (issue 18).

- :func:`bench_tree`: the built-in (or any) prompt mix in rounds through group -> fork decision (split tree)
  -> kept-trunk lookup -> one batched run, versus every prompt generated independently in the same run; the
  per-member oracle; members with an attribute broken against their unshared twin, with a one-sided 95%
  Clopper-Pearson upper bound.
- :func:`bench_trace`: ``--trace FILE`` replays requests arriving over time (one a line: seconds since the
  start, a tab, the prompt), batched into rounds by the app's window and cap, with a trunk cache across rounds;
  passes saved within rounds, across rounds and in all, versus independent generation of the same requests.

``python -m rlli.commands.bench_trace --trace FILE --json`` (or ``--prompts FILE --oracle``) runs them until
``bench sharing --trace`` is wired to :func:`bench_trace`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, TreePlan, expected_passes, independent_groups
from rlli.diffusion.trunks import TrunkCache
from rlli.grouping import group_prompts
from rlli.policy.sharing import (
    break_budget,
    cache_key,
    decide_forks,
    fork_rule_path,
    kept_steps,
    kept_trunk_starts,
    load_fork_rule,
    measured_with,
    member_plan,
    record_trunks,
    starts_for,
    tree_plan,
    trunks_to_keep,
)

BUILTIN_MIX = (
    "a red house on grass at sunset",
    "a red house on the grass at sunset",
    "a red house on grass at sunset, calm",
    "red house on a lawn at sunset",
    "two blue boats on a lake at night",
    "two blue boats on the lake at night",
    "a pair of blue boats on a lake at night",
    "a yellow car on a city street in the rain",
    "a yellow car on a street in the rain",
    "yellow car on the road in the rain",
    "three green trees on snow during the day",
    "three green trees on snowy ground during the day",
    "three green trees on snow by day, peaceful",
    "a purple mountain in the desert at dusk",
    "an orange person on a beach at noon",
    "a red sailboat at sea under clear skies",
)


@dataclass
class RoundRun:
    """One round through the tree pipeline, with its exact pass accounting."""

    requests: list[Request]
    groups: list
    forks: list
    trees: list[TreePlan]
    outputs: list
    passes_decision: int  # the fork probe
    passes_cache_probe: int  # probing kept trunks
    passes_generation: int
    saved_within: int  # passes saved by sharing inside the round (before the probe's cost)
    saved_across: int  # passes saved by starting from kept trunks (before the cache probe's cost)
    wall_s: float
    notice: str | None
    hits: dict = field(default_factory=dict)


def run_tree_round(engine: Engine, requests: list[Request], plan: Plan, settings: Settings, rule, notice,
                   cache: TrunkCache | None = None, key: tuple = (), split_tree: bool = True) -> RoundRun:
    """group -> fork decision (split tree) -> kept-trunk lookup -> run_tree (keeping fork-step latents) -> record."""
    from rlli.text import embed

    t0 = time.perf_counter()
    prompts = [r.prompt for r in requests]
    groups = group_prompts(prompts, settings.group_threshold, settings.text_model)
    tol, budget = settings.quality_tolerance, break_budget(settings)
    decision = decide_forks(engine, requests, groups, plan, rule, tol, budget, notice, split_tree=split_tree)
    forks, hits, cache_passes = decision.forks, {}, 0
    emb = embed(prompts, settings.text_model) if cache is not None else None
    if cache is not None and rule is not None:
        forks, hits, cache_passes = kept_trunk_starts(engine, requests, groups, forks, plan, rule, tol, budget, cache, key,
                                                      emb, settings.group_threshold)
    trees = tree_plan(groups, forks, hits=hits)
    starts = starts_for(trees, hits)
    keep = trunks_to_keep(trees, starts, kept_steps(rule, tol, budget)) if (cache is not None and rule is not None) else {}
    result = engine.run_tree(requests, trees, plan, starts, keep)
    if cache is not None and rule is not None:
        record_trunks(cache, key, requests, keep, result, emb, rule.probe_step)
    c = plan.passes_per_step
    deps = {k: t.departure_of(k) for t in trees for k in t.members}
    across = c * sum(d for k, d in deps.items() if k in starts)
    within = c * sum(d for k, d in deps.items() if k not in starts)
    return RoundRun(requests, groups, forks, trees, result.outputs, decision.passes, cache_passes,
                    result.denoiser_passes, within, across, time.perf_counter() - t0, notice, hits)


def _warm_up(backbone, plan: Plan, prompts: list[str], settings: Settings, seed: int) -> None:
    """Untimed: two denoising steps and the text model's first load, so one-off start-up costs land in no figure."""
    from rlli.text import embed

    warm = [Request(p, seed=seed) for p in prompts[:2]]
    Engine(backbone).run(warm, independent_groups(len(warm)), Plan(steps=2, guidance_scale=plan.guidance_scale,
                                                                   scheduler=plan.scheduler))
    group_prompts(prompts[:2], settings.group_threshold, settings.text_model)
    embed(prompts[:2], settings.text_model)


def _quality(backbone, images: np.ndarray, prompts: list[str]) -> float | None:
    world = getattr(backbone, "world", None)
    found = world.fidelity(images, prompts) if world is not None else None
    vals = [v for v in (found or []) if v is not None]
    return 100 * float(np.mean(vals)) if vals else None


def _oracle_passes(engine: Engine, rnd: RoundRun, plan: Plan, scorer, tolerance: float) -> int:
    """The per-member oracle: every non-anchor member of every group generated forking at each s = 0..N from its
    anchor's seed, scored against its s = 0 twin; the best per-member one-level plan at the tolerance."""
    from rlli.calibration.pairs import PairRecord, oracle_steps

    n = plan.steps
    reqs, groups, owners = [], [], []
    for g in rnd.groups:
        if len(g.members) < 2:
            continue
        a = rnd.requests[g.anchor]
        first = len(reqs)
        reqs.append(Request(a.prompt, seed=a.seed))
        steps = [n]
        for k in g.members:
            if k == g.anchor:
                continue
            owners.append((k, len(reqs)))
            reqs += [Request(rnd.requests[k].prompt, seed=a.seed) for _ in range(n + 1)]
            steps += list(range(n + 1))
        groups.append(GroupPlan(tuple(range(first, len(reqs))), first, member_steps=tuple(steps)))
    best = {}
    if owners:
        images = np.stack([o.image for o in engine.run(reqs, groups, plan).outputs])
        for k, start in owners:
            block = list(range(start, start + n + 1))
            scores, broken = scorer(images[block], [reqs[start].prompt] * (n + 1), images[[start] * (n + 1)])
            best[k] = oracle_steps(PairRecord("", reqs[start].prompt, "", 0, 0, 0.0, 0.0, scores, broken), tolerance)
    forks = [replace(f, max_shared_steps=best[f.request_index], parent=None) if f.request_index in best else
             replace(f, parent=None) for f in rnd.forks]
    return expected_passes(member_plan(rnd.groups, forks), plan)


def _broken(engine: Engine, rnd: RoundRun, plan: Plan, scorer) -> tuple[int, int, list[str]]:
    """Members whose image took anything from another prompt, and of them how many lost a stated attribute that
    their unshared twin (same noise, no sharing) shows; reliable attributes only when the backbone has a world."""
    from rlli.calibration.guarantee import UNRELIABLE

    moved = [i for i, o in enumerate(rnd.outputs) if o.foreign_steps > 0]
    if not moved:
        return 0, 0, []
    twins = engine.run([Request(rnd.requests[i].prompt, seed=rnd.outputs[i].noise_seed) for i in moved],
                       independent_groups(len(moved)), plan).outputs
    imgs = np.stack([rnd.outputs[i].image for i in moved])
    tw = np.stack([t.image for t in twins])
    if getattr(engine.backbone, "world", None) is None:
        return len(moved), int(sum(scorer(imgs, [rnd.requests[i].prompt for i in moved], tw)[1])), []
    from rlli.diffusion.fidelity import read_attributes
    from rlli.diffusion.tiny import world

    found, found_t = read_attributes(imgs), read_attributes(tw)
    broken, unreliable = 0, []
    for i, f, ft in zip(moved, found, found_t):
        stated = world.parse_prompt(rnd.requests[i].prompt)
        lost = [k for k, v in stated.items() if ft[k] == v and f[k] != v]
        if any(k not in UNRELIABLE for k in lost):
            broken += 1
        elif lost:
            unreliable.append(rnd.requests[i].prompt)
    return len(moved), broken, unreliable


def bench_tree(settings: Settings, prompts: list[str] | None = None, seed: int = 0, repeats: int = 2,
               oracle: bool = False, split_tree: bool = True) -> dict:
    """Shared rounds (split trees) versus independent generation of the same requests, ``repeats`` rounds with
    fresh seeds (seed + 1000 r + i); the top-level keys of ``bench sharing`` plus broken / members /
    broken_upper95 / tree_depth."""
    from rlli.calibration.fork_rule import scorer_for
    from rlli.calibration.guarantee import clopper_pearson_upper

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    prompts = list(prompts or BUILTIN_MIX)
    backbone = get_backbone(settings)
    plan = plan_from(settings)
    rule, notice = load_fork_rule(fork_rule_path(settings), measured_with(backbone.name, plan, settings.text_model))
    scorer = scorer_for(backbone)
    _warm_up(backbone, plan, prompts, settings, seed)
    tot = {"shared": 0, "decision": 0, "indep": 0, "oracle": 0, "members": 0, "broken": 0, "moved": 0}
    wall_s = wall_i = 0.0
    img_s, img_i, unreliable, depth, anchors_image = [], [], [], 0, 0
    rnd = None
    for r in range(repeats):
        requests = [Request(p, seed=seed + 1000 * r + i, request_id=str(i)) for i, p in enumerate(prompts)]
        rnd = run_tree_round(Engine(backbone), requests, plan, settings, rule, notice, split_tree=split_tree)
        t = time.perf_counter()
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)
        wall_i += time.perf_counter() - t
        wall_s += rnd.wall_s
        tot["shared"] += rnd.passes_decision + rnd.passes_generation
        tot["decision"] += rnd.passes_decision
        tot["indep"] += indep.denoiser_passes
        tot["members"] += len(requests)
        depth = max(depth, max((t.depth for t in rnd.trees), default=0))
        anchors_image += sum(o.is_anchors_image for o in rnd.outputs)
        img_s += [o.image for o in rnd.outputs]
        img_i += [o.image for o in indep.outputs]
        moved, broken, unrel = _broken(Engine(backbone), rnd, plan, scorer)
        tot["moved"] += moved
        tot["broken"] += broken
        unreliable += unrel
        if oracle:
            tot["oracle"] += _oracle_passes(Engine(backbone), rnd, plan, scorer, settings.quality_tolerance)
    q_s = _quality(backbone, np.stack(img_s), prompts * repeats)
    q_i = _quality(backbone, np.stack(img_i), prompts * repeats)
    metric = "fidelity x 100 (attribute probe)"
    if q_s is None or q_i is None:
        metric = "mean absolute pixel difference to the independent image (0-255; lower is closer)"
        q_s, q_i = float(np.abs(np.stack(img_s).astype(float) - np.stack(img_i).astype(float)).mean()), 0.0
    out = {
        "prompts": len(prompts), "repeats": repeats, "steps": plan.steps, "split_tree": split_tree,
        "groups": [{"anchor": prompts[t.anchor], "members": [prompts[m] for m in t.members],
                    "parents": [None if p is None else prompts[p] for p in t.parents], "departures": list(t.departures),
                    "depth": t.depth} for t in rnd.trees],
        "calls_shared": tot["shared"] // repeats, "calls_independent": tot["indep"] // repeats,
        "calls_saved": round(1 - tot["shared"] / tot["indep"], 4), "calls_fork_decision": tot["decision"] // repeats,
        "wall_shared_s": round(wall_s, 3), "wall_independent_s": round(wall_i, 3),
        "wall_ratio": round(wall_s / wall_i, 4), "pass_ratio": round(tot["shared"] / tot["indep"], 4),
        "quality_shared": round(q_s, 2), "quality_independent": round(q_i, 2), "quality_metric": metric,
        "members": tot["members"], "members_sharing": tot["moved"], "broken": tot["broken"],
        "broken_rate": round(tot["broken"] / tot["members"], 4),
        "broken_upper95": round(clopper_pearson_upper(tot["broken"], tot["members"]), 4),
        "broken_metric": scorer.name + "; reliable attributes (warmth and detail counted apart)",
        "broken_unreliable_only": len(unreliable), "members_with_anchors_image": anchors_image,
        "tree_depth": depth, "calibrated": rule is not None, "notice": notice, "backbone": backbone.name,
        "settings": settings.public_dict(),
    }
    if oracle:
        out["calls_oracle"] = tot["oracle"] // repeats
        out["calls_saved_oracle"] = round(1 - tot["oracle"] / tot["indep"], 4)
        out["share_of_oracle_saving"] = round(out["calls_saved"] / out["calls_saved_oracle"], 4) \
            if out["calls_saved_oracle"] > 0 else None
    return out


def read_trace(path: str | Path) -> list[tuple[float, str]]:
    """(seconds since the start, prompt) per non-empty line ``SECONDS<TAB>PROMPT``; a clear ValueError otherwise."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"trace line {n}: expected 'SECONDS<TAB>PROMPT'")
        at, prompt = line.split("\t", 1)
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
                split_tree: bool = True) -> dict:
    """Replay ``trace`` in rounds (the app's window and cap) with a trunk cache across rounds, versus independent
    generation of the same requests in the same run. Time is the trace's, not the wall clock's."""
    from rlli.calibration.fork_rule import scorer_for
    from rlli.calibration.guarantee import clopper_pearson_upper

    backbone = get_backbone(settings)
    plan = plan_from(settings)
    rule, notice = load_fork_rule(fork_rule_path(settings), measured_with(backbone.name, plan, settings.text_model))
    scorer = scorer_for(backbone)
    moved = broken = 0
    unreliable: list[str] = []
    now = [0.0]
    cache = TrunkCache(int(cache_mib * 2**20), clock=lambda: now[0])
    key = cache_key(backbone.name, plan, rule)
    rounds = rounds_of(trace, settings.round_window_s, settings.round_max_requests)
    _warm_up(backbone, plan, [p for _, p in trace], settings, seed)
    tot = {"shared": 0, "indep": 0, "decision": 0, "cache_probe": 0, "within": 0, "across": 0}
    wall_s = wall_i = 0.0
    hits_log, img_s, img_i, prompts_all = [], [], [], []
    i0 = 0
    for rnd_reqs in rounds:
        now[0] = rnd_reqs[-1][0]  # the round runs when it closes
        requests = [Request(p, seed=seed + i0 + j, request_id=f"r{i0 + j}") for j, (_, p) in enumerate(rnd_reqs)]
        i0 += len(requests)
        rnd = run_tree_round(Engine(backbone), requests, plan, settings, rule, notice, cache, key, split_tree)
        t = time.perf_counter()
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)
        wall_i += time.perf_counter() - t
        wall_s += rnd.wall_s
        tot["shared"] += rnd.passes_decision + rnd.passes_cache_probe + rnd.passes_generation
        tot["indep"] += indep.denoiser_passes
        tot["decision"] += rnd.passes_decision
        tot["cache_probe"] += rnd.passes_cache_probe
        tot["within"] += rnd.saved_within - rnd.passes_decision
        tot["across"] += rnd.saved_across - rnd.passes_cache_probe
        for k, h in rnd.hits.items():
            o = rnd.outputs[k]
            if o.start_origin is not None:
                hits_log.append({"request": o.request_id, "prompt": o.prompt, "own_seed": o.seed, "noise_seed": o.noise_seed,
                                 "started_at_step": o.start_origin["step"], "from_request": h.trunk.request_id,
                                 "from_prompt": h.trunk.prompt,
                                 "note": f"shared with a request from {h.age_s:.0f} seconds ago"})
        img_s += [o.image for o in rnd.outputs]
        img_i += [o.image for o in indep.outputs]
        prompts_all += [r.prompt for r in requests]
        m, b, u = _broken(Engine(backbone), rnd, plan, scorer)
        moved, broken, unreliable = moved + m, broken + b, unreliable + u
    q_s = _quality(backbone, np.stack(img_s), prompts_all)
    q_i = _quality(backbone, np.stack(img_i), prompts_all)
    st = cache.snapshot()
    return {
        "requests": len(trace), "rounds": len(rounds), "round_window_s": settings.round_window_s,
        "round_max_requests": settings.round_max_requests, "steps": plan.steps,
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
        "quality_independent": None if q_i is None else round(q_i, 2),
        "members": len(trace), "members_sharing": moved, "broken": broken,
        "broken_upper95": round(clopper_pearson_upper(broken, len(trace)), 4), "broken_unreliable_only": len(unreliable),
        "hits": hits_log, "calibrated": rule is not None, "notice": notice, "backbone": backbone.name,
        "settings": settings.public_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlli.commands.bench_trace", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", help="replay FILE (SECONDS<TAB>PROMPT per line) with trunks kept across rounds")
    ap.add_argument("--prompts", help="a prompt mix, one per line (default: the built-in mix)")
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-tree", action="store_true", help="one-level forks only (today's plan), for comparison")
    ap.add_argument("--cache-mib", type=float, default=64.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    s = Settings()
    try:
        if a.trace:
            out = bench_trace(s, read_trace(a.trace), a.seed, a.cache_mib, not a.no_tree)
        else:
            prompts = None
            if a.prompts:
                prompts = [ln.strip() for ln in Path(a.prompts).read_text(encoding="utf-8").splitlines() if ln.strip()]
            out = bench_tree(s, prompts, a.seed, a.repeats, a.oracle, not a.no_tree)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, default=str) if a.json else
          "\n".join(f"{k}: {v}" for k, v in out.items() if k not in ("groups", "settings", "hits")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
