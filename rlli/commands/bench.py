"""Benchmarks: commands that print figures, each measured against the naive way in the same run.

- ``bench sharing``: the app's rounds (:func:`rlli.service.run_round`, default policy, and the fork-maximum
  policy beside it) versus every prompt generated independently - same backbone, seeds, batching - in one
  run; ``--oracle`` adds the best saving any per-member plan could reach.
- ``bench model``: the embedded model on 64 held-out prompts versus the renderer itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, expected_passes, independent_groups
from rlli.grouping import Group
from rlli.machine import cpu_model
from rlli.policy.sharing import member_plan
from rlli.service import Phase, RoundReport, run_round

# A busy minute of a service: a few topics, each with paraphrases and small variants, plus outliers.
SHARING_MIX = (
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


def _quality(images: np.ndarray, prompts: list[str]) -> tuple[float | None, str]:
    """Mean fidelity x 100 when the probe exists; else None (the caller falls back)."""
    from rlli.diffusion.fidelity import fidelity_if_probe, mean_fidelity

    found = fidelity_if_probe(images, prompts)
    m = None if found is None else mean_fidelity(found)
    return (None if m is None else 100 * m), "fidelity x 100 (attribute probe)"


def _warm_up(engine: Engine, requests: list[Request], plan: Plan) -> None:
    """Two untimed steps first, so that one-off start-up costs land in no figure."""
    engine.run(requests, independent_groups(len(requests)),
               Plan(steps=2, guidance_scale=plan.guidance_scale, scheduler=plan.scheduler))


def _oracle_steps(engine: Engine, report: RoundReport, plan: Plan, scorer, tolerance: float) -> dict[int, int]:
    """Per non-anchor member of every shared group: the most steps it could share, found by generating it
    forking at every s = 0..N from its anchor's seed and scoring each against its s = 0 twin."""
    from rlli.calibration.pairs import PairRecord, oracle_steps

    n = plan.steps
    reqs: list[Request] = []
    groups, owners = [], []
    for g in report.groups:
        if len(g.members) < 2:
            continue
        a = report.requests[g.anchor]
        first = len(reqs)
        reqs.append(Request(a.prompt, seed=a.seed))
        steps = [n]
        for k in g.members:
            if k == g.anchor:
                continue
            owners.append((k, len(reqs)))
            reqs += [Request(report.requests[k].prompt, seed=a.seed) for _ in range(n + 1)]
            steps += list(range(n + 1))
        groups.append(GroupPlan(tuple(range(first, len(reqs))), first, member_steps=tuple(steps)))
    if not owners:
        return {}
    out = engine.run(reqs, groups, plan).outputs
    images = np.stack([o.image for o in out])
    best = {}
    for k, start in owners:
        block = list(range(start, start + n + 1))
        scores, broken = scorer(images[block], [reqs[start].prompt] * (n + 1), images[[start] * (n + 1)])
        best[k] = oracle_steps(PairRecord("", reqs[start].prompt, "", 0, 0, 0.0, 0.0, scores, broken), tolerance)
    return best


@dataclass
class _Tally:
    """What a policy's rounds cost and gave, summed over the repeats."""

    passes: int = 0
    decision: int = 0
    wall_s: float = 0.0
    images: list = field(default_factory=list)
    shared_members: int = 0
    anchors_image: int = 0
    broken: int = 0
    unreliable: int = 0
    depth: int = 0
    last: RoundReport | None = None

    def add(self, report: RoundReport, broken: tuple[int, int, int]) -> None:
        a = report.accounting
        self.passes += a.passes
        self.decision += a.passes_fork_decision
        self.wall_s += a.phases_s[Phase.FORK_DECISION] + a.engine_wall_s.total
        self.images += [r.image for r in report.requests]
        self.shared_members += report.shared_members
        self.anchors_image += sum(r.output.is_anchors_image for r in report.requests)
        self.broken += broken[1]
        self.unreliable += broken[2]
        self.depth = max([self.depth, *(g.depth for g in report.groups)])
        self.last = report


