"""The fork decision and the sharing plan (rlli.policy.sharing)."""

import json

import numpy as np
import pytest

from rlli.config import SettingsError
from rlli.diffusion.engine import Engine, Plan, Request, expected_passes
from rlli.diffusion.fork_probe import probe_passes
from rlli.grouping import Group
from rlli.policy.sharing import (
    RULE_KIND,
    ForkRule,
    MemberFork,
    decide_forks,
    load_fork_rule,
    member_plan,
    rule_mismatch,
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
    forks = decide_forks(engine, reqs, groups, plan, rule, 0.03).forks
    assert [f.request_index for f in forks] == [0, 1, 2, 3] and [f.group for f in forks] == [0, 0, 0, 1]
    assert forks[0].is_anchor and forks[3].is_anchor and not forks[1].is_anchor
    assert forks[1].evidence["x0_disagreement"] == 0.0  # the same prompt predicts the same x0
    assert forks[1].max_shared_steps == STEPS
    assert forks[2].evidence["x0_disagreement"] > 0.0
    for f in forks:
        assert len(f.quality) == STEPS + 1 and f.quality[0] == 1.0
        assert all(a >= b for a, b in zip(f.quality, f.quality[1:]))
        json.dumps(f.evidence)


# --- split trees and trunks kept across rounds (issue 18) ----------------------------------------------------------

from rlli.diffusion.engine import TreePlan, expected_tree_passes  # noqa: E402
from rlli.diffusion.trunks import TrunkCache  # noqa: E402
from rlli.policy.sharing import (  # noqa: E402
    kept_steps,
    kept_trunk_starts,
    plan_split_tree,
    record_trunks,
    starts_for,
    tree_plan,
    trunks_to_keep,
)


def _limits(table):
    return lambda i, j: table[frozenset((i, j))]


def test_the_split_tree_keeps_variants_together_after_they_leave_the_anchor():
    """A red house (anchor, 0), its rewording (1), and a blue house reworded twice (2, 3): the blue pair may share 2
    steps with the anchor but 12 with each other, so 3 rides 2's branch after both leave the anchor."""
    lim = _limits({frozenset((0, 1)): 12, frozenset((0, 2)): 2, frozenset((0, 3)): 2, frozenset((1, 2)): 2,
                   frozenset((1, 3)): 2, frozenset((2, 3)): 12})
    parents, deps = plan_split_tree((0, 1, 2, 3), 0, lim)
    assert (parents[1], deps[1]) == (0, 12)
    assert {parents[2], parents[3]} == {0, 2} or {parents[2], parents[3]} == {0, 3}
    rider = 3 if parents[3] == 2 else 2
    assert deps[rider] == 12 and deps[5 - rider] == 2
    tree = TreePlan((0, 1, 2, 3), 0, tuple(parents[k] for k in range(4)), tuple(deps[k] for k in range(4)))
    assert tree.depth == 2
    assert sum(deps.values()) == 12 + 2 + 12  # per-member forks alone: 12 + 2 + 2
    for k in range(4):  # every member stays within its limit with every prompt it rides
        path = tree.path(k)
        for x, _, end in path[:-1]:
            assert end <= lim(k, x)


def test_the_split_tree_shortens_a_trunk_rather_than_break_a_riders_limit():
    # 2 may share 6 with the anchor but its rider 3 only 1 with the anchor: 2 must leave the anchor by step 1
    lim = _limits({frozenset((0, 2)): 6, frozenset((0, 3)): 1, frozenset((2, 3)): 15})
    parents, deps = plan_split_tree((0, 2, 3), 0, lim)
    rider, trunk = (3, 2) if parents[3] == 2 else (2, 3)  # either variant may carry the other (same saving)
    assert (parents[rider], deps[rider]) == (trunk, 15) and (parents[trunk], deps[trunk]) == (0, 1)
    # a pair the anchor cannot serve together: the sub-trunk runs from its own seed
    lim0 = _limits({frozenset((0, 2)): 6, frozenset((0, 3)): 0, frozenset((2, 3)): 15})
    parents, deps = plan_split_tree((0, 2, 3), 0, lim0)
    rider, trunk = (3, 2) if parents[3] == 2 else (2, 3)
    assert (parents[rider], deps[rider]) == (trunk, 15) and (parents[trunk], deps[trunk]) == (None, 0)


def test_without_better_sub_trunks_the_tree_is_the_per_member_fork():
    lim = _limits({frozenset((0, 1)): 5, frozenset((0, 2)): 3, frozenset((1, 2)): 2})
    parents, deps = plan_split_tree((0, 1, 2), 0, lim)
    assert parents == {0: None, 1: 0, 2: 0} and deps == {0: 0, 1: 5, 2: 3}


def test_tree_plan_honours_choices_and_equals_member_plan_for_one_level():
    groups = [Group((0, 1, 2, 3), 0, (1.0, 0.9, 0.8, 0.8))]
    one = [MemberFork(0, 0, True, STEPS, (1.0,) * 5, {}), MemberFork(1, 0, False, 3, (1.0,) * 5, {}),
           MemberFork(2, 0, False, 1, (1.0,) * 5, {}), MemberFork(3, 0, False, 0, (1.0,) * 5, {})]
    assert tree_plan(groups, one) == [TreePlan.one_level(p) for p in member_plan(groups, one)]
    tree = one[:3] + [MemberFork(3, 0, False, 4, (1.0,) * 5, {}, parent=2, tree_depth=2)]
    plans = tree_plan(groups, tree, {3: 2})
    assert plans[0].parents == (None, 0, 0, 2) and plans[0].departures == (0, 3, 1, 2)
    with pytest.raises(ValueError, match="at most 4"):
        tree_plan(groups, tree, {3: 5})


def test_decide_forks_with_a_split_tree_reads_pairwise_probe_at_no_extra_cost(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=STEPS, guidance_scale=2.0)
    # only identical predictions may share: the anchor's prompt shares nothing with the boats
    rule = ForkRule.from_dict(_rule_dict(edges=[0.0, 1e-6, 0.5], quality=[[1, 1, 1, 1, 1], [1, 0.5, 0.4, 0.3, 0.2],
                                                                        [1, 0.4, 0.3, 0.2, 0.1]]))
    reqs = [Request("a red house on grass", 3), Request("two blue boats", 4), Request("two blue boats", 5)]
    groups = [Group((0, 1, 2), 0, (1.0, 0.3, 0.3))]
    flat = decide_forks(engine, reqs, groups, plan, rule, 0.03)
    tree = decide_forks(engine, reqs, groups, plan, rule, 0.03, split_tree=True)
    assert tree.passes == flat.passes == probe_passes([3], plan, 1)
    f1, f2 = tree.forks[1], tree.forks[2]
    # the two boat prompts are identical: one rides the other's branch for every step
    assert [f.max_shared_steps for f in flat.forks[1:]] == [0, 0]
    assert {f1.parent, f2.parent} == {None, 1} or {f1.parent, f2.parent} == {None, 2}
    assert sorted([f1.max_shared_steps, f2.max_shared_steps]) == [0, STEPS]
    trees = tree_plan(groups, tree.forks)
    res = engine.run_tree(reqs, trees, plan)
    assert res.denoiser_passes == expected_tree_passes(trees, plan)


def test_a_kept_trunk_starts_a_later_similar_request_and_says_so(tiny_sd):
    engine, plan = Engine(tiny_sd), Plan(steps=STEPS, guidance_scale=2.0)
    rule = ForkRule.from_dict(_rule_dict())
    now = [100.0]
    cache = TrunkCache(10 * 2**20, clock=lambda: now[0])
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    first = [Request("a red house on grass", 7, "old")]
    groups = [Group((0,), 0, (1.0,))]
    forks = decide_forks(engine, first, groups, plan, rule, 0.03).forks
    forks, hits, passes = kept_trunk_starts(engine, first, groups, forks, plan, rule, 0.03, 0.02, cache, ("k",), emb,
                                            0.5)
    assert hits == {} and passes == 0 and cache.stats.misses == 1
    trees = tree_plan(groups, forks, hits=hits)
    keep = trunks_to_keep(trees, {}, kept_steps(rule, 0.03, 0.02))
    res = engine.run_tree(first, trees, plan, {}, keep)
    assert record_trunks(cache, ("k",), first, keep, res, emb, rule.probe_step) == 1
    assert cache.stats.bytes == len(keep[0]) * 4 * int(np.prod(tiny_sd.latent_shape))
    now[0] = 130.0
    later = [Request("a red house on grass", 9, "new"), Request("two blue boats", 10, "other")]
    groups2 = [Group((0,), 0, (1.0,)), Group((1,), 1, (1.0,))]
    forks2 = decide_forks(engine, later, groups2, plan, rule, 0.03).forks
    forks2, hits2, passes2 = kept_trunk_starts(engine, later, groups2, forks2, plan, rule, 0.03, 0.02, cache, ("k",),
                                               emb[[1, 2]], 0.5)
    assert set(hits2) == {0} and passes2 == 2  # the boat's embedding is too far: not even probed
    assert hits2[0].step == max(kept_steps(rule, 0.03, 0.02)) and hits2[0].age_s == 30.0
    trees2 = tree_plan(groups2, forks2, hits=hits2)
    res2 = engine.run_tree(later, trees2, plan, starts_for(trees2, hits2))
    o = res2.outputs[0]
    assert o.noise_seed == 7 and o.seed == 9 and o.start_origin["request_id"] == "old"
    assert np.array_equal(o.image, res.outputs[0].image)  # same prompt, started from its own trunk's latent
    assert res2.denoiser_passes == 2 * ((STEPS - hits2[0].step) + STEPS)
    assert cache.stats.hits == 1 and cache.stats.misses == 2
    assert cache_miss_under_another_key(engine, later, groups2, plan, rule, cache, emb)


def cache_miss_under_another_key(engine, later, groups, plan, rule, cache, emb):
    forks = decide_forks(engine, later, groups, plan, rule, 0.03).forks
    _, hits, passes = kept_trunk_starts(engine, later, groups, forks, plan, rule, 0.03, 0.02, cache, ("other",),
                                        emb[[1, 2]], 0.5)
    return hits == {} and passes == 0


def test_the_trunk_cache_evicts_least_recently_used_by_bytes():
    import torch

    cache = TrunkCache(3 * 400, clock=lambda: 0.0)
    lat = {1: (torch.zeros(1, 100), None)}  # 400 bytes
    e = [cache.put(("k",), f"p{i}", np.array([1.0, 0.0]), i, f"r{i}", 1, lat) for i in range(3)]
    assert cache.stats.bytes == 1200 and cache.stats.evictions == 0
    cache.hit(e[0])  # e0 becomes the most recently used
    cache.put(("k",), "p3", np.array([1.0, 0.0]), 3, "r3", 1, lat)
    assert cache.stats.evictions == 1 and cache.stats.bytes == 1200
    assert {t.prompt for t in cache.candidates(("k",), np.array([1.0, 0.0]), 0.5, limit=9)} == {"p0", "p2", "p3"}
    assert cache.put(("k",), "big", np.array([1.0, 0.0]), 4, "r4", 1, {1: (torch.zeros(1, 400), None)}) is None
    assert cache.stats.rejected == 1


def test_decide_then_generate_round_keeps_trunks_and_counts_every_pass(tiny_sd):
    """The two calls the round function makes around its allocation: a lonely request in round 1 leaves a trunk;
    the same prompt in round 2 starts from it, and the cache probe is counted in the decision's passes."""
    from rlli.config import Settings
    from rlli.policy.sharing import decide_round, generate_round

    engine, plan = Engine(tiny_sd), Plan(steps=STEPS, guidance_scale=2.0)
    rule = ForkRule.from_dict(_rule_dict())
    settings = Settings(quality_tolerance=0.03)
    cache = TrunkCache(10 * 2**20)
    groups = [Group((0,), 0, (1.0,))]
    first = [Request("a red house on grass", 1, "a")]
    sh = decide_round(engine, first, groups, plan, settings, rule, cache=cache)
    assert sh.decision.passes == 0 and sh.hits == {}
    res, trees = generate_round(engine, first, groups, plan, sh, cache=cache)
    assert len(cache) == 1 and res.denoiser_passes == 2 * STEPS
    again = [Request("a red house on grass", 2, "b")]
    sh2 = decide_round(engine, again, groups, plan, settings, rule, cache=cache)
    assert set(sh2.hits) == {0} and sh2.decision.passes == sh2.passes_cache_probe == 2
    res2, trees2 = generate_round(engine, again, groups, plan, sh2, cache=cache)
    assert res2.outputs[0].noise_seed == 1 and res2.outputs[0].start_origin["request_id"] == "a"
    assert res2.denoiser_passes == 2 * (STEPS - trees2[0].departure_of(0)) < 2 * STEPS
    res3, _ = generate_round(engine, again, groups, plan, sh2, choice={0: 0}, cache=cache)  # the policy says no
    assert res3.outputs[0].start_origin is None and res3.outputs[0].noise_seed == 2
