"""From an action in [-1, 1] to a feasible allocation, and from an allocation to delays, energy, QoE
and the reward. Vectorised over a batch of rounds (training, the oracle's candidates).

Action layout (3 * k_max numbers): ``[bandwidth | compute | sharing]``, one of each per user slot.
With x = (a + 1) / 2 in [0, 1]:

* shared steps  s_k = round(x_k * s_max_k)             (0 <= s_k <= s_max_k, the fork decision's cap)
* prefix        S_g = max over members of s_k           (the group's shared steps on the server); the
                anchor forks where its last member does, s_anchor = S_g (as the engine's member_plan)
* bandwidth     w_k = (x_k + delta) / sum_j (x_j + delta) over users with s_k > 0
* compute       v_g = (mean of members' x_k + delta) / sum over groups with S_g > 0 (same rule)

The floor delta = 0.1 keeps every hand-off and every prefix at a usable share (an active user gets
at least delta / (n (1 + delta)) of the band), so no action can stall a user indefinitely.

so bandwidth shares sum to 1 over the users that receive a hand-off, and compute shares to 1
over the groups that run a prefix; everyone else gets none and needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlli.network.channel import shannon_rate
from rlli.network.params import SystemParams
from rlli.network.qoe import trait_qoe
from rlli.network.state import RoundState


def action_dim(k_max: int) -> int:
    return 3 * k_max


@dataclass
class Allocation:
    """Per-user decisions ([B, K]) and the groups' prefixes and compute shares ([B, K], indexed by group)."""

    steps: np.ndarray  # int shared steps s_k
    bandwidth_share: np.ndarray  # w_k
    prefix_steps: np.ndarray  # S_g
    group_compute_share: np.ndarray  # v_g

    def compute_share(self, st: RoundState) -> np.ndarray:
        """Each user's group's compute share (0 for users that share nothing)."""
        v = np.take_along_axis(self.group_compute_share, np.maximum(st.group, 0), axis=1)
        return np.where(st.mask & (self.steps > 0), v, 0.0)


@dataclass
class Outcome:
    """What an allocation leads to. [B, K] per user unless noted; zeros in empty slots."""

    allocation: Allocation
    quality: np.ndarray
    delay_server_s: np.ndarray  # waiting for the prefix up to the member's fork step
    delay_tx_s: np.ndarray  # receiving the hand-off
    delay_device_s: np.ndarray  # the member's own steps on its device
    delay_s: np.ndarray  # total
    energy_device_j: np.ndarray
    energy_tx_j: np.ndarray
    energy_server_j: np.ndarray  # [B] all prefixes
    qoe: np.ndarray
    reward: np.ndarray  # [B] total QoE - price * total energy

    @property
    def energy_j(self) -> np.ndarray:
        """[B] total energy of the round."""
        return self.energy_device_j.sum(1) + self.energy_tx_j.sum(1) + self.energy_server_j

    @property
    def total_qoe(self) -> np.ndarray:
        return self.qoe.sum(1)


SHARE_FLOOR = 0.1  # delta


