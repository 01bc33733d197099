"""A learned reward model: QoE as a judge rates it, fitted on a budget of judge queries.

Asking an LLM judge for every user of every training round is far too slow (seconds per rating on a CPU),
so the -LI arm asks it a budget of N queries - (Big-Five traits, relative quality, delay) -> score -
and trains on a regressor fitted to those answers. The regressor is scikit-learn's
``HistGradientBoostingRegressor`` over (O, C, E, A, N, quality, log delay) with monotone constraints: QoE may
not fall as quality rises, nor rise as the wait grows (the traits are unconstrained).

Scale: a judge's score is on the :class:`~rlli.personas.judge.Rating` scale 1..10 (or, where the endpoint
returns token probabilities, the expected score on the same 1..10 scale); the parametric judge's
:func:`rlli.network.qoe.trait_qoe` is QoE = 1 + 9 S in [1, 10]. The map between them is explicit
(:data:`SCORE_RANGE` -> :data:`QOE_RANGE`, affine; the identity while both are 1..10), and predictions are
clipped to :data:`QOE_RANGE`, so a reward model drops into ``evaluate(..., qoe_fn=model.qoe)`` where the trait
judge's QoE was.

Saved as JSON, never pickle: the file holds the queries, the hyperparameters and a fingerprint (predictions on
fixed probe points); :meth:`RewardModel.load` refits (deterministic, well under a second for hundreds of
queries) and refuses a file whose fingerprint it does not reproduce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

FORMAT = "rlli-reward-model/1"
SCORE_RANGE = (1.0, 10.0)  # a judge's Rating scale (score or expected score)
QOE_RANGE = (1.0, 10.0)  # rlli.network.qoe.trait_qoe: 1 + 9 S, S in [0, 1]
MIN_DELAY_S = 1e-3  # delays are modelled in log seconds
FEATURES = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism", "quality", "log_delay_s")
MONOTONE = (0, 0, 0, 0, 0, 1, -1)  # QoE does not fall with quality, does not rise with delay
DEFAULT_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 8, "min_samples_leaf": 5,
                  "l2_regularization": 1.0, "early_stopping": False, "random_state": 0}
HOLDOUT = 0.25  # share of the queries held out for the fit figures
FINGERPRINT_TOL = 1e-6


def score_to_qoe(score: np.ndarray) -> np.ndarray:
    """The judge's 1..10 scale onto the QoE scale of ``trait_qoe`` (affine; both 1..10 today)."""
    s = np.asarray(score, dtype=float)
    (a, b), (c, d) = SCORE_RANGE, QOE_RANGE
    return c + (s - a) * (d - c) / (b - a)