def _broken_reliable(engine: Engine, report: RoundReport, plan: Plan) -> tuple[int, int, int]:
    """(members that took steps computed for another prompt, how many of them lost a stated attribute that their
    unshared twin - same noise, no sharing - shows, how many lost only attributes the embedded model renders
    unreliably (warmth, detail), counted apart). Without a world: similarity to the twin decides."""
    from rlli.calibration.fork_rule import scorer_for
    from rlli.calibration.guarantee import UNRELIABLE

    moved = [r for r in report.requests if r.output.foreign_steps > 0]
    if not moved:
        return 0, 0, 0
    twins = engine.run([Request(r.prompt, seed=r.output.noise_seed) for r in moved], independent_groups(len(moved)),
                       plan).outputs
    imgs, tw = np.stack([r.image for r in moved]), np.stack([t.image for t in twins])
    if getattr(engine.backbone, "world", None) is None:
        return len(moved), int(sum(scorer_for(engine.backbone)(imgs, [r.prompt for r in moved], tw)[1])), 0
    from rlli.diffusion.fidelity import read_attributes
    from rlli.diffusion.tiny import world

    broken = unreliable = 0
    for r, f, ft in zip(moved, read_attributes(imgs), read_attributes(tw)):
        lost = [k for k, v in world.parse_prompt(r.prompt).items() if ft[k] == v and f[k] != v]
        if any(k not in UNRELIABLE for k in lost):
            broken += 1
        elif lost:
            unreliable += 1
    return len(moved), broken, unreliable


def _figures(t: _Tally, passes_i: int, wall_i: float, q_i: float | None, prompts: list[str], repeats: int,
             scorer_name: str) -> dict:
    from rlli.calibration.guarantee import clopper_pearson_upper

    q_s, metric = _quality(np.stack(t.images), prompts * repeats)
    r = t.last
    return {
        "policy": r.accounting.policy,
        "groups": [{"anchor": r.prompts[g.anchor], "members": [r.prompts[m] for m in g.members],
                    "min_similarity": round(g.min_similarity, 3), "prefix_steps": g.prefix_steps,
                    "fork_steps": list(g.fork_steps),
                    "x0_disagreement": [r.requests[m].fork.evidence.get("x0_disagreement") for m in g.members]}
                   for g in r.groups],
        "calls_shared": t.passes // repeats,
        "calls_independent": passes_i // repeats,
        "calls_saved": round(1 - t.passes / passes_i, 4),
        "calls_fork_decision": t.decision // repeats,
        "wall_shared_s": round(t.wall_s, 3),
        "wall_independent_s": round(wall_i, 3),
        "wall_ratio": round(t.wall_s / wall_i, 4),
        "pass_ratio": round(t.passes / passes_i, 4),
        "quality_shared": None if q_s is None else round(q_s, 2),
        "quality_independent": None if q_i is None else round(q_i, 2),
        "quality_metric": metric,
        "members": len(prompts) * repeats,
        "members_sharing": t.shared_members,
        "broken": t.broken,
        "members_broken": t.broken,
        "broken_rate": round(t.broken / (len(prompts) * repeats), 4),
        "broken_upper95": round(clopper_pearson_upper(t.broken, len(prompts) * repeats), 4),
        "broken_unreliable_only": t.unreliable,
        "broken_metric": scorer_name + "; attributes the model renders unreliably (warmth, detail) counted apart",
        "tree_depth": t.depth,
        "members_with_anchors_image": t.anchors_image,
        "handoff_bytes_per_round": r.accounting.handoff_bytes,
    }


