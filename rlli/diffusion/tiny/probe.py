"""The attribute probe: a small CNN that reads a scene's attributes back from a 64x64 image.

Trained on renders of training-split scenes (with light noise and blur so that it also reads the
model's softer images), evaluated on renders of the held-out combinations.
``python -m rlli train probe`` reproduces ``assets/probe`` in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rlli.config import ASSETS
from rlli.diffusion.tiny import world

PROBE_DIR = ASSETS / "probe"


class Probe(nn.Module):
    def __init__(self):
        super().__init__()

        def block(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(block(3, 32, 1), block(32, 48, 2), block(48, 64, 1), block(64, 96, 2),
                                      block(96, 128, 2), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                      nn.Linear(128 * 16, 256), nn.ReLU())
        self.heads = nn.ModuleDict({k: nn.Linear(256, len(v)) for k, v in world.ATTRIBUTES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def render_set(n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, world.SIZE, world.SIZE, 3), np.uint8)
    labels = np.zeros((n, len(world.ATTRIBUTE_NAMES)), np.int64)
    for i in range(n):
        s = world.random_scene(rng, split)
        images[i] = (world.render(s, rng) * 255 + 0.5).astype(np.uint8)
        labels[i] = list(s.labels().values())
    return images, labels


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    blur = torch.rand(b, generator=gen) < 0.5
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * 0.08
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


@torch.no_grad()
def evaluate(model: Probe, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    model.eval()
    preds = predict(model, images)
    acc = {k: float((preds[:, i] == labels[:, i]).mean()) for i, k in enumerate(world.ATTRIBUTE_NAMES)}
    acc["mean"] = float(np.mean(list(acc.values())))
    return acc


@torch.no_grad()
def predict(model: Probe, images: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        logits = model(to_input(images[i:i + batch]))
        out.append(torch.stack([logits[k].argmax(1) for k in world.ATTRIBUTE_NAMES], 1))
    return torch.cat(out).numpy() if out else np.zeros((0, len(world.ATTRIBUTE_NAMES)), np.int64)


def train_probe(n_train: int = 24_000, n_test: int = 3_000, epochs: int = 4, seed: int = 0,
                out: Path = PROBE_DIR, threads: int = 2, log=print) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    x_tr, y_tr = render_set(n_train, seed + 1, "train")
    x_te, y_te = render_set(n_test, seed + 2, "test")
    log(f"rendered {n_train} + {n_test} scenes in {time.time() - t0:.0f} s")
    model = Probe()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (n_train // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(y_tr)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train - 127, 128):
            idx = perm[i:i + 128]
            logits = model(_augment(to_input(x_tr[idx.numpy()]), gen))
            loss = sum(F.cross_entropy(logits[k], y[idx, j]) for j, k in enumerate(world.ATTRIBUTE_NAMES))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, x_te, y_te)
        log(f"epoch {epoch + 1}: loss {loss.item():.3f}  held-out mean accuracy {acc['mean']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "probe.safetensors"))
    metrics = {"held_out_accuracy": acc, "train_renders": n_train, "held_out_renders": n_test, "epochs": epochs,
               "seed": seed, "train_seconds": round(time.time() - t0, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_probe(path: Path = PROBE_DIR) -> Probe:
    f = Path(path) / "probe.safetensors"
    if not f.exists():
        raise FileNotFoundError(f"no probe weights in {path}: run `python -m rlli train probe`")
    model = Probe()
    model.load_state_dict(load_file(str(f)))
    return model.eval()
