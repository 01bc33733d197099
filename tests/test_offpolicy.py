"""Closing the loop: every stored round is logged bandit feedback (what the policy saw, did, and its probability of
the shared steps), and a candidate policy's value is estimated on the logged rounds (IPS, SNIPS, DR) - fast and
offline: the shipped tiny model at 2 steps, the trait judge, and synthetic rounds straight from the policy API."""

import argparse
import json

import numpy as np
import pytest

from rlli.config import Settings
from rlli.grouping import Group
from rlli.network.allocation import evaluate
from rlli.network.qoe import trait_qoe
from rlli.personas.judge import BigFive
from rlli.policy.api import (
    build_round_state,
    load_policy,
    params_from_json,
    state_from_json,
    step_probabilities,
)
from rlli.policy.forks import forks_from_rule
from rlli.policy.offpolicy import CLIP, LoggedRound, OffPolicyError, Rated, estimate, load_logged
from rlli.session.studio import Studio, Visitor
from rlli.store import RoundRecord, Store

ME = Visitor("browser:test-offpolicy-0001", BigFive(0.8, 0.3, 0.6, 0.4, 0.7), "tipi")


# ----------------------------------------------------------------------------- a real stored round


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_rule_path):
    """One app round (a person + 3 invited personas, the live G-DDPG policy with exploration) stored and rated by the
    trait judge's agents; the person rates too."""
    folder = tmp_path_factory.mktemp("offpolicy")
    s = Settings(database_url=f"sqlite:///{folder / 'db.sqlite3'}", data_dir=folder / "data", steps=2,
                 persona_judge="trait", policy="gddpg", policy_epsilon=0.2, round_window_s=0.0,
                 fork_rule=tiny_rule_path)
    studio = Studio(s)
    try:
        me, *guests = studio.participate(ME, "a red house on grass at sunset", invite=["open", "critical", "neurotic"],
                                         seed=31)
        studio.rate(ME, me.generation_id, 8)
        for d in (me, *guests):
            studio.agent_scores(d.generation_id, wait_s=600)
        report = next(v for v in studio.recent if v.number == me.round_no).report
    finally:
        studio.close(grace_s=1.0)
    return s, report, [me, *guests]


def test_a_logged_round_round_trips_through_the_store_with_its_propensities(served):
    s, report, deliveries = served
    log = report.allocation.log
    assert log.policy == "gddpg" and log.sampled and log.epsilon == 0.2 and log.config_sha256
    logged = load_logged(s.database_url)
    assert logged.skipped == {} and len(logged.rounds) == 1
    [r] = logged.rounds
    assert r.log.as_dict() == json.loads(json.dumps(log.as_dict()))  # everything the policy saw and did
    assert r.log.propensity == pytest.approx(log.propensity) and 0 < log.propensity <= 1
    # the stored state and observation are what the policy read: its probabilities recompute exactly from them
    pol = load_policy("gddpg", s)
    for st, p, c in zip(r.states, r.params, r.log.chunks):
        assert np.array_equal(step_probabilities(pol, st, p, c.steps, 0.2, c.seed), np.asarray(c.propensity))
        from rlli.network.state import encode

        assert np.array_equal(encode(st, p, r.log.obs_version)[0], np.asarray(c.obs, np.float32))
    # each generation records its slot and propensity; the reward rebuilds from the stored ratings and energy
    with Store.from_settings(s) as store:
        f = store.rating_frame()
    ext = f.drop_duplicates("generation_id")["extras"].tolist()
    assert all(e["policy_slot"]["propensity"] > 0 for e in ext)
    steps = {k: c.steps[slot] for c in log.chunks for slot, k in enumerate(c.slots) if k >= 0}
    assert [u.shared_steps for u in report.allocation.allocation.users] == [steps[i] for i in range(len(steps))]
    ok = f[f["status"] == "ok"]
    agents = ok[ok["rater_kind"] == "agent"].groupby("generation_id")["score"].mean().sum()
    both = ok.groupby("generation_id")["score"].mean().sum()
    energy = report.allocation.allocation.energy_j
    assert r.reward("agents") == pytest.approx(float(agents) - s.energy_price * energy)
    assert r.reward("both") == pytest.approx(float(both) - s.energy_price * energy)
    assert r.reward("people") == pytest.approx(8 - s.energy_price * energy)  # one person rated one image
    # the allocating checkpoint and what it learned from travel with the report
    assert report.allocation.learned_from["judge"] and report.allocation.as_dict()["learned_from"]


