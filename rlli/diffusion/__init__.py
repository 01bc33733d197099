"""Text-to-image backbones and the shared-denoising engine."""

from __future__ import annotations

from functools import lru_cache

from rlli.config import Settings


@lru_cache(maxsize=2)
def _load(backbone: str, tiny_weights: str, device: str, text_model: str):
    if backbone == "tiny":
        from rlli.diffusion.tiny.backbone import TinyBackbone

        return TinyBackbone(tiny_weights, device=device, text_model=text_model)
    from rlli.diffusion.diffusers_backbone import DiffusersBackbone

    return DiffusersBackbone(backbone, device=device)


def get_backbone(settings: Settings):
    """The configured backbone, loaded once per process (the one cached model accessor)."""
    return _load(settings.backbone, str(settings.tiny_weights), settings.device, settings.text_model)
