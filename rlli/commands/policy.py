"""Commands: ``train policy``, ``eval policy``, ``eval policy-curves``, ``bench policy``."""

from __future__ import annotations

import sys
from pathlib import Path

from rlli.commands.io import fail, print_json


def _train(args) -> int:
    from rlli.policy.train import args_from, train

    try:
        a = args_from(args)
    except ValueError as e:
        return fail(str(e))
    qoe_fn = None
    if args.judge == "llm":
        from rlli.policy.judged import llm_qoe_fn

        try:
            qoe_fn = llm_qoe_fn(log=lambda m: print(m, flush=True))
        except (RuntimeError, ValueError, OSError) as e:
            return fail(f"the LLM judge is not usable for training: {e}")
    try:
        train(a, qoe_fn=qoe_fn, log=lambda m: print(m, flush=True))
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    return 0


def _settings_params():
    from rlli.config import Settings
    from rlli.network.params import SystemParams

    s = Settings()
    return s, SystemParams.from_settings(s)


def _eval(args) -> int:
    from rlli.policy.evaluate import evaluate_methods

    s, p = _settings_params()
    if not 1 <= args.states <= 100_000:
        return fail("--states must be between 1 and 100000")
    policy_dir = Path(args.policy_dir) if args.policy_dir else s.policy_dir
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        result, extra = evaluate_methods(policy_dir, s.calibration, p, args.states, log=log)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    if args.json:
        print_json(result)
        return 0
    print(f"{args.states} held-out rounds (2..{p.k_max} users), judge trait/parametric-v1, energy price "
          f"{p.energy_price}/J; learned methods averaged over their seeds")
    print(f"{'method':>11s} {'total QoE':>10s} {'95% CI':>17s} {'energy J':>9s} {'delay s':>8s} {'reward':>8s} "
          f"{'of oracle':>9s} {'seeds':>5s} {'seed sd':>7s}")
    for k, v in result["methods"].items():
        e = extra[k]
        print(f"{k:>11s} {v['qoe']:10.3f} [{v['qoe_ci'][0]:7.3f}, {v['qoe_ci'][1]:7.3f}] {v['energy']:9.2f} "
              f"{v['delay']:8.3f} {e['reward']:8.3f} {100 * v['oracle_share']:8.1f}% {e['seeds']:5d} {e['seed_std']:7.3f}")
    print(f"G-DDPG / DDPG total QoE: {result['gddpg_over_ddpg']:.4f} (the paper reports 1.15)")
    return 0


def _curves(args) -> int:
    from rlli.config import Settings
    from rlli.policy.figure import curves_by_algo, learning_curve_svg

    s = Settings()
    policy_dir = Path(args.policy_dir) if args.policy_dir else s.policy_dir
    curves = curves_by_algo(policy_dir)
    if not curves:
        return fail(f"no learning curves under {policy_dir} (<algo>/seed*/curve.csv)")
    from rlli.policy.evaluate import validation_references

    refs = validation_references(s.calibration)
    svg = learning_curve_svg(curves, refs, "Validation reward while training (256 fixed rounds)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg)
    print(f"wrote {out}")
    return 0


def _bench(args) -> int:
    from rlli.policy.api import load_policy
    from rlli.policy.evaluate import bench

    s, p = _settings_params()
    if not 1 <= args.states <= 10_000:
        return fail("--states must be between 1 and 10000")
    try:
        policy = load_policy(args.policy or s.policy, s)
    except ValueError as e:
        return fail(str(e))
    if policy.notice:
        print(f"notice: {policy.notice.message}", file=sys.stderr)
    try:
        r = bench(policy, p, s.calibration, args.states)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    if args.json:
        print_json(r)
        return 0
    print(f"{r['states']} rounds of K = {r['k']} users, one at a time")
    print(f"{r['policy']}: {r['ms_per_decision']:.3f} ms per allocation (reward {r['reward']:.3f})")
    print(f"oracle: {r['oracle_ms_per_decision']:.1f} ms per allocation (reward {r['oracle_reward']:.3f})")
    print(f"speed-up {r['speedup']:.0f}x at {100 * r['oracle_share']:.1f}% of the oracle's reward")
    return 0


def register(commands) -> None:
    from rlli.policy.train import add_arguments

    t = commands.train.add_parser("policy", help="train an allocation policy (G-DDPG or DDPG)")
    add_arguments(t)
    t.set_defaults(func=_train)

    e = commands.eval.add_parser("policy", help="every allocation method on the same held-out rounds")
    e.add_argument("--states", type=int, default=500)
    e.add_argument("--policy-dir", default="", help="default RLLI_POLICY_DIR (assets/policies)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)

    c = commands.eval.add_parser("policy-curves", help="draw the learning curves of the shipped policies (SVG)")
    c.add_argument("--policy-dir", default="")
    c.add_argument("--out", default="docs/figures/policy_learning_curve.svg")
    c.set_defaults(func=_curves)

    b = commands.bench.add_parser("policy", help="milliseconds per allocation (K = k_max) against the oracle")
    b.add_argument("--states", type=int, default=64)
    b.add_argument("--policy", default="", help="default RLLI_POLICY")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
