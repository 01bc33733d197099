"""Commands: ``train policy``, ``eval policy``, ``eval policy-curves``, ``bench policy``."""

from __future__ import annotations

import sys
from pathlib import Path

from rlli.commands.io import fail, print_json


def _train(args) -> int:
    if args.reward == "store":
        from rlli.commands.offpolicy import run_train

        return run_train(args)
    if args.env == "sequential":
        from rlli.policy import train_sequential

        try:
            train_sequential.train(train_sequential.args_from(args), log=lambda m: print(m, flush=True))
        except (ValueError, FileNotFoundError) as e:
            return fail(str(e))
        return 0
    from rlli.policy.train import args_from, saved_reward_model, train

    try:
        a = args_from(args)
    except ValueError as e:
        return fail(str(e))
    log = lambda m: print(m, flush=True)  # noqa: E731
    model, label = None, None
    if a.reward_model:
        try:
            model, label = saved_reward_model(a.reward_model)
        except ValueError as e:
            return fail(str(e))
    elif a.query_budget is not None:  # --judge llm, or the trait judge through the same pipeline (the control)
        from rlli.config import ROOT, Settings
        from rlli.network.params import SystemParams
        from rlli.personas import get_judge
        from rlli.policy.judged import fit_reward_model, judge_label

        s = Settings()
        try:
            judge = get_judge(a.judge, s)
            cache = a.query_cache or ROOT / "runs" / "policy" / "judge-queries.json"
            model = fit_reward_model(judge, a.query_budget, cache, SystemParams(), log=log)
        except (RuntimeError, ValueError, OSError) as e:
            return fail(f"the {a.judge} judge is not usable for training: {e}")
        label = judge_label(a.judge, model)
    if getattr(args, "fit_only", False):
        if model is None:
            return fail("--fit-only needs --query-budget (a judge to ask)")
        path = model.save(a.folder() / "reward_model.json")
        print(f"reward model ({label}) -> {path}", flush=True)
        return 0
    try:
        train(a, reward_model=model, judge=label, log=log)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    return 0


def _settings_params():
    from rlli.config import Settings
    from rlli.network.params import SystemParams

    s = Settings()
    return s, SystemParams.from_settings(s)


def _eval_judges(args, policy_dir: Path) -> tuple[dict, dict]:
    """The evaluation judges of ``--judge``: trait (the parametric judge), llm (the LLM's reward model: --reward-model,
    default <policy-dir>/gddpg_li/reward_model.json) or both (trait first)."""
    from rlli.policy.evaluate import TRAIT_JUDGE, li_reward_model_path

    judges, names = {}, {}
    if args.judge in ("trait", "both"):
        judges["trait"], names["trait"] = None, TRAIT_JUDGE
    if args.judge in ("llm", "both"):
        from rlli.policy.reward_model import RewardModel

        path = Path(args.reward_model) if args.reward_model else li_reward_model_path(policy_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no reward model at {path}: train the -LI arm (scripts/train_li.sh) or pass "
                                    "--reward-model FILE")
        model = RewardModel.load(path)
        judges["llm"] = model.qoe
        shown = path.resolve().relative_to(Path.cwd()) if path.resolve().is_relative_to(Path.cwd()) else path
        names["llm"] = f"{model.judge} via its reward model ({len(model.score)} queries, {shown})"
    return judges, names


def _agreement_with_people(url: str, names: dict) -> dict:
    """Each LLM evaluation judge's agreement with people in the store at ``url`` (read only, no migration)."""
    from rlli.config import Settings
    from rlli.policy.evaluate import judge_agreement
    from rlli.store.repository import Store

    judges = [n.split(" via ")[0] for k, n in names.items() if k != "trait"]
    if not judges:
        return {"status": "only the trait judge was evaluated (--judge llm or both for the LLM's agreement)"}
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return {"status": f"no store at {url[len('sqlite:///'):]}"}
    try:
        with Store.from_settings(Settings(database_url=url), migrate=False) as store:
            frame = store.rating_frame()
    except Exception as e:  # noqa: BLE001 - a store that cannot be read is reported, not a traceback
        return {"status": f"cannot read the store: {type(e).__name__}: {str(e)[:200]}"}
    return {j: judge_agreement(frame, j) for j in judges}


