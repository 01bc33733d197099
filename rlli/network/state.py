"""A round as the system model sees it (batched arrays), how training rounds are sampled, and the
fixed-size observation the policies read.

Arrays carry a leading batch dimension B (many rounds at once, for training and the oracle) and
``k_max`` user slots; ``mask`` marks the slots in use. Empty slots hold zeros and are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from rlli.network.channel import channel_gain, rayleigh
from rlli.network.params import SystemParams

QUALITY_POINTS = (0.2, 0.4, 0.6, 0.8, 1.0)  # shared fractions s/N at which the observation shows q_k(s)
HINT_TOLERANCE = 0.03  # the observation's hint: the most steps within this predicted quality drop
PER_SLOT = 1 + 1 + 1 + 5 + 1 + 1 + 1 + len(QUALITY_POINTS) + 1  # + k_max group one-hot


@dataclass
class RoundState:
    """B rounds of up to ``k_max`` users. Shapes: [B, K] unless noted; ``quality`` is [B, K, N + 1]."""

    mask: np.ndarray  # bool: slot in use
    distance_m: np.ndarray
    fading: np.ndarray  # complex h_k (|h|^2 ~ Exp(1))
    gain: np.ndarray  # g_k = path gain * |h_k|^2
    device_hz: np.ndarray  # f_k
    traits: np.ndarray  # [B, K, 5] Big-Five in [0, 1]
    group: np.ndarray  # int group index per slot (0..K-1; -1 for empty slots)
    is_anchor: np.ndarray  # bool
    max_shared: np.ndarray  # int: most steps this member may share (the fork decision)
    quality: np.ndarray  # [B, K, N + 1] predicted relative quality if the member shares s steps
    battery: np.ndarray | None = None  # [B, K] state of charge in [0, 1] (default full)
    backlog_s: np.ndarray | None = None  # [B] server work queued ahead of this round's prefixes (s at full speed)

    def __post_init__(self) -> None:
        if self.battery is None:
            self.battery = np.ones(self.mask.shape)
        if self.backlog_s is None:
            self.backlog_s = np.zeros(self.mask.shape[0])

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    @property
    def k_max(self) -> int:
        return int(self.mask.shape[1])

    @property
    def steps(self) -> int:
        return int(self.quality.shape[2] - 1)

    def take(self, idx) -> RoundState:
        """Rounds ``idx`` (an int keeps a batch of one)."""
        idx = np.atleast_1d(idx)
        return RoundState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def repeat(self, n: int) -> RoundState:
        """One round (batch of one) repeated n times: many candidate actions for the same round."""
        return RoundState(**{f.name: np.repeat(getattr(self, f.name), n, axis=0) for f in fields(self)})

    @staticmethod
    def concat(states: list[RoundState]) -> RoundState:
        return RoundState(**{f.name: np.concatenate([getattr(s, f.name) for s in states]) for f in fields(states[0])})

    def check(self, p: SystemParams) -> None:
        """Raise ValueError when the arrays do not describe valid rounds for these parameters."""
        b, k = self.mask.shape
        if k != p.k_max or self.quality.shape != (b, k, p.steps + 1):
            raise ValueError(f"expected {p.k_max} slots and {p.steps + 1} quality points, got mask {self.mask.shape} "
                             f"and quality {self.quality.shape}")
        m = self.mask
        if np.any(self.max_shared[m] < 0) or np.any(self.max_shared[m] > p.steps):
            raise ValueError(f"max_shared must be within 0..{p.steps}")
        q = self.quality[m]
        if not np.all(np.isfinite(q)) or np.any(q < 0) or np.any(q > 1 + 1e-9):
            raise ValueError("predicted quality must be finite and within [0, 1]")
        if not np.all(self.device_hz[m] > 0) or not np.all(self.gain[m] > 0):
            raise ValueError("device compute and channel gains must be positive")
        if np.any(self.battery[m] < 0) or np.any(self.battery[m] > 1) or np.any(self.backlog_s < 0):
            raise ValueError("battery must be within [0, 1] and the server backlog non-negative")
        for i in range(b):
            groups = set(self.group[i][m[i]].tolist())
            for g in groups:
                members = m[i] & (self.group[i] == g)
                if int(self.is_anchor[i][members].sum()) != 1:
                    raise ValueError(f"round {i}: group {g} needs exactly one anchor")


# --------------------------------------------------------------------------- training rounds


@dataclass(frozen=True)
class MemberCurves:
    """Where sampled rounds draw a member's predicted quality curve and cap from: the shipped fork rule's evidence
    bins (``assets/fork/rule.json``), each with its quality curve (s = 0..N) and the cap the fork decision gives a
    member in that bin at the rule's operating point, drawn with ``weights``. The live round reads the same rule
    (rlli.policy.sharing.decide_forks), so training, the envs, evaluation and the app see the same curves."""

    quality: np.ndarray  # [bins, N + 1], non-increasing, [:, 0] == 1
    caps: np.ndarray  # [bins] int
    weights: np.ndarray  # [bins], sums to 1
    source: str = ""

    @property
    def steps(self) -> int:
        return int(self.quality.shape[1] - 1)

    @classmethod
    def from_rule(cls, rule: dict, steps: int, tolerance: float | None = None, budget: float | None = None,
                  weights: np.ndarray | None = None, source: str = "") -> MemberCurves:
        """From a fork rule's JSON (kind "rlli fork rule"). Caps follow ForkRule.max_steps: the most steps whose
        bin quality (and every fewer steps') stays >= 1 - tolerance and whose broken rate stays <= budget; both
        default to the rule's calibrated operating point. A rule measured for another N is resampled by s / N."""
        try:
            n_rule = int(rule["steps"])
            q = np.asarray(rule["quality"], dtype=float)
            br = np.asarray(rule["broken"], dtype=float)
            op = rule.get("operating_point") or {}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a fork rule with per-bin quality curves ({type(e).__name__}: {e})") from None
        if q.ndim != 2 or q.shape != br.shape or q.shape[1] != n_rule + 1 or len(q) == 0:
            raise ValueError("a fork rule needs one quality and one broken row of N + 1 values per bin")
        tol = float(op.get("tolerance", 0.01) if tolerance is None else tolerance)
        bud = float(op.get("break_budget", 0.02) if budget is None else budget)
        caps_rule = np.zeros(len(q), dtype=int)
        for b in range(len(q)):
            best = 0
            for s in range(1, n_rule + 1):
                if q[b, s] < 1.0 - tol - 1e-9 or br[b, s] > bud + 1e-9:
                    break
                best = s
            caps_rule[b] = best
        if n_rule != steps:
            x = np.arange(steps + 1) / steps
            q = np.stack([np.interp(x, np.arange(n_rule + 1) / n_rule, row) for row in q])
            caps_rule = np.floor(caps_rule * steps / n_rule + 1e-9).astype(int)
        q = np.minimum.accumulate(np.clip(q, 0.0, 1.0), axis=1)
        q[:, 0] = 1.0
        w = np.full(len(q), 1.0 / len(q)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(q),) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"weights need one non-negative number per bin ({len(q)})")
        return cls(q, caps_rule, w / w.sum(), source)

    @classmethod
    def load(cls, path: str | Path, steps: int, **kw) -> MemberCurves:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no fork rule at {p}: run `python -m rlli calibrate`") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{p.name} is not readable JSON ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("kind") != "rlli fork rule":
            raise ValueError(f"{p.name} is not a fork rule")
        return cls.from_rule(d, steps, source=str(p), **kw)


