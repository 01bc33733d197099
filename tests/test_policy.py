"""Policies: baselines and best found, training, checkpoints, loading by name, the round API, evaluation."""

import json

import numpy as np
import pytest
import torch

from rlli.config import Settings
from rlli.grouping import Group
from rlli.network.allocation import action_dim, evaluate
from rlli.network.params import SystemParams
from rlli.network.state import MemberCurves, encode, obs_dim, sample_states
from rlli.personas.judge import BigFive
from rlli.policy.api import POLICY_NAMES, Notice, allocate_round, build_round_state, compare, load_policy
from rlli.policy.baselines import BASELINES, greedy_steps
from rlli.policy.checkpoint import CheckpointError, load_actor, save_actor
from rlli.policy.forks import MemberFork, forks_from_rule, training_curves
from rlli.policy.train import VALIDATION_SEED, Args, act, base_action, make_actor, train

P = SystemParams()


@pytest.fixture(scope="module")
def rounds():
    return sample_states(np.random.default_rng(21), 12, P, training_curves(P.steps))


def test_best_found_is_the_ceiling_of_every_baseline(rounds):
    rewards = {n: evaluate(rounds, f(rounds, P, np.random.default_rng(0)), P).reward for n, f in BASELINES.items()}
    for n in ("equal", "random", "greedy", "no_sharing", "fork_max"):
        assert np.all(rewards["best_found"] >= rewards[n] - 1e-9), n
    assert np.array_equal(rewards["oracle"], rewards["best_found"])  # the old name runs the same search
    contended = P.with_(bandwidth_hz=0.05e6, server_hz=2e9)  # where shares matter, the search beats greedy
    g = evaluate(rounds, BASELINES["greedy"](rounds, contended), contended).reward
    b = evaluate(rounds, BASELINES["best_found"](rounds, contended), contended).reward
    assert np.all(b >= g - 1e-9) and b.mean() > g.mean() + 0.01


def test_sampled_rounds_read_the_fork_rule_the_live_round_reads():
    from rlli.policy.sharing import DEFAULT_RULE, load_fork_rule

    rule, _ = load_fork_rule(DEFAULT_RULE)
    curves = training_curves(P.steps, DEFAULT_RULE)
    tol, budget = rule.operating(1.0, 1.0)
    for b, lo in enumerate(rule.edges):  # the same caps decide_forks gives a member in each evidence bin
        assert curves.caps[b] == rule.max_steps(lo + 1e-6, tol, budget)
        assert np.allclose(curves.quality[b], rule.quality[b])
    assert isinstance(curves, MemberCurves) and np.isclose(curves.weights.sum(), 1.0)


def test_greedy_shares_within_its_tolerance(rounds):
    s = greedy_steps(rounds, 0.03)
    q = np.take_along_axis(rounds.quality, s[..., None], axis=2)[..., 0]
    assert np.all(q[rounds.mask] >= 0.97) and np.all(s <= rounds.max_shared) and (s > 0).any()


