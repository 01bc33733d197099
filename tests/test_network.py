"""The system model and its Gymnasium environment."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlli.network.env  # noqa: F401  (registers the environment id)
from rlli.config import ASSETS
from rlli.network.allocation import action_for, device_reference, evaluate, map_actions, patience_s, server_reference
from rlli.network.channel import gauss_markov, path_gain, rayleigh, shannon_rate
from rlli.network.env import ENV_ID, SEQ_ENV_ID, RoundAllocationEnv, SequentialAllocationEnv, advance
from rlli.network.params import SystemParams
from rlli.network.state import MemberCurves, encode, obs_dim, sample_states

P = SystemParams()


@pytest.fixture(scope="module")
def curves():
    return MemberCurves.load(ASSETS / "fork" / "rule.json", P.steps)


@pytest.fixture(scope="module")
def rounds(curves):
    return sample_states(np.random.default_rng(5), 64, P, curves)


@pytest.mark.parametrize("fading", ["iid", "gauss-markov"])
def test_env_passes_the_gymnasium_checker(fading):
    env = gym.make(ENV_ID, params=SystemParams(fading=fading))
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (obs_dim(P.k_max),) and env.action_space.shape == (3 * P.k_max,)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated and np.isfinite(reward)
    assert reward == pytest.approx(info["total_qoe"] - P.energy_price * info["energy_j"])


def test_sequential_env_passes_the_checker_and_carries_state_between_rounds():
    env = gym.make(SEQ_ENV_ID, episode_length=6)
    check_env(env.unwrapped)
    e = env.unwrapped
    obs, info = env.reset(seed=3)
    assert obs.shape == (obs_dim(P.k_max, 2),) and e.gamma > 0
    first = e.state
    steps = 0
    while True:
        _, r, terminated, truncated, info = env.step(np.ones(3 * P.k_max))  # share every allowed step
        steps += 1
        assert np.isfinite(r) and not truncated
        if terminated:
            break
    assert steps == 6 and info["t"] == 6
    nxt = e.state
    stayed = first.mask[0] & nxt.mask[0] & (first.distance_m[0] == nxt.distance_m[0])
    assert (first.mask[0] != nxt.mask[0]).any() or stayed.any()


def test_the_server_queue_carries_over_and_batteries_drain(curves):
    st = sample_states(np.random.default_rng(2), 1, P, curves, (8, 8))
    out = evaluate(st, np.ones((1, 3 * P.k_max)), P)
    assert out.server_work_s[0] == pytest.approx(out.allocation.prefix_steps.sum() * P.server_step_s)
    st.backlog_s[0] = 3.0
    nxt = advance(np.random.default_rng(0), st, out, P, curves, arrival_rate=0.0, mean_stay=1e9, background_load=0.0)
    assert nxt.backlog_s[0] == pytest.approx(max(0.0, 3.0 + out.server_work_s[0] - P.slot_s))
    assert np.array_equal(nxt.mask, st.mask) and np.array_equal(nxt.distance_m, st.distance_m)  # everyone stayed
    m = st.mask[0]
    assert np.allclose(nxt.battery[0][m], 1.0 - out.energy_device_j[0][m] / P.battery_j)
    corr = np.real(np.vdot(st.fading[0][m], nxt.fading[0][m]))  # Gauss-Markov: the new h leans on the old
    assert corr > 0
    later = evaluate(nxt, np.ones((1, 3 * P.k_max)), P)  # the queue delays the next round's prefixes
    sharing = nxt.mask & (later.allocation.steps > 0)
    assert np.all(later.delay_server_s[sharing] >= nxt.backlog_s[0])


def test_one_round_env_is_the_sequential_env_with_episodes_of_one(curves):
    a = RoundAllocationEnv(curves=curves)
    b = SequentialAllocationEnv(curves=curves, episode_length=1, obs_version=1)
    oa, _ = a.reset(seed=9)
    ob, _ = b.reset(seed=9)
    act = np.linspace(-1, 1, 3 * P.k_max)
    ra, rb = a.step(act), b.step(act)
    assert np.array_equal(oa, ob) and ra[1] == rb[1] and ra[2] and rb[2]


def test_observation_v2_carries_band_server_steps_users_and_queue(curves):
    st = sample_states(np.random.default_rng(1), 4, P, curves)
    base = encode(st, P, 2)
    assert base.shape == (4, obs_dim(P.k_max, 2))
    assert np.array_equal(base[:, :10], encode(st, P, 1)[:, :10])  # the first slot's v1 features come first
    for change in ({"bandwidth_hz": 2e6}, {"server_hz": 5e9}):
        assert not np.array_equal(encode(st, P.with_(**change), 2)[:, -5:], base[:, -5:]), change
    st.backlog_s[:] = 4.0
    assert not np.array_equal(encode(st, P, 2)[:, -1], base[:, -1])
    assert np.allclose(base[:, -2], st.mask.sum(1) / P.k_max)
    with pytest.raises(ValueError, match="version"):
        obs_dim(8, 3)


def test_same_seed_same_rounds_other_seed_other_rounds(curves):
    a = sample_states(np.random.default_rng(3), 8, P, curves)
    b = sample_states(np.random.default_rng(3), 8, P, curves)
    c = sample_states(np.random.default_rng(4), 8, P, curves)
    assert np.array_equal(encode(a, P), encode(b, P))
    assert not np.array_equal(encode(a, P), encode(c, P))
    members = a.mask & ~a.is_anchor  # every member's curve and cap is one of the fork rule's bins
    for q, cap in zip(a.quality[members], a.max_shared[members]):
        j = int(np.flatnonzero(np.all(curves.quality == q, axis=1))[0])
        assert cap == curves.caps[j]
    env1, env2 = RoundAllocationEnv(), RoundAllocationEnv()
    o1, _ = env1.reset(seed=11)
    o2, _ = env2.reset(seed=11)
    act = np.linspace(-1, 1, 3 * P.k_max)
    assert np.array_equal(o1, o2) and env1.step(act)[1] == env2.step(act)[1]


def _check_feasible(st, alloc):
    m = st.mask
    assert np.all((alloc.steps >= 0) & (alloc.steps <= st.max_shared))
    assert np.all(alloc.steps[~m] == 0)
    sharing = m & (alloc.steps > 0)
    w = alloc.bandwidth_share
    assert np.all(w >= 0) and np.all(w[~sharing] == 0)
    assert np.allclose(w.sum(1)[sharing.any(1)], 1.0)
    v = alloc.group_compute_share
    assert np.all(v >= 0) and np.all(v[alloc.prefix_steps == 0] == 0)
    assert np.allclose(v.sum(1)[(alloc.prefix_steps > 0).any(1)], 1.0)
    for b in range(st.batch):  # the anchor forks with its group's last member: prefix = max member steps
        for g in set(st.group[b][m[b]].tolist()):
            members = m[b] & (st.group[b] == g)
            assert alloc.prefix_steps[b, g] == alloc.steps[b][members].max()
            assert alloc.steps[b][members & st.is_anchor[b]][0] == alloc.prefix_steps[b, g]


@pytest.mark.parametrize("kind", ["uniform", "all -1", "all +1", "huge", "nan and inf", "alternating"])
def test_any_action_maps_to_a_feasible_allocation(rounds, kind):
    rng = np.random.default_rng(0)
    shape = (rounds.batch, 3 * P.k_max)
    action = {"uniform": rng.uniform(-1, 1, shape), "all -1": -np.ones(shape), "all +1": np.ones(shape),
              "huge": rng.normal(0, 1e6, shape), "alternating": np.resize([1.0, -1.0], shape),
              "nan and inf": np.where(rng.random(shape) < 0.3, np.nan, np.where(rng.random(shape) < 0.5, np.inf, -np.inf))}[kind]
    alloc = map_actions(rounds, action)
    _check_feasible(rounds, alloc)
    out = evaluate(rounds, action, P)
    assert np.all(np.isfinite(out.reward)) and np.all(out.delay_s[rounds.mask] > 0)
    assert np.all((out.qoe[rounds.mask] >= 1) & (out.qoe[rounds.mask] <= 10))


def test_all_plus_one_shares_every_allowed_step(rounds):
    alloc = map_actions(rounds, np.ones((rounds.batch, 3 * P.k_max)))
    members = rounds.mask & ~rounds.is_anchor
    assert np.array_equal(alloc.steps[members], rounds.max_shared[members])


def test_channel_formulas():
    assert path_gain(np.array(1000.0), P) == pytest.approx(10 ** (-12.81))
    assert path_gain(np.array(100.0), P) == pytest.approx(10 ** (-(128.1 - 37.6) / 10))
    # SNR 1 on 1 MHz -> 1 Mbit/s; no bandwidth -> no rate
    b = 1e6
    g = P.noise_w_per_hz * b / P.tx_power_w
    assert shannon_rate(np.array(b), np.array(g), P) == pytest.approx(1e6)
    assert shannon_rate(np.array(0.0), np.array(g), P) == 0.0
    rng = np.random.default_rng(0)
    h = rayleigh(rng, 200_000)
    h2 = gauss_markov(rng, h, 0.9)
    assert np.mean(np.abs(h) ** 2) == pytest.approx(1.0, abs=0.02)
    assert np.mean(np.abs(h2) ** 2) == pytest.approx(1.0, abs=0.02)
    assert np.real(np.mean(h2 * np.conj(h))) == pytest.approx(0.9, abs=0.02)


def test_no_sharing_is_local_generation(rounds):
    out = evaluate(rounds, -np.ones((rounds.batch, 3 * P.k_max)), P)
    m = rounds.mask
    f = rounds.device_hz[m]
    assert np.allclose(out.delay_s[m], P.steps * P.cycles_per_step_device / f)
    assert np.allclose(out.energy_device_j[m], P.device_power_w * P.steps * P.cycles_per_step_device / f)
    assert np.all(out.energy_server_j == 0) and np.all(out.delay_tx_s == 0) and np.all(out.quality[m] == 1)
    ref = device_reference(rounds, P)
    assert np.allclose(ref.energy_j, out.energy_j) and np.allclose(ref.reward, out.reward)


def test_sourced_step_figures():
    assert P.device_step_s(P.device_hz[1]) == pytest.approx(11.5 / 20)  # Galaxy S23 Ultra, SD 1.4 (Chen et al.)
    assert P.device_step_s(P.device_hz[0]) == pytest.approx(2 * 11.5 / 20)
    assert P.server_step_s == pytest.approx(2.95 / 50) and P.server_step_j == pytest.approx(150 * 2.95 / 50)
    assert P.payload_bytes == 4 * 64 * 64 * 2


def test_server_energy_per_step_does_not_depend_on_the_share(rounds):
    s = np.where(rounds.mask & ~rounds.is_anchor, rounds.max_shared, 0)
    low = evaluate(rounds, action_for(rounds, s, compute=np.full(rounds.mask.shape, 0.0)), P)
    rng = np.random.default_rng(0)
    skew = evaluate(rounds, action_for(rounds, s, compute=rng.uniform(0, 1, rounds.mask.shape)), P)
    assert np.array_equal(low.allocation.prefix_steps, skew.allocation.prefix_steps)
    assert np.allclose(low.energy_server_j, P.server_step_j * low.allocation.prefix_steps.sum(1))
    assert np.allclose(low.energy_server_j, skew.energy_server_j)
    sharing = rounds.mask & (s > 0)
    assert not np.allclose(low.delay_server_s[sharing], skew.delay_server_s[sharing])  # the share moves time only


def test_server_reference_generates_every_image_on_the_server(rounds):
    ref = server_reference(rounds, P)
    k = rounds.mask.sum(1)
    assert np.all(ref.energy_j >= P.server_step_j * P.steps * k)
    assert np.all(ref.energy_j - P.server_step_j * P.steps * k < 0.2 * k * 60)  # radio: at most a minute per user
    m = rounds.mask
    assert np.all(ref.delay_s[m] >= (P.steps * P.server_step_s * k[:, None] * np.ones(m.shape))[m])


def test_a_user_past_its_deadline_rates_one(rounds):
    slow = P.with_(cycles_per_step_device=P.cycles_per_step_device * 10)
    out = evaluate(rounds, -np.ones((rounds.batch, 3 * P.k_max)), slow)
    m = rounds.mask
    late = m & (out.delay_s > slow.deadline_factor * patience_s(rounds.traits, slow))
    assert late.any() and np.all(out.qoe[late] == 1.0) and np.array_equal(out.missed, late)
    off = evaluate(rounds, -np.ones((rounds.batch, 3 * P.k_max)), slow.with_(deadline_factor=0))
    assert not off.missed.any() and np.all(off.qoe[late] >= 1.0)


def test_sharing_moves_steps_to_the_server_and_pays_the_hand_off(rounds):
    out = evaluate(rounds, np.ones((rounds.batch, 3 * P.k_max)), P)
    s = out.allocation.steps
    sharing = rounds.mask & (s > 0)
    assert sharing.any()
    own = (P.steps - s[sharing]) * P.cycles_per_step_device / rounds.device_hz[sharing]
    assert np.allclose(out.delay_device_s[sharing], own)
    assert np.all(out.delay_tx_s[sharing] > 0) and np.all(out.delay_server_s[sharing] > 0)
    bits = 8 * (P.payload_bytes + P.prompt_bytes)
    rate = bits / out.delay_tx_s[sharing]
    assert np.allclose(rate, shannon_rate(out.allocation.bandwidth_share[sharing] * P.bandwidth_hz,
                                          rounds.gain[sharing], P))


def test_bad_parameters_and_rules_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bandwidth_hz"):
        SystemParams(bandwidth_hz=0)
    with pytest.raises(ValueError, match="fading"):
        SystemParams(fading="rician")
    with pytest.raises(ValueError, match="server_step_j"):
        SystemParams(server_step_j=-1)
    with pytest.raises(FileNotFoundError, match="calibrate"):
        MemberCurves.load(tmp_path / "missing.json", 20)
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "rlli fork rule", "steps": 20, "quality": [[1, 0.5]], "broken": [[0, 0]]}')
    with pytest.raises(ValueError, match="N \\+ 1"):
        MemberCurves.load(bad, 20)
    bad.write_text('{"fractions": [0, 1]}')
    with pytest.raises(ValueError, match="not a fork rule"):
        MemberCurves.load(bad, 20)
