"""Calibration: ``python -m rlli calibrate`` builds the fork rule for the configured backbone.

The three jobs the old module mixed now live apart:

- the runtime sharing plan: :mod:`rlli.policy.sharing` (fork decisions from a :class:`ForkRule`);
- the measurement on generation runs, fitting and held-out validation of that rule:
  :mod:`rlli.diffusion.fork_calibration` (backbone-agnostic), with the embedded world's prompts in
  :mod:`rlli.diffusion.tiny.calibration_prompts`;
- the grouping-threshold sweep: :func:`rlli.grouping.threshold_sweep` on a labelled prompt set.

:func:`calibrate_fork_rule` ties the measurement together. This module also keeps the earlier
similarity quality table (:class:`QualityTable`, ``assets/calibration.json``), which the system model
still reads for its by-variant-kind quality curves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rlli.config import SettingsError
from rlli.diffusion.engine import Engine, Plan
from rlli.diffusion.fork_calibration import (
    PairRecord,
    ProbeScorer,
    TwinScorer,
    choose_operating_point,
    fit_rule,
    measure_pairs,
    records_to_json,
    validate_rule,
)
from rlli.diffusion.tiny.calibration_prompts import (  # noqa: F401  (re-exported: the world's prompt sets)
    VARIANT_KINDS,
    calibration_prompts,
    calibration_sets,
    light_edit,
    prompt_variants,
    service_round,
    variant,
)

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


def load_table(path: str | Path, backbone: str | None = None, scheduler: str | None = None) -> QualityTable | None:
    """The table at ``path``; None if missing or measured on another backbone or scheduler.

    A file that is not such a table raises :class:`~rlli.config.SettingsError` naming it.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        table = QualityTable.load(p)
        if not isinstance(table.meta.get("measured_with", {}), dict):
            raise TypeError("measured_with is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SettingsError(f"RLLI_CALIBRATION: {p.name} is not a quality table ({type(e).__name__}); rebuild it "
                            "or point RLLI_CALIBRATION at a good file") from None
    measured = table.meta.get("measured_with", {})
    if backbone is not None and measured.get("backbone") not in (None, backbone):
        return None
    if scheduler is not None and measured.get("scheduler") not in (None, scheduler):
        return None
    return table


# ----------------------------------------------------------------------------- the fork rule


def scorer_for(backbone_name: str):
    """The embedded model's attribute probe for the embedded model; similarity to the unshared twin otherwise."""
    return ProbeScorer() if backbone_name.startswith("tiny-t2i") else TwinScorer()


def calibrate_fork_rule(engine: Engine, plan: Plan, measured_with: dict, n_anchors: int = 140, heldout: int = 60,
                        seed: int = 0, target_broken: float = 0.02, probe_step: int = 1, text_model: str = "",
                        chunk: int = 16, pairs: list[PairRecord] | None = None,
                        log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
    """Measure ``n_anchors + heldout`` anchors x 7 variants at every s = 0..N (or reuse measured ``pairs``), fit
    the rule on the first ``n_anchors`` at the operating point chosen on them (:func:`choose_operating_point`),
    and validate it on the rest. Returns the rule's JSON (with its card) and the raw pairs."""
    from rlli.policy.sharing import RULE_KIND, ForkRule

    if n_anchors < 8 or heldout < 1:
        raise ValueError("calibration needs at least 8 anchors to fit and 1 held out")
    scorer = scorer_for(engine.backbone.name)
    if pairs is None:
        sets = calibration_sets(n_anchors + heldout, seed)
        pairs = measure_pairs(engine, sets, plan, scorer, probe_step=probe_step, seed=seed, chunk=chunk,
                              text_model=text_model, log=log)
    fit = [r for r in pairs if r.anchor_index < n_anchors]
    held = [r for r in pairs if r.anchor_index >= n_anchors]
    if not fit or not held:
        raise ValueError(f"the pairs hold no anchors to fit (< {n_anchors}) or none held out (>= {n_anchors})")
    op = choose_operating_point(fit, plan.steps, target_broken, probe_step)
    rule = {"kind": RULE_KIND, "version": 1,
            **fit_rule(fit, plan.steps, op["bins"], probe_step, tolerance=op["tolerance"], budget=op["break_budget"]),
            "measured_with": {**measured_with, "date": datetime.now(UTC).isoformat()[:19]}}
    rule["operating_point"].update({k: op[k] for k in ("bins", "fit_captured", "fit_broken_rate")},
                                   target_broken_rate=target_broken)
    rule["validation"] = validate_rule(ForkRule.from_dict(rule), held, op["tolerance"], op["break_budget"])
    rule["card"] = {
        "data": f"{n_anchors} anchors to fit + {heldout} held-out anchors (scenes from the embedded world's held-out "
                f"combinations, seed {seed}), each with 7 variants ({', '.join(VARIANT_KINDS)}); every variant "
                f"generated from its anchor's seed forking at every s = 0..{plan.steps}",
        "metric": scorer.name,
        "evidence": f"x0 disagreement: 98th percentile of |x0(member) - x0(anchor)| on the anchor's latent after "
                    f"{probe_step} shared step(s), conditional predictions",
        "rule": f"{len(rule['edges'])} evidence bins at quantiles of the fitted pairs; per bin and s, relative quality "
                "(mean score at s / at 0) and broken-attribute rate, made monotone in s and in evidence; a member "
                f"shares the most steps whose bin quality stays >= 1 - {op['tolerance']} and broken rate <= "
                f"{op['break_budget']}: the operating point that captures the most saving on the fitted pairs with at "
                f"most {target_broken:.0%} of them broken",
        "command": f"python -m rlli calibrate --anchors {n_anchors} --heldout {heldout} --seed {seed}",
        "checked_against": "backbone, scheduler, steps, guidance scale and text model (measured_with): a mismatch "
                           "means no sharing and a notice",
    }
    return rule, [dict(r) for r in records_to_json(pairs)]


def write_rule(rule: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rule, indent=1))
    return path
