"""Off-policy evaluation on the store's logged rounds: what would a candidate policy have earned on the rounds the
app actually served, judged by the ratings people and agents gave?

Every round the app allocates logs (``rlli.policy.api.PolicyLog``, in the round's ``accounting`` JSON) what the
policy saw (each chunk's state and observation), the action it took and its probability of the mapped shared steps
per member. With the stored ratings that makes each round one (context, action, propensity, reward) tuple:

* reward r = sum over the round's rated users of the mean of their image's selected ratings (people's, the agents'
  or both) minus the energy price x the round's energy (devices, transmissions and the server's prefixes);
* w = pi_e(steps | x) / pi_b(steps | x), both products over members computed by the same function
  (``step_probabilities``: exact for deterministic policies with epsilon-exploration, a smoothed frequency of
  M = 64 draws for sampled ones such as G-DDPG);
* IPS = mean(min(w, 10) r); SNIPS = sum(w r) / sum(w) (unclipped); DR = mean(q(x, pi_e) + min(w, 10) (r - q(x, a)))
  with q a reward model fitted on the logged ratings ((rater's Big-Five, predicted quality, delay) -> score)
  pushed through the system model for the candidate's allocation; 95% percentile bootstrap CIs over rounds, the
  effective sample size (sum w)^2 / sum w^2 and the share of clipped weights.

Where the behaviour policy was deterministic (no sampling, epsilon 0) and the candidate would act otherwise, the
logs hold nothing about the candidate's action: IPS is then undefined and is reported as such, with the count.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlli.network.allocation import evaluate, map_actions
from rlli.network.params import SystemParams
from rlli.network.state import RoundState
from rlli.policy.api import (
    EXPLORE_STREAM,
    Policy,
    PolicyLog,
    explore,
    params_from_json,
    propensity_seed,
    state_from_json,
    step_probabilities,
)

CLIP = 10.0  # IPS weights are clipped here
RATERS = ("people", "agents", "both")
KINDS = {"people": ("human",), "agents": ("agent",), "both": ("human", "agent")}
NEUTRAL_TRAITS = (0.5, 0.5, 0.5, 0.5, 0.5)  # a person who rated without the questionnaire
BOOTSTRAP = 1000


class OffPolicyError(ValueError):
    """A store that cannot be read, or holds nothing to estimate from: the message says which."""


# ----------------------------------------------------------------------------- the logged rounds


@dataclass(frozen=True)
class Rated:
    """One rating of one request's image: who rated (kind, Big-Five) and the score."""

    request: int
    kind: str  # "human" or "agent"
    traits: tuple[float, ...]
    score: float


@dataclass
class LoggedRound:
    round_id: int
    log: PolicyLog
    states: list[RoundState]  # per chunk (batch of one)
    params: list[SystemParams]
    quality: dict[int, float]  # request position -> predicted relative quality it got
    delay_s: dict[int, float]
    energy_j: float  # the whole round
    price: float
    ratings: list[Rated] = field(default_factory=list)

    def rated(self, raters: str) -> dict[int, list[Rated]]:
        kinds = KINDS[raters]
        out: dict[int, list[Rated]] = {}
        for r in self.ratings:
            if r.kind in kinds:
                out.setdefault(r.request, []).append(r)
        return out

    def reward(self, raters: str) -> float | None:
        """Sum over rated users of their mean score, minus price x the round's energy (None: no such ratings)."""
        per = self.rated(raters)
        if not per:
            return None
        return float(sum(np.mean([r.score for r in rs]) for rs in per.values()) - self.price * self.energy_j)

    @property
    def deterministic(self) -> bool:
        """The behaviour put all its mass on the logged steps (a deterministic policy without exploration)."""
        return not self.log.sampled and self.log.epsilon == 0.0


@dataclass
class Logged:
    rounds: list[LoggedRound]
    skipped: dict[str, int]  # reason -> rounds
    ratings: int  # ratings read (status ok, every kind)


