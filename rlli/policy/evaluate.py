"""``python -m rlli eval policy`` and ``python -m rlli bench policy``: every method on the same held-out
rounds, and the time one allocation takes against the oracle's on the same rounds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import stats

from rlli.network.allocation import Outcome, evaluate
from rlli.network.params import SystemParams
from rlli.network.state import RoundState, encode, sample_states
from rlli.policy.api import LEARNED, POLICY_NAMES
from rlli.policy.baselines import BASELINES
from rlli.policy.checkpoint import load_actor
from rlli.policy.forks import training_curves

EVAL_SEED = 20_251_127  # the held-out rounds (training draws from seeds 0.., validation from 999983)
BENCH_SEED = 7_654_321


def heldout_states(p: SystemParams, n: int, calibration: Path, seed: int = EVAL_SEED,
                   k_range: tuple[int, int] | None = None) -> RoundState:
    return sample_states(np.random.default_rng(seed), n, p, training_curves(calibration, p.steps), k_range)


def seed_folders(policy_dir: Path, name: str) -> list[Path]:
    root = Path(policy_dir) / name
    found = [f for f in root.glob("seed*") if (f / "actor.safetensors").is_file()]
    return sorted(found, key=lambda f: int(f.name[4:]) if f.name[4:].isdigit() else 1 << 30)


def learned_outcomes(folders: list[Path], st: RoundState, p: SystemParams) -> list[Outcome]:
    from rlli.policy.train import act, base_action

    obs = encode(st, p)
    outs = []
    for f in folders:
        actor, meta = load_actor(f)
        base = base_action(st, p, bool(meta.get("residual")))
        outs.append(evaluate(st, act(actor, obs, seed=EVAL_SEED, base=base), p))
    return outs


def _summary(outs: list[Outcome], st: RoundState) -> dict:
    """Per-round figures averaged over the outcomes (training seeds), then over rounds."""
    qoe = np.mean([o.total_qoe for o in outs], axis=0)
    reward = np.mean([o.reward for o in outs], axis=0)
    energy = np.mean([o.energy_j for o in outs], axis=0)
    delay = np.mean([o.delay_s[st.mask].mean() for o in outs])
    n = len(qoe)
    half = float(stats.t.ppf(0.975, n - 1) * qoe.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    seed_means = [float(o.total_qoe.mean()) for o in outs]
    return {"qoe": float(qoe.mean()), "qoe_ci": [float(qoe.mean()) - half, float(qoe.mean()) + half],
            "energy": float(energy.mean()), "delay": float(delay), "reward": float(reward.mean()),
            "seeds": len(outs), "seed_std": float(np.std(seed_means, ddof=1)) if len(outs) > 1 else 0.0}


def evaluate_methods(policy_dir: Path, calibration: Path, p: SystemParams | None = None, n_states: int = 500,
                     oracle_kw: dict | None = None, log=print) -> tuple[dict, dict]:
    """(the issue's JSON, extra figures per method: reward, seeds, seed_std). Raises FileNotFoundError when a
    learned method has no checkpoint."""
    p = p or SystemParams()
    st = heldout_states(p, n_states, calibration)
    summaries = {}
    for name in POLICY_NAMES:
        t0 = time.perf_counter()
        if name in LEARNED:
            folders = seed_folders(policy_dir, name)
            if not folders:
                raise FileNotFoundError(f"no {name} checkpoints under {Path(policy_dir) / name} (seed*/actor.safetensors): "
                                        "train them with scripts/train_policies.sh")
            outs = learned_outcomes(folders, st, p)
        else:
            kw = (oracle_kw or {}) if name == "oracle" else {}
            outs = [evaluate(st, BASELINES[name](st, p, np.random.default_rng(EVAL_SEED), **kw), p)]
        summaries[name] = _summary(outs, st)
        log(f"{name}: {time.perf_counter() - t0:.1f} s")
    ceiling = summaries["oracle"]["reward"]
    methods = {k: {"qoe": v["qoe"], "qoe_ci": v["qoe_ci"], "energy": v["energy"], "delay": v["delay"],
                   "oracle_share": v["reward"] / ceiling} for k, v in summaries.items()}
    result = {"methods": methods, "gddpg_over_ddpg": summaries["gddpg"]["qoe"] / summaries["ddpg"]["qoe"]}
    extra = {k: {"reward": v["reward"], "seeds": v["seeds"], "seed_std": v["seed_std"]} for k, v in summaries.items()}
    return result, extra


def bench(policy, p: SystemParams, calibration: Path, n_states: int = 64, oracle_kw: dict | None = None) -> dict:
    """Milliseconds per allocation (one round of K = k_max users at a time: encode, act, map to an action) for
    ``policy`` and for the oracle on the same rounds, in the same run; scoring the actions is not timed."""
    st = heldout_states(p, n_states, calibration, seed=BENCH_SEED, k_range=(p.k_max, p.k_max))
    rounds = [st.take(i) for i in range(n_states)]

    def timed(fn) -> tuple[float, float]:
        """Milliseconds per decision (encode, act, map to an action) and, outside the clock, the mean reward."""
        t0 = time.perf_counter()
        actions = [fn(r, i) for i, r in enumerate(rounds)]
        ms = 1000.0 * (time.perf_counter() - t0) / n_states
        return ms, float(np.mean([evaluate(r, a, p).reward[0] for r, a in zip(rounds, actions)]))

    policy.actions(rounds[0], p, 0)  # warm-up
    ms, reward = timed(lambda r, i: policy.actions(r, p, i))
    oracle_ms, oracle_reward = timed(lambda r, i: BASELINES["oracle"](r, p, np.random.default_rng(i),
                                                                       **(oracle_kw or {})))
    return {"policy": policy.name, "k": p.k_max, "states": n_states, "ms_per_decision": ms,
            "oracle_ms_per_decision": oracle_ms, "speedup": oracle_ms / ms, "reward": reward,
            "oracle_reward": oracle_reward, "oracle_share": reward / oracle_reward}


def validation_references(calibration: Path, p: SystemParams | None = None, n: int = 256) -> dict[str, float]:
    """The oracle's and the greedy heuristic's mean reward on the training runs' validation rounds."""
    from rlli.policy.train import VALIDATION_SEED

    p = p or SystemParams()
    st = heldout_states(p, n, calibration, seed=VALIDATION_SEED)
    return {name: float(evaluate(st, BASELINES[name](st, p, np.random.default_rng(VALIDATION_SEED)), p).reward.mean())
            for name in ("oracle", "greedy", "no_sharing")}