def bench_sharing(settings: Settings, prompts: list[str] | None = None, seed: int = 0, repeats: int = 4,
                  oracle: bool = False, policies: tuple[str, ...] = ("fork_max",), split_tree: bool = True) -> dict:
    """The app's rounds (:func:`rlli.service.run_round` with the default policy, ``RLLI_POLICY``) versus the same
    prompts generated independently - same backbone, seeds and batching - ``repeats`` times with fresh seeds
    (seed + 1000 r + i), in one run; the same rounds under each of ``policies`` (default ``fork_max``: every
    member shares its fork decision's maximum) are reported beside it.

    Passes count the fork decision's probe too. A member that shared steps is also generated from the same
    noise without sharing (its twin): ``broken_rate`` is the share of members with a stated attribute the twin
    gets right and the shared image gets wrong. ``--oracle`` tries every s_k for every member on the real
    backbone and reports the best saving any per-member plan reaches at the quality tolerance.
    """
    from rlli.calibration.fork_rule import scorer_for
    from rlli.policy.api import get_policy

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    prompts = list(prompts or SHARING_MIX)
    backbone = get_backbone(settings)
    engine = Engine(backbone)
    plan = plan_from(settings)
    scorer = scorer_for(backbone)
    _warm_up(engine, [Request(p, seed=seed) for p in prompts[:2]], plan)
    default = get_policy(None, settings)
    arms = {"default": default, **{name: get_policy(name, settings) for name in policies}}
    tallies = {name: _Tally() for name in arms}
    wall_i, passes_i, img_i, oracle_passes = 0.0, 0, [], 0
    for r in range(repeats):
        requests = [Request(p, seed=seed + 1000 * r + i, request_id=str(i)) for i, p in enumerate(prompts)]
        for name, policy in arms.items():
            report = run_round(requests, settings, policy=policy, backbone=backbone, split_tree=split_tree)
            tallies[name].add(report, _broken_reliable(engine, report, plan))
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)  # pays its own encoding
        wall_i += indep.wall_s["total"]
        passes_i += indep.denoiser_passes
        img_i += [o.image for o in indep.outputs]
        if oracle:
            report = tallies["default"].last
            best = _oracle_steps(engine, report, plan, scorer, settings.quality_tolerance)
            forks = [replace(f, max_shared_steps=best[f.request_index]) if f.request_index in best else f
                     for f in report.forks]
            groups = [Group(g.members, g.anchor, g.similarity) for g in report.groups]
            oracle_passes += expected_passes(member_plan(groups, forks), plan)
    q_i, metric = _quality(np.stack(img_i), prompts * repeats)
    per_arm = {name: _figures(t, passes_i, wall_i, q_i, prompts, repeats, scorer.name) for name, t in tallies.items()}
    if q_i is None:  # no attribute reader: closeness to the independent images instead
        for name, t in tallies.items():
            per_arm[name]["quality_shared"] = round(float(np.abs(np.stack(t.images).astype(float)
                                                                 - np.stack(img_i).astype(float)).mean()), 2)
            per_arm[name]["quality_independent"] = 0.0
            per_arm[name]["quality_metric"] = ("mean absolute pixel difference to the independent image (0-255; "
                                               "lower is closer)")
    last = tallies["default"].last
    out = {
        "prompts": len(prompts),
        "steps": plan.steps,
        "repeats": repeats,
        **per_arm["default"],
        **{name: per_arm[name] for name in policies},
        "split_tree": split_tree,
        "calibrated": last.accounting.calibrated,
        "notice": "; ".join(last.notices) or None,
        "backbone": backbone.name,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "settings": settings.public_dict(),
    }
    if oracle:
        out["calls_oracle"] = oracle_passes // repeats
        out["calls_saved_oracle"] = round(1 - oracle_passes / passes_i, 4)
        for d in (out, *(out[name] for name in policies)):
            d["share_of_oracle_saving"] = round(d["calls_saved"] / out["calls_saved_oracle"], 4) \
                if out["calls_saved_oracle"] > 0 else None
    return out


