"""A guarantee on broken images: per evidence bin, a one-sided Clopper-Pearson upper bound on the share of members
with a stated attribute broken by sharing, on held-out calibration pairs.

The fork rule's per-bin curves are point estimates. Here each bin of x0 disagreement gets the most shared steps
``s_b`` such that, on pairs from anchors the rule was never fitted on, the one-sided 95% upper bound on the
broken rate at every s <= s_b stays within the budget (2% by default). A bin holding n pairs can only pass with
n >= 149 unbroken pairs (``1 - 0.05 ** (1 / n) <= 0.02``), so the bins are coarse and chosen on the fitted
pairs alone (never on the held-out ones the bound is read from).

Attributes the embedded model itself renders unreliably (warmth, detail: 39% and 56% right even without
sharing) are counted apart: a pair whose only broken attributes are those neither blocks sharing nor hides a
break on any other attribute; their rate is reported beside the guaranteed one. Which attribute broke is not in
the cached pairs (they store one flag per s), so :func:`attribute_breaks` regenerates, from the same seeds, the
member images at exactly the steps flagged broken for pairs that state an unreliable attribute, and reads every
attribute back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rlli.calibration.pairs import PairRecord
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request

UNRELIABLE = ("warmth", "detail")  # attributes the embedded model renders right only 39% / 56% of the time
CONFIDENCE = 0.95


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound on a binomial rate with k events in n trials (exact, Clopper-Pearson)."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


def clopper_pearson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval (each tail (1 - confidence) / 2)."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def states_unreliable(prompt: str) -> bool:
    from rlli.diffusion.tiny import world

    return any(k in UNRELIABLE for k in world.parse_prompt(prompt))


def attribute_breaks(engine: Engine, records: list[PairRecord], plan: Plan, chunk: int = 8,
                     log: Callable[[str], None] = print, done: dict | None = None,
                     save: Callable[[dict], None] | None = None) -> dict[int, dict[int, list[str]]]:
    """For each record (by index) stating an unreliable attribute and flagged broken at some s: per flagged s, the
    attributes (right in its s = 0 twin) that the regenerated shared image gets wrong. Records stating none are
    skipped (every break there is on a reliable attribute). ``done``/``save`` resume and checkpoint."""
    from rlli.diffusion.fidelity import read_attributes
    from rlli.diffusion.tiny import world

    out: dict[int, dict[int, list[str]]] = dict(done or {})
    todo = [i for i, r in enumerate(records) if any(r.broken) and states_unreliable(r.member) and i not in out]
    n = plan.steps
    for c0 in range(0, len(todo), chunk):
        part = todo[c0:c0 + chunk]
        reqs, groups, where = [], [], []
        for i in part:
            r = records[i]
            flagged = [s for s in range(1, n + 1) if r.broken[s]]
            first = len(reqs)
            reqs += [Request(r.anchor, seed=r.seed), Request(r.member, seed=r.seed)]
            reqs += [Request(r.member, seed=r.seed) for _ in flagged]
            groups.append(GroupPlan(tuple(range(first, len(reqs))), first, member_steps=(n, 0, *flagged)))
            where.append((i, first + 1, flagged))
        images = np.stack([o.image for o in engine.run(reqs, groups, plan).outputs])
        found = read_attributes(images)
        for i, twin, flagged in where:
            stated = world.parse_prompt(records[i].member)
            ft = found[twin]
            out[i] = {s: sorted(k for k, v in stated.items() if ft[k] == v and found[twin + 1 + j][k] != v)
                      for j, s in enumerate(flagged)}
        log(f"attributed {min(c0 + chunk, len(todo))}/{len(todo)} pairs")
        if save is not None:
            save(out)
    return out


def split_breaks(records: list[PairRecord], attribution: dict[int, dict[int, list[str]]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(reliable, unreliable_only) broken flags, shape (pairs, N + 1): a break counts as reliable unless every
    attribute it broke is an unreliable one. Pairs stating no unreliable attribute keep their cached flags;
    attributed pairs use the regenerated reading (a flagged step that shows no break there counts as none)."""
    n = len(records[0].broken)
    rel = np.zeros((len(records), n), bool)
    unrel = np.zeros((len(records), n), bool)
    for i, r in enumerate(records):
        if i in attribution:
            for s, attrs in attribution[i].items():
                s = int(s)
                if any(a not in UNRELIABLE for a in attrs):
                    rel[i, s] = True
                elif attrs:
                    unrel[i, s] = True
        else:
            rel[i] = np.array(r.broken, bool)
    return rel, unrel


def bin_index(edges: list[float] | tuple[float, ...], evidence: float) -> int:
    if not math.isfinite(evidence):
        return len(edges) - 1
    return int(np.clip(np.searchsorted(edges, evidence, side="right") - 1, 0, len(edges) - 1))


