"""The fork decision and the sharing plan (rlli.policy.sharing)."""

import json

import numpy as np
import pytest

from rlli.config import SettingsError
from rlli.diffusion.engine import Engine, GroupPlan, Plan, Request, expected_passes
from rlli.diffusion.fork_probe import probe_passes
from rlli.grouping import Group
from rlli.policy.sharing import (
    RULE_KIND,
    ForkRule,
    MemberFork,
    decide_forks,
    fork_decisions,
    load_fork_rule,
    member_plan,
    rule_mismatch,
    run_shared_round,
)

STEPS = 4
MEASURED = {"backbone": "b", "scheduler": "ddim", "steps": STEPS, "guidance_scale": 2.0, "text_model": "t"}


def _rule_dict(**over) -> dict:
    d = {"kind": RULE_KIND, "version": 1, "steps": STEPS,
         "evidence": {"name": "x0 disagreement", "probe_step": 1, "quantile": 0.98},
         "edges": [0.0, 0.1, 0.5],
         "quality": [[1, 1, 1, 1, 0.99], [1, 0.99, 0.96, 0.9, 0.8], [1, 0.9, 0.8, 0.7, 0.6]],
         "broken": [[0, 0, 0, 0, 0.01], [0, 0.01, 0.01, 0.1, 0.2], [0, 0.1, 0.2, 0.3, 0.4]],
         "measured_with": dict(MEASURED)}
    d.update(over)
    return d


def test_rule_maps_evidence_to_the_most_steps_within_tolerance_and_budget():
    rule = ForkRule.from_dict(_rule_dict())
    assert rule.max_steps(0.05, tolerance=0.03) == 4  # rewording-like evidence: every step
    assert rule.max_steps(0.2, tolerance=0.03) == 1  # s = 2 drops quality to 0.96
    assert rule.max_steps(0.2, tolerance=0.05) == 2  # looser tolerance: one more step
    assert rule.max_steps(0.2, tolerance=0.5, break_budget=0.02) == 2  # the broken budget stops it at s = 3
    assert rule.max_steps(0.9, tolerance=0.03) == 0
    assert rule.max_steps(float("nan"), tolerance=0.5) == 0  # unreadable evidence: the most conservative bin


@pytest.mark.parametrize("change,match", [
    ({"kind": "something else"}, "not a fork rule"), ({"edges": [0.1, 0.2, 0.5]}, "ascend from 0"),
    ({"quality": [[1, 1]]}, "one quality"), ({"steps": 7}, "values"), ({"evidence": {}}, "probe_step")])
def test_a_malformed_rule_file_is_a_settings_error_naming_the_file(tmp_path, change, match):
    p = tmp_path / "rule.json"
    p.write_text(json.dumps(_rule_dict(**change)))
    with pytest.raises(SettingsError, match=f"rule.json is malformed.*{match}"):
        load_fork_rule(p)
    p.write_text("{not json")
    with pytest.raises(SettingsError, match="malformed"):
        load_fork_rule(p)


def test_a_rule_measured_elsewhere_is_not_used_and_says_why(tmp_path):
    p = tmp_path / "rule.json"
    p.write_text(json.dumps(_rule_dict()))
    assert load_fork_rule(p, dict(MEASURED))[0] is not None
    for key, value in [("steps", 20), ("scheduler", "dpm"), ("guidance_scale", 3.0), ("text_model", "other"),
                       ("backbone", "sd")]:
        rule, notice = load_fork_rule(p, {**MEASURED, key: value})
        assert rule is None and key in notice and "nothing is shared" in notice
    rule, notice = load_fork_rule(tmp_path / "missing.json", MEASURED)
    assert rule is None and "calibrate" in notice
    assert rule_mismatch(ForkRule.from_dict(_rule_dict()), MEASURED) is None


