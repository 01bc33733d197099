"""The 64 held-out benchmark prompts: unseen attribute combinations in unseen caption frames.

Generated once from a fixed seed and kept in ``assets/bench/heldout_prompts.json`` so that the
benchmark does not move when the caption code changes; :func:`load_heldout` reads that file.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from rlli.config import ASSETS
from rlli.diffusion.tiny import world

HELDOUT_FILE = ASSETS / "bench" / "heldout_prompts.json"


def make_heldout(n: int = 64, seed: int = 2024) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scene = world.random_scene(rng, "test")
        text, stated = world.caption(scene, rng, "test")
        out.append({"prompt": text, "stated": stated, "scene": asdict(scene)})
    return out


def load_heldout() -> list[dict]:
    if not HELDOUT_FILE.exists():
        HELDOUT_FILE.parent.mkdir(parents=True, exist_ok=True)
        HELDOUT_FILE.write_text(json.dumps(make_heldout(), indent=1))
    return json.loads(HELDOUT_FILE.read_text())
