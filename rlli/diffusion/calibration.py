"""The quality table Q(similarity, shared fraction) and the default sharing plan built on it.

``python -m rlli calibrate`` measures, on the real backbone, how well a member's image matches
its own prompt when it shares the first ``s`` of ``N`` steps with an anchor prompt of a given
similarity, relative to unshared generation with the same seed. Prompt pairs come from the scene
world's caption generator over the whole range, from paraphrases to unrelated scenes. The result,
with how it was measured, is ``assets/calibration.json``; the network model reads quality from it
and :func:`plan_groups` picks each group's shared steps from it.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, expected_passes, independent_groups
from rlli.grouping import Group

SIM_EDGES = (-1.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0001)
MIN_PAIRS = 6  # a bin with fewer measured pairs stays unmeasured


def monotone(rows: list[list[float] | None]) -> list[list[float] | None]:
    """Impose the two shapes quality must have on noisy bin means: it does not rise as more steps are shared
    (isotonic regression along the fractions, first point fixed at 1), and a more similar bin is at least as
    good as a less similar one at every fraction (running maximum across measured bins, low to high)."""
    from sklearn.isotonic import IsotonicRegression

    out: list[list[float] | None] = []
    below = None
    for row in rows:
        if row is None:
            out.append(None)
            continue
        x = np.arange(len(row))
        weights = np.ones(len(row))
        weights[0] = 1e6  # no sharing is the reference: quality 1 by definition
        r = IsotonicRegression(increasing=False).fit_transform(x, np.array(row, float), sample_weight=weights)
        if below is not None:
            r = np.maximum(r, below)
        below = r
        out.append([round(float(v), 4) for v in r])
    return out


@dataclass
class QualityTable:
    sim_edges: list[float]
    fractions: list[float]
    quality: list[list[float | None]]  # [similarity bin][fraction] relative quality, None where unmeasured
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> QualityTable:
        d = json.loads(Path(path).read_text())
        return cls(d["sim_edges"], d["fractions"], d["quality"], d)

    def _row(self, similarity: float) -> np.ndarray:
        b = int(np.clip(np.searchsorted(self.sim_edges, similarity, side="right") - 1, 0, len(self.quality) - 1))
        # an unmeasured bin borrows the nearest measured bin below it (more conservative); none: no sharing
        for j in range(b, -1, -1):
            row = self.quality[j]
            if all(v is not None for v in row):
                return np.array(row, float)
        return np.array([1.0] + [0.0] * (len(self.fractions) - 1))

    def quality_at(self, similarity: float, fraction: float) -> float:
        """Relative quality (1 = as good as unshared) for a member at this similarity and fraction."""
        return float(np.interp(fraction, self.fractions, self._row(similarity)))

    def max_fraction(self, similarity: float, tolerance: float) -> float:
        """Largest measured shared fraction whose quality, and every smaller one's, stays within tolerance."""
        row, best = self._row(similarity), 0.0
        for f, q in zip(self.fractions, row):
            if q < 1.0 - tolerance:
                break
            best = f
        return best


def plan_groups(groups: list[Group], steps: int, table: QualityTable | None, tolerance: float) -> list[GroupPlan]:
    """Shared steps per group from its members' similarity to the anchor (no table: no sharing)."""
    plans = []
    for g in groups:
        s = 0
        if table is not None and len(g.members) > 1:
            s = int(np.floor(table.max_fraction(g.min_similarity, tolerance) * steps + 1e-9))
        plans.append(GroupPlan(members=g.members, anchor=g.anchor, shared_steps=s))
    return plans


def load_table(path: str | Path, backbone: str | None = None, scheduler: str | None = None) -> QualityTable | None:
    """The table at ``path``; None (no sharing) if missing or measured on another backbone or scheduler."""
    p = Path(path)
    if not p.exists():
        return None
    table = QualityTable.load(p)
    measured = table.meta.get("measured_with", {})
    if backbone is not None and measured.get("backbone") not in (None, backbone):
        return None
    if scheduler is not None and measured.get("scheduler") not in (None, scheduler):
        return None
    return table


# ----------------------------------------------------------------------------- measuring


def variant(scene, n_changes: int, rng, among: list[str] | None = None):
    """The scene with ``n_changes`` randomly chosen attributes (of ``among``) set to other values."""
    from dataclasses import replace

    from rlli.diffusion.tiny import world

    pool = [k for k in (among or world.ATTRIBUTE_NAMES) if len(world.ATTRIBUTES[k]) > 1]
    names = list(rng.permutation(pool))[:n_changes]
    changes = {}
    for k in names:
        options = [v for v in world.ATTRIBUTES[k] if v != getattr(scene, k)]
        if k in ("warmth", "detail"):  # keep a stated look stated: neutral / normal have no words
            options = [v for v in options if v not in ("neutral", "normal")] or options
        changes[k] = options[rng.integers(len(options))]
    return replace(scene, **changes)


