"""Realistic Big-Five profiles drawn from published population norms (``personas/norms.toml``), and where a
trait level sits among people (its percentile), which is how persona text describes it.

Two named norm sets ship: ``gosling2003`` (the default: the TIPI's own Study 1 norms, N = 1,813 students)
and ``web2014`` (a large web sample, N = 278,000). Under either, 0.5 on the [0, 1] scale is *not* the
average person: on openness, conscientiousness and agreeableness it is about one SD below the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rlli.personas.judge import TRAITS, BigFive, Persona
from rlli.personas.presets import PersonaError, read_toml

GRID = 12  # the TIPI's half-point steps on 1..7 are twelfths of [0, 1]


@dataclass(frozen=True)
class Norms:
    name: str
    source: str
    mean: tuple[float, ...]  # in [0, 1], in TRAITS order
    sd: tuple[float, ...]


def norm_sets() -> tuple[str, ...]:
    """The names of the shipped norm sets, the default first."""
    data = read_toml("norms.toml")
    names = list(data["sets"])
    default = data.get("default", names[0])
    return (default, *[n for n in names if n != default])


@lru_cache(maxsize=8)
def norms(name: str = "") -> Norms:
    """A named norm set (default: the file's ``default``), means and SDs mapped to [0, 1]."""
    data = read_toml("norms.toml")
    name = name or data.get("default", "")
    if name not in data.get("sets", {}):
        raise PersonaError(f"no norm set called {name!r}; choose one of: {', '.join(norm_sets())}")
    rows = data["sets"][name]
    return Norms(name, rows["source"], tuple((rows[t]["mean"] - 1) / 6 for t in TRAITS),
                 tuple(rows[t]["sd"] / 6 for t in TRAITS))


def percentile(trait: str, value: float, norm_set: str = "") -> float:
    """Where ``value`` (in [0, 1]) of ``trait`` sits among people under the norms, 0..100 (normal model)."""
    nm = norms(norm_set)
    i = TRAITS.index(trait)
    z = (float(value) - nm.mean[i]) / nm.sd[i]
    return 50.0 * (1.0 + math.erf(z / math.sqrt(2.0)))


def percentiles(traits: BigFive, norm_set: str = "") -> dict[str, float]:
    return {t: percentile(t, getattr(traits, t), norm_set) for t in TRAITS}


def sample_profiles(n: int, seed: int = 0, norm_set: str = "") -> list[Persona]:
    """``n`` personas with traits drawn from the norms (same seed, same profiles); names sampled-<seed>-<i>."""
    if not 0 <= n <= 100_000:
        raise ValueError(f"n must be between 0 and 100000, not {n}")
    nm = norms(norm_set)
    rng = np.random.default_rng(seed)
    draws = rng.normal(nm.mean, nm.sd, size=(n, len(TRAITS)))
    draws = np.clip(np.round(draws * GRID) / GRID, 0.0, 1.0)
    return [Persona(name=f"sampled-{seed}-{i}", traits=BigFive(*map(float, row)), instrument="sampled",
                    description="")
            for i, row in enumerate(draws)]
