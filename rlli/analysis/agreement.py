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

import math
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
    n_failed: int = 0
    shuffled_control: dict | None = None
    within_image: dict | None = None
    human_human: dict | None = None
    agent_human_same_images: dict | None = None
    people_needed: dict | None = None
    drop_k: dict | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["statistics"] = {k: asdict(v) for k, v in self.statistics.items()}
        return d


def _pairs(frame: pd.DataFrame, ok: bool) -> pd.DataFrame:
    """Human (ok) x agent (ok, or failed when ``ok`` is False) ratings of the same generation, with the pairing."""
    rated = frame[frame["status"] == "ok"]
    humans = rated[rated["rater_kind"] == "human"][["generation_id", "rater_id", "score", *TRAIT_COLUMNS]]
    humans = humans.rename(columns={"rater_id": "human_id", "score": "human_score"})
    agent_rows = frame[(frame["rater_kind"] == "agent") & ((frame["status"] == "ok") == ok)]
    agents = agent_rows[["generation_id", "rater_id", "score", "rater_name", "backend", "model", "mirrors_id"]]
    agents = agents.rename(columns={"rater_id": "agent_id", "score": "agent_score", "rater_name": "agent_name"})
    pairs = humans.merge(agents, on="generation_id")
    own = pairs["mirrors_id"] == pairs["human_id"]
    preset = pairs["mirrors_id"].isna()
    pairs = pairs.assign(pairing=np.where(own, "own", np.where(preset, "preset", "shuffled")))
    if ok:
        pairs = pairs.astype({"human_score": int, "agent_score": int})
    return pairs[list(PAIR_COLUMNS)].reset_index(drop=True)


def pair_ratings(frame: pd.DataFrame, shuffled: bool = False) -> pd.DataFrame:
    """Human/agent score pairs on the same generation (columns ``PAIR_COLUMNS``; traits are the person's).

    Only valid scores take part (status ok). An agent that was given another person's profile is paired with
    this person only when ``shuffled`` is asked for (``pairing='shuffled'``: the shuffled-profile control).
    """
    pairs = _pairs(frame, ok=True)
    return pairs if shuffled else pairs[pairs["pairing"] != "shuffled"].reset_index(drop=True)


def failed_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Agent ratings that failed where they would have paired with a person's rating (same columns)."""
    return _pairs(frame, ok=False)


def human_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Every ordered pair of two different people's valid ratings of the same generation
    (columns generation_id, human_id, other_id, human_score, other_score)."""
    ok = frame[(frame["status"] == "ok") & (frame["rater_kind"] == "human")]
    h = ok[["generation_id", "rater_id", "score"]].rename(columns={"rater_id": "human_id", "score": "human_score"})
    o = h.rename(columns={"human_id": "other_id", "human_score": "other_score"})
    pairs = h.merge(o, on="generation_id")
    pairs = pairs[pairs["human_id"] != pairs["other_id"]]
    return pairs.astype({"human_score": int, "other_score": int}).reset_index(drop=True)


def shuffle_partners(people: list[str], seed: int = 0) -> dict[str, str]:
    """A derangement of ``people``: whose profile each person's shuffled-control agent is given (never their own).

    The rejudge job rates each person's images once more with the partner's traits (``mirrors_id`` = the
    partner), which is what ``pairing='shuffled'`` reads. Fewer than two people: no partners."""
    people = sorted(set(people))
    if len(people) < 2:
        return {}
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(people)))
    return {people[order[i]]: people[order[(i + 1) % len(order)]] for i in range(len(order))}


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


def _estimates(pairs: pd.DataFrame, resamples: int, seed: int) -> dict:
    return {"n_pairs": len(pairs), "n_humans": int(pairs["human_id"].nunique()),
            "statistics": {k: asdict(v) for k, v in estimate(pairs, resamples, seed).items()}}


def human_human_estimate(pairs: pd.DataFrame, resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Agreement between two people on the same images, every statistic with a bootstrap over people (a pair of
    people counts as often as both are drawn: weight w_i * w_j)."""
    if pairs.empty:
        return {"n_pairs": 0, "n_images": 0, "n_humans": 0, "statistics": {}}
    h, o = pairs["human_score"].to_numpy(float), pairs["other_score"].to_numpy(float)
    point = _all_statistics(h, o)
    people, idx = np.unique(np.concatenate([pairs["human_id"].to_numpy(), pairs["other_id"].to_numpy()]),
                            return_inverse=True)
    a_idx, b_idx = idx[: len(pairs)], idx[len(pairs):]
    tables = np.stack([score_table(h[k:k + 1], o[k:k + 1]) for k in range(len(pairs))])
    draws = {k: np.array([]) for k in STATISTICS}
    if len(people) >= 3:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(people), (resamples, len(people)))
        w = np.zeros((resamples, len(people)))
        np.add.at(w, (np.arange(resamples)[:, None], picks), 1)
        draws = table_statistics(np.einsum("bp,pij->bij", w[:, a_idx] * w[:, b_idx], tables))
    tail = 100 * (1 - confidence) / 2
    stats_out = {}
    for k in STATISTICS:
        value = None if not np.isfinite(point[k]) else round(point[k], 4)
        d = np.asarray(draws[k])
        d = d[np.isfinite(d)]
        if value is None or len(d) < resamples / 2:
            stats_out[k] = asdict(Estimate(value))
        else:
            lo, hi = np.percentile(d, [tail, 100 - tail])
            stats_out[k] = asdict(Estimate(value, round(float(lo), 4), round(float(hi), 4)))
    return {"n_pairs": len(pairs) // 2, "n_images": int(pairs["generation_id"].nunique()), "n_humans": len(people),
            "statistics": stats_out, "note": "each pair of people counted once per image (both orders)"}