def _eval(args) -> int:
    if args.reward == "store":
        from rlli.commands.offpolicy import run_eval

        return run_eval(args)
    from rlli.policy.evaluate import evaluate_methods, evaluate_sequential

    s, p = _settings_params()
    if not 1 <= args.states <= 100_000:
        return fail("--states must be between 1 and 100000")
    if not 0 <= args.live_like <= 10_000:
        return fail("--live-like must be between 0 and 10000")
    if not 1 <= args.episodes <= 10_000 or not 1 <= args.episode_length <= 1000:
        return fail("--episodes must be between 1 and 10000 and --episode-length between 1 and 1000")
    policy_dir = Path(args.policy_dir) if args.policy_dir else s.policy_dir
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        if args.env == "sequential":
            result = evaluate_sequential(policy_dir, p, args.episodes, args.episode_length, log=log)
        else:
            judges, names = _eval_judges(args, policy_dir)
            result = evaluate_methods(policy_dir, p, args.states, log=log, judges=judges, judge_names=names)
            if args.store:
                result["judge_agreement"] = _agreement_with_people(args.store, names)
            if args.live_like:
                from rlli.policy.live_like import evaluate_live_like

                result["live_like"] = evaluate_live_like(args.live_like, s.model_copy(update={"policy_dir": policy_dir}),
                                                         log=log)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    if args.json:
        print_json(result)
        return 0
    if args.env == "sequential":
        env = result["env"]
        print(f"{env['episodes']} episodes of {env['episode_length']} rounds, gamma {env['gamma']}, energy price "
              f"{env['energy_price']}/J; learned methods averaged over their seeds")
        print(f"{'method':>11s} {'return':>8s} {'95% CI':>17s} {'QoE/round':>9s} {'energy J':>9s} {'missed':>6s} "
              f"{'vs myopic':>24s}")
        for k, v in result["methods"].items():
            d = result["paired_return"].get("vs_myopic", {}).get(k)
            vs = f"{d['mean']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]" if d else ""
            print(f"{k:>11s} {v['return']:8.2f} [{v['return_ci'][0]:7.2f}, {v['return_ci'][1]:7.2f}] {v['qoe']:9.2f} "
                  f"{v['energy']:9.1f} {v['missed_per_episode']:6.2f} {vs:>24s}")
        return 0
    first = next(iter(result["judges"]))
    print(f"{args.states} held-out rounds (2..{p.k_max} users), member curves from the fork rule, judge "
          f"{result['judges'][first]}, energy price {p.energy_price}/J; learned methods averaged over their seeds")
    print(f"{'method':>14s} {'total QoE':>9s} {'95% CI':>17s} {'energy J':>9s} {'vs dev J':>8s} {'delay s':>7s} "
          f"{'reward':>7s} {'gain':>6s} {'min QoE':>7s} {'Jain':>5s} {'saves':>6s} {'bounds':>6s} {'pers.':>5s}")
    for k, v in result["methods"].items():
        sv = result["energy_saving_rounds"][k]["device"]
        print(f"{k:>14s} {v['qoe']:9.3f} [{v['qoe_ci'][0]:7.3f}, {v['qoe_ci'][1]:7.3f}] {v['energy']:9.1f} "
              f"{v['energy_vs_device']:8.1f} {v['delay']:7.2f} {v['reward']:7.3f} {100 * v['gain_captured']:5.0f}% "
              f"{v['min_qoe']:7.2f} {v['jain']:5.3f} {100 * sv:5.0f}% {100 * v['at_bounds']:5.0f}% "
              f"{v['personalisation']:5.2f}")
    for name, r in result["references"].items():
        print(f"reference, {name}: total QoE {r['qoe']:.3f}, energy {r['energy']:.1f} J, delay {r['delay']:.2f} s")
    print("ablation (reward lost when best found's choice is equalised):",
          ", ".join(f"{k} {v['mean']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" for k, v in result["ablation"].items()))
    if result["gddpg_over_ddpg"] is not None:
        r = result["gddpg_over_ddpg_seeds"]
        print(f"G-DDPG / DDPG total QoE: {result['gddpg_over_ddpg']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] over "
              f"{r['seeds'][0]} / {r['seeds'][1]} seeds (the paper reports 1.15)")
    pi = result.get("prob_improvement")
    if pi:
        print(f"P(G-DDPG seed > DDPG seed, mean reward): {pi['p']:.2f} [{pi['ci'][0]:.2f}, {pi['ci'][1]:.2f}]")
    if len(result["judges"]) > 1 or "gddpg_li" in result["methods"]:
        print("cross-evaluation (the same actions scored under each judge; reward, gain captured, reward - greedy):")
        for jn, c in result["cross_evaluation"].items():
            print(f"  under {jn} ({result['judges'][jn]}):")
            for k, v in c["methods"].items():
                d = v["vs_greedy"]
                print(f"  {k:>15s} {v['reward']:8.3f} {100 * v['gain_captured']:6.1f}%  {d['mean']:+.3f} "
                      f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]  learned from {result['methods'][k]['judge']}")
            for arm in ("gddpg_li", "gddpg_trait_rm"):
                d = c.get(f"{arm}_minus_gddpg")
                if d:
                    print(f"  {arm} - gddpg: {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] per round; "
                          f"P({arm} seed > gddpg seed) {d['p_seed_beats']:.2f}")
    agreement = result.get("judge_agreement") or {}
    if "status" in agreement:
        print(f"agreement with people: {agreement['status']}")
    for j, a in agreement.items():
        if not isinstance(a, dict):
            continue
        if a.get("status") != "ok":
            print(f"agreement of {j} with people: {a.get('status')}")
            continue
        for pairing, r in a["pairings"].items():
            print(f"agreement of {j} with people ({pairing}): Spearman {r['spearman']['value']}, Krippendorff's "
                  f"alpha {r['alpha']['value']} over {r['n_pairs']} pairs, {r['n_humans']} people")
    if "live_like" in result:
        ll = result["live_like"]
        print(f"live-like rounds: {ll['rounds']} ({ll['users'][0]}..{ll['users'][1]} users, {ll['chunked_rounds']} chunked)")
        for k, v in ll["methods"].items():
            d = v["vs_greedy"]
            print(f"{k:>11s} total QoE {v['qoe']:.3f} reward {v['reward']:.3f} vs greedy {d['mean']:+.3f} "
                  f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] (ran as {v['ran_as']})")
    return 0