P3 = SystemParams(k_max=3)  # tiny runs: 3 user slots, 64-wide networks, a fast-moving deployed actor


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A short G-DDPG and DDPG training run each (same budget)."""
    out = {}
    for algo in ("gddpg", "ddpg"):
        folder = tmp_path_factory.mktemp(algo)
        args = Args(algo=algo, seed=0, iterations=250, learning_starts=256, eval_every=125, eval_rounds=128,
                    hidden=64, tau=0.05, out=str(folder), progress=False)
        out[algo] = (train(args, p=P3, log=lambda m: None), folder)
    return out


@pytest.mark.parametrize("algo", ["gddpg", "ddpg"])
def test_tiny_training_run_beats_random(tiny_runs, algo):
    result, folder = tiny_runs[algo]
    val = sample_states(np.random.default_rng(VALIDATION_SEED), 128, P3, training_curves(P3.steps))
    random_reward = evaluate(val, BASELINES["random"](val, P3, np.random.default_rng(0)), P3).reward.mean()
    assert result["reward"] > random_reward + 0.15
    torch.manual_seed(0)  # the same initial weights as the run: what training added
    untrained = make_actor(Args(algo=algo, hidden=64), obs_dim(P3.k_max, 2), action_dim(P3.k_max))
    before = evaluate(val, act(untrained, encode(val, P3, 2), seed=VALIDATION_SEED), P3).reward.mean()
    assert result["reward"] > before + 0.2
    rows = (folder / "curve.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,rounds,wall_s,reward") and len(rows) == 3
    assert float(rows[-1].split(",")[3]) == pytest.approx(result["reward"], abs=1e-3)
    assert json.loads((folder / "config.json").read_text())["actor"]["kind"] == algo


@pytest.mark.parametrize("algo", ["gddpg", "ddpg"])
def test_save_load_round_trip_gives_the_same_actions(tiny_runs, tmp_path, algo):
    _, folder = tiny_runs[algo]
    rounds = sample_states(np.random.default_rng(2), 16, P3, training_curves(P3.steps))
    actor, meta = load_actor(folder)
    assert meta["obs_version"] == 2 and meta["judge"] == "trait/parametric-v1"
    obs = encode(rounds, P3, meta["obs_version"])
    base = base_action(rounds, P3, meta["residual"])
    a1 = act(actor, obs, seed=5, base=base)
    save_actor(tmp_path, actor, {k: v for k, v in meta.items() if k != "actor"})
    again, _ = load_actor(tmp_path)
    assert np.array_equal(a1, act(again, obs, seed=5, base=base))
    for x, y in zip(actor.state_dict().values(), again.state_dict().values()):
        assert torch.equal(x, y)
    if algo == "gddpg":  # the diffusion actor samples: the seed fixes its noise
        raw1, raw2 = act(actor, obs, seed=5), act(actor, obs, seed=6)
        assert not np.array_equal(raw1, raw2)


def test_same_seed_same_training(tmp_path):
    runs = []
    for i in range(2):
        args = Args(algo="gddpg", seed=3, iterations=40, learning_starts=256, eval_every=40, eval_rounds=32,
                    out=str(tmp_path / f"r{i}"), progress=False)
        runs.append(train(args, log=lambda m: None))
    assert runs[0]["reward"] == runs[1]["reward"]
    a = load_actor(tmp_path / "r0")[0].state_dict()
    b = load_actor(tmp_path / "r1")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_broken_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_actor(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "actor.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_actor(tmp_path)


def test_load_policy_by_name_and_visible_fallback(tmp_path, tiny_runs):
    s = Settings(policy_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown policy"):
        load_policy("ppo", s)
    for name in ("equal", "random", "greedy", "no_sharing", "oracle", "best_found"):
        pol = load_policy(name, s)
        assert pol.name == name and pol.notice is None
    fallback = load_policy("gddpg", s)  # nothing under tmp_path
    assert fallback.name == "greedy" and isinstance(fallback.notice, Notice)
    assert fallback.notice.kind == "fallback" and "gddpg" in fallback.notice.message
    wrong_k = load_policy("gddpg", s, folder=tiny_runs["gddpg"][1])  # trained for 3 slots, settings say 8
    assert wrong_k.name == "greedy" and "RLLI_POLICY_K_MAX" in wrong_k.notice.message
    ok = load_policy("gddpg", Settings(policy_dir=tmp_path, policy_k_max=3, energy_price=P3.energy_price),
                     folder=tiny_runs["gddpg"][1])
    assert ok.name == "gddpg" and ok.notice is None
    other = load_policy("gddpg", Settings(policy_dir=tmp_path, policy_k_max=3, energy_price=P3.energy_price,
                                          net_server_ghz=5.0), folder=tiny_runs["gddpg"][1])
    assert other.name == "gddpg" and other.notice.kind == "params" and "server_hz" in other.notice.message


def _round(n_groups=((0, 1, 2), (3, 4), (5,))):
    groups = [Group(members=m, anchor=m[0], similarity=tuple(1.0 if k == m[0] else 0.8 for k in m)) for m in n_groups]
    evidence = {k: (0.005, 0.03, 0.3)[k % 3] for m in n_groups for k in m}  # x0 disagreements: near, close, far
    forks = forks_from_rule(groups, P.steps, evidence)
    traits = [BigFive.from_sequence(np.linspace(0.1, 0.9, 5)[::(1 if k % 2 else -1)]) for k in range(len(forks))]
    return groups, forks, traits


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_allocates_a_live_round_feasibly(name, tiny_runs):
    groups, forks, traits = _round()
    s = Settings(policy_k_max=3, energy_price=P3.energy_price)  # the tiny runs' slots: the round of 6 in parts
    live = build_round_state(groups, forks, traits, s, seed=4, payload_bytes=3 * 64 * 64 * 4)
    trained_as = {"gddpg_li": "gddpg"}.get(name, name)  # the -LI arm is a G-DDPG checkpoint (another reward)
    folder = tiny_runs[trained_as][1] if trained_as in tiny_runs else None
    pol = load_policy(name, s, folder=folder)
    assert pol.name == name and pol.notice is None
    alloc = pol.allocate(live)
    assert [u.request_index for u in alloc.users] == list(range(len(forks)))
    for u, f in zip(alloc.users, forks):
        assert 0 <= u.shared_steps <= f.max_shared_steps
        assert u.delay_s == pytest.approx(u.delay_server_s + u.delay_tx_s + u.delay_device_s)
    sharing = [u for u in alloc.users if u.shared_steps > 0]
    if sharing:
        assert sum(u.bandwidth_share for u in sharing) == pytest.approx(1.0)
    assert alloc.total_qoe == pytest.approx(sum(u.qoe for u in alloc.users))
    assert pol.allocate(live).as_dict() | {"decision_ms": 0} == alloc.as_dict() | {"decision_ms": 0}


def test_round_state_is_seeded_and_validated():
    groups, forks, traits = _round()
    a = build_round_state(groups, forks, traits, Settings(), seed=1)
    b = build_round_state(groups, forks, traits, Settings(), seed=1)
    c = build_round_state(groups, forks, traits, Settings(), seed=2)
    assert np.array_equal(a.chunks[0].state.gain, b.chunks[0].state.gain)
    assert not np.array_equal(a.chunks[0].state.gain, c.chunks[0].state.gain)
    with pytest.raises(ValueError, match="one personality per request"):
        build_round_state(groups, forks, traits[:-1], Settings())
    bad = [MemberFork(f.request_index, f.group, f.is_anchor, 99, f.quality, {}) for f in forks]
    with pytest.raises(ValueError, match="max_shared_steps"):
        build_round_state(groups, bad, traits, Settings())
    with pytest.raises(ValueError, match="5 numbers"):
        build_round_state(groups, forks, [(0.5, 0.5)] * len(forks), Settings())


def test_large_rounds_are_allocated_in_parts():
    groups, forks, traits = _round(((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (10, 11), (12,)))
    live = build_round_state(groups, forks, traits, Settings(), seed=0)
    assert len(live.chunks) == 2 and all(c.state.mask.sum() <= P.k_max for c in live.chunks)
    alloc = load_policy("greedy").allocate(live)
    assert len(alloc.users) == 13
    assert sum(u.bandwidth_hz for u in alloc.users) <= P.bandwidth_hz * (1 + 1e-9)
    for c in live.chunks:  # every part has exactly one anchor per group
        st = c.state
        for g in set(st.group[0][st.mask[0]].tolist()):
            assert st.is_anchor[0][st.mask[0] & (st.group[0] == g)].sum() == 1


def test_allocate_round_carries_the_allocation_and_its_references():
    groups, forks, traits = _round()
    rep = allocate_round(groups, forks, traits, Settings(policy="greedy"), seed=3)
    assert rep.allocation.policy == "greedy" and rep.notice is None
    assert all(u.shared_steps == 0 for u in rep.no_sharing.users)
    assert rep.energy_saved_j == pytest.approx(rep.no_sharing.energy_j - rep.allocation.energy_j)
    figs = compare(build_round_state(groups, forks, traits, Settings(), seed=3))
    assert set(figs) == {"no_sharing", "equal"}
    d = rep.as_dict()
    assert set(d) == {"allocation", "no_sharing", "equal", "energy_saved_j", "energy_saved_vs_server_j",
                      "server_per_user_j", "server_per_user_qoe", "notice", "learned_from", "propensity"}
    json.dumps(d)


@pytest.mark.parametrize("argv,msg", [
    (["train", "policy", "--iterations", "0"], "must be positive"),
    (["eval", "policy", "--policy-dir", "/nonexistent/policies"], "no gddpg checkpoints"),
    (["eval", "policy", "--states", "0"], "--states"),
    (["eval", "policy", "--env", "sequential", "--episodes", "0"], "--episodes"),
    (["bench", "policy", "--threads", "0"], "--threads"),
    (["eval", "policy-figures", "--states", "0"], "--states"),
    (["bench", "policy", "--policy", "ppo"], "unknown policy"),
])
def test_policy_commands_refuse_bad_input_clearly(argv, msg, capsys):
    from rlli.commands.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and "Traceback" not in err


def test_eval_json_has_the_issues_shape(tmp_path, tiny_runs, capsys, monkeypatch):
    import shutil

    from rlli.policy import evaluate as ev

    for algo in ("gddpg", "ddpg"):
        shutil.copytree(tiny_runs[algo][1], tmp_path / algo / "seed0")
    shutil.copytree(tiny_runs["gddpg"][1], tmp_path / "gddpg_t1" / "seed3")  # an ablation arm: evaluated when present
    result = ev.evaluate_methods(tmp_path, P3, n_states=12, best_kw={"population": 32, "iterations": 3},
                                 log=lambda m: None)
    for key in ("methods", "gddpg_over_ddpg", "energy_saving_rounds", "beaten_best_found_rounds", "env", "ablation",
                "references", "paired_reward", "seed_statistics", "personalisation"):
        assert key in result, key
    assert list(result["methods"]) == [*ev.ONE_ROUND_METHODS, "gddpg_t1"]
    assert result["seed_statistics"]["gddpg_t1"]["seeds"] == 1
    assert result["prob_improvement"] == result["seed_statistics"]["p_gddpg_beats_ddpg"]
    for v in result["methods"].values():
        assert {"qoe", "qoe_ci", "energy", "delay", "gain_captured", "oracle_share", "min_qoe", "jain", "at_bounds",
                "personalisation"} <= set(v)
        assert v["qoe_ci"][0] <= v["qoe"] <= v["qoe_ci"][1]
        assert 0.0 <= v["at_bounds"] <= 1.0 and 0.0 <= v["personalisation"] <= 1.0
    assert result["methods"]["no_sharing"]["at_bounds"] == 1.0  # steps 0 and full shares: every entry at a bound
    assert result["methods"]["gddpg"]["judge"] == "trait/parametric-v1"
    ratio = result["gddpg_over_ddpg_seeds"]
    assert ratio["ratio"] == pytest.approx(result["gddpg_over_ddpg"]) and ratio["seeds"] == [1, 1]
    assert result["methods"]["best_found"]["oracle_share"] == 1.0
    assert result["methods"]["best_found"]["gain_captured"] == pytest.approx(1.0)
    assert result["methods"]["no_sharing"]["gain_captured"] == pytest.approx(0.0)
    assert result["gddpg_over_ddpg"] == pytest.approx(result["methods"]["gddpg"]["qoe"] / result["methods"]["ddpg"]["qoe"])
    assert result["energy_saving_rounds"]["no_sharing"]["device"] == 0.0  # not sharing saves nothing against itself
    assert set(result["ablation"]) == {"bandwidth", "compute", "steps", "all"}
    assert result["methods"]["gddpg"]["seeds"] == 1 and result["env"]["name"] == "one-round"
    json.dumps(result)


def test_sequential_evaluation_pairs_every_method_with_myopic(tmp_path, tiny_runs):
    import shutil

    from rlli.policy import evaluate as ev

    shutil.copytree(tiny_runs["ddpg"][1], tmp_path / "ddpg" / "seed0")
    result = ev.evaluate_sequential(tmp_path, P3, episodes=3, episode_length=3, methods=("ddpg", "greedy", "no_sharing",
                                    "myopic", "mpc"), best_kw={"population": 16, "iterations": 2},
                                    mpc_kw={"horizon": 1, "samples": 1}, log=lambda m: None)
    assert result["env"]["name"] == "sequential" and result["env"]["gamma"] > 0
    assert set(result["paired_return"]["vs_myopic"]) == {"ddpg", "greedy", "no_sharing", "mpc"}
    for v in result["methods"].values():
        assert v["return_ci"][0] <= v["return"] <= v["return_ci"][1]
    assert result["methods"]["myopic"]["gain_captured"] == pytest.approx(1.0)
    json.dumps(result)


def test_seed_statistics_follow_rliables_definitions():
    from rlli.policy.evaluate import iqm, prob_improvement, seed_statistics

    assert iqm(np.array([0.0, 1, 2, 3, 4, 5, 6, 100])) == pytest.approx(3.5)  # the middle half's mean
    assert prob_improvement(np.array([2.0, 3.0]), np.array([1.0, 2.0])) == pytest.approx(0.875)
    st = seed_statistics({"gddpg": np.array([1.0, 2, 3, 4]), "ddpg": np.array([0.0, 0.5, 1, 1.5])})
    assert st["gddpg"]["iqm_ci"][0] <= st["gddpg"]["iqm"] <= st["gddpg"]["iqm_ci"][1]
    assert 0.5 < st["p_gddpg_beats_ddpg"]["p"] <= 1.0


def test_system_figures_draw_every_series_with_its_band():
    from rlli.policy.figure import line_chart_svg

    xs = [1.0, 2.0, 4.0]
    series = {"greedy": (np.array([1.0, 2, 3]), np.array([0.5, 1.5, 2.5]), np.array([1.5, 2.5, 3.5])),
              "best_found": (np.array([2.0, 3, 4]), np.array([2.0, 3, 4]), np.array([2.0, 3, 4]))}
    svg = line_chart_svg(xs, series, "t", "x", "y", log_x=True)
    assert svg.count("<polyline") == 2 and svg.count("<polygon") == 2 and "greedy" in svg and "best_found" in svg
    with pytest.raises(ValueError, match="nothing"):
        line_chart_svg(xs, {}, "t", "x", "y")


def test_learning_curves_against_rounds_or_wall_clock(tmp_path):
    from rlli.policy.figure import curves_by_algo, learning_curve_svg

    for seed, wall in ((0, (10.0, 20.0)), (1, (14.0, 30.0))):
        f = tmp_path / "ddpg" / f"seed{seed}" / "curve.csv"
        f.parent.mkdir(parents=True)
        f.write_text(f"iteration,rounds,wall_s,reward\n1,16,{wall[0]},1.0\n2,32,{wall[1]},{2.0 + seed}\n")
    by_wall = curves_by_algo(tmp_path, "wall_s")
    assert [list(x) for x, _ in by_wall["ddpg"]] == [[10.0, 20.0], [14.0, 30.0]]
    svg = learning_curve_svg(by_wall, {"greedy": 2.0}, "t", x="wall_s")
    assert "wall-clock" in svg and svg.count("<polyline") == 1
    with pytest.raises(ValueError, match="no 'steps' column"):
        curves_by_algo(tmp_path, "steps")
