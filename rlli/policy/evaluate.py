"""``python -m rlli eval policy`` and ``python -m rlli bench policy``: every method on the same held-out rounds
(or the same sequential episodes), with the statistics a reviewer asks for, and the time one allocation takes
against best found's on the same rounds.

Statistics: 95% t intervals over rounds (or episodes); paired per-round differences against greedy, DDPG and (in
the sequential env) myopic; seed-level IQM and probability of improvement with percentile bootstrap intervals over
seeds, computed here with numpy/scipy the way the ``rliable`` package defines them (rliable 1.2.0 does not import
with the current ``arch`` release); fairness (the round's lowest QoE, Jain's index); personalisation (within-round
Spearman between each Big-Five trait and a user's shared steps, delay and QoE).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from scipy import stats

from rlli.machine import cpu_model
from rlli.network.allocation import Outcome, QoeFn, action_for, device_reference, evaluate, map_actions, server_reference
from rlli.network.params import SystemParams
from rlli.network.state import MemberCurves, RoundState, encode, sample_states
from rlli.policy.baselines import BASELINES, EQUAL_FRACTION
from rlli.policy.checkpoint import load_actor, load_critic
from rlli.policy.forks import training_curves
from rlli.policy.train import at_bounds

EVAL_SEED = 20_251_127  # the held-out rounds (training draws from seeds 0.., validation from 999983)
BENCH_SEED = 7_654_321
LEARNED = ("gddpg", "ddpg", "gddpg_li")
REQUIRED = ("gddpg", "ddpg")  # learned arms the one-round evaluation needs; the others join when their checkpoints exist
# evaluated beside the others when their checkpoints exist: T = 1 (no chain), the -LI arm (the LLM judge through a
# reward model) and its control (the trait judge through the same reward-model pipeline)
ABLATIONS = ("gddpg_t1", "gddpg_li", "gddpg_trait_rm")
TRAIT_JUDGE = "trait/parametric-v1"
RULE_JUDGE = {"best_found": f"{TRAIT_JUDGE} (searches on its reward)", "random": "none (random)"}
CONTENDED = {"bandwidth_hz": 0.05e6, "server_hz": 2.0e9}
ONE_ROUND_METHODS = ("gddpg", "ddpg", "equal", "random", "greedy", "no_sharing", "fork_max", "best_found")
TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def heldout_states(p: SystemParams, n: int, curves: MemberCurves | None = None, seed: int = EVAL_SEED,
                   k_range: tuple[int, int] | None = None) -> RoundState:
    return sample_states(np.random.default_rng(seed), n, p, curves or training_curves(p.steps), k_range)


def seed_folders(policy_dir: Path, name: str) -> list[Path]:
    root = Path(policy_dir) / name
    found = [f for f in root.glob("seed*") if (f / "actor.safetensors").is_file()]
    return sorted(found, key=lambda f: int(f.name[4:]) if f.name[4:].isdigit() else 1 << 30)


def learned_actions(folder: Path, st: RoundState, p: SystemParams, seed: int = EVAL_SEED) -> np.ndarray:
    from rlli.policy.train import act, base_action

    actor, meta = load_actor(folder)
    obs = encode(st, p, int(meta.get("obs_version", 1)))
    n = int(meta.get("best_of", 1))
    critic = load_critic(folder, meta) if n > 1 else None
    return act(actor, obs, seed=seed, base=base_action(st, p, bool(meta.get("residual"))), critic=critic, best_of=n)


def checkpoint_judge(folder: Path) -> str:
    """The judge a checkpoint learned from, as its config records it (older checkpoints: the trait judge)."""
    import json

    try:
        return str(json.loads((Path(folder) / "config.json").read_text()).get("judge", "trait/parametric-v1"))
    except (OSError, ValueError):
        return "unknown"


# ----------------------------------------------------------------------------- statistics


def t_ci(x: np.ndarray) -> list[float]:
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 2:
        return [float(x.mean()), float(x.mean())] if n else [float("nan")] * 2
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return [float(x.mean()) - half, float(x.mean()) + half]


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.asarray(a, float) - np.asarray(b, float)
    return {"mean": float(d.mean()), "ci": t_ci(d), "wins": int((d > 1e-9).sum()), "losses": int((d < -1e-9).sum())}


def jain(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Jain's fairness index per round, (sum x)^2 / (n sum x^2) over the users present."""
    x = np.where(mask, x, 0.0)
    n = mask.sum(1)
    return x.sum(1) ** 2 / np.maximum(n * (x**2).sum(1), 1e-12)


