"""The system model and its Gymnasium environment."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlli.network.env  # noqa: F401  (registers the environment id)
from rlli.config import ASSETS
from rlli.network.allocation import evaluate, map_actions
from rlli.network.channel import gauss_markov, path_gain, rayleigh, shannon_rate
from rlli.network.env import ENV_ID, RoundAllocationEnv
from rlli.network.params import SystemParams
from rlli.network.state import encode, kind_curves, obs_dim, sample_states

P = SystemParams()


@pytest.fixture(scope="module")
def curves():
    return kind_curves(ASSETS / "calibration.json", P.steps)


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


def test_same_seed_same_rounds_other_seed_other_rounds(curves):
    a = sample_states(np.random.default_rng(3), 8, P, curves)
    b = sample_states(np.random.default_rng(3), 8, P, curves)
    c = sample_states(np.random.default_rng(4), 8, P, curves)
    assert np.array_equal(encode(a, P), encode(b, P))
    assert not np.array_equal(encode(a, P), encode(c, P))
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
    assert np.allclose(out.energy_device_j[m], P.steps * P.kappa_device * f**2 * P.cycles_per_step_device)
    assert np.all(out.energy_server_j == 0) and np.all(out.delay_tx_s == 0) and np.all(out.quality[m] == 1)


def test_sharing_moves_steps_to_the_server_and_pays_the_hand_off(rounds):
    out = evaluate(rounds, np.ones((rounds.batch, 3 * P.k_max)), P)
    s = out.allocation.steps
    sharing = rounds.mask & (s > 0)
    assert sharing.any()
    own = (P.steps - s[sharing]) * P.cycles_per_step_device / rounds.device_hz[sharing]
    assert np.allclose(out.delay_device_s[sharing], own)
    assert np.all(out.delay_tx_s[sharing] > 0) and np.all(out.delay_server_s[sharing] > 0)
    bits = 8 * P.payload_bytes
    rate = bits / out.delay_tx_s[sharing]
    assert np.allclose(rate, shannon_rate(out.allocation.bandwidth_share[sharing] * P.bandwidth_hz,
                                          rounds.gain[sharing], P))


def test_bad_parameters_and_calibration_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bandwidth_hz"):
        SystemParams(bandwidth_hz=0)
    with pytest.raises(ValueError, match="fading"):
        SystemParams(fading="rician")
    with pytest.raises(FileNotFoundError, match="calibrate"):
        kind_curves(tmp_path / "missing.json", 20)
    bad = tmp_path / "bad.json"
    bad.write_text('{"fractions": [0, 1]}')
    with pytest.raises(ValueError, match="by_variant_kind"):
        kind_curves(bad, 20)
