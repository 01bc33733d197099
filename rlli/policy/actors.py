"""The networks: G-DDPG's diffusion actor (after the authors' GDMOPT), DDPG's MLP actor, twin critics.

G-DDPG follows github HongyangDu/GDMOPT, the code of Du et al., "Beyond Deep Reinforcement Learning: A
Tutorial on Generative Diffusion Models in Network Optimization" (arXiv 2308.05384): the actor is a conditional DDPM
over the action vector with a VP beta schedule and T = 5 denoising steps; its noise network embeds
the state (Linear-Mish-Linear, 256 wide) and the step (sinusoidal 16 -> 32 -> 16, Mish), concatenates
them with x_t, and runs 256-Mish-256-Mish-a_dim. The reverse chain keeps its graph, so the actor loss
-min(Q1, Q2)(s, pi(s)) back-propagates through every denoising step. Our own code, same design.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def vp_beta_schedule(steps: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """beta_t = 1 - exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2)), t = 1..T (GDMOPT's VP schedule)."""
    t = np.arange(1, steps + 1)
    alpha = np.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
    return torch.tensor(1.0 - alpha, dtype=torch.float32)


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000.0) / (half - 1)))
        x = t.float()[:, None] * freq[None, :]
        return torch.cat([x.sin(), x.cos()], dim=-1)