LIGHT_SUFFIXES = (", high quality", ", detailed", ", digital art", ", 4k", " please", ", simple")


def light_edit(text: str, rng) -> str:
    """The same request typed a little differently: an article dropped or added, or a style tag."""
    words = text.split()
    r = rng.random()
    if r < 0.35 and words[0] in ("a", "an", "one"):
        return " ".join(words[1:])
    if r < 0.6 and "on" in words[:-1]:
        i = words.index("on")
        if words[i + 1] not in ("the", "a"):
            return " ".join(words[:i + 1] + ["the"] + words[i + 1:])
    return text + LIGHT_SUFFIXES[rng.integers(len(LIGHT_SUFFIXES))]


def _same_words(scene, rng_state) -> str:
    """Caption ``scene`` with the very draws (stated attributes, words, order) an earlier caption made."""
    from rlli.diffusion.tiny import world

    return world.caption(scene, copy.deepcopy(rng_state), "train")[0]


VARIANT_KINDS = ("light edit", "rewording", "same scene, other attributes stated", "1 stated attribute changed",
                 "2 stated attributes changed", "1 attribute changed, new words", "unrelated")


def prompt_variants(scene, rng) -> tuple[str, list[str]]:
    """An anchor caption and seven variants, from the same request typed differently to an unrelated one:
    light edit, rewording (same attributes stated), the same scene with other attributes stated, one and two
    stated attributes changed in the same words, one attribute changed in new words, an unrelated scene."""
    from rlli.diffusion.tiny import world

    state = copy.deepcopy(rng)
    anchor, stated = world.caption(scene, rng, "train")
    same = {k: k in stated for k in world.ATTRIBUTE_NAMES}
    return anchor, [
        light_edit(anchor, rng),
        world.caption(scene, rng, "train", mentions=same)[0],
        world.caption(scene, rng, "train")[0],
        _same_words(variant(scene, 1, rng, list(stated)), state),
        _same_words(variant(scene, 2, rng, list(stated)), state),
        world.caption(variant(scene, 1, rng), rng, "train", mentions=same)[0],
        world.caption(world.random_scene(rng, "train"), rng, "train")[0],
    ]


def calibration_prompts(n_anchors: int, seed: int) -> list[tuple[str, list[str]]]:
    """Anchor captions of held-out scenes, each with its seven variants (:func:`prompt_variants`)."""
    from rlli.diffusion.tiny import world

    rng = np.random.default_rng(seed)
    return [prompt_variants(world.random_scene(rng, "test"), rng) for _ in range(n_anchors)]