def load_logged(url: str, timeout_s: float = 30.0) -> Logged:
    """Every round of the store at ``url`` that carries a policy log, with its ratings; rounds without a log (older
    rounds) or with one that does not read are counted in ``skipped``, not fatal. A broken URL or a database that
    is not a rating store raises :class:`OffPolicyError` with a clear message."""
    from sqlalchemy import inspect, select
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from rlli.store import StoreError
    from rlli.store.db import connect, parse_url, redact
    from rlli.store.models import TRAIT_COLUMNS, Generation, Participant, Rating, Request, Round

    try:
        u = parse_url(url)
        if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:") \
                and not Path(u.database).is_file():
            raise OffPolicyError(f"no rating store at {redact(u)}: the file {u.database} does not exist (reading "
                                 "never creates one)")
        engine = connect(url, timeout_s)
    except StoreError as e:
        raise OffPolicyError(f"the store could not be opened: {e}") from None
    try:
        if not inspect(engine).has_table("rounds") or not inspect(engine).has_table("ratings"):
            raise OffPolicyError(f"{url.split('?')[0]} is not a rating store (no rounds or ratings table); "
                                 "fill one with `python -m rlli bench round` or run the app")
        with Session(engine) as s:
            rounds = s.execute(select(Round.id, Round.accounting).order_by(Round.id)).all()
            gens = s.execute(select(Request.round_id, Request.position, Generation.id, Generation.quality,
                                    Generation.delay_s).join(Generation, Generation.request_id == Request.id)).all()
            rates = s.execute(select(Rating.generation_id, Rating.score, Participant.kind,
                                     *[getattr(Participant, t) for t in TRAIT_COLUMNS])
                              .join(Participant, Rating.rater_id == Participant.id)
                              .where(Rating.status == "ok")).all()
    except SQLAlchemyError as e:
        raise OffPolicyError(f"the store could not be read: {str(getattr(e, 'orig', e) or e).splitlines()[0]}") from None
    finally:
        engine.dispose()

    by_round: dict[int, list] = {}
    where: dict[int, tuple[int, int]] = {}
    for round_id, pos, gid, q, d in gens:
        by_round.setdefault(round_id, []).append((pos, q, d))
        where[gid] = (round_id, pos)
    ratings_of: dict[int, list[Rated]] = {}
    for gid, score, kind, *traits in rates:
        if gid not in where or score is None:
            continue
        rid, pos = where[gid]
        tr = tuple(float(t) for t in traits) if all(t is not None for t in traits) else NEUTRAL_TRAITS
        ratings_of.setdefault(rid, []).append(Rated(pos, kind, tr, float(score)))

    out, skipped = [], Counter()
    for rid, acc in rounds:
        raw = (acc or {}).get("policy_log") if isinstance(acc, dict) else None
        if raw is None:
            skipped["no policy log (rounds stored before logging)"] += 1
            continue
        try:
            log = PolicyLog.from_dict(raw)
            states = [state_from_json(c.state) for c in log.chunks]
            params = [params_from_json(c.params) for c in log.chunks]
            gens_r = by_round.get(rid, [])
            quality = {int(p): float(q) for p, q, _ in gens_r if q is not None}
            delay = {int(p): float(d) for p, _, d in gens_r if d is not None}
            energy = float(acc["energy_total_j"])
            price = float(log.energy_price)
            for st, c in zip(states, log.chunks):
                if len(c.steps) != st.k_max or len(c.propensity) != st.k_max or len(c.action) != 3 * st.k_max:
                    raise ValueError("chunk lengths do not match its state")
                if not all(0.0 < float(x) <= 1.0 for x in c.propensity):
                    raise ValueError("a propensity outside (0, 1]")
        except (ValueError, KeyError, TypeError) as e:
            skipped[f"unreadable policy log ({str(e)[:80]})"] += 1
            continue
        out.append(LoggedRound(rid, log, states, params, quality, delay, energy, price, ratings_of.get(rid, [])))
    return Logged(out, dict(skipped), len(rates))


# ----------------------------------------------------------------------------- the reward model (q)