def bench_model(settings: Settings, seeds: int = 3, batch: int = 8) -> dict:
    from rlli.diffusion.fidelity import read_attributes, score
    from rlli.diffusion.tiny import world
    from rlli.diffusion.tiny.heldout import load_heldout

    items = load_heldout()
    backbone = get_backbone(settings)
    engine = Engine(backbone)
    plan = plan_from(settings)
    requests = [Request(it["prompt"], seed=1000 * s + i) for s in range(seeds) for i, it in enumerate(items)]
    _warm_up(engine, requests[:batch], plan)
    images, t0 = [], time.perf_counter()
    for i in range(0, len(requests), batch):
        chunk = requests[i:i + batch]
        images += [o.image for o in engine.run(chunk, independent_groups(len(chunk)), plan).outputs]
    seconds = time.perf_counter() - t0
    # the naive way in the same run: the same first batches at float32
    speed_fp32 = None
    if getattr(backbone, "dtype", torch.float32) != torch.float32:
        saved, backbone.dtype = backbone.dtype, torch.float32
        try:
            n32, t1 = 0, time.perf_counter()
            for i in range(0, min(len(requests), 3 * batch), batch):
                chunk = requests[i:i + batch]
                n32 += len(engine.run(chunk, independent_groups(len(chunk)), plan).outputs)
            speed_fp32 = (time.perf_counter() - t1) / n32
        finally:
            backbone.dtype = saved
    stated = [world.parse_prompt(r.prompt) for r in requests]
    found_model = read_attributes(np.stack(images))
    fid_model = [score(st, f) for st, f in zip(stated, found_model)]
    rng = np.random.default_rng(seeds)
    renders = []
    for _ in range(seeds):
        for it in items:
            scene = world.Scene(**it["scene"])
            renders.append((world.render(scene, rng) * 255 + 0.5).astype(np.uint8))
    fid_render = [score(st, f) for st, f in zip(stated, read_attributes(np.stack(renders)))]
    per_attr: dict[str, list[float]] = {}
    for st, f in zip(stated, found_model):
        for k, v in st.items():
            per_attr.setdefault(k, []).append(float(f[k] == v))
    return {
        "prompts": len(items),
        "seeds": seeds,
        "images": len(images),
        "fidelity_model": round(float(np.mean(fid_model)), 4),
        "fidelity_renders": round(float(np.mean(fid_render)), 4),
        "all_right_model": round(float(np.mean([f == 1.0 for f in fid_model])), 4),
        "per_attribute_model": {k: round(float(np.mean(v)), 4) for k, v in sorted(per_attr.items())},
        "s_per_image": round(seconds / len(images), 4),
        "s_per_image_float32": None if speed_fp32 is None else round(speed_fp32, 4),
        "batch": batch,
        "steps": plan.steps,
        "guidance_scale": plan.guidance_scale,
        "precision": str(getattr(backbone, "dtype", "float32")).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "backbone": backbone.name,
        "settings": settings.public_dict(),
    }


GRID_PROMPTS = (
    "a red house on grass at sunset",
    "two blue boats on a lake at night",
    "a yellow car on a city street in the rain",
    "three green trees on snow during the day",
    "a purple mountain in the desert at dusk",
    "an orange person on a beach at noon, busy",
)
GRID_PAIR = ("a red house on grass at sunset", "a blue house on grass at sunset")