def within_image(pairs: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict | None:
    """Does the agent order the people who rated one image the way their own scores do? Over every image with two
    or more people: (concordant - discordant) / (concordant + discordant) pairs of people (pairs tied on either
    side left out), with a bootstrap over images. None when no image has two people."""
    per_image = []
    for _, g in pairs.groupby("generation_id"):
        if g["human_id"].nunique() < 2:
            continue
        h, a = g["human_score"].to_numpy(float), g["agent_score"].to_numpy(float)
        dh, da = np.sign(h[:, None] - h[None, :]), np.sign(a[:, None] - a[None, :])
        upper = np.triu(np.ones_like(dh, dtype=bool), 1)
        prod = (dh * da)[upper]
        per_image.append(((prod > 0).sum(), (prod < 0).sum(), int(upper.sum())))
    if not per_image:
        return None
    c = np.array(per_image, float)
    tau = lambda x: (x[..., 0] - x[..., 1]) / (x[..., 0] + x[..., 1])  # noqa: E731
    with np.errstate(all="ignore"):
        value = float(tau(c.sum(0)))
        out = {"images": len(c), "pairs_of_people": int(c[:, 2].sum()), "untied_pairs": int(c[:, :2].sum()),
               "tau": None if not np.isfinite(value) else round(value, 4), "low": None, "high": None}
        if len(c) >= 2 and out["tau"] is not None:
            rng = np.random.default_rng(seed)
            picks = rng.integers(0, len(c), (resamples, len(c)))
            d = tau(c[picks].sum(1))
            d = d[np.isfinite(d)]
            if len(d) >= resamples / 2:
                out["low"], out["high"] = (round(float(v), 4) for v in np.percentile(d, [2.5, 97.5]))
    return out


def people_needed(own: float | None, shuffled: float | None, n_pairs: int, n_people: int,
                  alpha: float = 0.05, power: float = 0.8) -> dict | None:
    """People needed to detect own-minus-shuffled Spearman rho (Fisher z, two independent correlations of n pairs
    each: n = 3 + 2 ((z_a + z_b) / (atanh r1 - atanh r2))^2), turned into people at the observed pairs per person."""
    from scipy.stats import norm

    if own is None or shuffled is None or n_people < 1:
        return None
    d = abs(math.atanh(max(-0.999, min(0.999, own))) - math.atanh(max(-0.999, min(0.999, shuffled))))
    per_person = n_pairs / n_people
    if d < 1e-9:
        return {"people": None, "pairs": None, "effect_z": 0.0, "note": "no difference observed: no study size detects it"}
    n = 3 + 2 * ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / d) ** 2
    return {"people": int(math.ceil(n / per_person)), "pairs": int(math.ceil(n)), "effect_z": round(d, 4),
            "pairs_per_person": round(per_person, 2), "alpha": alpha, "power": power,
            "note": "Fisher z, pairs treated as independent (an approximation: a person's ratings are correlated)"}