def guaranteed_steps(evidence: np.ndarray, broken: np.ndarray, edges, budget: float,
                     confidence: float = CONFIDENCE, quality_ok: np.ndarray | None = None) -> list[dict]:
    """Per bin: the most shared steps s_b with the one-sided upper bound on the broken rate <= budget at every
    s <= s_b (and, with ``quality_ok`` (bins x N+1), the quality tolerance met there), with counts and bounds."""
    steps = broken.shape[1] - 1
    idx = np.array([bin_index(edges, e) for e in evidence])
    rows = []
    for b in range(len(edges)):
        m = idx == b
        n = int(m.sum())
        k = broken[m].sum(axis=0).astype(int) if n else np.zeros(steps + 1, int)
        upper = [clopper_pearson_upper(int(k[s]), n, confidence) for s in range(steps + 1)]
        best = 0
        for s in range(1, steps + 1):
            if upper[s] > budget or (quality_ok is not None and not quality_ok[b][s]):
                break
            best = s
        rows.append({"bin": b, "lower_edge": float(edges[b]), "pairs": n, "max_steps": best,
                     "broken_at_max": int(k[best]), "upper95_at_max": round(upper[best] if best else 0.0, 4),
                     "broken": [int(v) for v in k], "upper95": [round(u, 4) for u in upper]})
    return rows


def choose_edges(evidence: np.ndarray, broken: np.ndarray, budget: float, n_held: int,
                 candidates: tuple[int, ...] = (1, 2, 3, 4, 5, 6), confidence: float = CONFIDENCE) -> list[float]:
    """Bin edges (quantiles of the *fitted* pairs' evidence) whose guaranteed steps, computed on the fitted pairs
    scaled to the held-out size ``n_held``, save the most steps: the held-out pairs never choose their own bins."""
    best = None
    scale = n_held / max(len(evidence), 1)
    for nb in candidates:
        inner = np.unique(np.round(np.quantile(evidence, np.linspace(0, 1, nb + 1)[1:-1]), 4)) if nb > 1 else []
        edges = [0.0] + [float(e) for e in inner if e > 0]
        idx = np.array([bin_index(edges, e) for e in evidence])
        saved = 0.0
        for b in range(len(edges)):
            m = idx == b
            n = int(round(m.sum() * scale))
            k = np.round(broken[m].sum(axis=0) * scale).astype(int)
            s_b = 0
            for s in range(1, broken.shape[1]):
                if clopper_pearson_upper(int(k[s]), n, confidence) > budget:
                    break
                s_b = s
            saved += m.sum() * s_b
        if best is None or saved > best[0]:
            best = (saved, edges)
    return best[1]


def saving_curve(evidence: np.ndarray, broken: np.ndarray, unreliable: np.ndarray, steps: int, edges,
                 budgets: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1), confidence: float = CONFIDENCE,
                 held_evidence: np.ndarray | None = None, held_broken: np.ndarray | None = None,
                 held_unreliable: np.ndarray | None = None) -> list[dict]:
    """Per budget: the guaranteed steps fitted on (evidence, broken), then read on the held-out pairs: the share
    of a member's own steps saved and the broken rate, each with a 95% interval (exact for the rate, anchor-free
    bootstrap-free normal interval for the mean saving), and the unreliable-attribute rate apart."""
    he = evidence if held_evidence is None else held_evidence
    hb = broken if held_broken is None else held_broken
    hu = unreliable if held_unreliable is None else held_unreliable
    out = []
    for budget in budgets:
        table = guaranteed_steps(evidence, broken, edges, budget, confidence)
        chosen = np.array([table[bin_index(edges, e)]["max_steps"] for e in he])
        frac = chosen / steps
        k = int(hb[np.arange(len(he)), chosen].sum())
        ku = int(hu[np.arange(len(he)), chosen].sum())
        se = float(frac.std(ddof=1) / math.sqrt(len(frac))) if len(frac) > 1 else 0.0
        lo, hi = clopper_pearson_interval(k, len(he), confidence)
        out.append({"budget": budget, "steps_saved_share": round(float(frac.mean()), 4),
                    "steps_saved_ci95": [round(float(frac.mean()) - 1.96 * se, 4), round(float(frac.mean()) + 1.96 * se, 4)],
                    "broken": k, "pairs": len(he), "broken_rate": round(k / max(len(he), 1), 4),
                    "broken_ci95": [round(lo, 4), round(hi, 4)],
                    "broken_upper95": round(clopper_pearson_upper(k, len(he), confidence), 4),
                    "unreliable_only_broken": ku, "max_steps_per_bin": [r["max_steps"] for r in table]})
    return out