def calibrate(backbone, plan: Plan, n_anchors: int = 40, shared: tuple[int, ...] | None = None,
              seed: int = 0, log=print) -> dict:
    from rlli.diffusion.fidelity import fidelity_batch
    from rlli.text import embed

    shared = tuple(sorted({0, plan.steps, *(s for s in (shared or (1, 2, 3, 4, 6, 8, 10, 12, 16)) if s < plan.steps)}))
    pairs = calibration_prompts(n_anchors, seed)
    engine = Engine(backbone)
    # one round per shared-step value: every anchor group with all its variants as members
    requests, groups = [], []
    for a, (anchor, variants) in enumerate(pairs):
        first = len(requests)
        requests.append(Request(anchor, seed=seed * 1000 + a))
        requests += [Request(v, seed=seed * 1000 + a) for v in variants]
        groups.append((first, tuple(range(first, len(requests)))))
    sims = []
    for anchor, variants in pairs:
        e = embed([anchor, *variants])
        sims += list(e[1:] @ e[0])
    member_prompts = [v for _, vs in pairs for v in vs]
    fid = {}
    t0 = time.time()
    for s in shared:
        gp = [GroupPlan(members=m, anchor=a, shared_steps=s) for a, m in groups]
        res = engine.run(requests, gp, plan)
        imgs = np.stack([res.outputs[i].image for i in _member_rows(groups)])
        fid[s] = np.array([f if f is not None else np.nan for f in fidelity_batch(imgs, member_prompts)])
        log(f"shared {s:2d}/{plan.steps}: mean fidelity {np.nanmean(fid[s]):.3f}  ({time.time() - t0:.0f} s)")
    sims = np.array(sims)
    edges = list(SIM_EDGES)
    fractions = [s / plan.steps for s in shared]
    raw, absolute, counts = [], [], []
    base = fid[0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (sims >= lo) & (sims < hi) & ~np.isnan(base)
        counts.append(int(m.sum()))
        if m.sum() < MIN_PAIRS or np.mean(base[m]) <= 0:
            raw.append(None)
            absolute.append([None] * len(shared))
            continue
        raw.append([float(min(1.0, np.mean(fid[s][m]) / np.mean(base[m]))) for s in shared])
        absolute.append([round(float(np.mean(fid[s][m])), 4) for s in shared])
    quality = monotone(raw)
    kinds = np.array([k for _ in pairs for k in VARIANT_KINDS])
    by_kind = {}
    for kind in VARIANT_KINDS:
        m = (kinds == kind) & ~np.isnan(base)
        by_kind[kind] = {"pairs": int(m.sum()), "mean_similarity": round(float(np.mean(sims[m])), 3),
                         "quality": [round(float(np.nanmean(fid[s][m]) / max(np.nanmean(base[m]), 1e-9)), 4)
                                     for s in shared]}
    return {"sim_edges": edges, "fractions": fractions, "shared_steps": list(shared), "quality": quality,
            "fidelity": absolute, "pairs_per_bin": counts, "pairs": len(member_prompts), "by_variant_kind": by_kind,
            "pair_similarity": [round(float(x), 4) for x in sims]}


def _member_rows(groups: list[tuple[int, tuple[int, ...]]]) -> list[int]:
    return [i for a, m in groups for i in m if i != a]


# ----------------------------------------------------------------------------- the grouping threshold

THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
TIE = 0.005


def service_round(rng, n: int = 16) -> list[str]:
    """A synthetic busy-service round: 3-4 topics of 2-4 requests each (light edits of the first request,
    rewordings, looser captions of the same scene, one-attribute variants), the rest unrelated outliers."""
    from rlli.diffusion.tiny import world

    prompts: list[str] = []
    for _ in range(int(rng.integers(3, 5))):
        scene = world.random_scene(rng, "train")
        first, stated = world.caption(scene, rng, "train")
        same = {k: k in stated for k in world.ATTRIBUTE_NAMES}
        prompts.append(first)
        for _ in range(int(rng.integers(1, 4))):
            r = rng.random()
            if r < 0.4:
                prompts.append(light_edit(first, rng))
            elif r < 0.65:
                prompts.append(world.caption(scene, rng, "train", mentions=same)[0])
            elif r < 0.8:
                prompts.append(world.caption(scene, rng, "train")[0])
            else:
                prompts.append(world.caption(variant(scene, 1, rng, list(stated)), rng, "train", mentions=same)[0])
    while len(prompts) < n:
        prompts.append(world.caption(world.random_scene(rng, "train"), rng, "train")[0])
    return prompts[:n]


def tune_threshold(table: QualityTable, steps: int, tolerance: float, rounds: int = 40, seed: int = 7,
                   thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """Sweep the grouping threshold over synthetic rounds; predicted savings and quality from the table.

    For each threshold: group, plan with the table, then denoiser passes saved (exact) and the
    members' predicted relative quality (table). The recommendation is the lowest threshold whose
    savings are within ``TIE`` (half a point) of the best: equal savings, larger groups.
    """
    from rlli.grouping import group_by_similarity
    from rlli.text import cosine_matrix, embed

    rng = np.random.default_rng(seed)
    sims = [cosine_matrix(embed(service_round(rng))) for _ in range(rounds)]
    no_cfg = Plan(steps=steps, guidance_scale=1.0)  # savings are a ratio: guidance doubles both sides
    rows = []
    for t in thresholds:
        saved, quality = [], []
        for sim in sims:
            groups = group_by_similarity(sim, t)
            plans = plan_groups(groups, steps, table, tolerance)
            saved.append(1 - expected_passes(plans, no_cfg) / expected_passes(independent_groups(len(sim)), no_cfg))
            for g, p in zip(groups, plans):
                quality += [table.quality_at(s, p.shared_steps / steps) for s in g.similarity]
        rows.append({"threshold": t, "passes_saved": round(float(np.mean(saved)), 4),
                     "predicted_quality": round(float(np.mean(quality)), 4)})
    return {"rounds": rounds, "round_size": 16, "seed": seed, "sweep": rows, "recommended": recommend_threshold(rows)}


def recommend_threshold(rows: list[dict]) -> float:
    """The lowest threshold saving within ``TIE`` of the most passes: equal savings, larger groups."""
    most = max(r["passes_saved"] for r in rows)
    return min(r["threshold"] for r in rows if r["passes_saved"] >= most - TIE)
