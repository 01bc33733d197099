"""Realistic Big-Five profiles drawn from published population norms (``personas/norms.toml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rlli.personas.judge import TRAITS, BigFive, Persona
from rlli.personas.presets import read_toml

GRID = 12  # the TIPI's half-point steps on 1..7 are twelfths of [0, 1]


@dataclass(frozen=True)
class Norms:
    source: str
    mean: tuple[float, ...]  # in [0, 1], in TRAITS order
    sd: tuple[float, ...]


@lru_cache(maxsize=1)
def norms() -> Norms:
    data = read_toml("norms.toml")
    rows = [data["tipi"][t] for t in TRAITS]
    return Norms(data["source"], tuple((r["mean"] - 1) / 6 for r in rows), tuple(r["sd"] / 6 for r in rows))


def sample_profiles(n: int, seed: int = 0) -> list[Persona]:
    """``n`` personas with traits drawn from the norms (same seed, same profiles); names sampled-<seed>-<i>."""
    if not 0 <= n <= 100_000:
        raise ValueError(f"n must be between 0 and 100000, not {n}")
    nm = norms()
    rng = np.random.default_rng(seed)
    draws = rng.normal(nm.mean, nm.sd, size=(n, len(TRAITS)))
    draws = np.clip(np.round(draws * GRID) / GRID, 0.0, 1.0)
    return [Persona(name=f"sampled-{seed}-{i}", traits=BigFive(*map(float, row)), instrument="sampled",
                    description="a profile drawn from TIPI population norms")
            for i, row in enumerate(draws)]
