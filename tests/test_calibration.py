"""Calibration: the world's prompt sets, the fork rule's measurement, fit and validation, the legacy table."""

import json

import numpy as np
import pytest

from rlli.calibration.fork_rule import calibration_prompts
from rlli.calibration.pairs import PairRecord, TwinScorer, fit_rule, measure_pairs, oracle_steps, validate_rule
from rlli.config import SettingsError
from rlli.policy.quality_table import QualityTable, load_table
from rlli.policy.sharing import ForkRule


def _record(evidence: float, breaks_at: int | None, steps: int = 4, anchor: int = 0, kind: str = "k") -> PairRecord:
    broken = [breaks_at is not None and s >= breaks_at for s in range(steps + 1)]
    quality = [0.5 if b else 1.0 for b in broken]
    return PairRecord("a", "m", kind, anchor, 0, evidence, 0.5, quality, broken)


def test_calibration_prompts_span_light_edits_to_unrelated_scenes():
    from rlli.text import embed

    pairs = calibration_prompts(6, seed=0)
    assert pairs == calibration_prompts(6, seed=0) and pairs != calibration_prompts(6, seed=1)
    sims = np.array([[float(embed([a, v])[0] @ embed([a, v])[1]) for v in vs] for a, vs in pairs])
    light, unrelated = sims[:, 0], sims[:, -1]
    assert light.mean() > 0.9 > unrelated.mean() + 0.3  # light edits read as the same request; unrelated do not
    assert all(v != a for a, vs in pairs for v in vs[:1])  # a light edit changes the text


def test_fit_rule_learns_where_sharing_breaks_and_is_monotone():
    steps = 4
    recs = [_record(0.02 + 0.001 * i, None) for i in range(40)] + [_record(0.6 + 0.001 * i, 2) for i in range(40)]
    d = fit_rule(recs, steps, n_bins=4)
    rule = ForkRule.from_dict({"kind": "rlli fork rule", **d, "measured_with": {}})
    assert rule.max_steps(0.03, 0.03) == steps  # rewording-like pairs never broke: share everything
    assert rule.max_steps(0.7, 0.03) == 1  # pairs that broke from s = 2 on: share one step
    for row in rule.quality:
        assert row[0] == 1.0 and all(a >= b - 1e-9 for a, b in zip(row, row[1:]))
    for lo, hi in zip(rule.broken, rule.broken[1:]):
        assert all(b >= a - 1e-9 for a, b in zip(lo, hi))


def test_oracle_steps_stop_at_the_first_broken_or_worse_step():
    assert oracle_steps(_record(0.1, None), 0.03) == 4
    assert oracle_steps(_record(0.1, 3), 0.03) == 2
    assert oracle_steps(_record(0.1, 1), 0.03) == 0
    r = _record(0.1, None)
    r.quality[2] = 0.9  # worse without a broken attribute: still the end
    assert oracle_steps(r, 0.03) == 1


def test_validation_reports_broken_rate_and_saving_left_on_the_table():
    steps = 4
    fit = [_record(0.02, None) for _ in range(20)] + [_record(0.6, 2) for _ in range(20)]
    rule = ForkRule.from_dict({"kind": "rlli fork rule", **fit_rule(fit, steps, 2), "measured_with": {}})
    held = [_record(0.02, None, anchor=9), _record(0.02, 2, anchor=9), _record(0.6, None, anchor=9)]
    v = validate_rule(rule, held, 0.03, 0.02)
    assert v["pairs"] == 3 and v["anchors"] == 1
    assert v["broken_rate"] == pytest.approx(1 / 3, abs=1e-3)  # the second pair broke where the rule shared everything
    assert v["saving_left_on_table_steps"] == pytest.approx((0 + 0 + 3) / 3, abs=1e-3)  # the third could have shared all 4
    assert v["over_shared_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert v["reliability"]["quality"] and v["reliability"]["broken"]


def test_measure_pairs_runs_every_fork_step_on_a_backbone(tiny_sd):
    from rlli.diffusion.engine import Engine, Plan

    sets = [("a red house", ["a red house", "a blue boat"], ["same", "other"])]
    recs = measure_pairs(Engine(tiny_sd), sets, Plan(steps=3, guidance_scale=1.0), TwinScorer(), log=lambda m: None)
    assert [r.member for r in recs] == ["a red house", "a blue boat"]
    same, other = recs
    assert same.evidence == 0.0 and other.evidence > 0.0
    assert len(same.quality) == 4 and same.quality[0] == 1.0 and not any(same.broken)
    assert same.quality == [1.0] * 4  # the same prompt from the same seed: identical at every fork step
    assert other.quality[0] == 1.0 and min(other.quality[1:]) < 1.0  # sharing changes a different prompt's image


def test_a_malformed_calibration_file_is_a_settings_error(tmp_path):
    p = tmp_path / "c.json"
    for text in ["{oops", json.dumps({"sim_edges": [0, 1]}), json.dumps([1, 2])]:
        p.write_text(text)
        with pytest.raises(SettingsError, match="RLLI_CALIBRATION: c.json"):
            load_table(p)
    t = QualityTable([-1.0, 0.5, 1.0001], [0.0, 1.0], [[1.0, 0.5], [1.0, 0.9]], {})
    p.write_text(json.dumps({"sim_edges": t.sim_edges, "fractions": t.fractions, "quality": t.quality}))
    assert load_table(p).max_fraction(0.9, 0.2) == 1.0 and load_table(p).max_fraction(0.1, 0.2) == 0.0
    assert load_table(tmp_path / "missing.json") is None
