"""Train the embedded text-to-image model from scratch on the scene world (CPU, 2 cores).

``python -m rlli train tiny-t2i [--minutes M] [--out DIR]``. The run renders a fixed, seeded data
set (images of training-split scenes and one caption each), embeds the captions once with the
frozen MiniLM, then trains with v-prediction, min-SNR-5 weighting and classifier-free-guidance
dropout. The learning rate follows a cosine decay timed to the wall-clock budget, so the run
ends on time whatever the machine's speed. It checkpoints every few minutes under ``runs/`` and
resumes from the last checkpoint when started again with the same arguments. At the end it
writes the EMA weights and a config to ``--out`` (default ``assets/tiny-t2i``).
"""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from rlli.config import ASSETS, ROOT
from rlli.diffusion.tiny import world
from rlli.diffusion.tiny.model import TinyT2I, TinyUNetConfig, count_parameters
from rlli.text import MAX_TOKENS, token_states


@dataclass
class TrainConfig:
    minutes: float = 110.0
    max_steps: int = 100_000
    images: int = 40_000
    batch: int = 32
    lr: float = 1.5e-3
    warmup: int = 150
    weight_decay: float = 0.01
    ema: float = 0.998
    cfg_drop: float = 0.1
    min_snr: float = 5.0
    seed: int = 0
    threads: int = 1
    checkpoint_every_s: float = 300.0
    unet: TinyUNetConfig = field(default_factory=TinyUNetConfig)
    run_dir: str = str(ROOT / "runs" / "tiny-t2i")
    out: str = str(ASSETS / "tiny-t2i")


def noise_scheduler_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction", "clip_sample": False}


def build_dataset(n: int, seed: int, log=print) -> dict:
    """Seeded images (uint8, N x 3 x 64 x 64), captions, labels and caption embeddings."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, world.SIZE, world.SIZE), np.uint8)
    captions, labels = [], np.zeros((n, len(world.ATTRIBUTE_NAMES)), np.int64)
    t0 = time.time()
    for i in range(n):
        scene = world.random_scene(rng, "train")
        images[i] = (world.render(scene, rng) * 255 + 0.5).astype(np.uint8).transpose(2, 0, 1)
        captions.append(world.caption(scene, rng, "train")[0])
        labels[i] = list(scene.labels().values())
    log(f"rendered {n} scenes in {time.time() - t0:.0f} s")
    t0 = time.time()
    states, mask, pooled = token_states(captions)
    log(f"embedded {n} captions in {time.time() - t0:.0f} s")
    null = token_states([""])
    return {"images": torch.from_numpy(images), "captions": captions, "labels": torch.from_numpy(labels),
            "tokens": states.half(), "mask": mask, "pooled": pooled,
            "null_tokens": null[0][0], "null_mask": null[1][0], "null_pooled": null[2][0]}


def save_weights(model: TinyT2I, cfg: TrainConfig, out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    config = {"unet": cfg.unet.to_dict(), "max_tokens": MAX_TOKENS, "scheduler": noise_scheduler_config(),
              "train": {k: v for k, v in asdict(cfg).items() if k not in ("unet", "run_dir", "out")}, **meta}
    (out / "config.json").write_text(json.dumps(config, indent=2))


def train(cfg: TrainConfig, log=print) -> dict:
    from diffusers import DDPMScheduler

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data_path = run_dir / f"data-{cfg.images}-{cfg.seed}.pt"
    if data_path.exists():
        data = torch.load(data_path)
        log(f"loaded data set {data_path}")
    else:
        data = build_dataset(cfg.images, cfg.seed, log)
        torch.save(data, data_path)

    model = TinyT2I(cfg.unet)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    sched = DDPMScheduler(**noise_scheduler_config())
    alphas = sched.alphas_cumprod
    step, elapsed, losses = 0, 0.0, []
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, losses = ck["step"], ck["elapsed"], ck["losses"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed at step {step} after {elapsed / 60:.1f} min")
    log(f"model: {count_parameters(model) / 1e6:.2f} M parameters; budget {cfg.minutes} min")

    budget = cfg.minutes * 60
    n = len(data["captions"])
    gen = torch.Generator().manual_seed(cfg.seed + step)
    start, last_ckpt, window = time.time() - elapsed, time.time(), []

    def checkpoint():
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": time.time() - start, "losses": losses,
                    "torch_rng": torch.get_rng_state()}, ckpt_path)

    model.train()
    while step < cfg.max_steps:
        frac = (time.time() - start) / budget
        if frac >= 1:
            break
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (cfg.batch,), generator=gen)
        x0 = data["images"][idx].float() / 127.5 - 1
        tokens, mask, pooled = data["tokens"][idx].float(), data["mask"][idx].clone(), data["pooled"][idx].clone()
        drop = torch.rand(cfg.batch, generator=gen) < cfg.cfg_drop
        tokens[drop], mask[drop], pooled[drop] = data["null_tokens"].float(), data["null_mask"], data["null_pooled"]
        t = torch.randint(0, 1000, (cfg.batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        pred = model(xt, t, tokens, mask, pooled)
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=cfg.min_snr) / (snr + 1)
        loss = (weight * (pred - v).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        step += 1
        window.append(loss.item())
        if step % 100 == 0:
            losses.append([step, float(np.mean(window))])
            log(f"step {step}  loss {np.mean(window):.4f}  lr {lr:.2e}  {(time.time() - start) / 60:.1f} min")
            window = []
        if time.time() - last_ckpt > cfg.checkpoint_every_s:
            checkpoint()
            last_ckpt = time.time()
    minutes = (time.time() - start) / 60
    checkpoint()
    meta = {"steps": step, "train_minutes": round(minutes, 1), "final_loss": losses[-1][1] if losses else None,
            "parameters": count_parameters(model), "torch": torch.__version__, "machine": platform.machine(),
            "threads": cfg.threads, "losses": losses}
    save_weights(ema, cfg, Path(cfg.out), meta)
    log(f"done: {step} steps in {minutes:.1f} min; weights in {cfg.out}")
    return meta
