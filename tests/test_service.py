"""run_round - THE round - on the embedded model at a few steps and on the tiny dummy SD backbone: seeds, the
calibrated flag, typed records, accounting, the policy's steps reaching the engine, phases, a golden slice."""

import pickle
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from rlli.config import Settings
from rlli.diffusion.engine import Request
from rlli.grouping import Group
from rlli.prompts import PromptError
from rlli.service import MAX_SEED, ROUND_PHASES, Phase, check_seed, requests_from, run_round

PROMPTS = ["a red house on grass at sunset", "a red house on the grass at sunset", "two blue boats on a lake at night"]


@pytest.mark.parametrize("seed", [-1, MAX_SEED, 3.5, "x", None, float("nan")])
def test_seeds_out_of_range_or_not_whole_are_refused(seed):
    with pytest.raises(PromptError, match="seed"):
        check_seed(seed, 2)


def test_the_last_seed_still_fits_every_request():
    assert check_seed(MAX_SEED - 2, 3) == MAX_SEED - 2
    assert check_seed("7", 1) == 7 and check_seed(7.0, 1) == 7
    with pytest.raises(PromptError, match="between 0 and 2147483645"):
        check_seed(MAX_SEED - 1, 3)
    assert [r.seed for r in requests_from(["a", "b"], 9)] == [9, 10]


def test_a_rule_for_other_steps_shares_nothing_and_says_so():
    heard = []
    r = run_round(requests_from(PROMPTS, 3), Settings(steps=2, policy="greedy"), compare=True, on_phase=heard.append)
    a = r.accounting
    assert a.calibrated is False and any("steps" in n and "nothing is shared" in n for n in r.notices)
    assert all(q.fork_step == 0 and q.output.image_source == "own" for q in r.requests)
    assert a.passes == a.passes_generation == a.passes_independent == 3 * 2 * 2 and a.passes_fork_decision == 0
    assert [q.seed for q in r.requests] == [3, 4, 5] and [q.output.noise_seed for q in r.requests] == [3, 4, 5]
    assert r.compared and a.wall_independent_s is not None
    assert tuple(heard) == ROUND_PHASES and list(a.phases_s) == [p.value for p in ROUND_PHASES]
    # an unshared image is its own independent twin, bit for bit
    assert all(np.array_equal(q.image, q.independent.image) for q in r.requests)


def test_a_matching_rule_shares_and_the_accounting_adds_up(tiny_rule_path):
    s = Settings(steps=2, group_threshold=0.35, fork_rule=tiny_rule_path, policy="greedy")
    r = run_round(requests_from(PROMPTS, 0), s, compare=True)
    a = r.accounting
    assert a.calibrated is True and r.notices == ()
    house = r.group_of(0)
    assert 1 in house.members and house.anchor in (0, 1) and r.group_of(1) is house
    k = 1 if house.anchor == 0 else 0  # a light edit of the anchor: near-zero x0 disagreement, shares both steps
    member = r.requests[k]
    assert member.fork.evidence["x0_disagreement"] < 0.3 and member.fork.max_shared_steps == 2
    assert member.allocation.shared_steps == 2 and member.fork_step == 2
    assert member.output.image_source == "anchor's image" and member.output.noise_seed == r.requests[house.anchor].seed
    assert house.fork_steps[house.members.index(k)] == 2 and house.prefix_steps == 2
    assert r.shared_members == 1
    assert a.passes == a.passes_generation + a.passes_fork_decision and a.passes_fork_decision > 0
    assert a.passes_generation < a.passes_independent == 3 * 2 * 2
    assert a.passes_saved == a.passes_independent - a.passes


