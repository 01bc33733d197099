"""The parametric QoE model: trait-weighted preferences over quality, delay and the image's look.

Part of the system model (docs/system-model.md): the allocation's reward and the parametric persona judge
(:class:`rlli.personas.trait_judge.TraitJudge`) both read it. A persona with Big-Five traits (O, C, E, A, N)
in [0, 1] rates a delivery as

    U_q = clip((q - 0.5) / 0.5, 0, 1) ** (1 + 2 C)          conscientious people punish quality drops
    U_d = exp(-delay / (T0 * (1.25 + 0.5 A - 0.75 N)))       neurotic people are impatient, agreeable ones patient
    U_l = 1 - (|colourfulness - O| + |brightness - (0.3 + 0.4 E)|) / 2
    w   = normalise(0.30 + 0.35 C - 0.15 O,  0.20 + 0.35 N + 0.10 E,  0.10 + 0.20 O + 0.05 E)
    S   = clip(w_q U_q + w_d U_d + w_l U_l + 0.15 (A - 0.5), 0, 1)
    QoE = 1 + 9 S
"""

from __future__ import annotations

import numpy as np

NEUTRAL_LOOK = (0.5, 0.5)  # (colourfulness, brightness) when the image is not known yet


def trait_weights(traits: np.ndarray) -> np.ndarray:
    """Weights (quality, delay, look) per persona; ``traits`` [..., 5] -> [..., 3], rows sum to 1."""
    o, c, e, _, n = np.moveaxis(np.asarray(traits, dtype=float), -1, 0)
    w = np.stack([0.30 + 0.35 * c - 0.15 * o, 0.20 + 0.35 * n + 0.10 * e, 0.10 + 0.20 * o + 0.05 * e], axis=-1)
    return w / w.sum(axis=-1, keepdims=True)


def utilities(traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray, look: np.ndarray | None = None,
              delay_scale_s: float = 10.0) -> np.ndarray:
    """U_q, U_d, U_l in [0, 1]: ``traits`` [..., 5], ``quality``/``delay_s`` [...], ``look`` [..., 2] -> [..., 3]."""
    t = np.asarray(traits, dtype=float)
    o, c, e, a, n = np.moveaxis(t, -1, 0)
    q = np.clip((np.asarray(quality, dtype=float) - 0.5) / 0.5, 0.0, 1.0)
    u_q = q ** (1.0 + 2.0 * c)
    patience = delay_scale_s * (1.25 + 0.5 * a - 0.75 * n)
    u_d = np.exp(-np.maximum(np.asarray(delay_s, dtype=float), 0.0) / patience)
    lk = np.asarray(NEUTRAL_LOOK if look is None else look, dtype=float)
    u_l = 1.0 - 0.5 * (np.abs(lk[..., 0] - o) + np.abs(lk[..., 1] - (0.3 + 0.4 * e)))
    return np.stack(np.broadcast_arrays(u_q, u_d, u_l), axis=-1)


def trait_qoe(traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray, look: np.ndarray | None = None,
              delay_scale_s: float = 10.0) -> np.ndarray:
    """Vectorised QoE in [1, 10] (float; the Rating rounds it) for arrays of personas and deliveries."""
    t = np.asarray(traits, dtype=float)
    u = utilities(t, quality, delay_s, look, delay_scale_s)
    s = (trait_weights(t) * u).sum(axis=-1) + 0.15 * (t[..., 3] - 0.5)
    return 1.0 + 9.0 * np.clip(s, 0.0, 1.0)
