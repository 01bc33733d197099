"""Defaults of the system model, each with its reason (docs/system-model.md has the table and sources)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

BOLTZMANN_NOISE_DBM_PER_HZ = -174.0  # thermal noise density at 290 K


@dataclass(frozen=True)
class SystemParams:
    """Everything the system model needs besides the round itself. Units: SI (Hz, W, m, s, J, cycles)."""

    k_max: int = 8  # most users in one round that the policies encode (slots; a mask marks the used ones)
    steps: int = 20  # denoising steps N (RLLI_STEPS)
    bandwidth_hz: float = 0.5e6  # B: a narrow edge slice shared by the hand-offs of one round
    tx_power_w: float = 0.2  # P: 23 dBm, a small cell's per-user downlink power
    noise_dbm_per_hz: float = BOLTZMANN_NOISE_DBM_PER_HZ + 7.0  # N0 with a 7 dB receiver noise figure
    distance_m: tuple[float, float] = (100.0, 500.0)  # d_k uniform: a small cell out to its edge
    path_loss_db_at_1km: float = 128.1  # 3GPP TR 36.814 macro: PL(d) = 128.1 + 37.6 log10(d / km)
    path_loss_exponent: float = 3.76
    fading: Literal["iid", "gauss-markov"] = "iid"  # Rayleigh |h|^2 ~ Exp(1): redrawn or correlated per round
    fading_rho: float = 0.9  # Gauss-Markov correlation of h between rounds (Jakes at low speed)
    payload_bytes: int = 3 * 64 * 64 * 4  # hand-off latent: the embedded model's 3x64x64 fp32 (from the engine)
    cycles_per_step_server: float = 1.0e9  # c_s: server cycles per denoising step
    cycles_per_step_device: float = 1.0e9  # c_d: device cycles per denoising step (same network)
    server_hz: float = 20.0e9  # F: server compute shared by the groups' prefixes
    device_hz: tuple[float, float] = (1.0e9, 3.0e9)  # f_k uniform: phones to laptops
    kappa_server: float = 1.0e-29  # effective switched capacitance of the server
    kappa_device: float = 1.0e-28  # ... of a device (mobile SoC)
    energy_price: float = 0.05  # lambda: QoE points per joule in the reward
    delay_scale_s: float = 10.0  # the judge's patience scale (see rlli/personas/trait_judge.py)

    def __post_init__(self) -> None:
        checks = {
            "k_max": 1 <= self.k_max <= 64, "steps": 1 <= self.steps <= 1000,
            "bandwidth_hz": self.bandwidth_hz > 0, "tx_power_w": self.tx_power_w > 0,
            "distance_m": 0 < self.distance_m[0] <= self.distance_m[1],
            "fading_rho": 0.0 <= self.fading_rho < 1.0, "payload_bytes": self.payload_bytes >= 0,
            "cycles_per_step_server": self.cycles_per_step_server > 0,
            "cycles_per_step_device": self.cycles_per_step_device > 0, "server_hz": self.server_hz > 0,
            "device_hz": 0 < self.device_hz[0] <= self.device_hz[1], "kappa_server": self.kappa_server >= 0,
            "kappa_device": self.kappa_device >= 0, "energy_price": self.energy_price >= 0,
            "delay_scale_s": self.delay_scale_s > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid system parameters: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        if self.fading not in ("iid", "gauss-markov"):
            raise ValueError(f"fading must be 'iid' or 'gauss-markov', not {self.fading!r}")

    @property
    def noise_w_per_hz(self) -> float:
        return 10.0 ** ((self.noise_dbm_per_hz - 30.0) / 10.0)

    def with_(self, **changes) -> SystemParams:
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings, payload_bytes: int | None = None) -> SystemParams:
        """The parameters a running app uses: its settings' values and the engine's payload size."""
        kw = dict(steps=settings.steps, k_max=settings.policy_k_max, bandwidth_hz=settings.net_bandwidth_mhz * 1e6,
                  server_hz=settings.net_server_ghz * 1e9, energy_price=settings.energy_price,
                  fading=settings.net_fading)
        if payload_bytes is not None:
            kw["payload_bytes"] = int(payload_bytes)
        return cls(**kw)
