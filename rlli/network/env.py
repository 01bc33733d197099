"""The Gymnasium environment over the system model: one round per episode (a contextual bandit).

``gymnasium.make("rlli/RoundAllocation-v0")`` after ``import rlli.network.env``.

* observation: ``encode(round)`` (float32, ``k_max * (PER_SLOT + k_max)``, clipped to [-10, 10]);
  user slots beyond the round's users are zeros with mask 0.
* action: ``3 * k_max`` numbers in [-1, 1]: bandwidth, compute and sharing per slot, mapped to a
  feasible allocation by ``rlli.network.allocation.map_actions``.
* reward: total QoE of the round minus ``energy_price`` x total energy (J); the episode then ends.
* fading: ``iid`` redraws every round; ``gauss-markov`` carries each slot's h into the next round
  with correlation rho (the users and prompts are new each round).
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlli.network.allocation import QoeFn, action_dim, evaluate
from rlli.network.channel import channel_gain, gauss_markov
from rlli.network.params import SystemParams
from rlli.network.state import RoundState, encode, kind_curves, obs_dim, sample_states

ENV_ID = "rlli/RoundAllocation-v0"
OBS_BOUND = 10.0


class RoundAllocationEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, params: SystemParams | None = None, calibration: str | Path | None = None,
                 qoe_fn: QoeFn | None = None):
        from rlli.config import ASSETS

        self.params = params or SystemParams()
        self.curves = kind_curves(calibration or ASSETS / "calibration.json", self.params.steps)
        self.qoe_fn = qoe_fn
        k = self.params.k_max
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(obs_dim(k),), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(action_dim(k),), dtype=np.float32)
        self.state: RoundState | None = None

    def _obs(self) -> np.ndarray:
        return np.clip(encode(self.state, self.params)[0], -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        previous = None if seed is not None else self.state  # a seed starts a new fading chain
        self.state = sample_states(self.np_random, 1, self.params, self.curves)
        if self.params.fading == "gauss-markov" and previous is not None:
            st = self.state
            st.fading = gauss_markov(self.np_random, previous.fading, self.params.fading_rho)
            st.gain = np.where(st.mask, channel_gain(np.where(st.mask, st.distance_m, 1.0), st.fading, self.params), 0.0)
        return self._obs(), {"users": int(self.state.mask.sum())}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        out = evaluate(self.state, np.asarray(action, dtype=float)[None], self.params, self.qoe_fn)
        m = self.state.mask[0]
        info = {"total_qoe": float(out.total_qoe[0]), "energy_j": float(out.energy_j[0]),
                "mean_delay_s": float(out.delay_s[0][m].mean()), "shared_steps": out.allocation.steps[0][m].tolist()}
        return self._obs(), float(out.reward[0]), True, False, info


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="rlli.network.env:RoundAllocationEnv")


register()