def test_older_or_garbled_rounds_are_skipped_with_a_count(served, tmp_path):
    s, report, _ = served
    with Store.from_settings(s) as store:
        older = RoundRecord.from_engine(report.outputs, [g for g in _shapes(report)], report.seed, accounting={})
        store.record_round(older)
        garbled = RoundRecord.from_engine(report.outputs, _shapes(report), report.seed,
                                          accounting={"policy_log": {"version": 1, "chunks": "?"}})
        store.record_round(garbled)
        try:
            logged = load_logged(s.database_url)
        finally:
            for rid in (2, 3):  # leave the module's store as it was
                from sqlalchemy import delete

                from rlli.store.models import Round

                with store.engine.begin() as c:
                    c.execute(delete(Round).where(Round.id == rid))
    assert len(logged.rounds) == 1
    assert sum(logged.skipped.values()) == 2
    assert any("no policy log" in k for k in logged.skipped) and any("unreadable" in k for k in logged.skipped)


def _shapes(report):
    from rlli.session.recording import GroupShape

    return [GroupShape(g.members, g.anchor, g.prefix_steps) for g in report.groups]


def test_eval_policy_reward_store_reports_ips_and_dr_for_the_live_policy_and_an_alternative(served, capsys):
    from rlli.commands.offpolicy import run_eval

    s, _, _ = served
    ns = argparse.Namespace(store=s.database_url, candidates="gddpg,greedy", raters="both", json=True, policy_dir="",
                            epsilon=0.0)
    assert run_eval(ns) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["candidates"]) == {"gddpg", "greedy"}
    for c in out["candidates"].values():
        assert {"ips", "ips_ci", "snips", "dr", "dr_ci", "ess", "rounds", "ratings"} <= set(c)
        assert c["rounds"] == 1 and c["ratings"] > 4 and np.isfinite(c["dr"])


def test_a_broken_store_gives_a_clear_message_and_creates_nothing(tmp_path, capsys):
    from rlli.commands.offpolicy import run_eval

    for url, says in (("not a url", "not a database URL"), (f"sqlite:///{tmp_path / 'none' / 'x.db'}", "does not exist")):
        ns = argparse.Namespace(store=url, candidates="greedy", raters="both", json=False, policy_dir="", epsilon=0.0)
        assert run_eval(ns) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and says in err and "Traceback" not in err
    assert not (tmp_path / "none").exists()
    with pytest.raises(OffPolicyError, match="not a rating store"):
        import sqlite3

        sqlite3.connect(tmp_path / "other.db").execute("create table t (x)").connection.commit()
        load_logged(f"sqlite:///{tmp_path / 'other.db'}")
    ns = argparse.Namespace(store="x", candidates="greedy", raters="everyone", json=False, policy_dir="", epsilon=0.0)
    assert run_eval(ns) == 2 and "--raters" in capsys.readouterr().err


# ----------------------------------------------------------------------------- synthetic logged rounds


@pytest.fixture(scope="module")
def rule(tiny_rule_path):
    return tiny_rule_path


def synthetic_rounds(rule, policy_name: str, epsilon: float, n: int, seed: int = 0) -> list[LoggedRound]:
    """n logged rounds of 3 users (a pair that may share up to 2 of 2 steps, and a lone user), allocated and
    logged exactly as the service does; each user's rating is the trait judge's QoE of what it got plus BONUS per
    shared step (so the policies' values differ clearly)."""
    s = Settings(steps=2, policy=policy_name)
    pol = load_policy(policy_name, s)
    groups = [Group(members=(0, 1), anchor=0, similarity=(1.0, 0.9)), Group(members=(2,), anchor=2, similarity=(1.0,))]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        forks = forks_from_rule(groups, 2, {0: 0.0, 1: float(rng.uniform(0.0, 0.2)), 2: 0.0}, rule)
        traits = [BigFive.from_sequence(rng.uniform(0, 1, 5)) for _ in range(3)]
        live = build_round_state(groups, forks, traits, s, seed=seed * 100_000 + i)
        alloc, log = pol.allocate_logged(live, epsilon)
        states = [state_from_json(c.state) for c in log.chunks]
        params = [params_from_json(c.params) for c in log.chunks]
        ratings, quality, delay = [], {}, {}
        for st, p, c in zip(states, params, log.chunks):
            o = evaluate(st, np.asarray(c.action)[None], p)
            for slot, k in enumerate(c.slots):
                if k >= 0:
                    quality[k], delay[k] = float(o.quality[0, slot]), float(o.delay_s[0, slot])
                    score = float(trait_qoe(st.traits[0, slot], o.quality[0, slot], o.delay_s[0, slot])) \
                        + BONUS * c.steps[slot]
                    ratings.append(Rated(k, "agent", tuple(st.traits[0, slot]), score))
        out.append(LoggedRound(i, log, states, params, quality, delay, alloc.energy_j, log.energy_price, ratings))
    return out