def _curves(args) -> int:
    from rlli.config import Settings
    from rlli.policy.figure import curves_by_algo, learning_curve_svg

    s = Settings()
    policy_dir = Path(args.policy_dir) if args.policy_dir else s.policy_dir
    try:
        curves = curves_by_algo(policy_dir, args.x)
    except ValueError as e:
        return fail(str(e))
    if not curves:
        return fail(f"no learning curves under {policy_dir} (<algo>/seed*/curve.csv)")
    from rlli.policy.evaluate import validation_references

    refs = validation_references()
    svg = learning_curve_svg(curves, refs, "Validation reward while training (256 fixed rounds)", x=args.x)
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
    if not 1 <= args.threads <= 256:
        return fail("--threads must be between 1 and 256")
    try:
        policy = load_policy(args.policy or s.policy, s)
    except ValueError as e:
        return fail(str(e))
    if policy.notice:
        print(f"notice: {policy.notice.message}", file=sys.stderr)
    try:
        r = bench(policy, p, args.states, threads=args.threads)
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    if args.json:
        print_json(r)
        return 0
    print(f"{r['states']} rounds of K = {r['k']} users, one at a time, torch threads {r['torch_threads']}, {r['cpu']}")
    print(f"{r['policy']}: {r['ms_per_decision']:.3f} ms per allocation (reward {r['reward']:.3f})")
    print(f"best found: {r['oracle_ms_per_decision']:.1f} ms per allocation (reward {r['oracle_reward']:.3f})")
    print(f"speed-up {r['speedup']:.0f}x at {100 * r['oracle_share']:.1f}% of best found's reward")
    return 0


