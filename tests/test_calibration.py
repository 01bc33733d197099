"""Calibration: the world's prompt sets, the fork rule's measurement, fit and validation, the legacy table."""


import numpy as np
import pytest

from rlli.calibration.fork_rule import calibration_prompts
from rlli.calibration.pairs import PairRecord, TwinScorer, fit_rule, measure_pairs, oracle_steps, validate_rule
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


# --- the held-out guarantee (issue 18) -----------------------------------------------------------------------------


def test_clopper_pearson_upper_bound_matches_the_closed_form_and_needs_149_clean_pairs():
    from rlli.calibration.guarantee import clopper_pearson_interval, clopper_pearson_upper

    for n in (10, 149, 300):
        assert abs(clopper_pearson_upper(0, n) - (1 - 0.05 ** (1 / n))) < 1e-9
    assert clopper_pearson_upper(0, 148) > 0.02 >= clopper_pearson_upper(0, 149)
    assert clopper_pearson_upper(2, 314) <= 0.02 < clopper_pearson_upper(2, 300)
    assert clopper_pearson_upper(5, 5) == 1.0 and clopper_pearson_upper(0, 0) == 1.0
    lo, hi = clopper_pearson_interval(3, 100)
    assert lo < 0.03 < hi


def _pair(evidence, broken, member="a red house on grass", anchor_index=0):
    from rlli.calibration.pairs import PairRecord

    return PairRecord("anchor", member, "k", anchor_index, 0, evidence, 0.9, [1.0] * len(broken), list(broken))


def test_guaranteed_steps_stop_at_the_first_step_whose_bound_exceeds_the_budget():
    from rlli.calibration.guarantee import guaranteed_steps

    n = 400
    broken = np.zeros((n, 6), bool)
    broken[:2, 3:] = True  # 2 of 400 break from s = 3: bound 0.0177 <= 0.02
    broken[2:12, 5:] = True  # 12 of 400 from s = 5: bound > 0.02
    ev = np.full(n, 0.01)
    table = guaranteed_steps(ev, broken, [0.0, 0.5], 0.02)
    assert table[0]["max_steps"] == 4 and table[0]["pairs"] == n and table[0]["broken_at_max"] == 2
    assert table[0]["upper95_at_max"] <= 0.02
    assert table[1]["pairs"] == 0 and table[1]["max_steps"] == 0  # an empty bin guarantees nothing
    assert guaranteed_steps(ev[:100], broken[:100], [0.0], 0.02)[0]["max_steps"] == 0  # 100 pairs cannot reach 2%


def test_breaks_on_unreliable_attributes_are_counted_apart():
    from rlli.calibration.guarantee import split_breaks

    recs = [_pair(0.01, [False, True, True], member="a red house on grass, warm"),
            _pair(0.01, [False, True, True], member="a red house on grass, warm"),
            _pair(0.01, [False, False, True])]
    att = {0: {1: ["warmth"], 2: ["colour", "warmth"]}, 1: {1: [], 2: ["warmth"]}}
    rel, unrel = split_breaks(recs, att)
    assert rel.tolist() == [[False, False, True], [False, False, False], [False, False, True]]
    assert unrel.tolist() == [[False, True, False], [False, False, True], [False, False, False]]


def test_an_enforced_guarantee_caps_the_rule_and_an_unenforced_one_does_not():
    from rlli.policy.sharing import RULE_KIND, ForkRule

    d = {"kind": RULE_KIND, "steps": 4, "evidence": {"probe_step": 1, "quantile": 0.98}, "edges": [0.0],
         "quality": [[1, 1, 1, 1, 1]], "broken": [[0, 0, 0, 0, 0]], "measured_with": {},
         "guarantee": {"edges": [0.0, 0.1], "bins": [{"max_steps": 3}, {"max_steps": 0}], "enforced": True}}
    rule = ForkRule.from_dict(d)
    assert rule.max_steps(0.05, 0.03) == 3 and rule.max_steps(0.2, 0.03) == 0
    d["guarantee"]["enforced"] = False
    assert ForkRule.from_dict(d).max_steps(0.2, 0.03) == 4
    d["guarantee"]["bins"] = [{"max_steps": 9}, {"max_steps": 0}]
    with pytest.raises(ValueError, match="guarantee"):
        ForkRule.from_dict(d)