def iqm(x: np.ndarray) -> float:
    return float(stats.trim_mean(np.asarray(x, float), 0.25))


def _bootstrap(fn, *samples, reps: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = [fn(*[s[rng.integers(0, len(s), len(s))] for s in samples]) for _ in range(reps)]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def prob_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over runs (ties count half): rliable's probability of improvement for one task."""
    x, y = np.asarray(x, float)[:, None], np.asarray(y, float)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def ratio_over_seeds(x: list[float], y: list[float]) -> dict:
    """mean QoE of one arm over the other's, seed-level: the ratio of the seed means with a percentile bootstrap
    interval resampling each arm's seeds (the paper's +15% is this ratio at 1.15)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ratio = float(x.mean() / y.mean())
    ci = _bootstrap(lambda a, b: a.mean() / b.mean(), x, y) if len(x) > 1 and len(y) > 1 else [ratio, ratio]
    return {"ratio": ratio, "ci": ci, "seeds": [len(x), len(y)], "paper": 1.15}


def seed_statistics(scores: dict[str, np.ndarray]) -> dict:
    """IQM with a bootstrap interval over seeds for each learned method, and P(G-DDPG > DDPG)."""
    out = {name: {"seeds": len(v), "scores": [float(s) for s in v], "iqm": iqm(v),
                  "iqm_ci": _bootstrap(iqm, np.asarray(v)) if len(v) > 1 else [iqm(v)] * 2}
           for name, v in scores.items()}
    if all(k in scores and len(scores[k]) > 0 for k in ("gddpg", "ddpg")):
        x, y = np.asarray(scores["gddpg"]), np.asarray(scores["ddpg"])
        out["p_gddpg_beats_ddpg"] = {"p": prob_improvement(x, y), "ci": _bootstrap(prob_improvement, x, y)}
    out["note"] = ("IQM and probability of improvement as rliable defines them, percentile bootstrap over seeds "
                   "(2000 resamples), computed with numpy; fewer than 10 seeds gives wide intervals")
    return out


def spearman_within_rounds(traits: np.ndarray, value: np.ndarray, mask: np.ndarray) -> list[float]:
    """Mean over rounds (>= 3 users, values not all equal) of Spearman(trait_j, value) among the round's users."""
    res = []
    for j in range(traits.shape[-1]):
        rhos = []
        for b in range(mask.shape[0]):
            m = mask[b]
            if m.sum() < 3:
                continue
            v, t = value[b][m], traits[b][m][:, j]
            if np.ptp(v) == 0 or np.ptp(t) == 0:
                continue
            rhos.append(stats.spearmanr(t, v).statistic)
        res.append(float(np.mean(rhos)) if rhos else float("nan"))
    return res


def personalisation_score(st: RoundState, outs: list[Outcome]) -> float:
    """The issue's single figure: the largest |mean within-round Spearman| between a trait and a user's shared
    steps or delay, averaged over the outcomes (seeds) first."""
    vals = []
    for o in outs:
        rhos = [abs(r) for val in (o.allocation.steps.astype(float), o.delay_s)
                for r in spearman_within_rounds(st.traits, val, st.mask) if np.isfinite(r)]
        vals.append(max(rhos) if rhos else 0.0)
    return float(np.mean(vals))


def personalisation(st: RoundState, outs: list[Outcome]) -> dict:
    o = outs[0]
    return {what: dict(zip(TRAITS, [round(v, 4) for v in spearman_within_rounds(st.traits, val, st.mask)]))
            for what, val in (("steps", o.allocation.steps.astype(float)), ("delay", o.delay_s), ("qoe", o.qoe))}


# ----------------------------------------------------------------------------- one-round evaluation


def seed_iqm(seed_means: list[float]) -> tuple[float, list[float]]:
    """IQM of the seeds' mean reward with its percentile bootstrap interval over seeds (one seed: the value)."""
    v = np.asarray(seed_means, float)
    return iqm(v), (_bootstrap(iqm, v) if len(v) > 1 else [iqm(v)] * 2)


def _judged_summary(outs: list[Outcome], best: Outcome, base: Outcome, greedy: Outcome) -> dict:
    """One method under one evaluation judge: reward, QoE, gain captured, seed IQM, paired reward against greedy."""
    reward = np.mean([o.reward for o in outs], axis=0)
    seeds = [float(o.reward.mean()) for o in outs]
    span = float(best.reward.mean() - base.reward.mean())
    i, ci = seed_iqm(seeds)
    return {"reward": float(reward.mean()), "qoe": float(np.mean([o.total_qoe.mean() for o in outs])),
            "gain_captured": float((reward.mean() - base.reward.mean()) / span) if span else float("nan"),
            "seeds": len(outs), "seed_rewards": seeds, "iqm": i, "iqm_ci": ci,
            "vs_greedy": paired(reward, greedy.reward)}


def cross_evaluation(st: RoundState, actions: dict[str, list[np.ndarray]], p: SystemParams,
                     judges: dict[str, QoeFn | None]) -> dict:
    """Every method's actions (the same held-out rounds) scored under each evaluation judge; with the -LI arm, its
    paired per-round reward against G-DDPG (trait judge) and the seed-level probability that an -LI seed beats a
    G-DDPG seed, under each judge."""
    out: dict = {}
    for jn, fn in judges.items():
        outs = {k: [evaluate(st, a, p, fn) for a in acts] for k, acts in actions.items()}
        rows = {k: _judged_summary(v, outs["best_found"][0], outs["no_sharing"][0], outs["greedy"][0])
                for k, v in outs.items()}
        extra = {}
        for arm in ("gddpg_li", "gddpg_trait_rm"):
            if arm in outs and "gddpg" in outs:
                a = np.mean([o.reward for o in outs[arm]], axis=0)
                b = np.mean([o.reward for o in outs["gddpg"]], axis=0)
                x, y = np.asarray(rows[arm]["seed_rewards"]), np.asarray(rows["gddpg"]["seed_rewards"])
                extra[f"{arm}_minus_gddpg"] = {**paired(a, b), "p_seed_beats": prob_improvement(x, y),
                                               "p_seed_beats_ci": _bootstrap(prob_improvement, x, y)}
        out[jn] = {"methods": rows, **extra}
    return out


def _summary(outs: list[Outcome], st: RoundState, dev, srv) -> dict:
    """Per-round figures averaged over the outcomes (training seeds), then over rounds."""
    qoe = np.mean([o.total_qoe for o in outs], axis=0)
    reward = np.mean([o.reward for o in outs], axis=0)
    energy = np.mean([o.energy_j for o in outs], axis=0)
    m = st.mask
    min_qoe = np.mean([np.where(m, o.qoe, np.inf).min(1) for o in outs], axis=0)
    jains = np.mean([jain(o.qoe, m) for o in outs], axis=0)
    seed_means = [float(o.reward.mean()) for o in outs]
    seed_qoe = [float(o.total_qoe.mean()) for o in outs]
    return {"qoe": float(qoe.mean()), "qoe_ci": t_ci(qoe), "energy": float(energy.mean()),
            "delay": float(np.mean([o.delay_s[m].mean() for o in outs])), "reward": float(reward.mean()),
            "energy_vs_device": float((dev.energy_j - energy).mean()), "energy_vs_server": float((srv.energy_j - energy).mean()),
            "min_qoe": float(min_qoe.mean()), "jain": float(jains.mean()),
            "missed_deadlines": float(np.mean([o.missed[m].mean() for o in outs])),
            "seeds": len(outs), "seed_std": float(np.std(seed_means, ddof=1)) if len(outs) > 1 else 0.0,
            "_reward": reward, "_energy": energy, "_qoe": qoe, "_seed_rewards": seed_means, "_seed_qoe": seed_qoe,
            "_all_rewards": np.stack([o.reward for o in outs])}


def ablation(st: RoundState, action: np.ndarray, p: SystemParams) -> dict:
    """Reward lost when best found's bandwidth, compute or shared steps are replaced by the equal split's."""
    alloc = map_actions(st, action)
    x = (np.clip(action, -1, 1) + 1) / 2
    k = st.k_max
    xb, xc = x[:, :k], x[:, k:2 * k]
    ref = evaluate(st, action, p).reward
    equal_steps = np.minimum(int(round(EQUAL_FRACTION * p.steps)), st.max_shared)
    variants = {"bandwidth": action_for(st, alloc.steps, None, xc), "compute": action_for(st, alloc.steps, xb, None),
                "steps": action_for(st, np.where(st.mask & ~st.is_anchor, equal_steps, 0), xb, xc),
                "all": action_for(st, np.where(st.mask & ~st.is_anchor, equal_steps, 0))}
    return {name: paired(ref, evaluate(st, a, p).reward) for name, a in variants.items()}


def energy_sensitivity(st: RoundState, p: SystemParams) -> dict:
    """Share of rounds where sharing (greedy's and fork_max's steps) uses less energy than all on devices, for each
    sourced server energy per step."""
    from rlli.network.params import A10_POWER_W, A10_STEP_S, A100_POWER_W, A100_STEP_S, LUCCIONI_J_PER_STEP

    out = {}
    for label, e in (("A10 at TDP (default)", A10_POWER_W * A10_STEP_S), ("A100 SXM at TDP", A100_POWER_W * A100_STEP_S),
                     ("Luccioni et al. node average", LUCCIONI_J_PER_STEP)):
        q = p.with_(server_step_j=float(e))
        dev = device_reference(st, q)
        row = {"server_step_j": round(float(e), 2)}
        for name in ("greedy", "fork_max"):
            o = evaluate(st, BASELINES[name](st, q), q)
            row[name] = float((o.energy_j < dev.energy_j - 1e-9).mean())
        out[label] = row
    return out


def evaluate_methods(policy_dir: Path, p: SystemParams | None = None, n_states: int = 500,
                     best_kw: dict | None = None, log=print, curves: MemberCurves | None = None,
                     methods: tuple[str, ...] = ONE_ROUND_METHODS, judges: dict[str, QoeFn | None] | None = None,
                     judge_names: dict[str, str] | None = None) -> dict:
    """The one-round evaluation (the issue's JSON). Raises FileNotFoundError when a learned method has no checkpoint.

    ``judges`` maps an evaluation judge's name to its QoE function (None = the trait judge); the first one scores
    the main table, and ``cross_evaluation`` scores every method's same actions under each of them (default: the
    trait judge only). Best found searches on the trait judge's reward whatever the evaluation judge."""
    p = p or SystemParams()
    judges = dict(judges or {"trait": None})
    primary = judges[next(iter(judges))]
    curves = curves or training_curves(p.steps)
    st = heldout_states(p, n_states, curves)
    dev, srv = device_reference(st, p, primary), server_reference(st, p, primary)
    outs: dict[str, list[Outcome]] = {}
    actions: dict[str, list[np.ndarray]] = {}
    bounds: dict[str, float] = {}
    learned_from: dict[str, str] = {}
    best_action = None
    if "best_found" not in methods or "no_sharing" not in methods:
        raise ValueError("the evaluation needs best_found and no_sharing (its scale)")
    methods = tuple(methods) + tuple(a for a in ABLATIONS if a not in methods and seed_folders(policy_dir, a))
    for name in methods:
        t0 = time.perf_counter()
        if name in LEARNED + ABLATIONS and (name in REQUIRED or seed_folders(policy_dir, name)):
            folders = seed_folders(policy_dir, name)
            if not folders:
                raise FileNotFoundError(f"no {name} checkpoints under {Path(policy_dir) / name} (seed*/actor.safetensors): "
                                        "train them with scripts/train_policies.sh")
            acts = [learned_actions(f, st, p) for f in folders]
            bounds[name] = float(np.mean([at_bounds(st, a) for a in acts]))
            learned_from[name] = ", ".join(sorted({checkpoint_judge(f) for f in folders}))
        elif name in LEARNED + ABLATIONS:
            continue  # an optional learned arm without checkpoints
        else:
            kw = (best_kw or {}) if name == "best_found" else {}
            a = BASELINES[name](st, p, np.random.default_rng(EVAL_SEED), **kw)
            if name == "best_found":
                best_action = a
            acts = [a]
            bounds[name] = at_bounds(st, a)
            learned_from[name] = RULE_JUDGE.get(name, "none (a fixed rule)")
        actions[name] = acts
        outs[name] = [evaluate(st, a, p, primary) for a in acts]
        log(f"{name}: {time.perf_counter() - t0:.1f} s")
    s = {k: _summary(v, st, dev, srv) for k, v in outs.items()}
    best = s["best_found"]["reward"]
    base = s["no_sharing"]["reward"]
    methods_out = {}
    for k, v in s.items():
        methods_out[k] = {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
        methods_out[k]["gain_captured"] = (v["reward"] - base) / (best - base) if best != base else float("nan")
        methods_out[k]["oracle_share"] = v["reward"] / best
        methods_out[k]["at_bounds"] = bounds.get(k)
        methods_out[k]["personalisation"] = personalisation_score(st, outs[k])
        methods_out[k]["iqm"], methods_out[k]["iqm_ci"] = seed_iqm(v["_seed_rewards"])
        methods_out[k]["judge"] = learned_from[k]
    refs = {r.name: {"qoe": float(r.total_qoe.mean()), "qoe_ci": t_ci(r.total_qoe), "energy": float(r.energy_j.mean()),
                     "delay": float(r.delay_s[st.mask].mean()), "reward": float(r.reward.mean()),
                     "missed_deadlines": float((r.qoe[st.mask] == 1.0).mean())} for r in (dev, srv)}
    members = st.mask & ~st.is_anchor  # rounds where a method shares anything (any seed)
    shares = {k: np.any([((o.allocation.steps > 0) & members).any(1) for o in v], axis=0) for k, v in outs.items()}
    saving = {k: {"device": float((v["_energy"] < dev.energy_j - 1e-9).mean()),
                  "server": float((v["_energy"] < srv.energy_j - 1e-9).mean()),
                  "device_when_sharing": float((v["_energy"] < dev.energy_j - 1e-9)[shares[k]].mean())
                  if shares[k].any() else None,
                  "rounds_sharing": float(shares[k].mean())} for k, v in s.items()}
    best_r = s["best_found"]["_reward"]
    beaten = {}
    for k, v in s.items():
        if k == "best_found":
            continue
        margin = v["_all_rewards"] - best_r[None]  # any seed
        beaten[k] = {"rounds": int((margin > 1e-9).any(axis=0).sum()), "max_margin": float(max(margin.max(), 0.0))}
    result = {
        "env": {"name": "one-round", "rounds": n_states, "users": [2, p.k_max], "seed": EVAL_SEED,
                "curves": curves.source, "energy_price": p.energy_price, "params": p.as_dict()},
        "methods": methods_out,
        "references": refs,
        "gddpg_over_ddpg": s["gddpg"]["qoe"] / s["ddpg"]["qoe"] if "gddpg" in s and "ddpg" in s else None,
        "gddpg_over_ddpg_seeds": ratio_over_seeds(s["gddpg"]["_seed_qoe"], s["ddpg"]["_seed_qoe"])
        if "gddpg" in s and "ddpg" in s else None,
        "paired_reward": {
            "vs_greedy": {k: paired(v["_reward"], s["greedy"]["_reward"]) for k, v in s.items() if k != "greedy"},
            **({"vs_ddpg": {k: paired(v["_reward"], s["ddpg"]["_reward"]) for k, v in s.items() if k != "ddpg"}}
               if "ddpg" in s else {})},
        "energy_saving_rounds": saving,
        "beaten_best_found_rounds": beaten,
        "seed_statistics": seed_statistics({k: np.asarray(s[k]["_seed_rewards"]) for k in LEARNED + ABLATIONS
                                            if k in s}),
        "personalisation": {k: personalisation(st, v) for k, v in outs.items()},
        "prob_improvement": None,  # filled below: P(G-DDPG seed > DDPG seed) on mean reward, with its bootstrap CI
        "ablation": ablation(st, best_action, p),
        "energy_sensitivity": energy_sensitivity(st, p),
    }
    result["prob_improvement"] = result["seed_statistics"].get("p_gddpg_beats_ddpg")
    names = judge_names or {}
    result["judges"] = {jn: names.get(jn, TRAIT_JUDGE if fn is None else jn) for jn, fn in judges.items()}
    result["cross_evaluation"] = cross_evaluation(st, actions, p, judges)
    for k, row in methods_out.items():
        row["by_judge"] = {jn: {kk: vv for kk, vv in c["methods"][k].items() if kk != "seed_rewards"}
                           for jn, c in result["cross_evaluation"].items()}
    c = p.with_(**CONTENDED)  # where bandwidth and compute can matter: a 10x narrower band, a 10x slower server
    result["ablation_contended"] = {"params": CONTENDED, **ablation(st, BASELINES["best_found"](
        st, c, np.random.default_rng(EVAL_SEED), **(best_kw or {})), c)}
    return result


def li_reward_model_path(policy_dir: Path) -> Path:
    """The -LI arm's reward model: <policy_dir>/gddpg_li/reward_model.json (the one every seed trained on)."""
    return Path(policy_dir) / "gddpg_li" / "reward_model.json"


def judge_agreement(frame, judge: str) -> dict:
    """The LLM judge's own agreement with people on the same images, from a store's rating frame
    (``Store.rating_frame()``): Spearman and Krippendorff's alpha (interval) with bootstrap intervals over people,
    rlli.analysis.agreement's overall rows for ``judge`` ("backend/model"), per pairing (own profile, presets).
    {"status": "no human ratings"} when the store has none, {"status": "no ratings by <judge>"} when people rated
    but this judge did not rate the same images."""
    from rlli.analysis.agreement import agreement_table

    if frame is None or not len(frame) or not (frame["rater_kind"] == "human").any():
        return {"status": "no human ratings", "judge": judge}
    backend, _, model = judge.partition("/")
    rows = [r for r in agreement_table(frame, resamples=1000, seed=0)
            if r.slice == "overall" and r.backend == backend and r.model == model]
    if not rows:
        return {"status": f"no ratings by {judge} on images people rated", "judge": judge,
                "human_ratings": int((frame["rater_kind"] == "human").sum())}
    return {"status": "ok", "judge": judge,
            "pairings": {r.pairing: {"n_pairs": r.n_pairs, "n_humans": r.n_humans, "n_failed": r.n_failed,
                                     **{k: {"value": e.value, "ci": [e.low, e.high]} for k, e in r.statistics.items()
                                        if k in ("spearman", "alpha", "mae")}} for r in rows}}


# ----------------------------------------------------------------------------- sequential evaluation


def run_episode(env, method, seed: int, rng_seed: int = 0) -> dict:
    """One episode with ``method(env, state, rng) -> action``; rewards, discounted return, energy, QoE."""
    env.reset(seed=seed)
    rng = np.random.default_rng(rng_seed)
    rewards, qoe, energy, missed = [], [], [], []
    while True:
        a = method(env, env.state, rng)
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
        qoe.append(info["total_qoe"])
        energy.append(info["energy_j"])
        missed.append(info["missed"])
        if term or trunc:
            break
    disc = float(sum(env.gamma**t * r for t, r in enumerate(rewards)))
    return {"return": disc, "reward": float(np.sum(rewards)), "qoe": float(np.mean(qoe)), "energy": float(np.mean(energy)),
            "missed": int(np.sum(missed))}


def _baseline_method(name: str, kw: dict | None = None):
    fn = BASELINES[name]
    return lambda env, st, rng: fn(st, env.params, rng, **(kw or {}))[0]


def _learned_method(folder: Path):
    from rlli.policy.train import act, base_action

    actor, meta = load_actor(folder)
    version = int(meta.get("obs_version", 1))
    n = int(meta.get("best_of", 1))
    critic = load_critic(folder, meta) if n > 1 else None

    def method(env, st, rng):
        obs = encode(st, env.params, version)
        return act(actor, obs, seed=int(rng.integers(0, 2**31 - 1)),
                   base=base_action(st, env.params, bool(meta.get("residual"))), critic=critic, best_of=n)[0]
    return method


def evaluate_sequential(policy_dir: Path, p: SystemParams | None = None, episodes: int = 20, episode_length: int = 20,
                        best_kw: dict | None = None, mpc_kw: dict | None = None, log=print,
                        curves: MemberCurves | None = None, methods: tuple[str, ...] | None = None) -> dict:
    """Every method on the same ``episodes`` of the sequential env (same seeds: the same arrivals, stays, fading and
    prompts whatever the actions); discounted return with paired intervals against myopic."""
    from rlli.network.env import SequentialAllocationEnv
    from rlli.policy.seq_baselines import SEQ_BASELINES

    p = p or SystemParams()
    curves = curves or training_curves(p.steps)
    env = SequentialAllocationEnv(p, curves, episode_length=episode_length)
    names = methods or ("gddpg", "ddpg", "greedy", "no_sharing", "equal", "fork_max", "myopic", "mpc")
    runs: dict[str, list[list[dict]]] = {}
    for name in names:
        t0 = time.perf_counter()
        if name in LEARNED:
            folders = seed_folders(policy_dir, name)
            if not folders:
                raise FileNotFoundError(f"no {name} checkpoints under {Path(policy_dir) / name}")
            fns = [_learned_method(f) for f in folders]
        elif name in SEQ_BASELINES:
            kw = {**(best_kw or {}), **((mpc_kw or {}) if name == "mpc" else {})}
            fns = [lambda e, s, r, f=SEQ_BASELINES[name], kw=kw: f(e, s, r, **kw)]
        else:
            fns = [_baseline_method(name)]
        runs[name] = [[run_episode(env, fn, EVAL_SEED + i, i) for i in range(episodes)] for fn in fns]
        log(f"{name}: {time.perf_counter() - t0:.1f} s")
    ret = {k: np.mean([[e["return"] for e in seed] for seed in v], axis=0) for k, v in runs.items()}
    methods_out = {}
    for k, v in runs.items():
        flat = [e for seed in v for e in seed]
        methods_out[k] = {"return": float(ret[k].mean()), "return_ci": t_ci(ret[k]),
                          "qoe": float(np.mean([e["qoe"] for e in flat])),
                          "qoe_ci": t_ci(np.mean([[e["qoe"] for e in seed] for seed in v], axis=0)),
                          "energy": float(np.mean([e["energy"] for e in flat])),
                          "missed_per_episode": float(np.mean([e["missed"] for e in flat])), "seeds": len(v)}
    best = "myopic" if "myopic" in ret else None
    if best and "no_sharing" in ret:
        for k in methods_out:
            span = ret[best].mean() - ret["no_sharing"].mean()
            methods_out[k]["gain_captured"] = float((ret[k].mean() - ret["no_sharing"].mean()) / span) if span else None
            methods_out[k]["oracle_share"] = float(ret[k].mean() / ret[best].mean())
    return {"env": {"name": "sequential", "episodes": episodes, "episode_length": episode_length, "gamma": env.gamma,
                    "arrival_rate": env.arrival_rate, "mean_stay": env.mean_stay, "background_load": env.background_load,
                    "slot_s": p.slot_s, "curves": curves.source, "energy_price": p.energy_price, "params": p.as_dict()},
            "methods": methods_out,
            "paired_return": {"vs_myopic": {k: paired(v, ret["myopic"]) for k, v in ret.items() if k != "myopic"}}
            if "myopic" in ret else {},
            "gddpg_over_ddpg": methods_out["gddpg"]["qoe"] / methods_out["ddpg"]["qoe"]
            if "gddpg" in methods_out and "ddpg" in methods_out else None}


# ----------------------------------------------------------------------------- benchmark


def _torch_actions(folder: Path, p: SystemParams):
    """A checkpoint's torch modules deciding one round as training does (train.act): bench's reference for the numpy
    path the deployed policy takes (rlli.policy.inference)."""
    from rlli.policy.train import act, base_action

    actor, meta = load_actor(folder)
    n = int(meta.get("best_of", 1))
    critic = load_critic(folder, meta) if n > 1 else None
    v, residual = int(meta.get("obs_version", 1)), bool(meta.get("residual"))
    return lambda r, i: act(actor, encode(r, p, v), seed=i, base=base_action(r, p, residual), critic=critic, best_of=n)


def bench(policy, p: SystemParams, n_states: int = 64, best_kw: dict | None = None, threads: int = 1) -> dict:
    """Milliseconds per allocation (one round of K = k_max users at a time: encode, act, map to an action) for
    ``policy``, for a learned policy's torch modules (train.act, the path before the numpy one) and for best found
    on the same rounds, in the same run, torch pinned to ``threads``; scoring the actions is not timed."""
    import torch

    torch.set_num_threads(threads)
    st = heldout_states(p, n_states, seed=BENCH_SEED, k_range=(p.k_max, p.k_max))
    rounds = [st.take(i) for i in range(n_states)]

    def timed(fn) -> tuple[float, float]:
        t0 = time.perf_counter()
        actions = [fn(r, i) for i, r in enumerate(rounds)]
        ms = 1000.0 * (time.perf_counter() - t0) / n_states
        return ms, float(np.mean([evaluate(r, a, p).reward[0] for r, a in zip(rounds, actions)]))

    policy.actions(rounds[0], p, 0)  # warm-up
    ms, reward = timed(lambda r, i: policy.actions(r, p, i))
    torch_ms = torch_reward = None
    if getattr(policy, "folder", None) is not None:  # a learned policy: the same checkpoint on its torch modules
        torch_actions = _torch_actions(policy.folder, p)
        torch_actions(rounds[0], 0)  # warm-up
        torch_ms, torch_reward = timed(torch_actions)
    best_ms, best_reward = timed(lambda r, i: BASELINES["best_found"](r, p, np.random.default_rng(i), **(best_kw or {})))
    return {"policy": policy.name, "k": p.k_max, "states": n_states, "batch": 1, "ms_per_decision": ms,
            "oracle_ms_per_decision": best_ms, "best_found_ms_per_decision": best_ms, "speedup": best_ms / ms,
            "reward": reward, "oracle_reward": best_reward, "oracle_share": reward / best_reward,
            "torch_ms_per_decision": torch_ms, "torch_reward": torch_reward,
            "speedup_over_torch": torch_ms / ms if torch_ms else None,
            "threads": threads, "torch_threads": torch.get_num_threads(), "cpu": cpu_model(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def validation_references(p: SystemParams | None = None, n: int = 256) -> dict[str, float]:
    """Best found's and the greedy heuristic's mean reward on the training runs' validation rounds."""
    from rlli.policy.train import VALIDATION_SEED

    p = p or SystemParams()
    st = heldout_states(p, n, seed=VALIDATION_SEED)
    return {name: float(evaluate(st, BASELINES[name](st, p, np.random.default_rng(VALIDATION_SEED)), p).reward.mean())
            for name in ("best_found", "greedy", "no_sharing")}
