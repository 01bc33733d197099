"""Fidelity: does an image show its prompt?

``fidelity(image, prompt)`` is the fraction of the world attributes a prompt states (read with
:func:`rlli.diffusion.tiny.world.parse_prompt`) that the attribute probe finds in the image. It is
the project's quality figure on the embedded default (benchmarks, calibration, the app). A prompt
that states no world attribute has no fidelity (``None``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rlli.diffusion.tiny import world
from rlli.diffusion.tiny.probe import PROBE_DIR, load_probe, predict


@lru_cache(maxsize=1)
def get_probe():
    return load_probe(PROBE_DIR)


def read_attributes(images: np.ndarray) -> list[dict[str, str]]:
    """The probe's reading of uint8 images (B, H, W, 3) as {attribute: value}."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    preds = predict(get_probe(), images)
    return [{k: world.ATTRIBUTES[k][p[i]] for i, k in enumerate(world.ATTRIBUTE_NAMES)} for p in preds]


def score(stated: dict[str, str], found: dict[str, str]) -> float | None:
    if not stated:
        return None
    return sum(found.get(k) == v for k, v in stated.items()) / len(stated)


def fidelity_batch(images: np.ndarray, prompts: list[str]) -> list[float | None]:
    found = read_attributes(images)
    return [score(world.parse_prompt(p), f) for p, f in zip(prompts, found)]


def fidelity_if_probe(images: np.ndarray, prompts: list[str]) -> list[float | None] | None:
    """:func:`fidelity_batch`, or None when the probe's weights are not installed."""
    try:
        return fidelity_batch(images, prompts)
    except FileNotFoundError:
        return None


def fidelity(image: np.ndarray, prompt: str) -> float | None:
    return fidelity_batch(np.asarray(image)[None], [prompt])[0]


def mean_fidelity(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
