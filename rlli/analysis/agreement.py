"""Human-versus-agent agreement on the same images.

Each person's score of a generation is paired with every agent score of that generation: agents that were
given the person's own Big-Five (``pairing='own'``) and preset personas (``pairing='preset'``). For each
slice - per judge backend and model; overall; per persona; per trait level (the person's trait >= 0.5 is
"high") - we report Spearman's rho and Kendall's tau-b (scipy), Cohen's kappa with quadratic weights over
the scores 1..10 (scikit-learn), Krippendorff's alpha at the interval level (krippendorff) and the mean
absolute error, each with a 95% percentile bootstrap interval. The bootstrap resamples people, not single
pairs (a person's ratings are not independent of each other); with fewer than two people in a slice the
interval is left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from rlli.store.models import TRAIT_COLUMNS

SCORES = np.arange(1, 11)
STATISTICS: tuple[str, ...] = ("spearman", "kendall", "kappa", "alpha", "mae")
PAIR_COLUMNS = ("generation_id", "human_id", "human_score", "agent_id", "agent_score", "agent_name", "backend",
                "model", "pairing", *TRAIT_COLUMNS)


def _spearman(h: np.ndarray, a: np.ndarray) -> float:
    return float(stats.spearmanr(h, a).statistic)


def _kendall(h: np.ndarray, a: np.ndarray) -> float:
    return float(stats.kendalltau(h, a).statistic)


def _kappa(h: np.ndarray, a: np.ndarray) -> float:
    return float(cohen_kappa_score(h, a, labels=SCORES, weights="quadratic"))


def _alpha(h: np.ndarray, a: np.ndarray) -> float:
    if np.unique(np.concatenate([h, a])).size < 2:
        return float("nan")  # no variation at all: alpha is undefined
    return float(krippendorff.alpha(reliability_data=np.vstack([h, a]).astype(float),
                                    level_of_measurement="interval"))


def _mae(h: np.ndarray, a: np.ndarray) -> float:
    return float(np.mean(np.abs(h - a)))


STATISTIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "spearman": _spearman, "kendall": _kendall, "kappa": _kappa, "alpha": _alpha, "mae": _mae}


def _all_statistics(h: np.ndarray, a: np.ndarray, functions=None) -> dict[str, float]:
    functions = functions or STATISTIC_FUNCTIONS
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {name: fn(h, a) if len(h) >= 2 else float("nan") for name, fn in functions.items()}


# The bootstrap evaluates every statistic on ~1000 resamples per slice; the library calls cost about a
# millisecond each. Every statistic here is a function of the 10 x 10 table of (human, agent) score counts,
# and a resample of people is a weighted sum of the people's own tables, so the resamples are computed
# all at once from tables, by the same formulas the libraries use (Spearman: Pearson's r of mid-ranks;
# Kendall's tau-b from concordant/discordant pair counts; kappa from observed vs expected weighted
# disagreement; alpha from the coincidence matrix). tests/test_agreement.py checks them against the libraries.
_K = len(SCORES)
_SQUARED = (SCORES[:, None] - SCORES[None, :]).astype(float) ** 2
_ABSOLUTE = np.abs(SCORES[:, None] - SCORES[None, :]).astype(float)


def score_table(h: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Counts of (human score, agent score), a 10 x 10 table."""
    codes = (np.asarray(h, int) - 1) * _K + (np.asarray(a, int) - 1)
    return np.bincount(codes, minlength=_K * _K).reshape(_K, _K).astype(float)


def _midranks(margin: np.ndarray) -> np.ndarray:
    return np.cumsum(margin, axis=-1) - margin + (margin + 1) / 2