def drop_k(own: pd.DataFrame, shuffled: pd.DataFrame) -> dict | None:
    """The fewest people whose removal makes own-profile agents no better (Spearman) than the shuffled control."""
    people = sorted(set(own["human_id"]) & set(shuffled["human_id"]))
    if len(people) < 2:
        return None

    def tables(pairs: pd.DataFrame) -> np.ndarray:
        return np.stack([score_table(pairs.loc[pairs["human_id"] == p, "human_score"],
                                     pairs.loc[pairs["human_id"] == p, "agent_score"]) for p in people])

    t_own, t_shuf = tables(own), tables(shuffled)
    keep = np.ones(len(people), bool)

    def gap(mask: np.ndarray) -> np.ndarray:  # for each candidate mask row: own rho - shuffled rho
        a = table_statistics(np.einsum("mp,pij->mij", mask.astype(float), t_own))["spearman"]
        b = table_statistics(np.einsum("mp,pij->mij", mask.astype(float), t_shuf))["spearman"]
        return np.where(np.isfinite(a) & np.isfinite(b), a - b, -np.inf)

    start = float(gap(keep[None])[0])
    if not start > 0:
        return {"k": 0, "people": len(people), "flips": True, "start_gap": None if not np.isfinite(start) else round(start, 4),
                "note": "own-profile agents do not beat the shuffled control to begin with"}
    for k in range(1, len(people) - 1):
        candidates = np.repeat(keep[None], len(people), 0)
        candidates[np.arange(len(people)), np.arange(len(people))] = False
        g = gap(candidates)
        g[~keep] = np.inf  # already removed
        best = int(np.argmin(g))
        keep[best] = False
        if g[best] <= 0:
            return {"k": k, "people": len(people), "flips": True, "start_gap": round(start, 4)}
    return {"k": None, "people": len(people), "flips": False, "start_gap": round(start, 4),
            "note": "no removal that leaves two people flips the result"}


def _row(pairs: pd.DataFrame, backend: str, model: str, slice_: str, pairing: str, label: str, resamples: int,
         seed: int, *, failed: pd.DataFrame | None = None, shuffled: pd.DataFrame | None = None,
         humans: pd.DataFrame | None = None) -> AgreementRow:
    stats_ = estimate(pairs, resamples, seed)
    extra: dict = {"n_failed": 0 if failed is None else len(failed)}
    if shuffled is not None:
        mine = shuffled[shuffled["human_id"].isin(set(pairs["human_id"]))]
        if len(mine):
            control = _estimates(mine, resamples, seed)
            rho_s = control["statistics"]["spearman"]["value"]
            rho_o = stats_["spearman"].value
            control["own_minus_shuffled_spearman"] = None if rho_o is None or rho_s is None else round(rho_o - rho_s, 4)
            extra["shuffled_control"] = control
            extra["people_needed"] = people_needed(rho_o, rho_s, len(pairs), pairs["human_id"].nunique())
            extra["drop_k"] = drop_k(pairs, mine)
        extra["within_image"] = within_image(pairs, resamples, seed)
    if humans is not None and len(humans):
        same = humans[humans["generation_id"].isin(set(pairs["generation_id"]))
                      & humans["human_id"].isin(set(pairs["human_id"]))]
        if len(same):
            extra["human_human"] = human_human_estimate(same, resamples, seed)
            extra["agent_human_same_images"] = _estimates(pairs[pairs["generation_id"].isin(set(same["generation_id"]))],
                                                          resamples, seed)
    return AgreementRow(backend, model, slice_, pairing, label, len(pairs), pairs["human_id"].nunique(), stats_, **extra)