def guarantee_section(records: list[PairRecord], attribution: dict[int, dict[int, list[str]]], first_heldout: int,
                      budget: float = 0.02, confidence: float = CONFIDENCE, enforce: bool = False,
                      attributed_note: str = "") -> dict:
    """The rule's ``guarantee`` section: bins chosen on anchors < ``first_heldout``, each bin's guaranteed steps
    read (fixed-sequence: s = 1, 2, ... until the first bound over the budget) on the held-out anchors, the
    passes-saved vs broken-rate curve over budgets, and the unreliable-attribute breaks counted apart."""
    rel, unrel = split_breaks(records, attribution)
    ev = np.array([r.evidence for r in records])
    fit = np.array([r.anchor_index < first_heldout for r in records])
    held = ~fit
    if not fit.any() or not held.any():
        raise ValueError(f"no pairs to fit (anchors < {first_heldout}) or none held out")
    steps = len(records[0].broken) - 1
    edges = choose_edges(ev[fit], rel[fit], budget, int(held.sum()), confidence=confidence)
    table = guaranteed_steps(ev[held], rel[held], edges, budget, confidence)
    chosen = np.array([table[bin_index(edges, e)]["max_steps"] for e in ev[held]])
    k = int(rel[held][np.arange(int(held.sum())), chosen].sum())
    ku = int(unrel[held][np.arange(int(held.sum())), chosen].sum())
    # the curve: for each budget, the steps the same procedure guarantees, read on the held-out pairs
    curve = []
    for b in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2):
        tb = guaranteed_steps(ev[held], rel[held], edges, b, confidence)
        ch = np.array([tb[bin_index(edges, e)]["max_steps"] for e in ev[held]])
        kb = int(rel[held][np.arange(len(ch)), ch].sum())
        frac = ch / steps
        se = float(frac.std(ddof=1) / math.sqrt(len(frac))) if len(frac) > 1 else 0.0
        lo, hi = clopper_pearson_interval(kb, len(ch), confidence)
        curve.append({"budget": b, "steps_saved_share": round(float(frac.mean()), 4),
                      "steps_saved_ci95": [round(max(0.0, float(frac.mean()) - 1.96 * se), 4),
                                           round(float(frac.mean()) + 1.96 * se, 4)],
                      "broken": kb, "pairs": len(ch), "broken_ci95": [round(lo, 4), round(hi, 4)],
                      "unreliable_only_broken": int(unrel[held][np.arange(len(ch)), ch].sum()),
                      "max_steps_per_bin": [r["max_steps"] for r in tb]})
    return {
        "budget": budget, "confidence": confidence, "enforced": bool(enforce),
        "bound": "one-sided Clopper-Pearson upper bound per evidence bin, fixed-sequence over s = 1..N",
        "edges": [round(e, 4) for e in edges], "bins": table,
        "heldout": {"first_anchor": first_heldout, "pairs": int(held.sum()),
                    "anchors": len({r.anchor_index for r, h in zip(records, held) if h}),
                    "broken_at_guaranteed_steps": k, "unreliable_only_at_guaranteed_steps": ku,
                    "mean_guaranteed_steps": round(float(chosen.mean()), 3)},
        "unreliable_attributes": list(UNRELIABLE),
        "attribution": attributed_note or f"{len(attribution)} pairs regenerated to read which attribute broke",
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m rlli.calibration.guarantee --rule R --pairs P [--attribution A] [--out O] [--enforce]``."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from rlli.calibration.pairs import records_from_json

    ap = argparse.ArgumentParser(prog="python -m rlli.calibration.guarantee", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rule", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--attribution", help="JSON {pair index: {s: [broken attributes]}} from attribute_breaks")
    ap.add_argument("--first-heldout", type=int, default=100)
    ap.add_argument("--budget", type=float, default=0.02)
    ap.add_argument("--enforce", action="store_true", help="the rule caps every fork at the guaranteed steps")
    ap.add_argument("--out", help="write the rule here (default: print the section)")
    a = ap.parse_args(argv)
    try:
        rule = json.loads(Path(a.rule).read_text(encoding="utf-8"))
        pairs = json.loads(Path(a.pairs).read_text(encoding="utf-8"))
        records = records_from_json(pairs["pairs"] if isinstance(pairs, dict) else pairs)
        att = {}
        if a.attribution:
            att = {int(k): {int(s): v for s, v in d.items()}
                   for k, d in json.loads(Path(a.attribution).read_text(encoding="utf-8")).items()}
        section = guarantee_section(records, att, a.first_heldout, a.budget, enforce=a.enforce)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        return 2
    if a.out:
        rule["guarantee"] = section
        Path(a.out).write_text(json.dumps(rule, indent=1))
        print(f"wrote {a.out}")
    else:
        print(json.dumps(section, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
