"""The wireless channel: path loss, Rayleigh fading (independent or Gauss-Markov), Shannon rate."""

from __future__ import annotations

import numpy as np

from rlli.network.params import SystemParams


def path_gain(distance_m: np.ndarray, p: SystemParams) -> np.ndarray:
    """Large-scale gain 10^(-PL/10), PL(d) = PL_1km + 10 alpha log10(d / 1 km) dB."""
    pl_db = p.path_loss_db_at_1km + 10.0 * p.path_loss_exponent * np.log10(np.asarray(distance_m) / 1000.0)
    return 10.0 ** (-pl_db / 10.0)


def rayleigh(rng: np.random.Generator, shape) -> np.ndarray:
    """Complex small-scale coefficient h ~ CN(0, 1), so |h|^2 ~ Exp(1)."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)


def gauss_markov(rng: np.random.Generator, h_prev: np.ndarray, rho: float) -> np.ndarray:
    """Next round's coefficient: h' = rho h + sqrt(1 - rho^2) w, w ~ CN(0, 1) (still |h'|^2 ~ Exp(1))."""
    return rho * h_prev + np.sqrt(1.0 - rho**2) * rayleigh(rng, np.shape(h_prev))


def channel_gain(distance_m: np.ndarray, h: np.ndarray, p: SystemParams) -> np.ndarray:
    """g_k = path gain(d_k) * |h_k|^2."""
    return path_gain(distance_m, p) * np.abs(h) ** 2


def shannon_rate(bandwidth_hz: np.ndarray, gain: np.ndarray, p: SystemParams) -> np.ndarray:
    """r = b log2(1 + P g / (N0 b)) bit/s; 0 where b = 0."""
    b = np.asarray(bandwidth_hz, dtype=float)
    safe = np.where(b > 0, b, 1.0)
    r = safe * np.log2(1.0 + p.tx_power_w * gain / (p.noise_w_per_hz * safe))
    return np.where(b > 0, r, 0.0)