def test_member_plan_takes_each_members_own_step_and_refuses_more_than_its_maximum():
    groups = [Group((0, 1, 2), 1, (0.9, 1.0, 0.8)), Group((3,), 3, (1.0,))]
    forks = [MemberFork(0, 0, False, 3, (1.0, 1, 1, 1, 0.5), {}), MemberFork(1, 0, True, STEPS, (1.0,) * 5, {}),
             MemberFork(2, 0, False, 1, (1.0, 1, 0.5, 0.4, 0.3), {}), MemberFork(3, 1, True, STEPS, (1.0,) * 5, {})]
    plans = member_plan(groups, forks)
    assert plans[0].member_steps == (3, 3, 1) and plans[0].shared_steps == 3
    assert plans[1].member_steps == (0,)
    assert member_plan(groups, forks, {0: 2})[0].member_steps == (2, 2, 1)
    assert member_plan(groups, forks, {0: 0, 2: 0})[0].member_steps == (0, 0, 0)
    with pytest.raises(ValueError, match="at most 1"):
        member_plan(groups, forks, {2: 2})
    plan = Plan(steps=STEPS, guidance_scale=1.0)
    assert expected_passes(plans, plan) == (3 + (4 - 3) * 2 + (4 - 1)) + 4


def test_without_a_rule_nothing_is_probed_or_shared(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=STEPS)
    reqs = [Request(p, seed=i) for i, p in enumerate(["a red house", "a red house!", "a boat"])]
    groups = [Group((0, 1), 0, (1.0, 0.95)), Group((2,), 2, (1.0,))]
    d = decide_forks(engine, reqs, groups, plan, None, 0.03, notice="why not")
    assert d.passes == 0 and [f.max_shared_steps for f in d.forks] == [STEPS, 0, STEPS]
    assert d.forks[1].evidence == {"reason": "why not"} and d.forks[1].quality == (1.0, 0, 0, 0, 0)


def test_fork_decisions_read_the_backbone_and_count_the_probe(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=STEPS, guidance_scale=2.0)
    rule = ForkRule.from_dict(_rule_dict())
    reqs = [Request("a red house on grass", 3), Request("a red house on grass", 4), Request("two blue boats", 5),
            Request("a car", 6)]
    groups = [Group((0, 1, 2), 0, (1.0, 1.0, 0.3)), Group((3,), 3, (1.0,))]
    d = decide_forks(engine, reqs, groups, plan, rule, 0.03)
    assert d.passes == probe_passes([3, 1], plan, 1) == 2 * 1 + 3
    forks = fork_decisions(engine, reqs, groups, plan, rule, 0.03)
    assert [f.request_index for f in forks] == [0, 1, 2, 3] and [f.group for f in forks] == [0, 0, 0, 1]
    assert forks[0].is_anchor and forks[3].is_anchor and not forks[1].is_anchor
    assert forks[1].evidence["x0_disagreement"] == 0.0  # the same prompt predicts the same x0
    assert forks[1].max_shared_steps == STEPS
    assert forks[2].evidence["x0_disagreement"] > 0.0
    for f in forks:
        assert len(f.quality) == STEPS + 1 and f.quality[0] == 1.0
        assert all(a >= b for a, b in zip(f.quality, f.quality[1:]))
        json.dumps(f.evidence)


def test_the_round_pipeline_counts_decision_and_generation(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=STEPS)
    rule = ForkRule.from_dict(_rule_dict())
    reqs = [Request("a red house on grass", 1), Request("a red house on grass", 2), Request("a boat", 3)]
    groups = [Group((0, 1), 0, (1.0, 1.0)), Group((2,), 2, (1.0,))]
    rnd = run_shared_round(engine, reqs, plan, rule=rule, tolerance=0.03, groups=groups,
                           scorer=lambda imgs, ps: [float(i) for i in range(len(ps))])
    assert rnd.plans == [GroupPlan((0, 1), 0, member_steps=(STEPS, STEPS)), GroupPlan((2,), 2, 0)]
    assert rnd.passes == rnd.decision.passes + expected_passes(rnd.plans, plan)
    assert rnd.scores == [0.0, 1.0, 2.0]
    o = rnd.result.outputs[1]
    assert (o.noise_seed, o.anchor_index, o.shared_steps) == (1, 0, STEPS)
    assert o.image_source == "forked"  # same prompt: its own image, whichever trajectory computed it
    assert np.array_equal(o.image, rnd.result.outputs[0].image)