def _figures(args) -> int:
    from rlli.policy.figure import write_system_figures

    s, p = _settings_params()
    if not 1 <= args.states <= 10_000:
        return fail("--states must be between 1 and 10000")
    policy_dir = Path(args.policy_dir) if args.policy_dir else s.policy_dir
    try:
        written = write_system_figures(Path(args.out_dir), p, policy_dir, args.states,
                                       log=lambda m: print(m, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as e:
        return fail(str(e))
    for f in written:
        print(f"wrote {f}")
    return 0


def register(commands) -> None:
    from rlli.policy.train import add_arguments
    from rlli.policy.train_sequential import add_sequential_arguments

    t = commands.train.add_parser("policy", help="train an allocation policy (G-DDPG or DDPG)")
    add_arguments(t)
    t.add_argument("--env", choices=("one-round", "sequential"), default="one-round",
                   help="one-round: each round an episode (the shipped arms); sequential: users who stay, a server "
                        "queue and batteries, a target critic with the env's gamma (assets/policies/sequential)")
    add_sequential_arguments(t)
    t.add_argument("--reward", choices=("sim", "store"), default="sim",
                   help="sim: the simulator with --judge; store: a reward model fitted on the store's ratings, fine-tuning "
                        "--init (default RLLI_POLICY_DIR/<algo>/seed<RLLI_POLICY_SEED>)")
    t.add_argument("--store", default="", help="--reward store: the store's URL (default RLLI_DATABASE_URL)")
    t.add_argument("--raters", choices=("people", "agents", "both"), default="both",
                   help="--reward store: whose stored ratings are the reward")
    t.set_defaults(func=_train)

    e = commands.eval.add_parser("policy", help="every allocation method on the same held-out rounds or episodes")
    e.add_argument("--env", choices=("one-round", "sequential"), default="one-round")
    e.add_argument("--states", type=int, default=500, help="one-round: held-out rounds")
    e.add_argument("--live-like", type=int, default=0, help="one-round: also this many live-like rounds (real prompt "
                   "sets, the app's grouping and fork probe, 2..16 users, chunked)")
    e.add_argument("--episodes", type=int, default=20, help="sequential: episodes (the same for every method)")
    e.add_argument("--episode-length", type=int, default=20)
    e.add_argument("--policy-dir", default="", help="default RLLI_POLICY_DIR (assets/policies)")
    e.add_argument("--judge", choices=("trait", "llm", "both"), default="trait",
                   help="one-round: the evaluation judge(s): the trait judge, the LLM's reward model (the -LI arm's), "
                        "or both (every method's same actions scored under each; the first scores the main table)")
    e.add_argument("--reward-model", default="", help="the LLM's reward model for --judge llm/both (default "
                   "<policy-dir>/gddpg_li/reward_model.json)")
    e.add_argument("--store", default="", help="a store URL (e.g. sqlite:///db/rlli.sqlite3): also report the LLM "
                   "judge's agreement with people's ratings there (Spearman, Krippendorff's alpha)")
    e.add_argument("--reward", choices=("sim", "store"), default="sim",
                   help="sim: held-out simulated rounds; store: each candidate's value on the store's logged rounds "
                        "(IPS, SNIPS, doubly robust, 95%% bootstrap CIs)")
    e.add_argument("--candidates", default="", help="--reward store: comma-separated policy names or name=FOLDER "
                   "(default RLLI_POLICY and greedy)")
    e.add_argument("--raters", choices=("people", "agents", "both"), default="both",
                   help="--reward store: whose stored ratings are the reward")
    e.add_argument("--epsilon", type=float, default=0.0, help="--reward store: the candidates' own exploration")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)

    c = commands.eval.add_parser("policy-curves", help="draw the learning curves of the shipped policies (SVG)")
    c.add_argument("--policy-dir", default="")
    c.add_argument("--out", default="docs/figures/policy_learning_curve.svg")
    c.add_argument("--x", choices=("rounds", "wall_s"), default="rounds", help="environment steps or wall-clock")
    c.set_defaults(func=_curves)

    f = commands.eval.add_parser("policy-figures", help="system-model figures: total QoE against users, band and "
                                                         "server speed; the energy-QoE front over the energy price (SVG)")
    f.add_argument("--states", type=int, default=200)
    f.add_argument("--policy-dir", default="")
    f.add_argument("--out-dir", default="docs/figures")
    f.set_defaults(func=_figures)

    b = commands.bench.add_parser("policy", help="milliseconds per allocation (K = k_max) against best found")
    b.add_argument("--states", type=int, default=64)
    b.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    b.add_argument("--policy", default="", help="default RLLI_POLICY")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