def table_statistics(tables: np.ndarray) -> dict[str, np.ndarray]:
    """All statistics for a stack of score tables (..., 10, 10); NaN where undefined."""
    with np.errstate(all="ignore"):
        n = tables.sum((-2, -1))
        rows, cols = tables.sum(-1), tables.sum(-2)
        mae = (tables * _ABSOLUTE).sum((-2, -1)) / n
        expected = rows[..., :, None] * cols[..., None, :] / n[..., None, None]
        kappa = 1 - (tables * _SQUARED).sum((-2, -1)) / (expected * _SQUARED).sum((-2, -1))
        rx, ry = _midranks(rows), _midranks(cols)
        mean = (n + 1) / 2
        dx, dy = rx - mean[..., None], ry - mean[..., None]
        cov = (tables * dx[..., :, None] * dy[..., None, :]).sum((-2, -1))
        spearman = cov / np.sqrt((rows * dx**2).sum(-1) * (cols * dy**2).sum(-1))
        # pairs concordant / discordant with each cell: counts strictly below-right / below-left of it
        below = np.flip(np.cumsum(np.flip(tables, -2), -2), -2)
        below = np.concatenate([below[..., 1:, :], np.zeros_like(below[..., :1, :])], -2)  # rows i' > i
        right = np.flip(np.cumsum(np.flip(below, -1), -1), -1)
        right = np.concatenate([right[..., :, 1:], np.zeros_like(right[..., :, :1])], -1)  # and cols j' > j
        left = np.cumsum(below, -1)
        left = np.concatenate([np.zeros_like(left[..., :, :1]), left[..., :, :-1]], -1)  # and cols j' < j
        concordant, discordant = (tables * right).sum((-2, -1)), (tables * left).sum((-2, -1))
        n0 = n * (n - 1) / 2
        tx, ty = (rows * (rows - 1) / 2).sum(-1), (cols * (cols - 1) / 2).sum(-1)
        kendall = (concordant - discordant) / np.sqrt((n0 - tx) * (n0 - ty))
        coincidence = tables + np.swapaxes(tables, -1, -2)
        values = coincidence.sum(-1)
        total = 2 * n
        alpha = 1 - (total - 1) * (coincidence * _SQUARED).sum((-2, -1)) / (
            (values[..., :, None] * values[..., None, :]) * _SQUARED).sum((-2, -1))
    out = {"spearman": spearman, "kendall": kendall, "kappa": kappa, "alpha": alpha, "mae": mae}
    return {k: np.where(np.isfinite(v) & (n >= 2), v, np.nan) for k, v in out.items()}


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None = None
    high: float | None = None

    def text(self) -> str:
        if self.value is None:
            return "-"
        ci = "" if self.low is None else f" [{self.low:.2f}, {self.high:.2f}]"
        return f"{self.value:.2f}{ci}"


@dataclass(frozen=True)
class AgreementRow:
    """Agreement of one slice of the pairs, e.g. backend=llm model=x, pairing=own, trait=openness level=high."""

    backend: str
    model: str
    slice: str  # "overall", "persona", "trait"
    pairing: str  # "own", "preset", "all"
    label: str  # persona name, "openness high", or "all"
    n_pairs: int
    n_humans: int
    statistics: dict[str, Estimate] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["statistics"] = {k: asdict(v) for k, v in self.statistics.items()}
        return d


def pair_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """Human/agent score pairs on the same generation (columns ``PAIR_COLUMNS``; traits are the person's).

    Only valid scores take part (status ok). An agent that was given another person's profile is not
    paired with this person.
    """
    ok = frame[frame["status"] == "ok"]
    humans = ok[ok["rater_kind"] == "human"][["generation_id", "rater_id", "score", *TRAIT_COLUMNS]]
    humans = humans.rename(columns={"rater_id": "human_id", "score": "human_score"})
    agents = ok[ok["rater_kind"] == "agent"][["generation_id", "rater_id", "score", "rater_name", "backend", "model",
                                              "mirrors_id"]]
    agents = agents.rename(columns={"rater_id": "agent_id", "score": "agent_score", "rater_name": "agent_name"})
    pairs = humans.merge(agents, on="generation_id")
    own = pairs["mirrors_id"] == pairs["human_id"]
    preset = pairs["mirrors_id"].isna()
    pairs = pairs[own | preset].assign(pairing=np.where(own[own | preset], "own", "preset"))
    pairs = pairs.astype({"human_score": int, "agent_score": int})
    return pairs[list(PAIR_COLUMNS)].reset_index(drop=True)


