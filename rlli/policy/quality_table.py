"""The legacy similarity x shared-fraction quality table (``assets/calibration.json``, ``RLLI_CALIBRATION``).

Only the policy's training rounds read it (:mod:`rlli.policy.forks`); live rounds use the fork rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.config import SettingsError

SIM_EDGES = (-1.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0001)


def monotone(rows: list[list[float] | None]) -> list[list[float] | None]:
    """Impose the two shapes quality must have on noisy bin means: it does not rise as more steps are shared
    (isotonic regression along the fractions, first point fixed at 1), and a more similar bin is at least as
    good as a less similar one at every fraction (running maximum across measured bins, low to high)."""
    from sklearn.isotonic import IsotonicRegression

    out: list[list[float] | None] = []
    below = None
    for row in rows:
        if row is None:
            out.append(None)
            continue
        x = np.arange(len(row))
        weights = np.ones(len(row))
        weights[0] = 1e6  # no sharing is the reference: quality 1 by definition
        r = IsotonicRegression(increasing=False).fit_transform(x, np.array(row, float), sample_weight=weights)
        if below is not None:
            r = np.maximum(r, below)
        below = r
        out.append([round(float(v), 4) for v in r])
    return out


@dataclass
class QualityTable:
    sim_edges: list[float]
    fractions: list[float]
    quality: list[list[float | None]]  # [similarity bin][fraction] relative quality, None where unmeasured
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> QualityTable:
        d = json.loads(Path(path).read_text())
        return cls(d["sim_edges"], d["fractions"], d["quality"], d)

    def _row(self, similarity: float) -> np.ndarray:
        b = int(np.clip(np.searchsorted(self.sim_edges, similarity, side="right") - 1, 0, len(self.quality) - 1))
        # an unmeasured bin borrows the nearest measured bin below it (more conservative); none: no sharing
        for j in range(b, -1, -1):
            row = self.quality[j]
            if all(v is not None for v in row):
                return np.array(row, float)
        return np.array([1.0] + [0.0] * (len(self.fractions) - 1))

    def quality_at(self, similarity: float, fraction: float) -> float:
        """Relative quality (1 = as good as unshared) for a member at this similarity and fraction."""
        return float(np.interp(fraction, self.fractions, self._row(similarity)))

    def max_fraction(self, similarity: float, tolerance: float) -> float:
        """Largest measured shared fraction whose quality, and every smaller one's, stays within tolerance."""
        row, best = self._row(similarity), 0.0
        for f, q in zip(self.fractions, row):
            if q < 1.0 - tolerance:
                break
            best = f
        return best


def load_table(path: str | Path, backbone: str | None = None, scheduler: str | None = None) -> QualityTable | None:
    """The table at ``path``; None if missing or measured on another backbone or scheduler.

    A file that is not such a table raises :class:`~rlli.config.SettingsError` naming it.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        table = QualityTable.load(p)
        if not isinstance(table.meta.get("measured_with", {}), dict):
            raise TypeError("measured_with is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SettingsError(f"RLLI_CALIBRATION: {p.name} is not a quality table ({type(e).__name__}); rebuild it "
                            "or point RLLI_CALIBRATION at a good file") from None
    measured = table.meta.get("measured_with", {})
    if backbone is not None and measured.get("backbone") not in (None, backbone):
        return None
    if scheduler is not None and measured.get("scheduler") not in (None, scheduler):
        return None
    return table