BONUS = 1.5


def true_value(policy_name: str, rounds: list[LoggedRound]) -> float:
    """The candidate's own mean reward on the same rounds (what IPS estimates)."""
    pol = load_policy(policy_name, Settings(steps=2))
    total = []
    for r in rounds:
        v = 0.0
        for st, p, c in zip(r.states, r.params, r.log.chunks):
            o = evaluate(st, pol.actions(st, p, c.seed), p)
            v += float((trait_qoe(st.traits, o.quality, o.delay_s) + BONUS * o.allocation.steps)[st.mask].sum()) \
                - r.price * float(o.energy_j[0])
        total.append(v)
    return float(np.mean(total))


def test_ips_of_the_behaviour_policy_on_its_own_logs_is_the_logged_mean_reward(rule):
    rounds = synthetic_rounds(rule, "greedy", 0.5, 40)
    pol = load_policy("greedy", Settings(steps=2))
    res = estimate(pol, rounds, "agents", epsilon=0.5)
    logged = np.mean([r.reward("agents") for r in rounds])
    assert res["rounds"] == 40 and res["logged_mean_reward"] == pytest.approx(logged)
    assert res["ips"] == pytest.approx(logged, rel=1e-9) and res["snips"] == pytest.approx(logged, rel=1e-9)
    assert res["ess"] == pytest.approx(40) and res["clipped_share"] == 0
    lo, hi = res["ips_ci"]
    assert lo <= logged <= hi
    # a wrong weight (the candidate's probability alone, not over the behaviour's) is visibly off
    broken = estimate(pol, rounds, "agents", epsilon=0.5, weight=lambda pe, pb: pe)
    assert abs(broken["ips"] - logged) > 0.05 * abs(logged)


def test_ips_of_another_policy_is_close_to_its_true_value(rule):
    """Behaviour: greedy exploring half the time; candidate: no sharing (which greedy never chooses here). IPS
    recovers no sharing's own mean reward on the same rounds within its CI, and is far from greedy's."""
    rounds = synthetic_rounds(rule, "greedy", 0.5, 300, seed=1)
    cand = load_policy("no_sharing", Settings(steps=2))
    res = estimate(cand, rounds, "agents", epsilon=0.0)
    truth, logged = true_value("no_sharing", rounds), res["logged_mean_reward"]
    assert res["clipped_share"] == 0 and res["ess"] < 300  # weights of 1 / (0.5 / 3) = 6 where the steps match
    lo, hi = res["ips_ci"]
    assert lo <= truth <= hi and abs(res["ips"] - truth) < abs(logged - truth)
    assert abs(res["snips"] - truth) < abs(logged - truth)
    broken = estimate(cand, rounds, "agents", epsilon=0.0, weight=lambda pe, pb: pe)
    assert not broken["ips_ci"][0] <= truth <= broken["ips_ci"][1]


def test_doubly_robust_with_the_reward_model(rule):
    from rlli.policy.offpolicy import fit_reward_model

    rounds = synthetic_rounds(rule, "greedy", 0.5, 60, seed=2)
    model, described = fit_reward_model(rounds, "agents")
    assert described["ratings"] == 180
    cand = load_policy("no_sharing", Settings(steps=2))
    res = estimate(cand, rounds, "agents", model=model, epsilon=0.0)
    truth = true_value("no_sharing", rounds)
    assert res["dr_ci"][0] <= truth <= res["dr_ci"][1]
    assert res["dr_ci"][1] - res["dr_ci"][0] < res["ips_ci"][1] - res["ips_ci"][0]  # the model takes out variance


