"""StudioService.run_round on the embedded model at a few steps: seeds, the calibrated flag, accounting."""

import json

import pytest

from rlli.config import Settings
from rlli.prompts import PromptError
from rlli.service import MAX_SEED, StudioService, check_seed

TEXT = "a red house on grass at sunset\na red house on the grass at sunset\ntwo blue boats on a lake at night"


@pytest.mark.parametrize("seed", [-1, MAX_SEED, 3.5, "x", None, float("nan")])
def test_seeds_out_of_range_or_not_whole_are_refused(seed):
    with pytest.raises(PromptError, match="seed"):
        check_seed(seed, 2)


def test_the_last_seed_still_fits_every_request():
    assert check_seed(MAX_SEED - 2, 3) == MAX_SEED - 2
    assert check_seed("7", 1) == 7 and check_seed(7.0, 1) == 7
    with pytest.raises(PromptError, match="between 0 and 2147483645"):
        check_seed(MAX_SEED - 1, 3)


def test_a_huge_raw_input_is_refused_before_it_is_read():
    service = StudioService(Settings(steps=2, max_prompts=2, max_prompt_chars=10))
    with pytest.raises(PromptError, match="characters; at most 22"):
        service.run_round("\n" * 30, 0)  # blank lines normalise away, but the raw size is checked first


def test_a_rule_for_other_steps_shares_nothing_and_says_so():
    service = StudioService(Settings(steps=2))
    r = service.run_round(TEXT, seed=3, compare=True)
    a = r.accounting
    assert a["calibrated"] is False and "steps" in r.notice and "nothing is shared" in r.notice
    assert all(o.shared_steps == 0 and o.image_source == "own" for o in r.outputs)
    assert a["denoiser_passes"] == a["denoiser_passes_generation"] == a["denoiser_passes_independent"] == 3 * 2 * 2
    assert a["denoiser_passes_fork_decision"] == 0
    assert [o.seed for o in r.outputs] == [3, 4, 5] and [o.noise_seed for o in r.outputs] == [3, 4, 5]
    assert len(r.independent) == 3 and "wall_independent_s" in a


def test_a_matching_rule_shares_and_the_accounting_adds_up(tmp_path, monkeypatch):
    import rlli.policy.sharing as sharing
    from rlli.text import text_model_id

    rule = {"kind": sharing.RULE_KIND, "version": 1, "steps": 2,
            "evidence": {"name": "x0 disagreement", "probe_step": 1, "quantile": 0.98},
            "edges": [0.0, 0.3], "quality": [[1, 1, 1], [1, 0, 0]], "broken": [[0, 0, 0], [0, 1, 1]],
            "measured_with": {"backbone": "tiny-t2i (tiny-t2i)", "scheduler": "ddim", "steps": 2,
                              "guidance_scale": 2.0, "text_model": text_model_id("")}}
    path = tmp_path / "rule.json"
    path.write_text(json.dumps(rule))
    # the greedy allocation shares what the fork decision allows when quality holds (learned policies were trained at N=20)
    service = StudioService(Settings(steps=2, group_threshold=0.35, fork_rule=path, policy="greedy"))
    r = service.run_round(TEXT, seed=0, compare=True)
    a = r.accounting
    assert a["calibrated"] is True and r.notice is None
    house = next(g for g in r.groups if 0 in g.members)
    assert 1 in house.members and house.anchor in (0, 1)
    k = 1 if house.anchor == 0 else 0  # a light edit of the anchor: near-zero x0 disagreement, shares both steps
    assert r.forks[k].evidence["x0_disagreement"] < 0.3 and r.forks[k].max_shared_steps == 2
    assert r.allocation.allocation.policy == "greedy" and r.allocation.allocation.users[k].shared_steps == 2
    assert r.outputs[k].shared_steps == 2 and r.outputs[k].image_source == "anchor's image"
    assert r.outputs[k].noise_seed == r.outputs[house.anchor].seed and k in a["anchors_image"]
    assert a["denoiser_passes"] == a["denoiser_passes_generation"] + a["denoiser_passes_fork_decision"]
    assert a["denoiser_passes_fork_decision"] > 0
    assert a["denoiser_passes_generation"] < a["denoiser_passes_independent"] == 3 * 2 * 2


def test_every_round_is_allocated_by_the_policy_and_the_engine_runs_its_steps():
    service = StudioService(Settings())
    r = service.run_round("a red house on grass at sunset\na red house on the grass at sunset\n"
                          "two blue boats on a lake at night", seed=5)
    al = r.allocation
    assert al is not None and al.allocation.policy == "gddpg" and al.notice is None
    users = al.allocation.users
    assert len(users) == 3 and sum(u.bandwidth_share for u in users) <= 1 + 1e-6
    for i, (o, u) in enumerate(zip(r.outputs, users)):
        assert u.shared_steps <= r.forks[i].max_shared_steps
        if not r.forks[i].is_anchor:
            assert o.shared_steps == u.shared_steps, "the engine must run the policy's choice"
        assert u.delay_s > 0 and u.energy_j >= 0
    assert r.accounting["energy_j"]["no_sharing"] == round(al.no_sharing.energy_j, 3)
    assert r.accounting["policy"] == "gddpg"


def test_a_policy_that_cannot_load_falls_back_to_greedy_with_a_visible_notice(tmp_path):
    service = StudioService(Settings(steps=2, policy_dir=tmp_path))
    r = service.run_round("a red house on grass", seed=1)
    assert r.allocation.allocation.policy == "greedy"
    assert r.notices and "greedy" in r.notices[-1]