def agreement_table(frame: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> list[AgreementRow]:
    """Agreement per judge (backend, model): overall (own profile, presets), per persona, per trait level, each with
    its failed ratings, and (where the data allow) the shuffled-profile control, within-image agreement, the
    human-human ceiling on the same images, people needed and drop-k.

    Trait levels use the pairs where the agent had the person's own profile (so the level describes both), split
    at the median of the people's trait (high = at or above it)."""
    everything = pair_ratings(frame, shuffled=True)
    failed = failed_pairs(frame)
    humans = human_pairs(frame)
    rows: list[AgreementRow] = []
    for (backend, model), judge in everything.groupby(["backend", "model"], sort=True):
        fails = failed[(failed["backend"] == backend) & (failed["model"] == model)]
        shuffled = judge[judge["pairing"] == "shuffled"]
        for pairing in ("own", "preset"):
            part = judge[judge["pairing"] == pairing]
            if len(part):
                rows.append(_row(part, backend, model, "overall", pairing, "all", resamples, seed,
                                 failed=fails[fails["pairing"] == pairing], humans=humans,
                                 shuffled=shuffled if pairing == "own" else None))
        presets = judge[judge["pairing"] == "preset"]
        for name, part in presets.groupby("agent_name", sort=True):
            rows.append(_row(part, backend, model, "persona", "preset", str(name), resamples, seed,
                             failed=fails[(fails["pairing"] == "preset") & (fails["agent_name"] == name)], humans=humans))
        own = judge[judge["pairing"] == "own"]
        own_fails = fails[fails["pairing"] == "own"]
        for trait in TRAIT_COLUMNS:
            known = own[own[trait].notna()]
            if known.empty:
                continue
            # split at the people's median, not at 0.5 (the middle of the scale is not the average person)
            cut = float(known.drop_duplicates("human_id")[trait].median())
            for level, part in (("high", known[known[trait] >= cut]), ("low", known[known[trait] < cut])):
                if len(part):
                    f = own_fails[own_fails[trait].notna() & ((own_fails[trait] >= cut) == (level == "high"))]
                    rows.append(_row(part, backend, model, "trait", "own", f"{trait} {level}", resamples, seed,
                                     failed=f, shuffled=shuffled, humans=humans))
    return rows


def format_table(rows: list[AgreementRow]) -> str:
    """The table as fixed-width text (value [95% interval] per statistic)."""
    if not rows:
        return "no human ratings paired with agent ratings yet (rate some images, then run `python -m rlli rejudge`)"
    head = f"{'judge':28s} {'slice':8s} {'pairing':7s} {'label':24s} {'pairs':>5s} {'people':>6s} {'failed':>6s}  " + \
        "  ".join(f"{s:>20s}" for s in STATISTICS) + f"  {'shuffled rho':>20s}  {'human-human rho':>20s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        judge = f"{r.backend}/{r.model}"[:28]
        shuffled = Estimate(**r.shuffled_control["statistics"]["spearman"]).text() if r.shuffled_control else "-"
        hh = Estimate(**r.human_human["statistics"]["spearman"]).text() if r.human_human else "-"
        lines.append(f"{judge:28s} {r.slice:8s} {r.pairing:7s} {r.label[:24]:24s} {r.n_pairs:5d} {r.n_humans:6d} "
                     f"{r.n_failed:6d}  " + "  ".join(f"{r.statistics[s].text():>20s}" for s in STATISTICS)
                     + f"  {shuffled:>20s}  {hh:>20s}")
    own = next((r for r in rows if r.slice == "overall" and r.pairing == "own"), None)
    if own is not None:
        if own.people_needed and own.people_needed.get("people"):
            lines.append(f"people needed to detect the own-vs-shuffled difference in rho (power 0.8, 5%): "
                         f"{own.people_needed['people']} ({own.people_needed['note']})")
        if own.drop_k:
            k = own.drop_k["k"]
            lines.append("drop-k: " + (own.drop_k.get("note") or (f"removing {k} of {own.drop_k['people']} people makes "
                                                                   "own-profile agents no better than the shuffled control"
                                                                   if k else "no removal flips the result")))
        if own.within_image:
            w = own.within_image
            lines.append(f"within-image agreement (own profile): tau {w['tau']} [{w['low']}, {w['high']}] over "
                         f"{w['images']} images rated by two or more people")
    return "\n".join(lines)