def test_the_fork_max_policy_takes_every_members_maximum_and_the_default_may_take_less(tiny_rule_path):
    s = Settings(steps=2, group_threshold=0.35, fork_rule=tiny_rule_path, policy="no_sharing")
    requests = requests_from(PROMPTS, 0)
    none = run_round(requests, s)
    most = run_round(requests, s, policy="fork_max")
    assert none.accounting.policy == "no_sharing" and most.accounting.policy == "fork_max"
    assert all(q.fork_step == 0 for q in none.requests)
    assert [q.fork_step for q in most.requests if not q.is_anchor] == \
        [q.fork.max_shared_steps for q in most.requests if not q.is_anchor]
    assert most.accounting.passes < none.accounting.passes


def test_the_report_is_frozen_typed_and_travels_between_processes():
    r = run_round(requests_from(PROMPTS[:2], 1), Settings(steps=2, policy="greedy"))
    with pytest.raises(FrozenInstanceError):
        r.seed = 5
    with pytest.raises(FrozenInstanceError):
        r.accounting.passes = 0
    back = pickle.loads(pickle.dumps(r))
    assert back.round_id == r.round_id and np.array_equal(back.requests[1].image, r.requests[1].image)
    assert [g.index for g in r.groups] == list(range(len(r.groups)))  # one numbering: 0-based, shown as number


def test_every_round_is_allocated_by_the_policy_and_the_engine_runs_its_steps():
    r = run_round(requests_from(PROMPTS, 5), Settings())
    al = r.allocation
    assert al.allocation.policy == "gddpg" and r.accounting.policy == "gddpg"  # (a notice if trained elsewhere)
    users = al.allocation.users
    assert len(users) == 3 and sum(u.bandwidth_share for u in users) <= 1 + 1e-6
    for q, u in zip(r.requests, users):
        assert q.allocation is u and u.shared_steps <= q.fork.max_shared_steps
        if not q.fork.is_anchor:
            assert q.fork_step == u.shared_steps, "the engine must run the policy's choice"
        assert u.delay_s > 0 and u.energy_j >= 0


def test_a_policy_that_cannot_load_falls_back_to_greedy_with_a_visible_notice(tmp_path):
    r = run_round(requests_from(["a red house on grass"], 1), Settings(steps=2, policy_dir=tmp_path))
    assert r.allocation.allocation.policy == "greedy"
    assert r.notices and "greedy" in r.notices[-1]


def test_a_round_on_a_backbone_without_a_world_has_no_fidelity(tiny_sd):
    reqs = [Request("a red house", 1, "0"), Request("a red house", 2, "1")]
    r = run_round(reqs, Settings(steps=3, policy="greedy"), backbone=tiny_sd,
                  groups=[Group((0, 1), 0, (1.0, 1.0))])
    assert tiny_sd.world is None and all(q.fidelity is None for q in r.requests)
    assert r.accounting.backbone == tiny_sd.name and not r.accounting.calibrated  # no rule for this backbone
    assert r.groups[0].members == (0, 1) and r.accounting.passes == r.accounting.passes_independent


def test_golden_slice_of_the_shipped_model():
    """diffusers' expected_slice habit: a few pixels of one image at a fixed seed on the CPU. A change to the
    engine, the scheduler set-up or the weights moves them."""
    s = Settings(steps=4, policy="greedy", precision="float32")  # bfloat16 CPUs would round differently
    r = run_round([Request("a red house on grass at sunset", 7, "0")], s)
    img = r.requests[0].image
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    got = img[28:31, 28:31, 0].flatten().astype(int).tolist()
    expected = GOLDEN
    assert np.abs(np.array(got) - np.array(expected)).max() <= 2, got


GOLDEN = [168, 168, 166, 168, 171, 173, 178, 179, 174]  # red channel, rows/cols 28-30, float32 on the CPU


def test_phases_have_one_name_everywhere():
    assert Phase.FORK_DECISION.value == "fork_decision" and Phase.FORK_DECISION.label == "fork decision"
    assert [p.value for p in ROUND_PHASES] == ["grouping", "fork_decision", "allocation", "generation", "scoring"]
