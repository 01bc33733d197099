"""Deciding with a trained checkpoint, in numpy: the deployed path of the learned policies (no torch at decision time).

Training keeps the torch modules of :mod:`rlli.policy.actors`; a decision only needs their forward pass, and at a
batch of one round torch's per-operator overhead is most of its cost (issue 16: 1.6 ms for G-DDPG's best of 8, a
few hundred small operators). Here the same networks run on numpy from the checkpoint's own weights, read once:

* the state encoder runs once per observation (not once per candidate, not once per step), and its product with
  the state columns of the noise net's first layer is taken once; the time embedding and its product with the time
  columns are constants per denoising step, folded into that layer's bias at load time;
* the best-of-N candidates run as one batch through the reverse chain, and the critic's observation columns are
  multiplied once per observation, the candidates' action columns as one batch for both heads;
* the schedule terms are the checkpoint's own buffers, read as numbers.

Same noise in, same actions out as :func:`rlli.policy.train.act` on the torch modules (float32 either way; they
differ by rounding, about 1e-6: tests/test_inference.py). The noise comes from numpy's generator seeded by the
decision's seed: the same distribution as the torch path's draws, other numbers.

    fast = load_fast(folder)                       # InferenceError (a ValueError) for a bad checkpoint
    action = fast.act(encode(st, p, fast.obs_version), seed=seed)
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

log = logging.getLogger(__name__)

F32 = np.float32
_MISH_CAP = F32(20.0)  # tanh(softplus(x)) is 1.0 in float32 from here on (and exp does not overflow)


class InferenceError(ValueError):
    """A checkpoint the numpy path cannot run: a file missing, unreadable, or weights of the wrong shapes."""


def mish_(x: np.ndarray) -> np.ndarray:
    """x * tanh(softplus(x)) in place: with e = exp(x), tanh(log(1 + e)) = n / (n + 2), n = e (e + 2)."""
    e = np.minimum(x, _MISH_CAP)
    np.exp(e, out=e)
    n = e + F32(2.0)
    n *= e
    np.add(n, F32(2.0), out=e)
    n /= e
    x *= n
    return x


def clip1_(x: np.ndarray) -> np.ndarray:
    """x clipped to [-1, 1] in place (two ufuncs: np.clip's argument handling costs more than the work here)."""
    np.maximum(x, F32(-1.0), out=x)
    return np.minimum(x, F32(1.0), out=x)


def _linear(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's Linear(weight [out, in], bias [out]) as (W [in, out], b [out]), contiguous float32."""
    return np.ascontiguousarray(w.T, dtype=F32), np.asarray(b, dtype=F32)


def _time_embedding(steps: int, t_dim: int) -> np.ndarray:
    """SinusoidalPosEmb(t_dim) of t = 0 .. steps - 1, float32 as torch computes it: [steps, t_dim]."""
    half = t_dim // 2
    freq = np.exp(np.arange(half, dtype=F32) * F32(-(math.log(10000.0) / (half - 1))))
    x = np.arange(steps, dtype=F32)[:, None] * freq[None, :]
    return np.concatenate([np.sin(x), np.cos(x)], axis=-1).astype(F32)


class _Weights:
    """A safetensors file as numpy arrays, with the expected shape checked on every read."""

    def __init__(self, path: Path, what: str):
        try:
            self.t = load_file(str(path))
        except (OSError, SafetensorError, ValueError) as e:
            raise InferenceError(f"unreadable {what} weights {path}: {type(e).__name__}: {e}") from None
        self.path, self.what = path, what

    def __call__(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.t:
            raise InferenceError(f"the {self.what} weights {self.path} have no {key!r}")
        a = self.t[key]
        if tuple(a.shape) != tuple(shape):
            raise InferenceError(f"the {self.what} weights {self.path}: {key} has shape {tuple(a.shape)}, "
                                 f"expected {tuple(shape)}")
        return np.asarray(a, dtype=F32)


class DiffusionChain:
    """G-DDPG's actor (:class:`rlli.policy.actors.DiffusionActor`): x_T ~ N(0, I), T reverse DDPM steps with x0
    clipped to [-1, 1], the last mean clipped to [-1, 1]."""

    kind = "gddpg"
    stochastic = True

    def __init__(self, w: _Weights, obs_dim: int, act_dim: int, hidden: int, steps: int, t_dim: int = 16):
        self.obs_dim, self.act_dim, self.steps = obs_dim, act_dim, steps
        self.s1, self.sb1 = _linear(w("net.state_mlp.0.weight", (hidden, obs_dim)), w("net.state_mlp.0.bias", (hidden,)))
        s2, sb2 = _linear(w("net.state_mlp.2.weight", (hidden, hidden)), w("net.state_mlp.2.bias", (hidden,)))
        t1, tb1 = _linear(w("net.time_mlp.1.weight", (2 * t_dim, t_dim)), w("net.time_mlp.1.bias", (2 * t_dim,)))
        t2, tb2 = _linear(w("net.time_mlp.3.weight", (t_dim, 2 * t_dim)), w("net.time_mlp.3.bias", (t_dim,)))
        m1, mb1 = _linear(w("net.mid.0.weight", (hidden, act_dim + t_dim + hidden)), w("net.mid.0.bias", (hidden,)))
        self.m2, self.mb2 = _linear(w("net.mid.2.weight", (hidden, hidden)), w("net.mid.2.bias", (hidden,)))
        self.m3, self.mb3 = _linear(w("net.mid.4.weight", (act_dim, hidden)), w("net.mid.4.bias", (act_dim,)))
        # the first mid layer reads [x_t | time embedding | state embedding]: split it by columns
        self.m1x = np.ascontiguousarray(m1[:act_dim])
        m1s = m1[act_dim + t_dim:]
        # the state embedding enters only through m1s: its last layer and m1s are one linear map
        self.s2m, self.sb2m = (s2 @ m1s).astype(F32), (sb2 @ m1s).astype(F32)
        temb = mish_(_time_embedding(steps, t_dim) @ t1 + tb1) @ t2 + tb2  # [T, t_dim]: one per step, constant
        self.step_bias = (temb @ m1[act_dim:act_dim + t_dim] + mb1).astype(F32)  # [T, hidden]
        # the schedule: the checkpoint's buffers (what the torch actor loads), as numbers per step
        self.sqrt_recip_ac = [F32(v) for v in w("sqrt_recip_ac", (steps,))]
        self.sqrt_recipm1_ac = [F32(v) for v in w("sqrt_recipm1_ac", (steps,))]
        self.coef_x0 = [F32(v) for v in w("coef_x0", (steps,))]
        self.coef_xt = [F32(v) for v in w("coef_xt", (steps,))]
        sigma = np.exp(F32(0.5) * w("log_var", (steps,)))
        # step i > 0 adds sigma_i times noise[T - i]: the factor of each noise row, in order (row 0 is x_T itself)
        self.noise_scale = np.array([1.0] + [sigma[steps - j] for j in range(1, steps)], dtype=F32)[:, None, None]

    def draw_noise(self, rows: int, rng: np.random.Generator) -> np.ndarray:
        """Every random number one reverse chain uses, in the order it uses them (x_T, then one draw per step
        t = T-1 .. 1): [T, rows, act_dim], the layout of DiffusionActor.draw_noise."""
        return rng.standard_normal((self.steps, rows, self.act_dim), dtype=F32)

    def state_part(self, obs: np.ndarray) -> np.ndarray:
        """The state embedding times the state columns of the first mid layer: [B, hidden], once per observation."""
        h = mish_(obs @ self.s1 + self.sb1) @ self.s2m
        h += self.sb2m
        return h

    def reverse(self, obs: np.ndarray, noise: np.ndarray, repeat: int = 1) -> np.ndarray:
        """The reverse chain for ``repeat`` candidates of each observation (candidate j of observation i at row
        j * B + i, as train.act lays them out) from ``noise`` [T, repeat * B, act_dim]: [repeat * B, act_dim]."""
        sp = self.state_part(np.asarray(obs, dtype=F32))
        if repeat > 1 and sp.shape[0] > 1:
            sp = np.tile(sp, (repeat, 1))
        bias = sp + self.step_bias[:, None, :]  # [T, rows or 1, hidden]: the first layer's bias at every step
        noise = np.asarray(noise, dtype=F32) * self.noise_scale  # a copy: x_T, then each step's sigma_t z
        x = noise[0]
        for i in reversed(range(self.steps)):
            h = x @ self.m1x
            h += bias[i]
            h = mish_(h) @ self.m2
            h += self.mb2
            eps = mish_(h) @ self.m3
            eps += self.mb3
            eps *= self.sqrt_recipm1_ac[i]
            x0 = self.sqrt_recip_ac[i] * x
            x0 -= eps  # the predicted x_0, clipped: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
            clip1_(x0)
            x0 *= self.coef_x0[i]
            x *= self.coef_xt[i]
            x += x0  # the posterior mean
            if i > 0:
                x += noise[self.steps - i]
        return clip1_(x)


class MLPPolicyNet:
    """DDPG's actor (:class:`rlli.policy.actors.MLPActor`): obs -> 256-Mish-256-Mish -> tanh; deterministic."""

    kind = "ddpg"
    stochastic = False

    def __init__(self, w: _Weights, obs_dim: int, act_dim: int, hidden: int):
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.l1, self.b1 = _linear(w("net.0.weight", (hidden, obs_dim)), w("net.0.bias", (hidden,)))
        self.l2, self.b2 = _linear(w("net.2.weight", (hidden, hidden)), w("net.2.bias", (hidden,)))
        self.l3, self.b3 = _linear(w("net.4.weight", (act_dim, hidden)), w("net.4.bias", (act_dim,)))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = mish_(np.asarray(obs, dtype=F32) @ self.l1 + self.b1)
        h = mish_(h @ self.l2 + self.b2)
        return np.tanh(h @ self.l3 + self.b3)


class TwinCritic:
    """The twin critics (:class:`rlli.policy.actors.DoubleCritic`): min(Q1, Q2)(s, a); both heads' first layers
    side by side, their observation columns multiplied once per observation."""

    def __init__(self, w: _Weights, obs_dim: int, act_dim: int, hidden: int):
        self.hidden = hidden
        heads = [[_linear(w(f"{q}.{j}.weight", shape), w(f"{q}.{j}.bias", (shape[0],)))
                  for j, shape in ((0, (hidden, obs_dim + act_dim)), (2, (hidden, hidden)), (4, (1, hidden)))]
                 for q in ("q1", "q2")]
        first = np.concatenate([heads[0][0][0], heads[1][0][0]], axis=1)  # [obs + act, 2 hidden]: both heads
        self.w1o, self.w1a = np.ascontiguousarray(first[:obs_dim]), np.ascontiguousarray(first[obs_dim:])
        self.b1 = np.concatenate([heads[0][0][1], heads[1][0][1]])
        self.w2 = [heads[0][1][0], heads[1][1][0]]
        self.b2 = np.concatenate([heads[0][1][1], heads[1][1][1]])
        self.w3 = np.zeros((2 * hidden, 2), dtype=F32)  # the two output layers, block-diagonal: [Q1, Q2] in one product
        self.w3[:hidden, 0], self.w3[hidden:, 1] = heads[0][2][0][:, 0], heads[1][2][0][:, 0]
        self.b3 = np.concatenate([heads[0][2][1], heads[1][2][1]])

    def q_min(self, obs: np.ndarray, act: np.ndarray, repeat: int = 1) -> np.ndarray:
        """min(Q1, Q2) of ``act`` [repeat * B, act_dim] (candidate j of observation i at row j * B + i) given
        ``obs`` [B, obs_dim]: [repeat * B]."""
        o = np.asarray(obs, dtype=F32) @ self.w1o
        if repeat > 1 and o.shape[0] > 1:
            o = np.tile(o, (repeat, 1))
        h = np.asarray(act, dtype=F32) @ self.w1a
        h += o
        h += self.b1
        mish_(h)
        k = self.hidden
        h2 = np.empty_like(h)
        np.matmul(h[:, :k], self.w2[0], out=h2[:, :k])
        np.matmul(h[:, k:], self.w2[1], out=h2[:, k:])
        h2 += self.b2
        q = mish_(h2) @ self.w3
        q += self.b3
        return q.min(axis=1)


def _actor(w: _Weights, cfg: dict):
    kind = cfg.get("kind")
    o, a, h = int(cfg["obs_dim"]), int(cfg["act_dim"]), int(cfg.get("hidden", 256))
    if kind == "gddpg":
        return DiffusionChain(w, o, a, h, int(cfg.get("denoise_steps", 5)))
    if kind == "ddpg":
        return MLPPolicyNet(w, o, a, h)
    raise InferenceError(f"unknown actor kind {kind!r}; expected gddpg or ddpg")


class FastPolicy:
    """A checkpoint's decision rule in numpy: the actor, and for best-of-N the critic that picks the candidate."""

    def __init__(self, actor, meta: dict, critic: TwinCritic | None = None, best_of: int = 1,
                 fallback: str | None = None):
        self.actor, self.meta, self.critic = actor, meta, critic
        # a deterministic actor's N candidates are one action: one draw is the same decision
        self.best_of = int(best_of) if critic is not None and actor.stochastic else 1
        self.fallback = fallback  # why the checkpoint's best-of-N runs as one draw here (None: it does not)
        self.obs_version = int(meta.get("obs_version", 1))
        self.residual = bool(meta.get("residual"))

    @property
    def kind(self) -> str:
        return self.actor.kind

    def draw_noise(self, rows: int, seed: int | None = None) -> np.ndarray | None:
        """The noise of one decision over ``rows`` candidate rows (None for a deterministic actor)."""
        return self.actor.draw_noise(rows, np.random.default_rng(seed)) if self.actor.stochastic else None

    def act(self, obs: np.ndarray, seed: int | None = None, base: np.ndarray | None = None,
            noise: np.ndarray | None = None) -> np.ndarray:
        """Actions [B, act_dim] (float64) for observations [B, obs_dim], as :func:`rlli.policy.train.act` decides
        them: clip(base + actor(obs), -1, 1); with the critic and best_of N > 1, N candidates per observation and
        the one min(Q1, Q2) scores highest. A diffusion actor's noise comes from ``seed`` (numpy's generator) unless
        ``noise`` [T, N * B, act_dim] is given."""
        obs = np.asarray(obs, dtype=F32)
        if obs.ndim != 2 or obs.shape[1] != self.actor.obs_dim:
            raise ValueError(f"observations must be [B, {self.actor.obs_dim}], got {list(obs.shape)}")
        b, n = obs.shape[0], self.best_of
        if not self.actor.stochastic:
            a = self.actor(obs).astype(np.float64)
            return a if base is None else np.clip(base + a, -1.0, 1.0)
        if noise is None:
            noise = self.draw_noise(n * b, seed)
        elif noise.shape != (self.actor.steps, n * b, self.actor.act_dim):
            raise ValueError(f"noise must be [{self.actor.steps}, {n * b}, {self.actor.act_dim}], got {list(noise.shape)}")
        a = self.actor.reverse(obs, noise, repeat=n)
        if base is not None:  # as train.act: in float64, then float32 for the critic
            a = np.clip(np.tile(base, (n, 1)) + a.astype(np.float64), -1.0, 1.0)
        if n == 1:
            return a.astype(np.float64)
        q = self.critic.q_min(obs, a, repeat=n).reshape(n, b)
        return a.reshape(n, b, -1)[q.argmax(axis=0), np.arange(b)].astype(np.float64)


def load_fast(folder: str | Path) -> FastPolicy:
    """The numpy decision rule of a checkpoint folder (``config.json``, ``actor.safetensors`` and, for best-of-N,
    ``critic.safetensors``). A best-of-N checkpoint whose critic is missing or unreadable decides with one draw and
    says so (``fallback``, and a warning in the log); anything else wrong raises :class:`InferenceError`."""
    folder = Path(folder)
    config, weights = folder / "config.json", folder / "actor.safetensors"
    for f in (config, weights):
        if not f.is_file():
            raise InferenceError(f"no policy checkpoint: {f} is missing (train one with `python -m rlli train policy`)")
    try:
        meta = json.loads(config.read_text())
        cfg = meta["actor"]
        actor = _actor(_Weights(weights, "actor"), cfg)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise InferenceError(f"unreadable policy checkpoint in {folder}: {type(e).__name__}: {e}") from None
    want = int(meta.get("best_of", 1))
    critic, fallback = None, None
    if want > 1 and actor.stochastic:
        path = folder / "critic.safetensors"
        try:
            if not path.is_file():
                raise InferenceError(f"{path} is missing")
            critic = TwinCritic(_Weights(path, "critic"), actor.obs_dim, actor.act_dim, int(cfg.get("hidden", 256)))
        except InferenceError as e:
            fallback = f"best of {want} needs the checkpoint's critic ({e}): one draw per decision instead"
            log.warning("policy %s: %s", folder, fallback)
    return FastPolicy(actor, meta, critic, want, fallback)


__all__ = ["DiffusionChain", "FastPolicy", "InferenceError", "MLPPolicyNet", "TwinCritic", "load_fast", "mish_"]
