"""Training on any :class:`~rlli.personas.judge.Judge` (an LLM judge) through a rating table.

Asking an LLM for every user of every training round is far too slow, so ``--judge llm`` first rates
a grid once - each preset persona x relative quality in QUALITY_GRID x waiting time in DELAY_GRID -
stores every rating in a JSON cache (runs/policy/judge-ratings.json, keyed by judge, persona and
cell, so a rerun asks only for what is missing), and training reads QoE from that table: the
nearest preset persona by Big-Five distance, bilinear in quality and log-delay. Cells whose rating
failed (score None) take the parametric trait judge's value, and their number is reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.network.qoe import trait_qoe
from rlli.personas.judge import Delivery, Judge, Persona

QUALITY_GRID = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0])
DELAY_GRID = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])  # seconds
MIN_RATED = 0.5  # the least share of cells the judge must rate for the table to be used


@dataclass
class JudgeTable:
    judge: str  # backend/model
    traits: np.ndarray  # [P, 5]
    scores: np.ndarray  # [P, Q, D], NaN where the judge gave no score

    @property
    def rated(self) -> float:
        return float(np.isfinite(self.scores).mean())

    def qoe(self, traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray) -> np.ndarray:
        t = np.asarray(traits, float)
        nearest = np.argmin(((t[..., None, :] - self.traits) ** 2).sum(-1), axis=-1)
        q = np.clip(np.asarray(quality, float), QUALITY_GRID[0], QUALITY_GRID[-1])
        ld = np.clip(np.log(np.maximum(np.asarray(delay_s, float), 1e-9)), np.log(DELAY_GRID[0]), np.log(DELAY_GRID[-1]))
        qi = np.clip(np.searchsorted(QUALITY_GRID, q, side="right") - 1, 0, len(QUALITY_GRID) - 2)
        di = np.clip(np.searchsorted(np.log(DELAY_GRID), ld, side="right") - 1, 0, len(DELAY_GRID) - 2)
        wq = (q - QUALITY_GRID[qi]) / (QUALITY_GRID[qi + 1] - QUALITY_GRID[qi])
        wd = (ld - np.log(DELAY_GRID[di])) / (np.log(DELAY_GRID[di + 1]) - np.log(DELAY_GRID[di]))
        filled = np.where(np.isfinite(self.scores), self.scores, self._fallback())
        s = filled[nearest]

        def cell(a, b):
            return np.take_along_axis(np.take_along_axis(s, (qi + a)[..., None, None], axis=-2)[..., 0, :],
                                      (di + b)[..., None], axis=-1)[..., 0]

        return ((1 - wq) * (1 - wd) * cell(0, 0) + wq * (1 - wd) * cell(1, 0) + (1 - wq) * wd * cell(0, 1)
                + wq * wd * cell(1, 1))

    def _fallback(self) -> np.ndarray:
        return trait_qoe(self.traits[:, None, None, :], QUALITY_GRID[None, :, None], DELAY_GRID[None, None, :])


def _key(judge: Judge, persona: Persona, q: float, d: float) -> str:
    return f"{judge.backend}/{judge.model}|{persona.name}|{persona.traits.as_tuple()}|q={q:.3f}|d={d:.1f}"


def build_table(judge: Judge, personas: list[Persona], cache_path: str | Path,
                log: Callable[[str], None] = print) -> JudgeTable:
    """Rate every (persona, quality, delay) cell not yet in the cache, save the cache, return the table."""
    if not personas:
        raise ValueError("no personas to rate with")
    path = Path(cache_path)
    cache: dict[str, int | None] = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except json.JSONDecodeError:
            log(f"{path} is not valid JSON: starting a new rating cache")
    scores = np.full((len(personas), len(QUALITY_GRID), len(DELAY_GRID)), np.nan)
    asked = 0
    for i, persona in enumerate(personas):
        for a, q in enumerate(QUALITY_GRID):
            for b, d in enumerate(DELAY_GRID):
                key = _key(judge, persona, float(q), float(d))
                if key not in cache:
                    rating = judge.rate(persona, Delivery(
                        prompt="an image of your choice", quality=float(q), delay_s=float(d),
                        description=f"an image as requested, at {100 * q:.0f}% of the quality of generating it alone"))
                    cache[key] = rating.score
                    asked += 1
                if cache[key] is not None:
                    scores[i, a, b] = float(cache[key])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=0))
        log(f"rated persona {i + 1}/{len(personas)} ({persona.name}); {asked} new ratings")
    table = JudgeTable(f"{judge.backend}/{judge.model}", np.array([p.traits.as_tuple() for p in personas]), scores)
    log(f"judge table: {100 * table.rated:.0f}% of {scores.size} cells rated by {table.judge}")
    return table


def llm_qoe_fn(log: Callable[[str], None] = print):
    """QoE from the persona LLM judge (RLLI_LLM_* settings) over the preset personas, through the table."""
    from rlli.config import ROOT, Settings
    from rlli.personas import get_judge, load_presets

    table = build_table(get_judge("llm", Settings()), load_presets(), ROOT / "runs" / "policy" / "judge-ratings.json",
                        log)
    if table.rated < MIN_RATED:
        raise RuntimeError(f"only {100 * table.rated:.0f}% of the table's cells got a rating (need "
                           f"{100 * MIN_RATED:.0f}%); check the endpoint with `python -m rlli judge`")
    return table.qoe