class RidgeQoe:
    """A small reward model: ridge regression of the score on (Big-Five, quality, log(1 + delay)) and their
    products, clipped to 1..10. Fitted on the logged ratings; ``qoe`` has the QoeFn shape (broadcasting)."""

    def __init__(self, coef: np.ndarray, n: int, r2: float):
        self.coef, self.n, self.r2 = coef, n, r2

    @staticmethod
    def features(traits, quality, delay_s) -> np.ndarray:
        t = np.asarray(traits, dtype=float)
        q = np.asarray(quality, dtype=float)
        d = np.log1p(np.maximum(np.asarray(delay_s, dtype=float), 0.0))
        shape = np.broadcast_shapes(t.shape[:-1], q.shape, d.shape)
        t = np.broadcast_to(t, (*shape, 5))
        q, d = np.broadcast_to(q, shape), np.broadcast_to(d, shape)
        cols = [np.ones(shape), *np.moveaxis(t, -1, 0), q, d, q * q, d * d, q * d,
                *np.moveaxis(t * q[..., None], -1, 0), *np.moveaxis(t * d[..., None], -1, 0)]
        return np.stack(cols, axis=-1)

    @classmethod
    def fit(cls, traits, quality, delay_s, score, alpha: float = 1.0) -> RidgeQoe:
        y = np.asarray(score, dtype=float)
        if y.size == 0:
            raise OffPolicyError("no ratings to fit a reward model on")
        x = cls.features(traits, quality, delay_s).reshape(y.size, -1)
        reg = alpha * np.eye(x.shape[1])
        reg[0, 0] = 0.0  # the intercept is not shrunk
        coef = np.linalg.solve(x.T @ x + reg, x.T @ y)
        pred = np.clip(x @ coef, 1.0, 10.0)
        var = float(np.var(y))
        r2 = float(1.0 - np.mean((y - pred) ** 2) / var) if var > 0 else 0.0
        return cls(coef, int(y.size), r2)

    def qoe(self, traits, quality, delay_s) -> np.ndarray:
        return np.clip(self.features(traits, quality, delay_s) @ self.coef, 1.0, 10.0)

    def describe(self) -> dict:
        return {"kind": "ridge (Big-Five, quality, log delay, products)", "ratings": self.n, "r2_in_sample": round(self.r2, 4)}


def rating_table(rounds: list[LoggedRound], raters: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rater traits [N, 5], quality [N], delay_s [N], score [N]) of the selected ratings of the logged rounds."""
    t, q, d, y = [], [], [], []
    for r in rounds:
        for k, rs in r.rated(raters).items():
            if k not in r.quality or k not in r.delay_s:
                continue
            for x in rs:
                t.append(x.traits)
                q.append(r.quality[k])
                d.append(r.delay_s[k])
                y.append(x.score)
    return np.asarray(t, float).reshape(-1, 5), np.asarray(q, float), np.asarray(d, float), np.asarray(y, float)


def fit_reward_model(rounds: list[LoggedRound], raters: str, judge: str = ""):
    """(model, description): the reward model on the logged ratings - ``rlli.policy.reward_model.RewardModel``
    (monotone gradient boosting) where it fits, else :class:`RidgeQoe` (fewer than 2 ratings, or no sklearn).
    The model has ``qoe(traits, quality, delay_s)``."""
    t, q, d, y = rating_table(rounds, raters)
    if y.size == 0:
        raise OffPolicyError(f"no ratings by {raters} in the logged rounds to fit a reward model on")
    try:
        from rlli.policy.reward_model import RewardModel

        model = RewardModel.fit(t, q, d, y, judge=judge or f"store:{raters}",
                                info={"source": "store", "raters": raters, "ratings": int(y.size)})
        return model, {"kind": "RewardModel (monotone HistGradientBoosting)", "ratings": int(y.size),
                       "figures": model.figures}
    except (ImportError, ValueError):
        model = RidgeQoe.fit(t, q, d, y)
        return model, model.describe()


# ----------------------------------------------------------------------------- estimators


def _candidate_actions(policy: Policy, st: RoundState, p: SystemParams, seed: int, draws: int) -> np.ndarray:
    """[n, 3K] the candidate's own actions on one chunk: M draws (seeded as the propensity's) when it is sampled, else
    its one action."""
    if policy.sampled:
        return np.asarray(policy.actions(st.repeat(draws), p, propensity_seed(seed)), float).reshape(draws, -1)
    return np.asarray(policy.actions(st, p, seed), float).reshape(1, -1)


def _explored(st: RoundState, a: np.ndarray, seed: int, epsilon: float, draws: int) -> np.ndarray:
    """The candidate's actions with its epsilon-exploration (M rows when it explores)."""
    if epsilon <= 0:
        return a
    if len(a) == 1:
        a = np.repeat(a, draws, axis=0)
    rng = np.random.default_rng([seed, EXPLORE_STREAM, 1])
    return np.concatenate([explore(st, row, epsilon, rng) for row in a])