def test_an_epsilon_zero_deterministic_log_says_ips_is_undefined_for_another_candidate(rule):
    rounds = synthetic_rounds(rule, "greedy", 0.0, 10)
    assert all(r.log.propensity == 1.0 for r in rounds)
    other = estimate(load_policy("no_sharing", Settings(steps=2)), rounds, "agents")
    assert other["ips"] is None and other["snips"] is None and other["unsupported_rounds"] == 10
    assert "undefined" in other["undefined"] and "RLLI_POLICY_EPSILON" in other["undefined"]
    same = estimate(load_policy("greedy", Settings(steps=2)), rounds, "agents")
    assert same["undefined"] is None and same["ips"] == pytest.approx(same["logged_mean_reward"])


def test_the_weights_are_clipped_at_ten(rule):
    rounds = synthetic_rounds(rule, "greedy", 0.5, 12, seed=3)
    pol = load_policy("no_sharing", Settings(steps=2))
    res = estimate(pol, rounds, "agents", weight=lambda pe, pb: np.where(np.arange(len(pe)) % 2, 50.0, 0.0))
    rewards = np.array([r.reward("agents") for r in rounds])
    assert res["clipped_share"] == 0.5 and res["mean_weight"] == CLIP / 2
    assert res["ips"] == pytest.approx(np.mean(np.where(np.arange(12) % 2, CLIP, 0.0) * rewards))
    assert res["snips"] == pytest.approx(rewards[1::2].mean())  # self-normalised: unclipped weights, any scale


def test_train_policy_reward_store_fine_tunes_and_records_what_it_learned_from(served, tmp_path, capsys):
    from rlli.commands.offpolicy import run_train
    from rlli.policy.train import add_arguments

    s, _, _ = served
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--store", default="")
    parser.add_argument("--raters", default="both")
    ns = parser.parse_args(["--store", s.database_url, "--raters", "agents", "--iterations", "2", "--out",
                            str(tmp_path / "ft"), "--no-progress"])
    assert run_train(ns) == 0
    meta = json.loads((tmp_path / "ft" / "config.json").read_text())
    n = sum(len(v) for v in load_logged(s.database_url).rounds[0].rated("agents").values())
    assert meta["judge"] == "store:agents" and meta["init"]["judge"] == "trait/parametric-v1"
    assert meta["learned_from"]["rounds"] == 1 and meta["learned_from"]["ratings"] == n > 0
    assert meta["args"]["best_of"] == 8  # the recipe of the checkpoint it fine-tunes
    pol = load_policy("gddpg", Settings(), folder=tmp_path / "ft")
    assert pol.learned_from()["judge"] == "store:agents" and pol.learned_from()["ratings"] == n
    ns = parser.parse_args(["--store", s.database_url, "--raters", "people", "--iterations", "2", "--init",
                            str(tmp_path / "missing"), "--no-progress"])
    assert run_train(ns) == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_round_fills_a_store_with_logged_rounds(tmp_path, tiny_rule_path):
    from rlli.commands.bench import bench_round

    s = Settings(steps=2, persona_judge="trait", policy="greedy", policy_epsilon=0.5, round_window_s=0.0,
                 fork_rule=tiny_rule_path)
    r = bench_round(s, personas=2, store_dir=tmp_path, rounds=3)
    assert r["rounds"] == 3 and r["rounds_s"] >= r["total_s"] and r["policy_epsilon"] == 0.5
    logged = load_logged(r["store"])
    assert len(logged.rounds) == 3 and logged.skipped == {}
    assert all(x.log.policy == "greedy" and x.log.epsilon == 0.5 and x.reward("agents") is not None
               for x in logged.rounds)


def test_a_candidate_that_cannot_act_on_the_logged_rounds_fails_alone_with_a_message(served):
    from rlli.policy.api import Policy
    from rlli.policy.offpolicy import evaluate_candidates

    class Broken(Policy):
        def actions(self, st, p, seed=0):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    s, _, _ = served
    out = evaluate_candidates(s.database_url, {"greedy": load_policy("greedy", s), "broken": Broken("broken")})
    assert out["candidates"]["greedy"]["rounds"] == 1 and out["candidates"]["greedy"]["dr"] is not None
    assert "cannot act on the logged rounds" in out["candidates"]["broken"]["error"]
