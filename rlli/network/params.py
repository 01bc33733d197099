"""Defaults of the system model, each with its source (docs/system-model.md has the table, the equations and
the references). The model describes a Stable Diffusion deployment (SD 1.x, 512 x 512, fp16): phones finish
their images on their own GPU, an edge server with one data-centre GPU runs the groups' shared prefixes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

BOLTZMANN_NOISE_DBM_PER_HZ = -174.0  # thermal noise density at 290 K

# ---- sourced figures (docs/system-model.md, "Parameters and sources")
# Chen et al. 2023, "Speed Is All You Need" (arXiv 2304.11267): SD 1.4, 512x512, 20 iterations in 11.5 s on a Galaxy
# S23 Ultra's GPU (fp16, no int8) -> 0.575 s per step including text encoder and decoder (an upper bound per step).
PHONE_STEP_S = 11.5 / 20
# Qualcomm's SD 1.5 demo on a Snapdragon 8 Gen 2 phone (Feb 2023): 20 steps, 512x512, just under 15 s; the SoC "draws
# less than ten watts" (HotHardware's report of the demo). 0.75 s per step: a phone a generation older than the S23's
# optimised stack. The slowest phone in the model takes twice the S23 time.
QUALCOMM_STEP_S = 15.0 / 20
# Deci's DeciDiffusion model card: SD v1.5 on an NVIDIA A10, fp16, PyTorch, 50 iterations in 2.95 s -> 59 ms per step.
# A10 board power (TDP) 150 W (NVIDIA A10 datasheet) -> at most 150 W x 0.059 s = 8.85 J per step.
A10_STEP_S = 2.95 / 50
A10_POWER_W = 150.0
# fal-ai/stable-diffusion-benchmarks: SD 1.5 on an A100 80G SXM, diffusers (torch 2.1, SDPA): 31.19 it/s; A100 SXM TDP
# 400 W -> 12.8 J per step at most. Luccioni et al. 2024 ("Power Hungry Processing", FAccT): image generation averaged
# 2.907 kWh per 1000 inferences on A100 nodes (whole node, CodeCarbon; many models incl. SDXL, diffusers' defaults)
# -> 10.5 kJ per image, ~209 J per step at 50 steps: the pessimistic end (see the energy_sensitivity table).
A100_STEP_S = 1.0 / 31.19
A100_POWER_W = 400.0
LUCCIONI_J_PER_STEP = 2.907e3 * 3600 / 1000 / 50
SD_LATENT_BYTES = 4 * 64 * 64 * 2  # SD 1.x latent of a 512x512 image: 4 x 64 x 64, fp16 = 32 KiB
SD_IMAGE_BYTES = 512 * 512 * 3 // 2  # a 512x512 RGB image as PNG at about 2:1 (assumption; raw is 768 KiB)
PROMPT_BYTES = 77 * 4  # CLIP's context is 77 tokens: at most ~4 bytes of UTF-8 text per token
PHONE_BATTERY_J = 5000e-3 * 3.86 * 3600  # Galaxy S23 Ultra: 5000 mAh at 3.86 V nominal = 19.3 Wh


@dataclass(frozen=True)
class SystemParams:
    """Everything the system model needs besides the round itself. Units: SI (Hz, W, m, s, J, bytes)."""

    k_max: int = 8  # most users in one round that the policies encode (slots; a mask marks the used ones)
    steps: int = 20  # denoising steps N (RLLI_STEPS); the phone figures above are for 20 steps
    bandwidth_hz: float = 0.5e6  # B: a narrow edge slice shared by the round's transfers
    tx_power_w: float = 0.2  # P: 23 dBm, the 3GPP UE power class 3 (TS 38.101-1) and a small cell's per-user power
    noise_dbm_per_hz: float = BOLTZMANN_NOISE_DBM_PER_HZ + 7.0  # N0 with a 7 dB receiver noise figure
    distance_m: tuple[float, float] = (100.0, 500.0)  # d_k uniform: a small cell out to its edge
    path_loss_db_at_1km: float = 128.1  # 3GPP TR 36.814 macro: PL(d) = 128.1 + 37.6 log10(d / km)
    path_loss_exponent: float = 3.76
    fading: Literal["iid", "gauss-markov"] = "iid"  # Rayleigh |h|^2 ~ Exp(1): redrawn or correlated per round
    fading_rho: float = 0.9  # Gauss-Markov correlation of h between rounds (Jakes at low speed)
    payload_bytes: int = SD_LATENT_BYTES  # hand-off: the latent at the fork step (live rounds: the engine's bytes)
    image_bytes: int = SD_IMAGE_BYTES  # final image download (only when the server generates the whole image)
    prompt_bytes: int = PROMPT_BYTES  # prompt upload (every user whose steps touch the server)
    # server: F "GHz" is a speed relative to the sourced GPU: at server_hz = 20e9 a step takes A10_STEP_S
    cycles_per_step_server: float = A10_STEP_S * 20.0e9  # c_s, so t_step = c_s / F
    server_hz: float = 20.0e9  # F (RLLI_NET_SERVER_GHZ): shared by the groups' prefixes
    server_step_j: float = A10_POWER_W * A10_STEP_S  # e_s: energy of one denoising step on the server, any share
    # devices: f_k uniform, t_step = c_d / f_k: the fastest phone is the S23 Ultra of Chen et al., the slowest 2x slower
    cycles_per_step_device: float = PHONE_STEP_S * 2.6e9  # c_d
    device_hz: tuple[float, float] = (1.3e9, 2.6e9)  # f_k: 1.15 s .. 0.575 s per step
    device_power_w: float = 6.0  # P_d while denoising: inside Qualcomm's "< 10 W" for the whole SoC (assumption)
    battery_j: float = PHONE_BATTERY_J  # a full battery (sequential env)
    energy_price: float = 0.005  # lambda: QoE points per joule (a user's 20 phone steps, ~100 J, cost 0.5)
    delay_scale_s: float = 10.0  # the judge's patience scale T0 (see rlli/network/qoe.py)
    deadline_factor: float = 2.0  # a user gives up after deadline_factor x its patience: QoE 1 (0 = no deadlines)
    slot_s: float = 2.0  # time between rounds (the batching window) in the sequential env

    def __post_init__(self) -> None:
        checks = {
            "k_max": 1 <= self.k_max <= 64, "steps": 1 <= self.steps <= 1000,
            "bandwidth_hz": self.bandwidth_hz > 0, "tx_power_w": self.tx_power_w > 0,
            "distance_m": 0 < self.distance_m[0] <= self.distance_m[1],
            "fading_rho": 0.0 <= self.fading_rho < 1.0, "payload_bytes": self.payload_bytes >= 0,
            "image_bytes": self.image_bytes >= 0, "prompt_bytes": self.prompt_bytes >= 0,
            "cycles_per_step_server": self.cycles_per_step_server > 0,
            "cycles_per_step_device": self.cycles_per_step_device > 0, "server_hz": self.server_hz > 0,
            "device_hz": 0 < self.device_hz[0] <= self.device_hz[1], "server_step_j": self.server_step_j >= 0,
            "device_power_w": self.device_power_w >= 0, "battery_j": self.battery_j > 0,
            "energy_price": self.energy_price >= 0, "delay_scale_s": self.delay_scale_s > 0,
            "deadline_factor": self.deadline_factor >= 0, "slot_s": self.slot_s > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid system parameters: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        if self.fading not in ("iid", "gauss-markov"):
            raise ValueError(f"fading must be 'iid' or 'gauss-markov', not {self.fading!r}")

    @property
    def noise_w_per_hz(self) -> float:
        return 10.0 ** ((self.noise_dbm_per_hz - 30.0) / 10.0)

    @property
    def server_step_s(self) -> float:
        """Seconds per denoising step with the whole server."""
        return self.cycles_per_step_server / self.server_hz

    def device_step_s(self, device_hz):
        return self.cycles_per_step_device / device_hz

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