def sample_grid(settings: Settings, out_path, seeds: int = 6) -> dict:
    """A PNG: prompts x seeds, then one prompt pair at increasing shared steps (and a render row)."""
    from PIL import Image, ImageDraw

    backbone = get_backbone(settings)
    engine = Engine(backbone)
    plan = plan_from(settings)
    reqs = [Request(p, seed=s) for p in GRID_PROMPTS for s in range(seeds)]
    rows = [o.image for o in engine.run(reqs, independent_groups(len(reqs)), plan).outputs]
    shares = sorted({s for s in (0, 2, 4, 6, 8, 12, 16) if s < plan.steps} | {plan.steps})[: max(seeds, 2)]
    pair_reqs, pair_groups = [], []
    for s in shares:
        i = len(pair_reqs)
        pair_reqs += [Request(GRID_PAIR[0], seed=1), Request(GRID_PAIR[1], seed=1)]
        pair_groups.append(GroupPlan((i, i + 1), i, s))
    pair = engine.run(pair_reqs, pair_groups, plan).outputs
    member = [pair[2 * j + 1].image for j in range(len(shares))]
    cell, pad, label_w = 64 * 2, 4, 360
    n_rows, n_cols = len(GRID_PROMPTS) + 1, max(seeds, len(shares))
    img = Image.new("RGB", (label_w + n_cols * (cell + pad), n_rows * (cell + pad) + 20), "white")
    draw = ImageDraw.Draw(img)
    for r, prompt in enumerate(GRID_PROMPTS):
        draw.text((4, r * (cell + pad) + cell // 2), prompt, fill="black")
        for c in range(seeds):
            tile = Image.fromarray(rows[r * seeds + c]).resize((cell, cell), Image.NEAREST)
            img.paste(tile, (label_w + c * (cell + pad), r * (cell + pad)))
    r = len(GRID_PROMPTS)
    draw.text((4, r * (cell + pad) + cell // 2 - 12), f"'{GRID_PAIR[1]}'", fill="black")
    draw.text((4, r * (cell + pad) + cell // 2 + 2), f"sharing s of {plan.steps} steps with '{GRID_PAIR[0]}'",
              fill="black")
    for c, s in enumerate(shares):
        tile = Image.fromarray(member[c]).resize((cell, cell), Image.NEAREST)
        img.paste(tile, (label_w + c * (cell + pad), r * (cell + pad)))
        draw.text((label_w + c * (cell + pad) + 4, (r + 1) * (cell + pad) + 2), f"s = {s}", fill="black")
    img.save(out_path)
    return {"path": str(out_path), "prompts": list(GRID_PROMPTS), "seeds": seeds, "pair": list(GRID_PAIR),
            "shared_steps": shares}


PERSON_PROMPT = "a red house on grass at sunset"


def bench_round(settings: Settings, seed: int = 0, personas: int = 7, store_dir=None, rounds: int = 1) -> dict:
    """One app round end to end through the session layer (the app's own path): 1 person + ``personas`` invited
    preset personas, each writing its version of the person's prompt (as the Participate tab's invitations do);
    grouping, fork decision, allocation, generation, storage, and
    the agents' ratings (the person's image as the person and as every preset, each persona's own image as
    itself), with seconds per phase; then the same images generated independently with no judges, in the same
    run (the naive way).

    Models are loaded before timing (a running server has them in memory); the database is a fresh one.
    ``rounds`` > 1 serves that many such rounds into the same store (round r: the person's prompt is the r-th of
    SHARING_MIX, seeds seed + 1000 r), so the store holds logged rounds for ``eval policy --reward store``; the
    figures above are the first round's, ``rounds_s`` the wall time of all of them (ratings included)."""
    if not 1 <= int(rounds) <= 10_000:
        raise ValueError("rounds must be between 1 and 10000")
    import tempfile
    from pathlib import Path

    from rlli.personas.judge import BigFive
    from rlli.session.studio import Ask, Studio, Visitor

    folder = Path(store_dir or tempfile.mkdtemp(prefix="rlli-bench-round-"))
    s = settings.model_copy(update={"database_url": f"sqlite:///{folder / 'rlli.sqlite3'}", "data_dir": folder / "data",
                                    "round_window_s": 0.0, "rate_limit_per_min": 0})
    studio = Studio(s)
    try:
        names = [p.name for p in studio.presets()][:personas]
        backbone = get_backbone(s)
        plan = plan_from(s)
        _warm_up(Engine(backbone), [Request(PERSON_PROMPT, seed)], plan)
        from rlli.policy.api import get_policy

        get_policy(None, s)
        studio.store()
        judge = studio.judge()
        from rlli.personas.describe import make_delivery

        warm = Engine(backbone).run([Request(PERSON_PROMPT, seed)], independent_groups(1), plan).outputs[0].image
        judge.rate_many([(studio.presets()[0], make_delivery(PERSON_PROMPT, warm, quality=1.0, delay_s=1.0))])
        # (that first rating starts the embedded LLM server, if it is the endpoint)

        t0 = time.perf_counter()
        persona_asks = studio.author_prompts(names, seed, visitor_prompt=PERSON_PROMPT)  # invited: their versions
        authoring = time.perf_counter() - t0
        me = Visitor("browser:bench-round-person", BigFive(0.7, 0.4, 0.6, 0.5, 0.4), "tipi")
        asks = [Ask(PERSON_PROMPT, seed, visitor=me), *persona_asks]
        deliveries = studio.run_party(asks)
        person_image = time.perf_counter() - t0
        t = time.perf_counter()
        scores = [studio.agent_scores(d.generation_id, wait_s=3600) or [] for d in deliveries]
        judging = time.perf_counter() - t
        total = time.perf_counter() - t0
        report = next(v for v in studio.recent if v.number == deliveries[0].round_no).report
        phases = {"authoring": authoring, **report.accounting.phases_s, "judging": judging}

        requests = [Request(a.prompt, seed=a.seed, request_id=str(i)) for i, a in enumerate(asks)]
        t = time.perf_counter()
        indep = Engine(backbone).run(requests, independent_groups(len(requests)), plan)
        independent = time.perf_counter() - t
        q_shared, metric = _quality(np.stack([r.image for r in report.requests]), [r.prompt for r in report.requests])
        q_indep, _ = _quality(np.stack([o.image for o in indep.outputs]), [r.prompt for r in requests])
        more = []
        for r in range(1, int(rounds)):
            t = time.perf_counter()
            prompt = SHARING_MIX[r % len(SHARING_MIX)]
            s_r = (seed + 1000 * r) % 2**31
            asks_r = [Ask(prompt, s_r, visitor=me), *studio.author_prompts(names, s_r, visitor_prompt=prompt)]
            delivered = studio.run_party(asks_r)
            for d in delivered:
                studio.agent_scores(d.generation_id, wait_s=3600)
            more.append(time.perf_counter() - t)
    finally:
        studio.close(grace_s=1.0)
    ratings = [sc for per in scores if isinstance(per, list) for sc in per]
    a = report.accounting
    return {
        "requests": len(asks), "personas": names, "prompts": [x.prompt for x in asks],
        "written_by": [x.written_by or "the person" for x in asks],
        "person_image_s": round(person_image, 3), "all_ratings_s": round(total, 3),
        "total_s": round(total, 3), "phases": {k: round(v, 3) for k, v in phases.items()},
        "dominant_phase": max(phases, key=phases.get), "independent_generation_s": round(independent, 3),
        "ratings": len(ratings), "ratings_ok": sum(sc.rating.status == "ok" for sc in ratings),
        "judge": {"backend": judge.backend, "model": judge.model},
        "groups": len(report.groups), "fork_steps": [r.fork_step for r in report.requests],
        "shared_members": report.shared_members, "passes_saved": a.passes_saved,
        "quality_shared": None if q_shared is None else round(q_shared, 2),
        "quality_independent": None if q_indep is None else round(q_indep, 2), "quality_metric": metric,
        "denoiser_passes": a.passes, "denoiser_passes_independent": a.passes_independent,
        "policy": a.policy, "cpu": cpu_model(), "settings": s.public_dict(),
        "rounds": int(rounds), "rounds_s": round(total + sum(more), 3),
        "round_s_mean": round((total + sum(more)) / int(rounds), 3), "store": s.database_url,
        "policy_epsilon": s.policy_epsilon,
        "propensity": None if report.allocation.log is None else report.allocation.log.propensity,
    }
