"""Text-to-image backbones and the shared-denoising engine."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from rlli.config import Settings


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: str) -> torch.dtype:
    if precision != "auto":
        return getattr(torch, precision)
    if device.startswith("cuda"):
        return torch.float16
    return torch.bfloat16 if device == "cpu" and cpu_has_native_bf16() else torch.float32


@lru_cache(maxsize=2)
def _load(backbone: str, tiny_weights: str, device: str, text_model: str, precision: str):
    dtype = resolve_precision(precision, device)
    if backbone == "tiny":
        from rlli.diffusion.tiny.backbone import TinyBackbone

        return TinyBackbone(tiny_weights, device=device, text_model=text_model, dtype=dtype)
    from rlli.diffusion.diffusers_backbone import DiffusersBackbone

    return DiffusersBackbone(backbone, device=device, dtype=dtype)


def plan_from(settings: Settings):
    """The engine's plan (steps, guidance, scheduler) from the settings."""
    from rlli.diffusion.engine import Plan

    return Plan(steps=settings.steps, guidance_scale=settings.guidance_scale, scheduler=settings.scheduler)


def get_backbone(settings: Settings):
    """The configured backbone, loaded once per process (the one cached model accessor)."""
    return _load(settings.backbone, str(settings.tiny_weights), settings.device, settings.text_model,
                 settings.precision)
