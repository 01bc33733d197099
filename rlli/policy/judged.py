"""Training on any :class:`~rlli.personas.judge.Judge` through a reward model fitted on a budget of queries.

Asking a judge (an LLM) for every user of every training round is far too slow, so ``--judge llm
--query-budget N`` asks it N questions once and trains on a :class:`~rlli.policy.reward_model.RewardModel`
fitted to the answers:

1. **The design** (:func:`query_design`): N queries (persona, relative quality, delay), space-filling - a
   scrambled Halton sequence (``scipy.stats.qmc``), so a larger budget keeps the smaller one's queries. Every
   third query is a preset persona (in turn); the others are Big-Five profiles drawn from the sequence,
   uniform on [0, 1]^5 as the training rounds' users are, on the TIPI's twelfths. Quality and delay cover
   the range the training rounds produce (:func:`design_ranges`, measured on sampled rounds under random,
   greedy and not-sharing actions, widened), delay on a log scale; half the queries at exactly the unshared
   quality 1.0 (most training users get it, see FULL_QUALITY_SHARE), the others spread below 0.99; both
   rounded to what the judge is shown (a whole percent, a tenth of a second).
2. **The answers** (:func:`ask`), in batches through ``judge.rate_many``, kept in a JSON cache keyed by
   judge backend/model, persona and cell, written after every batch: a rerun (or a larger budget) asks only
   what is missing. An answer without a valid score (``score=None``, garbled, out of range) is counted as
   failed and left out of the fit; failures that may pass (unavailable, timeout) are not cached, so a rerun
   asks again. The fit's target is the judge's expected score where it returned token probabilities
   (``extras["expected_score"]``), else its integer score.
3. **The fit** (:func:`fit_reward_model`): :meth:`RewardModel.fit` with held-out figures; too few answers is
   an error that says so.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlli.personas.judge import BigFive, Delivery, Judge, Persona
from rlli.policy.reward_model import SCORE_RANGE, RewardModel

MIN_RATED = 0.5  # the least share of the budget the judge must answer for the fit to be used
MIN_ANSWERS = 8
BATCH = 8  # queries per rate_many call (and per cache write)
PRESET_EVERY = 3  # every third query a preset persona
# half the queries at exactly the unshared quality (1.0): 88-90% of the training rounds' users get it (anchors and
# members who do not share), the others 0.990-0.999, so the contrast the policy decides on is 100% against 99%
FULL_QUALITY_SHARE = 0.5
TRANSIENT = ("unavailable", "timeout", "error")  # failures a rerun asks again (not cached)
TIPI_GRID = 12
DESIGN_SEED = 0
PROMPT = "an image of your choice"


@dataclass(frozen=True)
class Query:
    persona: Persona
    quality: float
    delay_s: float

    def delivery(self) -> Delivery:
        return Delivery(prompt=PROMPT, quality=self.quality, delay_s=self.delay_s,
                        description=f"an image as requested, at {100 * self.quality:.0f}% of the quality of "
                                    "generating it alone")


def judge_name(judge: Judge) -> str:
    return f"{judge.backend}/{judge.model}"


def cache_key(judge: str, persona: Persona, q: float, d: float) -> str:
    """The cache key of one query (as the previous rating table keyed its cells)."""
    return f"{judge}|{persona.name}|{persona.traits.as_tuple()}|q={q:.3f}|d={d:.1f}"


def design_ranges(p=None, n_rounds: int = 256, seed: int = 0) -> tuple[tuple[float, float], tuple[float, float]]:
    """(quality range, delay range in s) to query over: what the training rounds produce under random, greedy and
    not-sharing actions (1st..100th percentile), quality widened by 0.05 below (and at least 0.1 wide), delay
    halved below and +50% above."""
    from rlli.network.allocation import action_for, evaluate
    from rlli.network.params import SystemParams
    from rlli.network.state import sample_states
    from rlli.policy.baselines import greedy
    from rlli.policy.forks import training_curves

    p = p or SystemParams()
    rng = np.random.default_rng(seed)
    st = sample_states(rng, n_rounds, p, training_curves(p.steps))
    qs, ds = [], []
    for a in (rng.uniform(-1, 1, (st.batch, 3 * st.k_max)), greedy(st, p), action_for(st, np.zeros_like(st.max_shared))):
        o = evaluate(st, a, p)
        qs.append(o.quality[st.mask])
        ds.append(o.delay_s[st.mask])
    q, d = np.concatenate(qs), np.concatenate(ds)
    q_lo = float(np.clip(min(np.percentile(q, 1) - 0.05, 0.9), 0.0, 0.99))
    d_lo, d_hi = max(0.5 * float(d.min()), 0.1), 1.5 * float(d.max())
    return (round(q_lo, 2), 1.0), (round(d_lo, 1), round(d_hi, 1))


def query_design(budget: int, presets: list[Persona], quality_range: tuple[float, float],
                 delay_range: tuple[float, float], seed: int = DESIGN_SEED) -> list[Query]:
    """``budget`` space-filling queries (see the module doc); the first n of a larger design are the n-query design."""
    from scipy.stats import qmc

    if not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"the query budget must be a positive number of judge queries, got {budget!r}")
    (q_lo, q_hi), (d_lo, d_hi) = quality_range, delay_range
    if not (0 <= q_lo <= q_hi <= 1 and 0 < d_lo <= d_hi):
        raise ValueError(f"bad design ranges: quality {quality_range}, delay {delay_range}")
    u = qmc.Halton(d=7, scramble=True, seed=seed).random(int(budget))
    out = []
    for i, row in enumerate(u):
        if presets and i % PRESET_EVERY == 0:
            persona = presets[(i // PRESET_EVERY) % len(presets)]
        else:
            t = np.clip(np.floor(row[:5] * (TIPI_GRID + 1)) / TIPI_GRID, 0.0, 1.0)
            persona = Persona(name="sampled", traits=BigFive(*map(float, t)), instrument="sampled")
        if row[5] < FULL_QUALITY_SHARE or q_hi - q_lo < 0.01:
            q = q_hi
        else:
            q = round(q_lo + (row[5] - FULL_QUALITY_SHARE) / (1 - FULL_QUALITY_SHARE) * (min(q_hi, 0.99) - q_lo), 2)
        d = round(math.exp(math.log(d_lo) + row[6] * (math.log(d_hi) - math.log(d_lo))), 1)
        out.append(Query(persona, float(q), float(max(d, 0.1))))
    return out


def _answer(rating) -> dict:
    """What the cache keeps of one rating: {"score", "expected", "status"}; anything garbled is status 'garbled'."""
    score = getattr(rating, "score", None)
    status = str(getattr(rating, "status", "garbled"))
    lo, hi = SCORE_RANGE
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) or not lo <= score <= hi:
        return {"score": None, "expected": None, "status": status if status != "ok" and score is None else "garbled"}
    extras = getattr(rating, "extras", None)
    e = extras.get("expected_score") if isinstance(extras, dict) else None
    expected = float(e) if isinstance(e, int | float) and math.isfinite(e) and lo <= e <= hi else None
    return {"score": float(score), "expected": expected, "status": "ok"}


@dataclass
class Answers:
    queries: list[Query]
    answers: list[dict | None]  # per query: the cached answer, None where it failed transiently
    asked: int  # queries sent to the judge in this call
    cached: int  # queries answered from the cache

    @property
    def failed(self) -> int:
        return sum(1 for a in self.answers if a is None or a["score"] is None)

    @property
    def answered(self) -> int:
        return len(self.answers) - self.failed


def _read_cache(path: Path, log) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    except (OSError, json.JSONDecodeError):
        pass
    log(f"{path} is not a readable query cache: starting a new one")
    return {}


def _write_cache(path: Path, cache: dict) -> None:
    """Write the cache, merged with what other processes wrote meanwhile (under a lock file: two runs asking
    different judges share one cache without losing each other's answers); atomic replace, so a crash never
    leaves half a cache. ``cache`` is updated with the merged entries."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            on_disk = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            on_disk = {}
        if isinstance(on_disk, dict):
            cache.update({k: v for k, v in on_disk.items() if k not in cache})
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        tmp.replace(path)


def ask(judge: Judge, queries: list[Query], cache_path: str | Path, log: Callable[[str], None] = print,
        batch: int = BATCH) -> Answers:
    """Answers to ``queries``: from the cache where there, else from the judge (in batches, cache written after
    each). A previous cache format's bare scores (int or None) are read as answers too."""
    path = Path(cache_path)
    cache = _read_cache(path, log)
    name = judge_name(judge)
    keys = [cache_key(name, q.persona, q.quality, q.delay_s) for q in queries]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    cached = len(queries) - len(missing)
    if missing:
        log(f"asking {name} {len(missing)} of {len(queries)} queries ({cached} in {path})")
    for start in range(0, len(missing), batch):
        chunk = missing[start:start + batch]
        try:
            ratings = judge.rate_many([(queries[i].persona, queries[i].delivery()) for i in chunk])
            if not isinstance(ratings, list | tuple) or len(ratings) != len(chunk):
                raise ValueError(f"{len(chunk)} queries answered by a {type(ratings).__name__} of "
                                 f"{len(ratings) if isinstance(ratings, list | tuple) else '?'}")
        except Exception as e:  # noqa: BLE001 - any judge failure: this batch unanswered (asked again on a rerun)
            log(f"the judge failed on a batch ({type(e).__name__}: {e}); counted as unanswered")
            ratings = None
        for i, r in zip(chunk, ratings or [None] * len(chunk)):
            a = _answer(r) if ratings is not None else {"status": "error"}
            if a["status"] not in TRANSIENT:
                cache[keys[i]] = a
        _write_cache(path, cache)
        log(f"  {min(start + batch, len(missing))}/{len(missing)} asked")
    answers: list[dict | None] = []
    for k in keys:
        a = cache.get(k)
        if a is None and k in cache:  # the previous table's format: a bare None
            a = {"score": None, "expected": None, "status": "invalid"}
        elif isinstance(a, int | float) and not isinstance(a, bool):
            a = {"score": float(a), "expected": None, "status": "ok"}
        elif a is not None and not isinstance(a, dict):
            a = {"score": None, "expected": None, "status": "garbled"}
        answers.append(a)
    return Answers(queries, answers, len(missing), cached)


def fit_reward_model(judge: Judge, budget: int, cache_path: str | Path, p=None, seed: int = DESIGN_SEED,
                     presets: list[Persona] | None = None, log: Callable[[str], None] = print,
                     target: str = "expected") -> RewardModel:
    """The design, the answers (cached), the fit: a RewardModel of ``judge`` from ``budget`` queries."""
    if target not in ("expected", "score"):
        raise ValueError(f"target must be expected or score, not {target!r}")
    if presets is None:
        from rlli.personas import load_presets

        presets = load_presets()
    q_range, d_range = design_ranges(p)
    queries = query_design(budget, presets, q_range, d_range, seed)
    got = ask(judge, queries, cache_path, log)
    ok = [(q, a) for q, a in zip(queries, got.answers) if a is not None and a["score"] is not None]
    statuses: dict[str, int] = {}
    for a in got.answers:
        s = "unanswered" if a is None else a["status"]
        statuses[s] = statuses.get(s, 0) + 1
    log(f"{judge_name(judge)}: {got.answered} of {budget} queries answered ({got.asked} asked now, {got.cached} "
        f"from the cache; {got.failed} failed: {statuses})")
    if len(ok) < max(MIN_ANSWERS, math.ceil(MIN_RATED * budget)):
        raise RuntimeError(f"only {len(ok)} of {budget} queries got a valid answer (need {100 * MIN_RATED:.0f}% and "
                           f"at least {MIN_ANSWERS}); check the endpoint with `python -m rlli judge`")
    y = [a["expected"] if target == "expected" and a["expected"] is not None else a["score"] for _, a in ok]
    info = {"budget": budget, "answered": len(ok), "failed": got.failed, "statuses": statuses,
            "asked_now": got.asked, "from_cache": got.cached, "design": "scrambled Halton (scipy.stats.qmc), seed "
            f"{seed}; every {PRESET_EVERY}rd query a preset persona, the others uniform Big-Five on the TIPI grid; "
            f"{FULL_QUALITY_SHARE:.0%} at quality 1.0, the rest below 0.99; delay log-uniform",
            "quality_range": list(q_range), "delay_range_s": list(d_range), "target": target,
            "expected_scores": sum(1 for _, a in ok if a["expected"] is not None),
            "presets": sorted({q.persona.name for q, _ in ok if q.persona.instrument != "sampled"})}
    model = RewardModel.fit([q.persona.traits.as_tuple() for q, _ in ok], [q.quality for q, _ in ok],
                            [q.delay_s for q, _ in ok], y, judge=judge_name(judge), info=info)
    h = model.figures.get("holdout")
    if h:
        log(f"reward model of {model.judge}: held-out R^2 {h['r2']:.3f}, MAE {h['mae']:.3f} (predicting the mean: "
            f"{h['mae_constant']:.3f}), Spearman {h['spearman']:.3f} on {h['n']} of {len(ok)} answers")
    prof = profile(model, p)
    model.info["profile"] = prof
    ch = prof["changes"]
    log(f"over {prof['users']} users of training rounds: QoE sd {prof['std']:.2f} (the trait judge's "
        f"{prof['reference_std']:.2f}), Spearman with the trait judge {prof['spearman_vs_reference']:.2f}; delay 1 -> 30 s "
        f"{ch['delay 1 -> 30']['reward_model']:+.2f} (trait judge {ch['delay 1 -> 30']['trait_judge']:+.2f}), quality "
        f"0.99 -> 1 {ch['quality 0.99 -> 1']['reward_model']:+.2f} ({ch['quality 0.99 -> 1']['trait_judge']:+.2f})")
    return model


def profile(model: RewardModel, p=None, n_rounds: int = 512, seed: int = 4242) -> dict:
    """How the reward model behaves where training uses it, against the trait judge: over the users of ``n_rounds``
    sampled training rounds under greedy's actions, the spread of its QoE, its Spearman with the trait judge, and
    the mean change of each when one input moves (delay 1 -> 30 s, quality 0.99 -> 1, each trait 0 -> 1)."""
    from rlli.network.allocation import evaluate
    from rlli.network.params import SystemParams
    from rlli.network.qoe import trait_qoe
    from rlli.network.state import sample_states
    from rlli.personas.judge import TRAITS
    from rlli.policy.baselines import greedy
    from rlli.policy.forks import training_curves

    p = p or SystemParams()
    st = sample_states(np.random.default_rng(seed), n_rounds, p, training_curves(p.steps))
    o = evaluate(st, greedy(st, p), p)
    t, q, d = st.traits[st.mask], o.quality[st.mask], o.delay_s[st.mask]

    def ref(a, b, c):
        return trait_qoe(a, b, c, None, p.delay_scale_s)

    def change(fn, what, lo, hi) -> float:
        args_lo, args_hi = [t.copy(), q.copy(), d.copy()], [t.copy(), q.copy(), d.copy()]
        if what in TRAITS:
            args_lo[0][:, TRAITS.index(what)], args_hi[0][:, TRAITS.index(what)] = lo, hi
        else:
            i = 1 if what == "quality" else 2
            args_lo[i][:], args_hi[i][:] = lo, hi
        return round(float((fn(*args_hi) - fn(*args_lo)).mean()), 4)

    moves = [("delay", 1.0, 30.0), ("quality", 0.99, 1.0)] + [(t_, 0.0, 1.0) for t_ in TRAITS]
    return {"users": int(len(q)), **{k: round(v, 4) for k, v in model.describe(t, q, d, reference=ref).items()},
            "changes": {f"{w} {lo:g} -> {hi:g}": {"reward_model": change(model.qoe, w, lo, hi),
                                                   "trait_judge": change(ref, w, lo, hi)} for w, lo, hi in moves}}


def judge_label(kind: str, model: RewardModel) -> str:
    """What a checkpoint's config records as its judge, e.g. 'llm:llm/SmolLM2-135M-Instruct via reward model (160
    queries)'."""
    return f"{kind}:{model.judge} via reward model ({model.info.get('answered', len(model.score))} queries)"
