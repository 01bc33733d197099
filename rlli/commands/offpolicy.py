"""Commands on the store's logged rounds: ``eval policy --reward store`` (a candidate policy's value on the rounds
the app served, by inverse propensity and doubly robust estimates) and ``train policy --reward store`` (fit the
reward model on the stored ratings and fine-tune a checkpoint on the simulator with it as the QoE function).

Both are reached from the ``train policy`` / ``eval policy`` parsers (rlli/commands/policy.py) with
``--reward store``; they read ``--store`` (default RLLI_DATABASE_URL), ``--raters`` (people, agents or both) and,
for eval, ``--candidates`` (names, or name=FOLDER for a checkpoint folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlli.commands.io import fail, print_json


def _store_url(args) -> str:
    from rlli.config import Settings

    url = (getattr(args, "store", "") or "").strip()
    if not url:
        return Settings().database_url
    if "://" not in url and Path(url).is_file():  # a plain path to an SQLite file
        return f"sqlite:///{Path(url).resolve()}"
    return url


def _raters(args) -> str:
    return getattr(args, "raters", "") or "both"


def _candidates(args, settings) -> dict:
    """label -> Policy for --candidates (default: the live policy, RLLI_POLICY, and greedy beside it)."""
    from rlli.policy.api import POLICY_NAMES, load_policy

    raw = (getattr(args, "candidates", "") or "").strip()
    names = [c.strip() for c in raw.split(",") if c.strip()] if raw else \
        [settings.policy, "greedy" if settings.policy != "greedy" else "best_found"]
    out = {}
    for label in names:
        name, _, folder = label.partition("=")
        if name not in POLICY_NAMES:
            raise ValueError(f"unknown candidate {name!r}; choose from {', '.join(POLICY_NAMES)} (or name=FOLDER for a "
                             "checkpoint folder)")
        if folder and not Path(folder).is_dir():
            raise ValueError(f"candidate {label}: no checkpoint folder {folder}")
        out[label] = load_policy(name, settings, folder=folder or None)
    return out


def run_eval(args) -> int:
    """``eval policy --reward store``: IPS, SNIPS and DR (with 95% bootstrap CIs) of each candidate on the store's
    logged rounds."""
    import torch

    from rlli.config import Settings
    from rlli.policy.offpolicy import RATERS, OffPolicyError, evaluate_candidates

    torch.set_num_threads(1)
    raters = _raters(args)
    if raters not in RATERS:
        return fail(f"--raters must be one of {', '.join(RATERS)}")
    epsilon = float(getattr(args, "epsilon", 0.0) or 0.0)
    if not 0.0 <= epsilon <= 1.0:
        return fail("--epsilon must be between 0 and 1")
    policy_dir = getattr(args, "policy_dir", "") or ""
    settings = Settings(policy_dir=policy_dir) if policy_dir else Settings()
    try:
        candidates = _candidates(args, settings)
        result = evaluate_candidates(_store_url(args), candidates, raters=raters, epsilon=epsilon)
    except (OffPolicyError, ValueError) as e:
        return fail(str(e))
    if getattr(args, "json", False):
        print_json(result)
        return 0
    print(f"{result['logged_rounds']} logged rounds, raters: {raters}; reward model: {result['reward_model']['kind']} "
          f"on {result['reward_model']['ratings']} ratings")
    for why, n in result["skipped"].items():
        print(f"  skipped {n} round(s): {why}")

    def ci(c):
        return "" if not c else f" [{c[0]:.2f}, {c[1]:.2f}]"

    for label, r in result["candidates"].items():
        if r.get("error"):
            print(f"{label:>12s}: {r['error']}")
            continue
        ips = "undefined" if r["ips"] is None else f"{r['ips']:.2f}{ci(r['ips_ci'])}"
        snips = "undefined" if r["snips"] is None else f"{r['snips']:.2f}"
        dr = "-" if r["dr"] is None else f"{r['dr']:.2f}{ci(r['dr_ci'])}"
        print(f"{label:>12s}: IPS {ips}  SNIPS {snips}  DR {dr}  (ESS {r['ess']:.1f} of {r['rounds']} rounds, "
              f"{100 * r['clipped_share']:.0f}% clipped; logged mean {r['logged_mean_reward']:.2f}; "
              f"{r['ratings']} ratings)")
        for key in ("undefined", "warning", "dr_note", "notice"):
            if r.get(key):
                print(f"{'':>14s}{r[key]}")
    return 0


RECIPE = ("denoise_steps", "hidden", "obs_version", "bc", "best_of", "residual", "advantage", "reward_scale")


def run_train(args) -> int:
    """``train policy --reward store``: the reward model on the stored ratings, then the named checkpoint (``--init``,
    default the shipped RLLI_POLICY_DIR/<algo>/seed<RLLI_POLICY_SEED>) fine-tuned on the simulator with it."""
    from rlli.config import Settings
    from rlli.network.params import SystemParams
    from rlli.policy.api import checkpoint_folder
    from rlli.policy.offpolicy import RATERS, OffPolicyError, fit_reward_model, load_logged
    from rlli.policy.train import ROOT, args_from, train
    from rlli.store.db import redact

    raters = _raters(args)
    if raters not in RATERS:
        return fail(f"--raters must be one of {', '.join(RATERS)}")
    settings = Settings()
    url = _store_url(args)
    try:
        a = args_from(args)
        logged = load_logged(url)
        if not logged.rounds:
            raise OffPolicyError("no logged rounds in the store to learn from; fill it with `python -m rlli bench round "
                                 "--rounds 20` or serve rounds with the app")
        model, described = fit_reward_model(logged.rounds, raters)
    except (OffPolicyError, ValueError) as e:
        return fail(str(e))
    n_ratings = int(described["ratings"])
    rounds = sum(1 for r in logged.rounds if r.rated(raters))
    if not a.init:
        a.init = str(checkpoint_folder(a.algo, settings))
    try:  # fine-tuning keeps the recipe of the checkpoint it starts from (layout, BC weight, best-of-N)
        recipe = json.loads((Path(a.init) / "config.json").read_text()).get("args", {})
    except (OSError, ValueError):
        return fail(f"--init {a.init}: no readable checkpoint (config.json) to fine-tune")
    for key in RECIPE:
        if key in recipe:
            setattr(a, key, type(getattr(a, key))(recipe[key]))
    if not a.out:
        a.out = str(ROOT / "runs" / "policy" / f"{a.algo}-store-{raters}-s{a.seed}")
    judge = f"store:{raters}"

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    log(f"reward model on {n_ratings} stored ratings by {raters} from {rounds} logged rounds: {described}")
    try:
        from rlli.policy.reward_model import RewardModel

        kw = {"reward_model": model} if isinstance(model, RewardModel) else {"qoe_fn": model.qoe}
        result = train(a, SystemParams.from_settings(settings), log=log, judge=judge, **kw)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    folder = Path(result["folder"])
    config = folder / "config.json"
    meta = json.loads(config.read_text())
    learned = {"judge": judge, "rounds": rounds, "ratings": n_ratings, "store": redact(url), "init": a.init,
               "simulated_rounds": int(meta.get("iterations_done", 0)) * int(a.rounds_per_iteration),
               "skipped_rounds": sum(logged.skipped.values())}
    meta["learned_from"] = learned
    config.write_text(json.dumps(meta, indent=1))
    if getattr(args, "json", False):
        print_json({**{k: v for k, v in result.items()}, "learned_from": learned})
    else:
        print(f"fine-tuned {a.init} on {judge} ({rounds} logged rounds, {n_ratings} ratings) -> {folder}")
    return 0


__all__ = ["run_eval", "run_train"]
