"""The Gymnasium environments over the system model.

* ``rlli/RoundAllocation-v0`` (:class:`RoundAllocationEnv`): one round per episode (a contextual bandit), the
  observation layout v1 the shipped checkpoints read. The special case ``episode_length = 1`` of:
* ``rlli/SequentialAllocation-v0`` (:class:`SequentialAllocationEnv`): users stay for several rounds (geometric
  stays, Poisson arrivals), their Rayleigh fading is Gauss-Markov correlated between rounds and observed, the
  server carries a backlog between rounds (this round's prefixes queue behind it, and add to it), devices spend
  their batteries. Observation layout v2 carries what changes the dynamics: band, server speed, steps N, users,
  backlog, batteries. Discount ``gamma`` (default 0.9) is an attribute for the learner and the evaluation.

Both:

* observation: ``encode(round, params, version)`` (float32, clipped to [-10, 10]); empty user slots are zeros.
* action: ``3 * k_max`` numbers in [-1, 1]: bandwidth, compute and sharing per slot, mapped to a feasible
  allocation by ``rlli.network.allocation.map_actions``.
* reward: total QoE of the round minus ``energy_price`` x energy (J; device energy weighted by 2 - battery).

Member quality curves come from the shipped fork rule (``MemberCurves.load(assets/fork/rule.json)``), the one
source the live round reads too.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlli.network.allocation import QoeFn, action_dim, evaluate
from rlli.network.channel import channel_gain, gauss_markov
from rlli.network.params import SystemParams
from rlli.network.state import MemberCurves, RoundState, encode, fill_groups, obs_dim, sample_links, sample_states

ENV_ID = "rlli/RoundAllocation-v0"
SEQ_ENV_ID = "rlli/SequentialAllocation-v0"
OBS_BOUND = 10.0


def default_curves(steps: int, rule: str | Path | None = None) -> MemberCurves:
    """The shipped fork rule's bins (``assets/fork/rule.json``); pass ``rule`` for another rule file."""
    from rlli.config import ASSETS

    return MemberCurves.load(rule or ASSETS / "fork" / "rule.json", steps)