class NoiseNet(nn.Module):
    """eps_theta(x_t, t, s): GDMOPT's MLP with Mish, state and time encoders concatenated with x_t."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, t_dim: int = 16):
        super().__init__()
        self.state_mlp = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Mish(), nn.Linear(hidden, hidden))
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(t_dim), nn.Linear(t_dim, 2 * t_dim), nn.Mish(),
                                      nn.Linear(2 * t_dim, t_dim))
        self.mid = nn.Sequential(nn.Linear(act_dim + t_dim + hidden, hidden), nn.Mish(), nn.Linear(hidden, hidden),
                                 nn.Mish(), nn.Linear(hidden, act_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor | None = None,
                state_emb: torch.Tensor | None = None) -> torch.Tensor:
        """eps for x_t at step t; pass ``state_emb = state_mlp(obs)`` to reuse it across the reverse chain."""
        s = self.state_mlp(obs) if state_emb is None else state_emb
        return self.mid(torch.cat([x, self.time_mlp(t), s], dim=-1))


class DiffusionActor(nn.Module):
    """pi(s): x_T ~ N(0, I), then T reverse DDPM steps (x_0 clipped to [-1, 1]) -> the action."""

    kind = "gddpg"

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, denoise_steps: int = 5):
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden, self.denoise_steps = obs_dim, act_dim, hidden, denoise_steps
        self.net = NoiseNet(obs_dim, act_dim, hidden)
        betas = vp_beta_schedule(denoise_steps)
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([torch.ones(1), ac[:-1]])
        var = betas * (1.0 - ac_prev) / (1.0 - ac)
        # schedule terms as buffers: saved with the weights, moved with the module
        self.register_buffer("sqrt_recip_ac", torch.sqrt(1.0 / ac))
        self.register_buffer("sqrt_recipm1_ac", torch.sqrt(1.0 / ac - 1.0))
        self.register_buffer("coef_x0", betas * torch.sqrt(ac_prev) / (1.0 - ac))
        self.register_buffer("coef_xt", (1.0 - ac_prev) * torch.sqrt(alphas) / (1.0 - ac))
        self.register_buffer("log_var", torch.log(torch.clamp(var, min=1e-20)))

    def draw_noise(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Every random number one reverse chain uses, in the order it uses them: x_T, then one draw per
        step t = T-1 .. 1, as a (T, batch, act_dim) tensor."""
        return torch.stack([torch.randn((batch, self.act_dim), generator=generator, device=device)
                            for _ in range(self.denoise_steps)])

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.reverse(obs, self.draw_noise(obs.shape[0], generator, obs.device))

    def reverse(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The reverse chain from given noise (see :meth:`draw_noise`): deterministic, so it can be traced."""
        b = obs.shape[0]
        x = noise[0]
        state_emb = self.net.state_mlp(obs)  # the same at every step: computed once (GDMOPT recomputes it)
        for i in reversed(range(self.denoise_steps)):
            t = torch.full((b,), i, dtype=torch.long, device=obs.device)
            eps = self.net(x, t, state_emb=state_emb)
            x0 = (self.sqrt_recip_ac[i] * x - self.sqrt_recipm1_ac[i] * eps).clamp(-1.0, 1.0)
            mean = self.coef_x0[i] * x0 + self.coef_xt[i] * x
            x = mean + torch.exp(0.5 * self.log_var[i]) * noise[self.denoise_steps - i] if i > 0 else mean
        return x.clamp(-1.0, 1.0)

    def clamp_share(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> float:
        """Diagnosis: the share of predicted x0 entries the per-step clamp to [-1, 1] changes, over every step of
        the reverse chain (the shipped G-DDPG's was above 99.5%: a chain that only saturates)."""
        noise = self.draw_noise(obs.shape[0], generator, obs.device)
        clamped, total = 0, 0
        with torch.no_grad():
            x = noise[0]
            state_emb = self.net.state_mlp(obs)
            for i in reversed(range(self.denoise_steps)):
                t = torch.full((obs.shape[0],), i, dtype=torch.long, device=obs.device)
                raw = self.sqrt_recip_ac[i] * x - self.sqrt_recipm1_ac[i] * self.net(x, t, state_emb=state_emb)
                clamped += int((raw.abs() > 1.0).sum())
                total += raw.numel()
                mean = self.coef_x0[i] * raw.clamp(-1.0, 1.0) + self.coef_xt[i] * x
                x = mean + torch.exp(0.5 * self.log_var[i]) * noise[self.denoise_steps - i] if i > 0 else mean
        return clamped / max(total, 1)

    def bc_loss(self, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Diffusion-QL's behaviour-cloning term: the DDPM noise-prediction loss on the target actions, at a step t
        drawn uniformly (x_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps, the same schedule the reverse chain uses)."""
        b = obs.shape[0]
        i = torch.randint(0, self.denoise_steps, (b,), device=obs.device)
        sqrt_ac = 1.0 / self.sqrt_recip_ac[i][:, None]
        sqrt_1m = self.sqrt_recipm1_ac[i][:, None] * sqrt_ac
        eps = torch.randn_like(target)
        return torch.nn.functional.mse_loss(self.net(sqrt_ac * target + sqrt_1m * eps, i, obs=obs), eps)

    def config(self) -> dict:
        return {"kind": self.kind, "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden,
                "denoise_steps": self.denoise_steps}


class MLPActor(nn.Module):
    """DDPG's deterministic actor: obs -> 256-Mish-256-Mish -> tanh (same width as the critics)."""

    kind = "ddpg"

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Mish(), nn.Linear(hidden, hidden), nn.Mish(),
                                 nn.Linear(hidden, act_dim), nn.Tanh())

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.net(obs)

    def clamp_share(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> float:
        return 0.0  # no clamp: tanh

    def bc_loss(self, obs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """TD3+BC's behaviour-cloning term: mean squared error to the target actions."""
        return torch.nn.functional.mse_loss(self.net(obs), target)

    def config(self) -> dict:
        return {"kind": self.kind, "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden}


class DoubleCritic(nn.Module):
    """Twin Q networks (GDMOPT's DoubleCritic): Q_i(s, a), i = 1, 2; ``q_min`` is their minimum."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()

        def q() -> nn.Sequential:
            return nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.Mish(), nn.Linear(hidden, hidden), nn.Mish(),
                                 nn.Linear(hidden, 1))

        self.q1, self.q2 = q(), q()

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.min(*self(obs, act))


ACTORS = {"gddpg": DiffusionActor, "ddpg": MLPActor}


def build_actor(config: dict) -> nn.Module:
    """An actor from its saved config (``kind`` picks the class)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind not in ACTORS:
        raise ValueError(f"unknown actor kind {kind!r}; expected one of {sorted(ACTORS)}")
    return ACTORS[kind](**cfg)
