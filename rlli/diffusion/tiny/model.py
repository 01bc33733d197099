"""The embedded text-to-image network: a small diffusers UNet over folded 64x64 RGB images.

The 64x64x3 image is folded with ``pixel_unshuffle`` into 32x32x12 so that the UNet works at the
cost of 32x32; the output is unfolded with ``pixel_shuffle``. Text comes from the frozen
all-MiniLM-L6-v2 (see :mod:`rlli.text`) along two paths: the pooled sentence embedding is
projected and added to the time embedding (``class_embed_type="projection"``), and the token
states (LayerNorm, padding masked) feed cross-attention at the 8x8 level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import nn


@dataclass
class TinyUNetConfig:
    channels: tuple[int, int, int] = (48, 96, 128)
    norm_groups: int = 16
    heads: int = 4
    text_dim: int = 384

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


class TinyT2I(nn.Module):
    def __init__(self, cfg: TinyUNetConfig = TinyUNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.text_norm = nn.LayerNorm(cfg.text_dim)
        self.unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=12,
            out_channels=12,
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            block_out_channels=tuple(cfg.channels),
            layers_per_block=1,
            norm_num_groups=cfg.norm_groups,
            cross_attention_dim=cfg.text_dim,
            attention_head_dim=cfg.heads,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=cfg.text_dim,
            resnet_time_scale_shift="scale_shift",
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                pooled: torch.Tensor) -> torch.Tensor:
        """Model output (v-prediction) for images ``x`` (B, 3, 64, 64) in [-1, 1] at timesteps ``t``."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        h = self.unet(
            F.pixel_unshuffle(x, 2),
            t,
            encoder_hidden_states=self.text_norm(tokens),
            encoder_attention_mask=mask,
            class_labels=pooled,
        ).sample
        return F.pixel_shuffle(h, 2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