def _normalise(x: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(x + delta) / sum(x + delta) over the active entries of each row; 0 elsewhere."""
    x = np.where(active, x + SHARE_FLOOR, 0.0)
    total = x.sum(axis=1, keepdims=True)
    return x / np.where(total > 0, total, 1.0)


def map_actions(st: RoundState, action: np.ndarray) -> Allocation:
    """Feasible allocation for any action (values outside [-1, 1] and NaN are clipped / zeroed first)."""
    b, k = st.mask.shape
    a = np.nan_to_num(np.asarray(action, dtype=float).reshape(b, 3 * k), nan=0.0, posinf=1.0, neginf=-1.0)
    x = (np.clip(a, -1.0, 1.0) + 1.0) / 2.0
    xb, xc, xs = x[:, :k], x[:, k:2 * k], x[:, 2 * k:]
    steps = np.where(st.mask & ~st.is_anchor, np.floor(xs * st.max_shared + 0.5), 0).astype(int)
    steps = np.clip(steps, 0, st.max_shared)
    prefix = np.zeros((b, k), dtype=int)
    gx = np.zeros((b, k))
    for g in range(k):
        members = st.mask & (st.group == g)
        prefix[:, g] = np.where(members, steps, 0).max(axis=1)
        steps = np.where(members & st.is_anchor, prefix[:, g:g + 1], steps)  # the anchor forks with the last member
        cnt = members.sum(axis=1)
        gx[:, g] = np.where(cnt > 0, (xc * members).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    w = _normalise(xb, st.mask & (steps > 0))
    v = _normalise(gx, prefix > 0)
    return Allocation(steps=steps, bandwidth_share=w, prefix_steps=prefix, group_compute_share=v)


QoeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (traits, quality, delay_s) -> QoE


def outcome(st: RoundState, alloc: Allocation, p: SystemParams, qoe_fn: QoeFn | None = None) -> Outcome:
    """Delays, energy, quality, QoE and reward of an allocation. QoE comes from ``qoe_fn`` (default: the
    parametric trait judge with a neutral look, since the image does not exist yet when allocating)."""
    m = st.mask
    n = p.steps
    s = alloc.steps
    g = np.maximum(st.group, 0)
    f_group = alloc.group_compute_share * p.server_hz  # [B, groups]
    f_user = np.take_along_axis(f_group, g, axis=1)
    sharing = m & (s > 0)
    t_server = np.where(sharing, s * p.cycles_per_step_server / np.where(f_user > 0, f_user, 1.0), 0.0)
    rate = shannon_rate(alloc.bandwidth_share * p.bandwidth_hz, np.where(m, st.gain, 1.0), p)
    t_tx = np.where(sharing, 8.0 * p.payload_bytes / np.where(rate > 0, rate, 1.0), 0.0)
    own = np.where(m, n - s, 0)
    t_dev = np.where(m, own * p.cycles_per_step_device / np.where(m, st.device_hz, 1.0), 0.0)
    delay = t_server + t_tx + t_dev
    e_dev = own * p.kappa_device * st.device_hz**2 * p.cycles_per_step_device
    e_tx = p.tx_power_w * t_tx
    e_srv = (alloc.prefix_steps * p.kappa_server * f_group**2 * p.cycles_per_step_server).sum(axis=1)
    q = np.take_along_axis(st.quality, s[..., None], axis=2)[..., 0]
    if qoe_fn is None:
        qoe = trait_qoe(st.traits, q, delay, None, p.delay_scale_s)
    else:
        qoe = qoe_fn(st.traits, q, delay)
    qoe = np.where(m, qoe, 0.0)
    energy = e_dev.sum(1) + e_tx.sum(1) + e_srv
    reward = qoe.sum(1) - p.energy_price * energy
    return Outcome(alloc, np.where(m, q, 0.0), t_server, t_tx, t_dev, delay, e_dev, e_tx, e_srv, qoe, reward)


def evaluate(st: RoundState, action: np.ndarray, p: SystemParams, qoe_fn: QoeFn | None = None) -> Outcome:
    return outcome(st, map_actions(st, action), p, qoe_fn)


def action_for(st: RoundState, steps: np.ndarray, bandwidth: np.ndarray | None = None,
               compute: np.ndarray | None = None) -> np.ndarray:
    """The action that asks for these shared steps (and bandwidth / compute weights in [0, 1], per slot;
    default equal): the inverse of :func:`map_actions` for heuristics that think in allocations."""
    b, k = st.mask.shape
    cap = np.maximum(st.max_shared, 1)
    xs = np.where(st.max_shared > 0, np.clip(steps, 0, st.max_shared) / cap, 0.0)
    xb = np.ones((b, k)) if bandwidth is None else np.clip(bandwidth, 0.0, 1.0)
    xc = np.ones((b, k)) if compute is None else np.clip(compute, 0.0, 1.0)
    return np.concatenate([xb, xc, xs], axis=1) * 2.0 - 1.0