def features(traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(X [M, 7], broadcast shape) from ``traits`` [..., 5], ``quality`` [...], ``delay_s`` [...]."""
    t = np.asarray(traits, dtype=float)
    if t.shape[-1:] != (5,):
        raise ValueError(f"traits must end in 5 Big-Five values, got shape {t.shape}")
    q, d = np.asarray(quality, dtype=float), np.asarray(delay_s, dtype=float)
    shape = np.broadcast_shapes(t.shape[:-1], q.shape, d.shape)
    t = np.broadcast_to(t, (*shape, 5)).reshape(-1, 5)
    q = np.broadcast_to(q, shape).reshape(-1, 1)
    ld = np.log(np.maximum(np.broadcast_to(d, shape), MIN_DELAY_S)).reshape(-1, 1)
    return np.concatenate([t, q, ld], axis=1), shape


def fit_figures(y_true: np.ndarray, y_pred: np.ndarray, baseline: float) -> dict:
    """R^2, MAE, Spearman of predictions on held-out queries, with the MAE of predicting ``baseline`` (the
    training mean) for scale."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss = float(((y - y.mean()) ** 2).sum())
    rho = stats.spearmanr(y, p).statistic if len(y) > 2 and np.ptp(y) > 0 and np.ptp(p) > 0 else float("nan")
    return {"n": int(len(y)), "r2": 1.0 - float(((y - p) ** 2).sum()) / ss if ss > 0 else float("nan"),
            "mae": float(np.abs(y - p).mean()), "mae_constant": float(np.abs(y - baseline).mean()),
            "spearman": float(rho)}


def _probe_points(n: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed points where a saved model's predictions are recorded (the fingerprint a load must reproduce)."""
    rng = np.random.default_rng(12345)
    return rng.uniform(0, 1, (n, 5)), rng.uniform(0.5, 1.0, n), np.exp(rng.uniform(0.0, np.log(60.0), n))


@dataclass
class RewardModel:
    """QoE as a judge rates it: ``.qoe(traits, quality, delay_s)`` -> [...] on the trait judge's 1..10 scale."""

    traits: np.ndarray  # [N, 5] the queries the model was fitted on
    quality: np.ndarray  # [N]
    delay_s: np.ndarray  # [N]
    score: np.ndarray  # [N] the judge's answers, on SCORE_RANGE
    judge: str = ""  # backend/model of the judge asked
    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    figures: dict = field(default_factory=dict)  # held-out fit figures (filled by fit)
    info: dict = field(default_factory=dict)  # anything the caller records (design, failed queries, ...)

    def __post_init__(self) -> None:
        # rounded as the JSON file stores them, so a loaded model refits on exactly the same numbers
        self.traits = np.asarray(self.traits, float).reshape(-1, 5).round(6)
        self.quality = np.asarray(self.quality, float).ravel().round(6)
        self.delay_s = np.asarray(self.delay_s, float).ravel().round(6)
        self.score = np.asarray(self.score, float).ravel().round(6)
        n = len(self.traits)
        if not (len(self.quality) == len(self.delay_s) == len(self.score) == n):
            raise ValueError(f"traits, quality, delay_s and score need one entry per query ({n}, {len(self.quality)}, "
                             f"{len(self.delay_s)}, {len(self.score)})")
        if n < 2:
            raise ValueError(f"a reward model needs at least 2 answered queries, got {n}")
        finite = np.isfinite(self.traits).all(1) & np.isfinite(self.quality) & np.isfinite(self.delay_s) & \
            np.isfinite(self.score)
        if not finite.all():
            raise ValueError(f"{int((~finite).sum())} queries have a missing or non-finite value (drop unanswered ones)")
        lo, hi = SCORE_RANGE
        if (self.score < lo).any() or (self.score > hi).any():
            raise ValueError(f"scores must lie in {lo:g}..{hi:g}")
        self._model = self._regressor().fit(*self._xy(np.arange(n)))

    # ---- fitting
    def _regressor(self):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(monotonic_cst=list(MONOTONE), **self.params)

    def _xy(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, _ = features(self.traits[idx], self.quality[idx], self.delay_s[idx])
        return x, score_to_qoe(self.score[idx])

    @classmethod
    def fit(cls, traits, quality, delay_s, score, judge: str = "", params: dict | None = None, seed: int = 0,
            holdout: float = HOLDOUT, info: dict | None = None) -> RewardModel:
        """Fit on the answered queries; the held-out figures come from a fit on (1 - holdout) of them scored on the
        rest (a seeded split), the returned model is refitted on all of them."""
        model = cls(traits, quality, delay_s, score, judge, {**DEFAULT_PARAMS, **(params or {})}, {}, dict(info or {}))
        n = len(model.score)
        n_test = int(round(holdout * n))
        if n_test >= 2 and n - n_test >= 2:
            perm = np.random.default_rng(seed).permutation(n)
            test, train = perm[:n_test], perm[n_test:]
            part = model._regressor().fit(*model._xy(train))
            x, y = model._xy(test)
            model.figures = {"holdout": fit_figures(y, np.clip(part.predict(x), *QOE_RANGE),
                                                    float(model._xy(train)[1].mean())),
                             "split_seed": seed, "train": int(len(train))}
        else:
            model.figures = {"holdout": None, "note": f"too few queries ({n}) for a held-out split"}
        return model

    # ---- the QoeFn
    def qoe(self, traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray) -> np.ndarray:
        """QoE in QOE_RANGE for arrays of personas and deliveries (``rlli.network.allocation.QoeFn``)."""
        x, shape = features(traits, quality, delay_s)
        if not len(x):
            return np.zeros(shape)
        return np.clip(self._model.predict(x), *QOE_RANGE).reshape(shape)

    __call__ = qoe

    def describe(self, traits: np.ndarray, quality: np.ndarray, delay_s: np.ndarray, reference=None) -> dict:
        """How the model behaves on given points (e.g. users of training rounds): the spread of its QoE, and with a
        ``reference`` QoeFn (the trait judge) the Spearman and mean absolute difference between the two."""
        y = self.qoe(traits, quality, delay_s).ravel()
        out = {"points": int(y.size), "mean": float(y.mean()), "std": float(y.std()),
               "p05": float(np.percentile(y, 5)), "p95": float(np.percentile(y, 95))}
        if reference is not None:
            r = np.asarray(reference(traits, quality, delay_s), float).ravel()
            out.update(reference_std=float(r.std()), mae_vs_reference=float(np.abs(y - r).mean()),
                       spearman_vs_reference=float(stats.spearmanr(y, r).statistic)
                       if np.ptp(y) > 0 and np.ptp(r) > 0 else float("nan"))
        return out

    # ---- persistence (JSON: the queries + hyperparameters + a fingerprint; no pickle)
    def _fingerprint(self) -> list[float]:
        return [round(float(v), 9) for v in self.qoe(*_probe_points())]

    def as_dict(self) -> dict:
        import sklearn

        return {"format": FORMAT, "judge": self.judge, "regressor": "sklearn.ensemble.HistGradientBoostingRegressor",
                "sklearn": sklearn.__version__, "features": list(FEATURES), "monotone": list(MONOTONE),
                "params": self.params, "score_range": list(SCORE_RANGE), "qoe_range": list(QOE_RANGE),
                "figures": self.figures, "info": self.info, "fingerprint": self._fingerprint(),
                "queries": {"traits": self.traits.tolist(), "quality": self.quality.tolist(),
                            "delay_s": self.delay_s.tolist(), "score": self.score.tolist()}}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RewardModel:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read the reward model {path}: {e}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a reward model ({FORMAT})")
        q = d["queries"]
        model = cls(q["traits"], q["quality"], q["delay_s"], q["score"], d.get("judge", ""), d["params"],
                    d.get("figures", {}), d.get("info", {}))
        diff = np.abs(np.asarray(model._fingerprint()) - np.asarray(d["fingerprint"], float))
        if diff.size != 64 or diff.max() > FINGERPRINT_TOL:
            raise ValueError(f"{path}: refitting does not reproduce the saved predictions (largest difference "
                             f"{diff.max() if diff.size else float('nan'):.3g}; saved with scikit-learn "
                             f"{d.get('sklearn')}): refit it with `train policy --judge ...`")
        return model
