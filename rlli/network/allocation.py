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
    delay_server_s: np.ndarray  # the queue ahead plus the prefix up to the member's fork step
    delay_tx_s: np.ndarray  # prompt upload and hand-off download
    delay_device_s: np.ndarray  # the member's own steps on its device
    delay_s: np.ndarray  # total
    energy_device_j: np.ndarray  # the device's own denoising steps
    energy_tx_j: np.ndarray  # radio: the user's upload and the cell's hand-off download
    energy_server_j: np.ndarray  # [B] all prefixes: e_s per step, whatever share a group gets
    qoe: np.ndarray
    reward: np.ndarray  # [B] total QoE - price * energy (device energy weighted by 2 - battery)
    missed: np.ndarray | None = None  # bool [B, K]: delay past the user's deadline (QoE 1)
    server_work_s: np.ndarray | None = None  # [B] seconds of whole-server work the prefixes add to the queue

    @property
    def energy_j(self) -> np.ndarray:
        """[B] total energy of the round."""
        return self.energy_device_j.sum(1) + self.energy_tx_j.sum(1) + self.energy_server_j

    @property
    def total_qoe(self) -> np.ndarray:
        return self.qoe.sum(1)


@dataclass
class Reference:
    """A no-sharing reference for the same rounds: every user on its own device, or the server per user."""

    name: str
    delay_s: np.ndarray  # [B, K]
    energy_j: np.ndarray  # [B]
    qoe: np.ndarray  # [B, K]
    reward: np.ndarray  # [B]

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


def patience_s(traits: np.ndarray, p: SystemParams) -> np.ndarray:
    """A persona's patience T0 (1.25 + 0.5 A - 0.75 N) (rlli/network/qoe.py); its deadline is deadline_factor x this."""
    t = np.asarray(traits, dtype=float)
    return p.delay_scale_s * (1.25 + 0.5 * t[..., 3] - 0.75 * t[..., 4])


def _qoe(st: RoundState, q: np.ndarray, delay: np.ndarray, p: SystemParams, qoe_fn: QoeFn | None):
    qoe = trait_qoe(st.traits, q, delay, None, p.delay_scale_s) if qoe_fn is None else qoe_fn(st.traits, q, delay)
    missed = np.zeros(st.mask.shape, bool)
    if p.deadline_factor > 0:
        missed = st.mask & (delay > p.deadline_factor * patience_s(st.traits, p))
        qoe = np.where(missed, 1.0, qoe)
    return np.where(st.mask, qoe, 0.0), missed


def _bits_time(nbytes: float, rate: np.ndarray) -> np.ndarray:
    return 8.0 * nbytes / np.where(rate > 0, rate, 1.0)


def outcome(st: RoundState, alloc: Allocation, p: SystemParams, qoe_fn: QoeFn | None = None) -> Outcome:
    """Delays, energy, quality, QoE and reward of an allocation. QoE comes from ``qoe_fn`` (default: the
    parametric trait judge with a neutral look, since the image does not exist yet when allocating); a user
    whose delay passes its deadline rates 1. Equations: docs/system-model.md."""
    m = st.mask
    n = p.steps
    s = alloc.steps
    g = np.maximum(st.group, 0)
    f_group = alloc.group_compute_share * p.server_hz  # [B, groups]
    f_user = np.take_along_axis(f_group, g, axis=1)
    sharing = m & (s > 0)
    queue = st.backlog_s[:, None]
    t_server = np.where(sharing, queue + s * p.cycles_per_step_server / np.where(f_user > 0, f_user, 1.0), 0.0)
    rate = shannon_rate(alloc.bandwidth_share * p.bandwidth_hz, np.where(m, st.gain, 1.0), p)
    t_up = np.where(sharing, _bits_time(p.prompt_bytes, rate), 0.0)
    t_down = np.where(sharing, _bits_time(p.payload_bytes, rate), 0.0)
    t_tx = t_up + t_down
    own = np.where(m, n - s, 0)
    t_dev = np.where(m, own * p.cycles_per_step_device / np.where(m, st.device_hz, 1.0), 0.0)
    delay = t_server + t_tx + t_dev
    e_dev = p.device_power_w * t_dev
    e_tx = p.tx_power_w * t_tx
    e_srv = p.server_step_j * alloc.prefix_steps.sum(axis=1)
    q = np.take_along_axis(st.quality, s[..., None], axis=2)[..., 0]
    qoe, missed = _qoe(st, q, delay, p, qoe_fn)
    weighted = (e_dev * np.where(m, 2.0 - st.battery, 0.0)).sum(1) + e_tx.sum(1) + e_srv
    reward = qoe.sum(1) - p.energy_price * weighted
    work = alloc.prefix_steps.sum(axis=1) * p.server_step_s
    return Outcome(alloc, np.where(m, q, 0.0), t_server, t_tx, t_dev, delay, e_dev, e_tx, e_srv, qoe, reward,
                   missed, work)


def device_reference(st: RoundState, p: SystemParams, qoe_fn: QoeFn | None = None) -> Reference:
    """No sharing, every user on its own device: N steps at P_d, nothing sent."""
    m = st.mask
    t = np.where(m, p.steps * p.cycles_per_step_device / np.where(m, st.device_hz, 1.0), 0.0)
    e = p.device_power_w * t
    qoe, _ = _qoe(st, np.ones(m.shape), t, p, qoe_fn)
    weighted = (e * np.where(m, 2.0 - st.battery, 0.0)).sum(1)
    return Reference("all on devices", t, e.sum(1), qoe, qoe.sum(1) - p.energy_price * weighted)


def server_reference(st: RoundState, p: SystemParams, qoe_fn: QoeFn | None = None) -> Reference:
    """No sharing, the server generates every user's image separately: N steps per user on an equal share of the
    server after the queue (all finish together), the prompt up and the image down on an equal share of the band."""
    m = st.mask
    k = np.maximum(m.sum(axis=1, keepdims=True), 1)
    t_srv = st.backlog_s[:, None] + p.steps * p.server_step_s * k
    rate = shannon_rate(np.where(m, p.bandwidth_hz / k, 0.0), np.where(m, st.gain, 1.0), p)
    t_tx = _bits_time(p.prompt_bytes + p.image_bytes, rate)
    t = np.where(m, t_srv + t_tx, 0.0)
    e = p.server_step_j * p.steps * m.sum(axis=1) + (p.tx_power_w * np.where(m, t_tx, 0.0)).sum(1)
    qoe, _ = _qoe(st, np.ones(m.shape), t, p, qoe_fn)
    return Reference("all on the server", t, e, qoe, qoe.sum(1) - p.energy_price * e)


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