def estimate(pairs: pd.DataFrame, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Estimate]:
    """All statistics of these pairs, each with a percentile bootstrap interval over resampled people."""
    h, a = pairs["human_score"].to_numpy(float), pairs["agent_score"].to_numpy(float)
    point = _all_statistics(h, a)
    people, person = np.unique(pairs["human_id"].to_numpy(), return_inverse=True)
    draws: dict[str, np.ndarray] = {k: np.array([]) for k in STATISTICS}
    if len(people) >= 2 and len(h) >= 2:
        own_tables = np.stack([score_table(h[person == p], a[person == p]) for p in range(len(people))])
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(people), (resamples, len(people)))
        weights = np.zeros((resamples, len(people)))
        np.add.at(weights, (np.arange(resamples)[:, None], picks), 1)
        draws = table_statistics(np.einsum("bp,pij->bij", weights, own_tables))
    tail = 100 * (1 - confidence) / 2
    out = {}
    for k in STATISTICS:
        value = None if not np.isfinite(point[k]) else round(point[k], 4)
        d = np.asarray(draws[k])
        d = d[np.isfinite(d)]
        if value is None or len(d) < resamples / 2:  # too many undefined resamples for an honest interval
            out[k] = Estimate(value)
        else:
            lo, hi = np.percentile(d, [tail, 100 - tail])
            out[k] = Estimate(value, round(float(lo), 4), round(float(hi), 4))
    return out


def _row(pairs: pd.DataFrame, backend: str, model: str, slice_: str, pairing: str, label: str, resamples: int,
         seed: int) -> AgreementRow:
    return AgreementRow(backend, model, slice_, pairing, label, len(pairs), pairs["human_id"].nunique(),
                        estimate(pairs, resamples, seed))


def agreement_table(frame: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> list[AgreementRow]:
    """Agreement per judge (backend, model): overall (own profile, presets), per persona, per trait level.

    Trait levels use the pairs where the agent had the person's own profile (so the level describes both)."""
    pairs = pair_ratings(frame)
    rows: list[AgreementRow] = []
    for (backend, model), judge in pairs.groupby(["backend", "model"], sort=True):
        for pairing in ("own", "preset"):
            part = judge[judge["pairing"] == pairing]
            if len(part):
                rows.append(_row(part, backend, model, "overall", pairing, "all", resamples, seed))
        for name, part in judge[judge["pairing"] == "preset"].groupby("agent_name", sort=True):
            rows.append(_row(part, backend, model, "persona", "preset", str(name), resamples, seed))
        own = judge[judge["pairing"] == "own"]
        for trait in TRAIT_COLUMNS:
            known = own[own[trait].notna()]
            for level, part in (("high", known[known[trait] >= 0.5]), ("low", known[known[trait] < 0.5])):
                if len(part):
                    rows.append(_row(part, backend, model, "trait", "own", f"{trait} {level}", resamples, seed))
    return rows


def format_table(rows: list[AgreementRow]) -> str:
    """The table as fixed-width text (value [95% interval] per statistic)."""
    if not rows:
        return "no human ratings paired with agent ratings yet (rate some images, then run `python -m rlli rejudge`)"
    head = f"{'judge':28s} {'slice':8s} {'pairing':7s} {'label':24s} {'pairs':>5s} {'people':>6s}  " + "  ".join(
        f"{s:>20s}" for s in STATISTICS)
    lines = [head, "-" * len(head)]
    for r in rows:
        judge = f"{r.backend}/{r.model}"[:28]
        lines.append(f"{judge:28s} {r.slice:8s} {r.pairing:7s} {r.label[:24]:24s} {r.n_pairs:5d} {r.n_humans:6d}  "
                     + "  ".join(f"{r.statistics[s].text():>20s}" for s in STATISTICS))
    return "\n".join(lines)
