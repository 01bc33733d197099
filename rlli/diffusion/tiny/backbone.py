"""The embedded text-to-image model (weights under assets/tiny-t2i) as a :class:`Backbone`.

Its "latent" is the 64x64 RGB image itself in [-1, 1]; the model predicts v (v-prediction) and is
sampled with DDIM, trailing timestep spacing and x0 clipping by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from rlli.diffusion.backbone import Conditioning, scheduler_from_config, to_uint8
from rlli.diffusion.tiny.model import TinyT2I, TinyUNetConfig
from rlli.text import token_states


class MissingWeights(FileNotFoundError):
    pass


class EmbeddedWorld:
    """The embedded model's world as a backbone capability (:class:`rlli.diffusion.backbone.World`)."""

    def knows(self, prompt: str) -> bool:
        from rlli.diffusion.tiny.world import parse_prompt

        return bool(parse_prompt(prompt))

    def fidelity(self, images: np.ndarray, prompts: list[str]) -> list[float | None] | None:
        from rlli.diffusion.fidelity import fidelity_if_probe

        return fidelity_if_probe(images, prompts)


class TinyBackbone:
    world = EmbeddedWorld()

    def __init__(self, weights: str | Path, device: str = "cpu", text_model: str = "",
                 dtype: torch.dtype = torch.float32):
        weights = Path(weights)
        if not (weights / "model.safetensors").exists():
            raise MissingWeights(f"no embedded model weights in {weights}: run `python -m rlli train tiny-t2i`")
        self.config = json.loads((weights / "config.json").read_text())
        u = self.config["unet"]
        self.model = TinyT2I(TinyUNetConfig(channels=tuple(u["channels"]), norm_groups=u["norm_groups"],
                                            heads=u["heads"], text_dim=u["text_dim"]))
        self.model.load_state_dict(load_file(str(weights / "model.safetensors")))
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.text_model = text_model
        self.max_tokens = self.config.get("max_tokens", 32)
        self.name = f"tiny-t2i ({weights.name})"
        self.dtype = dtype  # weights stay float32; lower precision runs under autocast
        self.scheduler_config = dict(self.config["scheduler"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (3, 64, 64)

    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        def run(texts):
            s, m, p = token_states(texts, self.text_model, self.max_tokens)
            return {"tokens": s.to(self.device), "mask": m.to(self.device), "pooled": p.to(self.device)}

        return run(list(prompts)), run([""])

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.model(latents.to(self.device), timesteps.to(self.device), cond["tokens"], cond["mask"],
                             cond["pooled"])
        return out.float()

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return to_uint8(latents)

    def make_scheduler(self, kind: str):
        overrides = {"timestep_spacing": "trailing"}
        if kind == "ddim":
            overrides.update(clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=False)
        elif kind in ("dpm", "unipc"):  # dynamic thresholding capped at 1 = clipping x0 to [-1, 1]
            overrides.update(thresholding=True, sample_max_value=1.0)
        return scheduler_from_config(kind, self.scheduler_config, **overrides)