def _groups(rng: np.random.Generator, k: int) -> np.ndarray:
    """Group labels for k users from a Chinese-restaurant process (concentration 1): few large groups
    and some singletons, as rounds of similar prompts look."""
    labels = np.zeros(k, dtype=int)
    sizes = [1]
    for i in range(1, k):
        probs = np.array([*sizes, 1.0]) / (i + 1.0)
        g = int(rng.choice(len(probs), p=probs))
        if g == len(sizes):
            sizes.append(0)
        sizes[g] += 1
        labels[i] = g
    return labels


def empty_state(batch: int, p: SystemParams) -> RoundState:
    k, n = p.k_max, p.steps
    return RoundState(mask=np.zeros((batch, k), bool), distance_m=np.zeros((batch, k)),
                      fading=np.zeros((batch, k), complex), gain=np.zeros((batch, k)), device_hz=np.zeros((batch, k)),
                      traits=np.zeros((batch, k, 5)), group=np.full((batch, k), -1), is_anchor=np.zeros((batch, k), bool),
                      max_shared=np.zeros((batch, k), int), quality=np.ones((batch, k, n + 1)))


def sample_links(rng: np.random.Generator, shape, p: SystemParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances, fading, gains and device compute for ``shape`` users: d ~ U(d_min, d_max), h ~ CN(0, 1),
    f ~ U(f_min, f_max)."""
    d = rng.uniform(*p.distance_m, size=shape)
    h = rayleigh(rng, shape)
    return d, h, channel_gain(d, h, p), rng.uniform(*p.device_hz, size=shape)


def fill_groups(rng: np.random.Generator, st: RoundState, b: int, slots: np.ndarray, p: SystemParams,
                 curves: MemberCurves) -> None:
    """Groups (CRP), one random anchor each, and every other member's curve and cap for round ``b``'s users."""
    labels = _groups(rng, len(slots))
    st.group[b] = -1
    st.is_anchor[b] = False
    st.max_shared[b] = 0
    st.quality[b] = 1.0
    st.group[b, slots] = labels
    for gi in range(labels.max() + 1):
        members = slots[labels == gi]
        anchor = members[rng.integers(len(members))]
        st.is_anchor[b, anchor] = True
        st.max_shared[b, anchor] = p.steps  # an anchor loses nothing by sharing (it forks with its last member)
        for m in members:
            if m == anchor:
                continue
            j = int(rng.choice(len(curves.weights), p=curves.weights))
            st.quality[b, m] = curves.quality[j]
            st.max_shared[b, m] = int(curves.caps[j])


def sample_states(rng: np.random.Generator, batch: int, p: SystemParams, curves: MemberCurves,
                  k_range: tuple[int, int] | None = None) -> RoundState:
    """``batch`` random rounds: 2..k_max users, CRP groups with a random anchor, each other member's predicted
    quality curve and cap from the fork rule's bins (``curves``),
    Big-Five traits ~ U(0, 1)^5, full batteries and an empty server queue."""
    lo, hi = k_range or (2, p.k_max)
    if curves.steps != p.steps:
        raise ValueError(f"the member curves are for N = {curves.steps}, the parameters for N = {p.steps}")
    st = empty_state(batch, p)
    for b in range(batch):
        k = int(rng.integers(lo, hi + 1))
        slots = rng.permutation(p.k_max)[:k]
        d, h, g, f = sample_links(rng, k, p)
        st.mask[b, slots] = True
        st.distance_m[b, slots], st.fading[b, slots], st.gain[b, slots], st.device_hz[b, slots] = d, h, g, f
        st.traits[b, slots] = rng.uniform(0.0, 1.0, size=(k, 5))
        fill_groups(rng, st, b, slots, p, curves)
    return st


# --------------------------------------------------------------------------- observation


OBS_VERSIONS = (1, 2)
GLOBALS = 5  # v2: band, server speed, steps N, users in the chunk, server backlog
_QUALITY_INDEX: dict[int, np.ndarray] = {}  # N -> the quality columns at QUALITY_POINTS (encode, one round at a time)


def obs_dim(k_max: int, version: int = 1) -> int:
    """Observation length: v1 (the one-round layout the shipped checkpoints read) or v2 (v1 + each slot's battery
    + the parameters that change the dynamics: band, server speed, N, users, backlog)."""
    if version == 1:
        return k_max * (PER_SLOT + k_max)
    if version == 2:
        return k_max * (PER_SLOT + k_max + 1) + GLOBALS
    raise ValueError(f"observation version must be one of {OBS_VERSIONS}, not {version!r}")


def encode(st: RoundState, p: SystemParams, version: int = 1) -> np.ndarray:
    """Fixed-size float32 observation [B, obs_dim(k_max, version)].

    v1, per slot: the mask, channel gain (dB, scaled), device compute, Big-Five, anchor flag, group size, cap s_max/N,
    q_k at QUALITY_POINTS of N, the most steps within a 3% predicted drop (as a fraction of the cap), and a one-hot of
    the group; empty slots are all zeros. v2 adds each slot's battery (2b - 1) and, once per round, log2 of the band
    over 0.5 MHz, log2 of the server speed over 20 GHz, (N - 20) / 20, users / k_max and the backlog in slots."""
    b, k = st.mask.shape
    n = st.steps
    dim = obs_dim(k, version)  # refuses unknown versions
    idx = _QUALITY_INDEX.get(n)
    if idx is None:
        idx = _QUALITY_INDEX[n] = np.rint(np.asarray(QUALITY_POINTS) * n).astype(int)
    mask = st.mask
    m = mask[..., None].astype(np.float32)  # [B, K, 1]
    onehot = (st.group[:, :, None] == np.arange(k)) & mask[:, :, None]  # [B, K, K]: each slot's group
    size = (onehot * onehot.sum(axis=1, keepdims=True)).sum(axis=2)  # members in the slot's group
    within = np.minimum.accumulate(st.quality >= 1.0 - HINT_TOLERANCE, axis=2).sum(axis=2) - 1
    hint = np.where(st.is_anchor, 0, np.minimum(within, st.max_shared) / np.maximum(st.max_shared, 1))
    gain_db = 10.0 * np.log10(np.where(mask, st.gain, 1.0))
    per = np.concatenate([m, ((gain_db + 105.0) / 15.0)[..., None], ((st.device_hz - 2e9) / 1e9)[..., None],
                          st.traits * 2 - 1, st.is_anchor[..., None], (size / k)[..., None],
                          (st.max_shared / n)[..., None], st.quality[:, :, idx] * 2 - 1, hint[..., None]], axis=-1)
    per *= m
    if version == 1:
        return np.concatenate([per, onehot], axis=-1).reshape(b, -1).astype(np.float32)
    out = np.empty((b, dim), dtype=np.float32)
    slots = out[:, :dim - GLOBALS].reshape(b, k, -1)
    slots[..., :per.shape[-1]] = per
    slots[..., per.shape[-1]:-1] = onehot
    slots[..., -1] = (st.battery * 2 - 1) * mask
    out[:, -5] = np.log2(p.bandwidth_hz / 0.5e6)
    out[:, -4] = np.log2(p.server_hz / 20e9)
    out[:, -3] = (n - 20) / 20
    out[:, -2] = mask.sum(axis=1) / k
    out[:, -1] = np.clip(st.backlog_s / p.slot_s, 0, 10)
    return out
