"""Calibration: ``python -m rlli calibrate`` builds the fork rule for the configured backbone.

The three jobs the old module mixed now live apart:

- the runtime sharing plan: :mod:`rlli.policy.sharing` (fork decisions from a :class:`ForkRule`);
- the measurement on generation runs, fitting and held-out validation of that rule:
  :mod:`rlli.calibration.pairs` (backbone-agnostic), with the embedded world's prompts in
  :mod:`rlli.diffusion.tiny.calibration_prompts`;
- the grouping-threshold sweep: :func:`rlli.calibration.grouping.threshold_sweep` on a labelled prompt set.

:func:`calibrate_fork_rule` ties the measurement together (the grouping threshold is chosen in
:mod:`rlli.calibration.grouping`, the held-out guarantee in :mod:`rlli.calibration.guarantee`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rlli.calibration.pairs import (
    PairRecord,
    ProbeScorer,
    TwinScorer,
    choose_operating_point,
    fit_rule,
    measure_pairs,
    records_to_json,
    validate_rule,
)
from rlli.diffusion.engine import Engine, Plan
from rlli.diffusion.tiny.calibration_prompts import (  # noqa: F401  (re-exported: the world's prompt sets)
    VARIANT_KINDS,
    calibration_prompts,
    calibration_sets,
    light_edit,
    prompt_variants,
    service_round,
    variant,
)

MIN_PAIRS = 6  # a bin with fewer measured pairs stays unmeasured


# ----------------------------------------------------------------------------- the fork rule


def scorer_for(backbone):
    """The attribute probe on a backbone with its own world (the embedded model); similarity to the unshared twin
    otherwise."""
    return ProbeScorer() if getattr(backbone, "world", None) is not None else TwinScorer()


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
    scorer = scorer_for(engine.backbone)
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
