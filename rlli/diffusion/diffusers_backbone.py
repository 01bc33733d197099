"""Any Stable-Diffusion-family model (SD 1.x, 2.x, SD-Turbo) as a :class:`Backbone`.

Loads the components of a diffusers model id or local folder with ``from_pretrained`` (tokenizer,
text encoder, UNet, VAE, scheduler config) and uses them directly - never the pipeline's
``__call__`` and never a patched diffusers - so the engine can run its own denoising loop.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import AutoTokenizer, CLIPTextModel

from rlli.diffusion.backbone import Conditioning, scheduler_from_config, to_uint8


class DiffusersBackbone:
    world = None  # no attribute reader for an open-vocabulary model

    def __init__(self, model: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.name = model
        self.device = torch.device(device)
        self.dtype = dtype
        kw = {"torch_dtype": dtype}
        self.tokenizer = AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", **kw).to(self.device).eval()
        self.unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", **kw).to(self.device).eval()
        self.vae = AutoencoderKL.from_pretrained(model, subfolder="vae", **kw).to(self.device).eval()
        self.scheduler_config = dict(scheduler_from_config("ddim", {}).load_config(model, subfolder="scheduler"))
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        s = self.unet.config.sample_size
        return (self.unet.config.in_channels, s, s)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Conditioning, Conditioning]:
        def run(texts):
            ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            return {"encoder_hidden_states": self.text_encoder(ids)[0]}

        return run(list(prompts)), run([""])

    @torch.no_grad()
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(latents.to(self.device, self.dtype), timesteps.to(self.device),
                         encoder_hidden_states=cond["encoder_hidden_states"]).sample.float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        images = self.vae.decode(latents.to(self.device, self.dtype) / self.vae.config.scaling_factor).sample
        return to_uint8(images)

    def make_scheduler(self, kind: str):
        return scheduler_from_config(kind, self.scheduler_config)
