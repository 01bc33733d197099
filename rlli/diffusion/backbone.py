"""The Backbone protocol: what the shared-denoising engine needs from a text-to-image model.

A backbone encodes prompts into a *conditioning* (a dict of tensors whose first dimension is the
batch), predicts the model output for a batch of latents at per-sample timesteps, decodes latents
to images, and makes the diffusers scheduler it is sampled with. The engine never looks inside
a conditioning: it only selects rows and concatenates batches (:func:`cond_rows`, :func:`cond_cat`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

Conditioning = dict[str, torch.Tensor]

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}


class World(Protocol):
    """A backbone's own world, where one exists (the embedded model's procedural scenes): it can read an
    image's attributes back and say what a prompt states. Backbones without one (Stable Diffusion) have
    ``world = None``; everything that reads attributes asks the backbone, never the model's name."""

    def knows(self, prompt: str) -> bool:
        """Whether the prompt names anything this world can draw."""

    def fidelity(self, images: np.ndarray, prompts: list[str]) -> list[float | None] | None:
        """Share of each prompt's stated attributes found in its image (None per prompt stating none); None when
        the attribute reader is not installed."""


@runtime_checkable
class Backbone(Protocol):
    name: str
    world: World | None  # the embedded world's attribute reader, or None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent, without the batch dimension."""

    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        """Conditioning for each prompt (batch len(prompts)) and the unconditional one (batch 1)."""

    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Model output (noise, v or sample, as the scheduler expects) for each latent."""

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Images as uint8 (B, H, W, 3)."""

    def make_scheduler(self, kind: str) -> SchedulerMixin:
        """A fresh scheduler of the given kind ('ddim', 'euler', 'dpm', 'unipc')."""


def cond_rows(cond: Conditioning, rows: list[int] | torch.Tensor) -> Conditioning:
    return {k: v.index_select(0, torch.as_tensor(rows, dtype=torch.long, device=v.device)) for k, v in cond.items()}


def cond_cat(conds: list[Conditioning]) -> Conditioning:
    return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}


def scheduler_from_config(kind: str, config: dict, **overrides) -> SchedulerMixin:
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[kind].from_config(config, **overrides)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