def q_value(model, rnd: LoggedRound, actions: list[np.ndarray], raters: str) -> np.ndarray:
    """[n] the reward model's reward of the round under n actions per chunk: the rated users' mean predicted score
    (each rater's Big-Five) at the quality and delay the system model gives them, minus price x energy."""
    per = rnd.rated(raters)
    n = max(a.shape[0] for a in actions)
    total = np.zeros(n)
    for ci, (st, p, a) in enumerate(zip(rnd.states, rnd.params, actions)):
        rep = st.repeat(a.shape[0])
        out = evaluate(rep, a, p)
        total = total - rnd.price * out.energy_j
        for slot, k in enumerate(rnd.log.chunks[ci].slots):
            if k < 0 or k not in per:
                continue
            tr = np.asarray([x.traits for x in per[k]], float)  # [J, 5]
            pred = model.qoe(tr[None, :, :], out.quality[:, slot][:, None], out.delay_s[:, slot][:, None])
            total = total + np.asarray(pred, float).reshape(a.shape[0], -1).mean(axis=1)
    return total


def _ci(values: np.ndarray, stat, rng: np.random.Generator, n_boot: int = BOOTSTRAP) -> list[float] | None:
    if len(values) < 2:
        return None
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boots = np.array([stat(values[i]) for i in idx])
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return None
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def _snips(m: np.ndarray) -> float:
    """Self-normalised IPS of rows (weight, reward)."""
    total = float(np.sum(m[:, 0]))
    return float(np.sum(m[:, 0] * m[:, 1]) / total) if total > 0 else math.nan


def estimate(policy: Policy, rounds: list[LoggedRound], raters: str, model=None, epsilon: float = 0.0,
             seed: int = 0, weight=None) -> dict:
    """IPS, SNIPS and DR of ``policy`` (acting with ``epsilon``) on the logged rounds, with 95% bootstrap CIs.

    ``weight(pi_e, pi_b)`` is the importance weight (default pi_e / pi_b; a parameter so tests can break it).
    Rounds without ratings by ``raters`` are left out (counted)."""
    weight = weight or (lambda pe, pb: pe / pb)
    used = [(r, r.reward(raters)) for r in rounds]
    used = [(r, y) for r, y in used if y is not None]
    no_ratings = len(rounds) - len(used)
    if not used:
        raise OffPolicyError(f"none of the {len(rounds)} logged rounds has ratings by {raters}")
    ident = policy.identity()
    rew, pb, pe, q_log, q_pi = [], [], [], [], []
    unsupported = 0
    for r, y in used:
        prob_e = 1.0
        acts = []
        for st, p, c in zip(r.states, r.params, r.log.chunks):
            try:
                own = _candidate_actions(policy, st, p, c.seed, r.log.draws)  # acting once serves both
            except (RuntimeError, ValueError, IndexError) as e:
                raise OffPolicyError(f"{policy.name} cannot act on the logged rounds (they have {st.k_max} user slots; "
                                     f"{type(e).__name__}: {str(e)[:120]})") from None
            steps = map_actions(st.repeat(len(own)), own).steps
            prob_e *= float(np.prod(step_probabilities(
                policy, st, p, c.steps, epsilon, c.seed, r.log.draws, smoothing=r.log.smoothing, floor=r.log.floor,
                drawn=steps if policy.sampled else None, policy_steps=None if policy.sampled else steps)))
            if model is not None:
                acts.append(_explored(st, own, c.seed, epsilon, r.log.draws))
        prob_b = float(np.prod([x for c in r.log.chunks for x in c.propensity]))
        if prob_b >= 1.0 - 1e-12 and r.deterministic and prob_e < 1.0 - 1e-12:
            unsupported += 1
        rew.append(y)
        pb.append(prob_b)
        pe.append(prob_e)
        if model is not None:
            logged = [np.asarray(c.action, float).reshape(1, -1) for c in r.log.chunks]
            q_log.append(float(q_value(model, r, logged, raters)[0]))
            q_pi.append(float(q_value(model, r, acts, raters).mean()))
    rew, pb, pe = np.asarray(rew), np.asarray(pb), np.asarray(pe)
    w_raw = np.asarray(weight(pe, pb), dtype=float)
    w = np.minimum(w_raw, CLIP)
    rng = np.random.default_rng(seed)
    n_ratings = sum(len(rs) for r, _ in used for rs in r.rated(raters).values())
    out = {"policy": policy.name, "checkpoint": ident.get("checkpoint"), "config_sha256": ident.get("config_sha256"),
           "behaviour": sorted({r.log.policy for r, _ in used}),
           "same_as_behaviour": sum(1 for r, _ in used if r.log.policy == policy.name
                                    and r.log.config_sha256 == ident.get("config_sha256")),
           "rounds": len(used), "ratings": int(n_ratings), "rounds_without_ratings": no_ratings,
           "logged_mean_reward": float(rew.mean()), "epsilon": float(epsilon), "raters": raters,
           "ess": float(w.sum() ** 2 / np.sum(w ** 2)) if np.sum(w ** 2) > 0 else 0.0,
           "clipped_share": float(np.mean(w_raw > CLIP)), "mean_weight": float(w.mean()),
           "unsupported_rounds": unsupported, "undefined": None}
    if unsupported:
        out["undefined"] = (f"IPS is undefined: on {unsupported} of {len(used)} rounds the behaviour policy was "
                            "deterministic (no sampling, RLLI_POLICY_EPSILON=0) and this candidate would act "
                            "otherwise, so the logs hold no reward for its action; log with RLLI_POLICY_EPSILON > 0")
        out.update(ips=None, ips_ci=None, snips=None, snips_ci=None)
    else:
        out["ips"] = float(np.mean(w * rew))
        out["ips_ci"] = _ci(w * rew, np.mean, rng)
        pair = np.stack([w_raw, rew], axis=1)
        out["snips"] = _snips(pair) if w_raw.sum() > 0 else None
        out["snips_ci"] = _ci(pair, _snips, rng) if w_raw.sum() > 0 else None
        if w_raw.sum() == 0:
            out["ips_ci"] = None
            out["warning"] = ("no logged round took this candidate's steps: IPS is 0 by construction and says nothing; "
                              "SNIPS is undefined; log more rounds or with a larger RLLI_POLICY_EPSILON")
        elif out["ess"] < 5:
            out["warning"] = f"only {out['ess']:.1f} effective rounds: the IPS figures rest on very few rounds"
    if model is not None:
        ql, qp = np.asarray(q_log), np.asarray(q_pi)
        dr = qp + w * (rew - ql)
        out.update(dr=float(dr.mean()), dr_ci=_ci(dr, np.mean, rng), dm=float(qp.mean()),
                   reward_model_error=float(np.mean(np.abs(rew - ql))))
        if unsupported:
            out["dr_note"] = (f"on {unsupported} rounds without logged support DR is the reward model's prediction "
                              "alone")
    else:
        out.update(dr=None, dr_ci=None, dm=None)
    return out


