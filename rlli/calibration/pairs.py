"""Calibrating the fork rule on generation runs (``python -m rlli calibrate``).

For pairs (anchor prompt, member prompt) generated from the anchor's seed, this module measures

- the evidence the fork decision reads at run time: the member's x0 disagreement with the anchor after
  ``probe_step`` shared steps (:mod:`rlli.diffusion.fork_probe`);
- for every shared-step count s = 0..N, the member's image when it forks at s, scored against its own
  s = 0 twin (same noise, no sharing) by a :class:`PairScorer`: relative quality and whether a
  stated attribute the twin gets right is broken.

:func:`fit_rule` bins the evidence, averages per bin and s, and makes the curves monotone; the result is
the JSON a :class:`rlli.policy.sharing.ForkRule` loads. :func:`validate_rule` applies a rule to pairs
from anchors it never saw: how often it shares where sharing broke an attribute, how much saving it
leaves on the table against the best per-pair choice, and the reliability of its predictions.

Everything here is backbone-agnostic; the prompts and the attribute scorer of the embedded world come
from :mod:`rlli.diffusion.tiny.calibration_prompts` and :mod:`rlli.diffusion.fidelity`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request
from rlli.diffusion.fork_probe import ProbeGroup, x0_disagreement

TWIN_BREAK = 0.08  # twin scorer: a member whose image differs from its twin by more than this (mean |diff| / 255) broke


@dataclass
class PairRecord:
    """One (anchor, member) pair: the evidence, and per shared-step count the member's score."""

    anchor: str
    member: str
    kind: str  # what kind of variant the member is (for reports only; the rule never reads it)
    anchor_index: int  # which calibration anchor (for held-out splits)
    seed: int
    evidence: float
    similarity: float
    quality: list[float | None]  # per s = 0..N: the scorer's absolute score (None: not scorable)
    broken: list[bool]  # per s = 0..N: a stated attribute right in the s = 0 twin is wrong at s


class PairScorer(Protocol):
    name: str

    def __call__(self, images: np.ndarray, prompts: list[str], twins: np.ndarray) -> tuple[
            list[float | None], list[bool]]:
        """Score each image for its prompt, given its s = 0 twin: (score, broken-vs-twin) per image."""


class ProbeScorer:
    """The embedded world's attribute probe: score = share of stated attributes found; broken = an attribute the
    twin shows is missing. Only for the embedded model (the probe knows its world alone)."""

    name = "attribute probe (fidelity)"

    def __call__(self, images, prompts, twins):
        from rlli.diffusion.fidelity import read_attributes
        from rlli.diffusion.tiny import world

        found, found_twin = read_attributes(images), read_attributes(twins)
        scores, broken = [], []
        for p, f, ft in zip(prompts, found, found_twin):
            stated = world.parse_prompt(p)
            if not stated:
                scores.append(None)
                broken.append(False)
                continue
            scores.append(sum(f[k] == v for k, v in stated.items()) / len(stated))
            broken.append(any(ft[k] == v and f[k] != v for k, v in stated.items()))
        return scores, broken


