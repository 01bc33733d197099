"""Benchmarks: commands that print figures, each measured against the naive way in the same run.

- ``bench sharing``: a round with grouping and the default sharing plan versus every prompt
  generated independently - same backbone, same seeds, same batching - in one run.
- ``bench model``: the embedded model on 64 held-out prompts versus the renderer itself.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rlli.config import Settings
from rlli.diffusion import get_backbone, plan_from
from rlli.diffusion.calibration import load_table, plan_groups
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, independent_groups
from rlli.grouping import group_prompts

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


def bench_sharing(settings: Settings, prompts: list[str] | None = None, seed: int = 0, repeats: int = 4) -> dict:
    """Shared round versus independent generation, ``repeats`` times with fresh seeds (seed + 1000 r + i).

    A group's members all start from the anchor's seed, so one round's quality mostly measures how lucky
    a few anchor seeds were; the repeats average that out. Passes are per round; wall times are summed.
    """
    prompts = list(prompts or SHARING_MIX)
    backbone = get_backbone(settings)
    engine = Engine(backbone)
    plan = plan_from(settings)
    groups = group_prompts(prompts, settings.group_threshold, settings.text_model)
    table = load_table(settings.calibration, backbone.name, plan.scheduler)
    plans = plan_groups(groups, plan.steps, table, settings.quality_tolerance)
    _warm_up(engine, [Request(p, seed=seed) for p in prompts[:2]], plan)
    wall_s = wall_i = 0.0
    img_s, img_i = [], []
    for r in range(repeats):
        requests = [Request(p, seed=seed + 1000 * r + i, request_id=str(i)) for i, p in enumerate(prompts)]
        shared = engine.run(requests, plans, plan)
        indep = engine.run(requests, independent_groups(len(requests)), plan)
        wall_s += shared.wall_s["total"]
        wall_i += indep.wall_s["total"]
        img_s += [o.image for o in shared.outputs]
        img_i += [o.image for o in indep.outputs]
    img_s, img_i = np.stack(img_s), np.stack(img_i)
    q_s, metric = _quality(img_s, prompts * repeats)
    q_i, _ = _quality(img_i, prompts * repeats)
    if q_s is None or q_i is None:
        metric = "mean absolute pixel difference to the independent image (0-255; lower is closer)"
        q_s, q_i = float(np.abs(img_s.astype(float) - img_i.astype(float)).mean()), 0.0
    return {
        "prompts": len(prompts),
        "groups": [{"anchor": prompts[p.anchor], "members": [prompts[m] for m in p.members],
                    "min_similarity": round(g.min_similarity, 3), "shared_steps": p.shared_steps}
                   for g, p in zip(groups, plans)],
        "steps": plan.steps,
        "repeats": repeats,
        "calls_shared": shared.denoiser_passes,
        "calls_independent": indep.denoiser_passes,
        "calls_saved": round(1 - shared.denoiser_passes / indep.denoiser_passes, 4),
        "wall_shared_s": round(wall_s, 3),
        "wall_independent_s": round(wall_i, 3),
        "wall_ratio": round(wall_s / wall_i, 4),
        "quality_shared": round(q_s, 2),
        "quality_independent": round(q_i, 2),
        "quality_metric": metric,
        "handoff_bytes_per_round": sum(o.handoff_bytes for o in shared.outputs),
        "calibrated": table is not None,
        "backbone": backbone.name,
        "settings": settings.public_dict(),
    }


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