def evaluate_candidates(url: str, candidates: dict[str, Policy], raters: str = "both", epsilon: float = 0.0,
                        seed: int = 0) -> dict:
    """Every candidate (label -> policy) on the logged rounds of the store at ``url`` (one reward model for all)."""
    if raters not in RATERS:
        raise OffPolicyError(f"raters must be one of {', '.join(RATERS)}, not {raters!r}")
    logged = load_logged(url)
    if not logged.rounds:
        why = "; ".join(f"{n} {k}" for k, n in logged.skipped.items()) or "the store has no rounds"
        raise OffPolicyError(f"no logged rounds to evaluate on ({why}); fill the store with `python -m rlli bench "
                             "round --rounds 20` or serve rounds with the app")
    model, describe = fit_reward_model(logged.rounds, raters)
    return {"raters": raters, "logged_rounds": len(logged.rounds), "skipped": logged.skipped,
            "reward_model": describe, "clip": CLIP, "draws": sorted({r.log.draws for r in logged.rounds}),
            "candidates": {label: _one(p, logged.rounds, raters, model, epsilon, seed) for label, p in candidates.items()}}


def _one(policy: Policy, rounds: list[LoggedRound], raters: str, model, epsilon: float, seed: int) -> dict:
    """One candidate's estimates, or its error (a candidate that cannot act on these rounds fails alone)."""
    notice = None if policy.notice is None else policy.notice.message
    try:
        return {**estimate(policy, rounds, raters, model, epsilon, seed), "notice": notice}
    except OffPolicyError as e:
        return {"policy": policy.name, "error": str(e), "notice": notice, "ips": None, "ips_ci": None, "snips": None,
                "dr": None, "dr_ci": None, "ess": None, "rounds": 0, "ratings": 0}


__all__ = ["CLIP", "Logged", "LoggedRound", "OffPolicyError", "RATERS", "RidgeQoe", "estimate", "evaluate_candidates",
           "fit_reward_model", "load_logged", "q_value", "rating_table"]