class SequentialAllocationEnv(gym.Env):
    """Rounds every ``params.slot_s`` seconds with users that stay. See the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, params: SystemParams | None = None, curves: MemberCurves | None = None,
                 qoe_fn: QoeFn | None = None, episode_length: int = 20, obs_version: int = 2,
                 arrival_rate: float = 1.5, mean_stay: float = 5.0, background_load: float = 0.3,
                 gamma: float = 0.9, rule: str | Path | None = None):
        self.params = params or SystemParams()
        self.curves = curves if curves is not None else default_curves(self.params.steps, rule)
        if not episode_length >= 1 or not mean_stay >= 1 or arrival_rate < 0 or background_load < 0 or not 0 <= gamma < 1:
            raise ValueError("need episode_length >= 1, mean_stay >= 1, arrival_rate >= 0, background_load >= 0, "
                             "0 <= gamma < 1")
        self.qoe_fn = qoe_fn
        self.episode_length, self.obs_version, self.gamma = int(episode_length), int(obs_version), float(gamma)
        self.arrival_rate, self.mean_stay, self.background_load = float(arrival_rate), float(mean_stay), float(background_load)
        k = self.params.k_max
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(obs_dim(k, self.obs_version),), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(action_dim(k),), dtype=np.float32)
        self.state: RoundState | None = None
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.clip(encode(self.state, self.params, self.obs_version)[0], -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _info(self) -> dict:
        return {"users": int(self.state.mask.sum()), "backlog_s": float(self.state.backlog_s[0]), "t": self.t}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        previous = None if seed is not None else self.state
        self.state = sample_states(self.np_random, 1, self.params, self.curves)
        self.t = 0
        if self.params.fading == "gauss-markov" and previous is not None:  # a fading chain across one-round episodes
            st = self.state
            st.fading = gauss_markov(self.np_random, previous.fading, self.params.fading_rho)
            st.gain = np.where(st.mask, channel_gain(np.where(st.mask, st.distance_m, 1.0), st.fading, self.params), 0.0)
        if self.episode_length > 1:  # users arrive with some battery used; the first round's queue is empty
            self.state.battery[0] = np.where(self.state.mask[0], self.np_random.uniform(0.2, 1.0, self.params.k_max), 1.0)
        return self._obs(), self._info()

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        out = evaluate(self.state, np.asarray(action, dtype=float)[None], self.params, self.qoe_fn)
        m = self.state.mask[0]
        info = {"total_qoe": float(out.total_qoe[0]), "energy_j": float(out.energy_j[0]),
                "mean_delay_s": float(out.delay_s[0][m].mean()), "shared_steps": out.allocation.steps[0][m].tolist(),
                "missed": int(out.missed[0].sum()), "server_work_s": float(out.server_work_s[0])}
        self.t += 1
        terminated = self.t >= self.episode_length
        if not terminated:
            self.state = advance(self.np_random, self.state, out, self.params, self.curves, self.arrival_rate,
                                 self.mean_stay, self.background_load)
        info.update(self._info())
        return self._obs(), float(out.reward[0]), terminated, False, info


def advance(rng: np.random.Generator, st: RoundState, out, p: SystemParams, curves: MemberCurves,
            arrival_rate: float, mean_stay: float, background_load: float) -> RoundState:
    """The next round (batch of one): batteries pay this round's device energy; the server queue becomes
    max(0, backlog + this round's prefix work - slot) plus Poisson background work (other cells' prefixes, mean
    ``background_load`` x slot); each user stays with probability 1 - 1 / mean_stay, its fading moves by
    Gauss-Markov (rho) and it sends a new prompt (new groups and curves); Poisson(arrival_rate) new users take
    free slots. A round always has at least one user."""
    nxt = RoundState(**{f: np.copy(getattr(st, f)) for f in st.__dataclass_fields__})
    m = st.mask[0]
    nxt.battery[0] = np.clip(st.battery[0] - out.energy_device_j[0] / p.battery_j, 0.0, 1.0)
    work = float(out.server_work_s[0]) if out.server_work_s is not None else 0.0
    bg = rng.poisson(background_load * 4.0) * p.slot_s / 4.0  # Poisson jobs of a quarter slot each
    nxt.backlog_s[0] = max(0.0, float(st.backlog_s[0]) + work - p.slot_s) + bg
    stay = m & (rng.random(p.k_max) >= 1.0 / mean_stay)
    free = np.flatnonzero(~stay)
    arrivals = min(int(rng.poisson(arrival_rate)), len(free))
    if stay.sum() + arrivals == 0:
        arrivals = 1
    new = rng.permutation(free)[:arrivals]
    nxt.fading[0] = np.where(stay, gauss_markov(rng, st.fading[0], p.fading_rho), 0.0)
    d, h, _, f = sample_links(rng, len(new), p)
    nxt.distance_m[0, new], nxt.fading[0, new], nxt.device_hz[0, new] = d, h, f
    nxt.traits[0, new] = rng.uniform(0.0, 1.0, size=(len(new), 5))
    nxt.battery[0, new] = rng.uniform(0.2, 1.0, size=len(new))
    mask = stay.copy()
    mask[new] = True
    nxt.mask[0] = mask
    for name in ("distance_m", "device_hz", "battery"):
        getattr(nxt, name)[0] = np.where(mask, getattr(nxt, name)[0], 0.0)
    nxt.traits[0] = np.where(mask[:, None], nxt.traits[0], 0.0)
    nxt.fading[0] = np.where(mask, nxt.fading[0], 0.0)
    nxt.gain[0] = np.where(mask, channel_gain(np.where(mask, nxt.distance_m[0], 1.0), nxt.fading[0], p), 0.0)
    fill_groups(rng, nxt, 0, np.flatnonzero(mask), p, curves)
    return nxt


class RoundAllocationEnv(SequentialAllocationEnv):
    """One round per episode, observation layout v1: today's environment, the sequential one with
    ``episode_length = 1``. ``fading = "gauss-markov"`` carries each slot's h into the next episode's round."""

    def __init__(self, params: SystemParams | None = None, curves: MemberCurves | None = None,
                 qoe_fn: QoeFn | None = None, obs_version: int = 1, rule: str | Path | None = None):
        super().__init__(params, curves, qoe_fn, episode_length=1, obs_version=obs_version, gamma=0.0, rule=rule)


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="rlli.network.env:RoundAllocationEnv")
    if SEQ_ENV_ID not in gym.registry:
        gym.register(id=SEQ_ENV_ID, entry_point="rlli.network.env:SequentialAllocationEnv")


register()