class TwinScorer:
    """Any backbone: score = 1 - mean |image - twin| / 255; broken = that difference over ``TWIN_BREAK``."""

    name = "similarity to the unshared twin (1 - mean |diff| / 255)"

    def __call__(self, images, prompts, twins):
        d = np.abs(images.astype(np.float32) - twins.astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0
        return [float(1 - x) for x in d], [bool(x > TWIN_BREAK) for x in d]


def _pair_requests(anchor: str, members: list[str], seed: int, steps: int) -> tuple[list[Request], list[int]]:
    """The anchor, then every member once per shared-step count 0..N, all from the anchor's seed."""
    reqs = [Request(anchor, seed=seed)]
    member_steps = [steps]
    for m in members:
        for s in range(steps + 1):
            reqs.append(Request(m, seed=seed))
            member_steps.append(s)
    return reqs, member_steps


def measure_pairs(engine: Engine, sets: list[tuple[str, list[str], list[str]]], plan: Plan, scorer: PairScorer,
                  probe_step: int = 1, quantile: float = 0.98, seed: int = 0, chunk: int = 16,
                  text_model: str = "", log: Callable[[str], None] = print) -> list[PairRecord]:
    """Evidence and per-s scores for each (anchor, members, kinds) set, generated from seed ``seed * 1000 + i``.

    Each anchor is one group of the real engine: its members fork at every s = 0..N in one round (the
    prefix runs N steps once), ``chunk`` anchors per engine call.
    """
    from rlli.text import embed

    n = plan.steps
    records: list[PairRecord] = []
    t0 = time.time()
    for c0 in range(0, len(sets), chunk):
        part = sets[c0:c0 + chunk]
        reqs, groups, probe_reqs, probe_groups = [], [], [], []
        for j, (anchor, members, _) in enumerate(part):
            a_seed = seed * 1000 + c0 + j
            r, steps = _pair_requests(anchor, members, a_seed, n)
            first = len(reqs)
            reqs += r
            groups.append(GroupPlan(members=tuple(range(first, len(reqs))), anchor=first, member_steps=tuple(steps)))
            pf = len(probe_reqs)
            probe_reqs += [Request(anchor, seed=a_seed)] + [Request(m, seed=a_seed) for m in members]
            probe_groups.append(ProbeGroup(tuple(range(pf, len(probe_reqs))), pf))
        probe = x0_disagreement(engine, probe_reqs, probe_groups, plan, probe_step, quantile)
        out = engine.run(reqs, groups, plan).outputs
        images = np.stack([o.image for o in out])
        twins_idx, img_idx, prompts = [], [], []
        for g in groups:
            rows = g.members[1:]
            for i in range(0, len(rows), n + 1):
                block = rows[i:i + n + 1]
                img_idx += block
                twins_idx += [block[0]] * len(block)
                prompts += [reqs[block[0]].prompt] * len(block)
        scores, broken = scorer(images[img_idx], prompts, images[twins_idx])
        pos = 0
        for j, ((anchor, members, kinds), pg) in enumerate(zip(part, probe_groups)):
            emb = embed([anchor, *members], text_model)
            for mi, (m, kind) in enumerate(zip(members, kinds)):
                records.append(PairRecord(anchor, m, kind, c0 + j, seed * 1000 + c0 + j,
                                          probe.disagreement[pg.members[mi + 1]], float(emb[mi + 1] @ emb[0]),
                                          scores[pos:pos + n + 1], broken[pos:pos + n + 1]))
                pos += n + 1
        log(f"measured {min(c0 + chunk, len(sets))}/{len(sets)} anchors ({time.time() - t0:.0f} s)")
    return records


# ----------------------------------------------------------------------------- fitting


def _isotonic(values: np.ndarray, increasing: bool, first: float) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    x = np.arange(len(values))
    w = np.ones(len(values))
    w[0] = 1e6  # s = 0 is the reference: quality 1, nothing broken
    v = values.copy()
    v[0] = first
    return IsotonicRegression(increasing=increasing).fit_transform(x, v, sample_weight=w)


def _bin_curves(records: list[PairRecord], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative quality (mean score at s / mean score at 0, capped at 1) and broken rate per s."""
    q = np.array([[np.nan if v is None else v for v in r.quality] for r in records], float)
    b = np.array([r.broken for r in records], float)
    ok = ~np.isnan(q[:, 0])
    base = np.nanmean(q[ok, 0]) if ok.any() else np.nan
    rel = np.minimum(1.0, np.nanmean(q[ok], axis=0) / base) if ok.any() and base > 0 else np.ones(steps + 1)
    return rel, b.mean(axis=0)


def fit_rule(records: list[PairRecord], steps: int, n_bins: int = 8, probe_step: int = 1,
             quantile: float = 0.98, tolerance: float | None = None, budget: float | None = None) -> dict:
    """The rule's tables from measured pairs: evidence bins at quantiles, monotone curves per bin; with
    ``tolerance`` and ``budget``, the operating point the rule decides at."""
    ev = np.array([r.evidence for r in records])
    inner = np.unique(np.round(np.quantile(ev, np.linspace(0, 1, n_bins + 1)[1:-1]), 4))
    edges = [0.0] + [float(e) for e in inner if e > 0]
    idx = np.searchsorted(edges, ev, side="right") - 1
    quality, broken, counts = [], [], []
    for b in range(len(edges)):
        members = [r for r, i in zip(records, idx) if i == b]
        counts.append(len(members))
        if not members:  # cannot happen with quantile edges; kept for safety: no sharing
            quality.append(np.r_[1.0, np.zeros(steps)])
            broken.append(np.r_[0.0, np.ones(steps)])
            continue
        rel, brk = _bin_curves(members, steps)
        quality.append(_isotonic(rel, increasing=False, first=1.0))
        broken.append(_isotonic(brk, increasing=True, first=0.0))
    for b in range(1, len(edges)):  # more disagreement is never better
        quality[b] = np.minimum(quality[b], quality[b - 1])
        broken[b] = np.maximum(broken[b], broken[b - 1])
    out = {"steps": steps, "evidence": {"name": "x0 disagreement", "probe_step": probe_step, "quantile": quantile},
           "edges": [round(e, 4) for e in edges],
            "quality": [[round(float(v), 4) for v in row] for row in quality],
           "broken": [[round(float(v), 4) for v in row] for row in broken],
           "pairs_per_bin": counts}
    if tolerance is not None and budget is not None:
        out["operating_point"] = {"tolerance": tolerance, "break_budget": budget}
    return out


OPERATING_GRID = {"bins": (6, 8, 12, 16), "tolerance": (0.005, 0.01, 0.015, 0.02, 0.025, 0.03),
                  "break_budget": (0.02, 0.05, 0.1, 1.0)}


def choose_operating_point(records: list[PairRecord], steps: int, target_broken: float = 0.02,
                           probe_step: int = 1, quantile: float = 0.98) -> dict:
    """The rule (bins, tolerance, per-bin break budget) that captures the most of the per-pair best saving on
    the *fitted* pairs while at most ``target_broken`` of them get an attribute broken by sharing.

    The per-bin broken rate carries a floor of probe misreads on attributes the model renders unreliably, so
    a strict per-bin budget alone shares almost nothing; the choice is made on the rate over members."""
    from rlli.policy.sharing import ForkRule

    best = None
    for bins in OPERATING_GRID["bins"]:
        d = fit_rule(records, steps, bins, probe_step, quantile)
        rule = ForkRule.from_dict({"kind": "", **d, "measured_with": {}})
        for tol in OPERATING_GRID["tolerance"]:
            for budget in OPERATING_GRID["break_budget"]:
                v = validate_rule(rule, records, tol, budget)
                key = (v["broken_rate"] <= target_broken, v["saving_captured"] if v["broken_rate"] <= target_broken
                       else -v["broken_rate"], -tol, -budget)
                if best is None or key > best[0]:
                    best = (key, {"bins": bins, "tolerance": tol, "break_budget": budget,
                                  "fit_captured": v["saving_captured"], "fit_broken_rate": v["broken_rate"]})
    return best[1]


# ----------------------------------------------------------------------------- validating


def oracle_steps(record: PairRecord, tolerance: float) -> int:
    """The most steps this pair could have shared: every s up to it keeps all attributes and the score."""
    q0 = record.quality[0]
    best = 0
    for s in range(1, len(record.quality)):
        q = record.quality[s]
        if record.broken[s] or (q0 is not None and q is not None and q < q0 - tolerance - 1e-9):
            break
        best = s
    return best


def validate_rule(rule, records: list[PairRecord], tolerance: float, budget: float) -> dict:
    """How the rule does on pairs from anchors it never saw (``rule`` is a ForkRule)."""
    from sklearn.metrics import roc_auc_score

    n = rule.steps
    chosen = np.array([rule.max_steps(r.evidence, tolerance, budget) for r in records])
    best = np.array([oracle_steps(r, tolerance) for r in records])
    broke = np.array([r.broken[s] for r, s in zip(records, chosen)])
    q0 = [r.quality[0] for r in records]
    drop = [r.quality[0] - r.quality[s] for r, s in zip(records, chosen)
            if r.quality[0] is not None and r.quality[s] is not None]
    # reliability: predicted relative quality / broken rate at every s vs what the held-out pairs showed
    pred_q, obs_q, pred_b, obs_b = [], [], [], []
    for r in records:
        if r.quality[0] is None or r.quality[0] <= 0:
            continue
        qc, bc = rule.quality_curve(r.evidence), rule.broken_curve(r.evidence)
        for s in range(1, n + 1):
            pred_q.append(qc[s])
            obs_q.append(r.quality[s] / r.quality[0])
            pred_b.append(bc[s])
            obs_b.append(float(r.broken[s]))
    reliability = _reliability(np.array(pred_q), np.array(obs_q), np.array(pred_b), np.array(obs_b))
    kinds = sorted({r.kind for r in records})
    by_kind = {}
    for k in kinds:
        m = np.array([r.kind == k for r in records])
        by_kind[k] = {"pairs": int(m.sum()), "mean_evidence": round(float(np.mean([r.evidence for r, x in
                                                                                     zip(records, m) if x])), 4),
                      "mean_shared": round(float(chosen[m].mean()), 2), "mean_best": round(float(best[m].mean()), 2),
                      "broken_rate": round(float(broke[m].mean()), 4)}
    # how well the evidence (and, for comparison, sentence similarity) tells "shares >= half" from not
    label = best >= n // 2
    auc = {}
    if 0 < label.sum() < len(label):
        auc = {"x0_disagreement": round(float(roc_auc_score(label, -np.array([r.evidence for r in records]))), 4),
               "sentence_similarity": round(float(roc_auc_score(label, [r.similarity for r in records])), 4)}
    return {
        "pairs": len(records), "anchors": len({r.anchor_index for r in records}),
        "tolerance": tolerance, "break_budget": budget,
        "shared_steps_mean": round(float(chosen.mean()), 3),
        "best_steps_mean": round(float(best.mean()), 3),
        "saving_captured": round(float(chosen.sum() / max(best.sum(), 1)), 4),
        "saving_left_on_table_steps": round(float(np.clip(best - chosen, 0, None).mean()), 3),
        "over_shared_rate": round(float((chosen > best).mean()), 4),
        "broken_rate": round(float(broke.mean()), 4),
        "broken_rate_when_sharing": round(float(broke[chosen > 0].mean()) if (chosen > 0).any() else 0.0, 4),
        "mean_score_drop": round(float(np.mean(drop)) if drop else 0.0, 4),
        "unscorable_pairs": int(sum(v is None for v in q0)),
        "auc_half_or_more": auc,
        "by_kind": by_kind,
        "reliability": reliability,
    }


def _reliability(pred_q, obs_q, pred_b, obs_b, bins: int = 8) -> dict:
    def table(pred, obs, edges):
        rows = []
        idx = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, len(edges) - 2)
        for i in range(len(edges) - 1):
            m = idx == i
            if m.sum():
                rows.append({"predicted": round(float(pred[m].mean()), 4), "observed": round(float(obs[m].mean()), 4),
                             "n": int(m.sum())})
        return rows

    if len(pred_q) == 0:
        return {"quality": [], "broken": []}
    q_edges = np.unique(np.quantile(pred_q, np.linspace(0, 1, bins + 1)))
    b_edges = np.unique(np.quantile(pred_b, np.linspace(0, 1, bins + 1)))
    if len(q_edges) < 2:
        q_edges = np.array([q_edges[0], q_edges[0] + 1e-9])
    if len(b_edges) < 2:
        b_edges = np.array([b_edges[0], b_edges[0] + 1e-9])
    return {"quality": table(pred_q, obs_q, q_edges), "broken": table(pred_b, obs_b, b_edges)}


def records_to_json(records: list[PairRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def records_from_json(rows: list[dict]) -> list[PairRecord]:
    return [PairRecord(**r) for r in rows]
