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


# The bootstrap evaluates every statistic on each of ~1000 resamples per slice. scipy's spearmanr and
# scikit-learn's cohen_kappa_score spend milliseconds per call on input checks, so the resamples use these
# two short equivalents (Pearson's r of scipy's ranks; the quadratic-weighted kappa from the confusion
# matrix, as scikit-learn computes it). tests/test_agreement.py checks them against the libraries.
_WEIGHTS = (SCORES[:, None] - SCORES[None, :]) ** 2.0


def _spearman_fast(h: np.ndarray, a: np.ndarray) -> float:
    rh, ra = stats.rankdata(h), stats.rankdata(a)
    if rh.std() == 0 or ra.std() == 0:
        return float("nan")
    return float(np.corrcoef(rh, ra)[0, 1])


def _kappa_fast(h: np.ndarray, a: np.ndarray) -> float:
    k = len(SCORES)
    counts = np.bincount((h.astype(int) - 1) * k + (a.astype(int) - 1), minlength=k * k).reshape(k, k)
    expected = np.outer(counts.sum(1), counts.sum(0)) / counts.sum()
    return float(1 - (_WEIGHTS * counts).sum() / (_WEIGHTS * expected).sum())


BOOTSTRAP_FUNCTIONS = {**STATISTIC_FUNCTIONS, "spearman": _spearman_fast, "kappa": _kappa_fast}


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
    people = pairs["human_id"].to_numpy()
    groups = [np.flatnonzero(people == p) for p in pd.unique(people)]
    draws: dict[str, list[float]] = {k: [] for k in STATISTICS}
    if len(groups) >= 2 and len(h) >= 2:
        rng = np.random.default_rng(seed)
        for _ in range(resamples):
            idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
            for k, v in _all_statistics(h[idx], a[idx], BOOTSTRAP_FUNCTIONS).items():
                draws[k].append(v)
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
