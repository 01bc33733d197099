"""`python -m rlli ...`: the command line.

Commands: ``group`` (prompts from stdin -> groups), ``bench sharing|model``, ``calibrate``,
``train tiny-t2i|probe``, ``grid`` (sample PNG), ``serve`` (the web app), ``settings``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass

from rlli.commands.io import fail, positive_int, print_json, seed_int, unit_float
from rlli.config import Settings


def _settings(args) -> Settings:
    """Settings from the environment, with the command's flags on top (validated the same way)."""
    overrides = {k: getattr(args, k) for k in ("group_threshold", "steps", "scheduler")
                 if getattr(args, k, None) is not None}
    return Settings(**overrides)  # the environment, with the flags on top; secrets stay as they are


def _group(args) -> int:
    from rlli.grouping import group_prompts, groups_to_json
    from rlli.prompts import PromptError, parse_prompts

    s = Settings()
    try:
        prompts = parse_prompts(sys.stdin.buffer.read().decode("utf-8"), max_prompts=10_000,
                                max_chars=s.max_prompt_chars)
    except PromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threshold = s.group_threshold if args.threshold is None else args.threshold
    groups = groups_to_json(prompts, group_prompts(prompts, threshold, s.text_model))
    if args.json:
        print_json(groups)
    else:
        print(f"{len(prompts)} prompts -> {len(groups)} groups (threshold {threshold})")
        for i, g in enumerate(groups, 1):
            print(f"group {i}: anchor: {g['anchor']}")
            for m, sim in zip(g["members"], g["similarity"]):
                print(f"    {sim:6.3f}  {m}")
    return 0


def _print_sharing(r: dict) -> None:
    print(f"{r['prompts']} prompts, {len(r['groups'])} groups, {r['steps']} steps, {r['repeats']} rounds, "
          f"backbone {r['backbone']}")
    if r.get("notice"):
        print(f"NOTICE: {r['notice']}")
    print(f"policy {r['policy']} (the app's default); beside it: "
          + ", ".join(f"{k} {100 * r[k]['calls_saved']:.1f}% fewer passes" for k in r if isinstance(r[k], dict)
                      and "calls_saved" in r[k]))
    for g in r["groups"]:
        print(f"  prefix {g['prefix_steps']:2d}  fork steps {g['fork_steps']}  {len(g['members'])} x {g['anchor']}")
    print(f"denoiser passes per round: shared {r['calls_shared']} (fork decision {r['calls_fork_decision']})  "
          f"independent {r['calls_independent']}  ({100 * r['calls_saved']:.1f}% fewer)")
    if "calls_saved_oracle" in r:
        share = r["share_of_oracle_saving"]
        print(f"oracle per-member plan:    {r['calls_oracle']} passes ({100 * r['calls_saved_oracle']:.1f}% fewer); "
              f"the fork rule reaches {'-' if share is None else f'{100 * share:.0f}%'} of that saving")
    print(f"wall seconds:    shared {r['wall_shared_s']:.2f}  independent {r['wall_independent_s']:.2f}  "
          f"ratio {r['wall_ratio']:.3f} (pass ratio {r['pass_ratio']:.3f})")
    print(f"quality:         shared {r['quality_shared']}  independent {r['quality_independent']}  "
          f"[{r['quality_metric']}]")
    print(f"broken by sharing: {r['broken']} of {r['members']} members ({100 * r['broken_rate']:.1f}%, one-sided 95% "
          f"upper bound {100 * r['broken_upper95']:.1f}%; {r['members_sharing']} shared steps; "
          f"{r['members_with_anchors_image']} got the anchor's image) [{r['broken_metric']}]; tree depth "
          f"{r['tree_depth']}")


def _bench(args) -> int:
    from rlli.commands import bench

    s = _settings(args)
    if args.what == "sharing" and args.trace:
        from rlli.commands.bench_trace import bench_trace, read_trace

        try:
            trace = read_trace(args.trace)
        except ValueError as e:
            return fail(f"{args.trace}: {e}")
        r = bench_trace(s, trace, seed=args.seed, cache_mib=args.cache_mib, split_tree=not args.no_tree)
        if args.json:
            print_json(r)
            return 0
        print(f"{r['requests']} requests in {r['rounds']} rounds (window {r['round_window_s']} s, cap "
              f"{r['round_max_requests']}), {r['steps']} steps, policy {r['policy']}, backbone {r['backbone']}")
        print(f"denoiser passes: shared {r['calls_shared']} vs independent {r['calls_independent']} "
              f"({100 * r['calls_saved']:.1f}% fewer: {100 * r['saved_within_rounds']:.1f}% within rounds, "
              f"{100 * r['saved_across_rounds']:.1f}% across rounds)")
        print(f"kept trunks: {r['cache_hits']} hits, {r['cache_misses']} misses, {r['cache_evictions']} evictions, "
              f"{r['cache_bytes'] / 2**20:.2f} MiB; wall ratio {r['wall_ratio']:.3f} (pass ratio {r['pass_ratio']:.3f})")
        print(f"quality shared {r['quality_shared']} / independent {r['quality_independent']}; broken {r['broken']} of "
              f"{r['members']} (upper 95% {r['broken_upper95']:.3f})")
        return 0
    if args.what == "sharing":
        prompts = None
        if args.prompts:
            from rlli.prompts import parse_prompts

            with open(args.prompts, encoding="utf-8") as f:
                prompts = parse_prompts(f.read(), max_prompts=256, max_chars=s.max_prompt_chars)
        r = bench.bench_sharing(s, prompts, seed=args.seed, repeats=args.repeats, oracle=args.oracle,
                                split_tree=not args.no_tree)
        if args.json:
            print_json(r)
        else:
            _print_sharing(r)
        return 0
    r = bench.bench_model(s, seeds=args.seeds)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['prompts']} held-out prompts x {r['seeds']} seeds, {r['steps']} steps, guidance {r['guidance_scale']}")
    print(f"fidelity: model {r['fidelity_model']:.4f}  renders (ceiling) {r['fidelity_renders']:.4f}")
    print(f"all attributes right (model): {r['all_right_model']:.4f}")
    print("per attribute: " + "  ".join(f"{k} {v:.3f}" for k, v in r["per_attribute_model"].items()))
    print(f"seconds per image (batch {r['batch']}, {r['precision']}): {r['s_per_image']:.4f}"
          + (f"  (float32: {r['s_per_image_float32']:.4f})" if r["s_per_image_float32"] else ""))
    return 0


def _calibrate_grouping(args, s: Settings) -> int:
    from pathlib import Path

    from rlli.grouping import load_labelled, threshold_sweep

    sets = load_labelled()
    r = threshold_sweep(sets, s.text_model)
    out = Path(args.grouping_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    for name, rows in r["sweeps"].items():
        print(f"{name}:")
        for row in rows:
            print(f"  {row['linkage']:8s} t={row['threshold']:.2f}  P {row['precision']:.3f}  R {row['recall']:.3f}  "
                  f"F1 {row['f1']:.3f}  groups {row['groups']}")
    best = r["recommended"]
    print(f"recommended: {best['linkage']} linkage, threshold {best['threshold']} (mean F1 {best['mean_f1']:.3f})")
    print(f"wrote {out}")
    return 0


def _bench_round(args) -> int:
    from rlli.commands.bench import bench_round

    r = bench_round(Settings(), seed=args.seed, personas=args.personas, store_dir=args.store_dir or None,
                    rounds=args.rounds)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['requests']} requests (1 person + {len(r['personas'])} personas), {r['groups']} groups, "
          f"policy {r['policy']}, judge {r['judge']['backend']}/{r['judge']['model']}")
    for name, sec in r["phases"].items():
        print(f"  {name:>14s}  {sec:7.3f} s")
    print(f"the person's image after {r['person_image_s']:.2f} s; {r['shared_members']} members shared steps "
          f"({r['passes_saved']} denoiser passes saved)")
    print(f"total {r['total_s']:.2f} s (dominant: {r['dominant_phase']}); the same {r['requests']} images generated "
          f"independently without judges: {r['independent_generation_s']:.2f} s; "
          f"{r['ratings_ok']}/{r['ratings']} agent ratings valid")
    print(f"{r['rounds']} round(s) in {r['rounds_s']:.1f} s ({r['round_s_mean']:.2f} s each), stored in {r['store']}")
    return 0


def _calibrate(args) -> int:
    from pathlib import Path

    from rlli.calibration.fork_rule import calibrate_fork_rule, write_rule
    from rlli.diffusion import get_backbone, plan_from
    from rlli.diffusion.engine import Engine
    from rlli.policy.sharing import break_budget, fork_rule_path, measured_with

    s = _settings(args)
    if args.grouping:
        return _calibrate_grouping(args, s)
    plan = plan_from(s)
    backbone = get_backbone(s)
    pairs = None
    if args.from_pairs:
        from rlli.calibration.pairs import records_from_json

        try:
            pairs = records_from_json(json.loads(Path(args.from_pairs).read_text(encoding="utf-8"))["pairs"])
        except (ValueError, KeyError, TypeError) as e:
            print(f"error: {Path(args.from_pairs).name} is not a pairs file from `calibrate --pairs-out` "
                  f"({type(e).__name__})", file=sys.stderr)
            return 2
    try:
        rule, pairs = calibrate_fork_rule(
            Engine(backbone), plan, measured_with(backbone.name, plan, s.text_model), n_anchors=args.anchors,
            heldout=args.heldout, seed=args.seed, target_broken=break_budget(s), probe_step=args.probe_step,
            text_model=s.text_model, chunk=args.chunk, pairs=pairs, log=lambda m: print(m, flush=True))
    except ValueError as e:  # too few anchors, or pairs that cannot be fitted
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = write_rule(rule, args.out or fork_rule_path(s))
    print(f"wrote {out}")
    op = rule["operating_point"]
    print(f"operating point (chosen on the fitted anchors): {op['bins']} bins, tolerance {op['tolerance']}, per-bin "
          f"break budget {op['break_budget']}; fitted pairs: {100 * op['fit_captured']:.0f}% of the best saving, "
          f"{100 * op['fit_broken_rate']:.1f}% broken")
    if args.pairs_out:
        write_rule({"pairs": pairs}, args.pairs_out)
        print(f"wrote {args.pairs_out}")
    v = rule["validation"]
    print(f"held out: {v['pairs']} pairs from {v['anchors']} anchors; shares {v['shared_steps_mean']:.2f} steps on "
          f"average (best per pair {v['best_steps_mean']:.2f}; {100 * v['saving_captured']:.0f}% captured)")
    print(f"broken attributes: {100 * v['broken_rate']:.1f}% of members ({100 * v['broken_rate_when_sharing']:.1f}% "
          f"of those sharing); over-shared {100 * v['over_shared_rate']:.1f}%; AUC {v['auc_half_or_more']}")
    for kind, row in v["by_kind"].items():
        print(f"  {kind:>36s}: evidence {row['mean_evidence']:.3f}  shares {row['mean_shared']:5.2f} "
              f"(best {row['mean_best']:5.2f})  broken {100 * row['broken_rate']:.1f}%")
    return 0


def _train(args) -> int:
    if args.what == "probe":
        from rlli.diffusion.tiny.probe import train_probe

        m = train_probe(seed=args.seed, log=lambda m: print(m, flush=True))
        print(f"probe held-out accuracy: {m['held_out_accuracy']['mean']:.4f}")
        return 0
    from rlli.diffusion.tiny.train import TrainConfig, train

    cfg = TrainConfig(minutes=args.minutes, images=args.images, seed=args.seed, threads=args.threads)
    if args.out:
        cfg.out = args.out
    if args.run_dir:
        cfg.run_dir = args.run_dir
    train(cfg, log=lambda m: print(m, flush=True))
    return 0


def _grid(args) -> int:
    from rlli.commands.bench import sample_grid

    r = sample_grid(_settings(args), args.out, seeds=args.seeds)
    print(f"wrote {r['path']}")
    return 0


def _serve(args) -> int:
    from rlli.ui import launch

    launch(Settings())
    return 0


def _show_settings(args) -> int:
    print_json(Settings().public_dict())
    return 0


@dataclass
class Commands:
    """The parser's command groups; each package's ``register(commands)`` adds its own subcommands.

    ``top`` holds top-level commands (``python -m rlli judge``); ``bench``, ``train`` and ``eval`` hold
    the second word (``python -m rlli bench store``). Every parser sets ``func`` (args -> exit code).
    """

    top: argparse._SubParsersAction
    bench: argparse._SubParsersAction
    train: argparse._SubParsersAction
    eval: argparse._SubParsersAction


# Command modules for each library package (a module with ``register(commands: Commands)``).
PACKAGE_COMMANDS: tuple[str, ...] = ("rlli.commands.personas", "rlli.commands.policy", "rlli.commands.store",
                                     "rlli.commands.serve_bench")


def _add_backbone_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--scheduler", choices=["ddim", "euler", "dpm", "unipc"], default=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rlli", description="RLLI Studio command line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("group", help="group prompts (one per line on stdin) by meaning")
    g.add_argument("--threshold", type=unit_float, default=None, help="cosine similarity to join a group")
    g.add_argument("--json", action="store_true", help="print JSON: a list of {anchor, members, similarity}")
    g.set_defaults(func=_group)

    b = sub.add_parser("bench", help="benchmarks that print figures (each against the naive way, same run)")
    bench = b.add_subparsers(dest="what", required=True, metavar="WHAT")
    bs = bench.add_parser("sharing", help="shared vs independent generation on the same seeds")
    bs.add_argument("--prompts", help="a file of prompts, one per line (default: a fixed mix of 16)")
    bs.add_argument("--seed", type=seed_int, default=0)
    bs.add_argument("--repeats", type=positive_int, default=4, help="rounds with fresh seeds (default 4)")
    bs.add_argument("--group-threshold", type=unit_float, default=None)
    bs.add_argument("--oracle", action="store_true",
                    help="also try every member's s_k on the backbone: the best saving any per-member plan reaches")
    bs.add_argument("--trace", default="", help="replay requests arriving over time (SECONDS<TAB>PROMPT per line) in "
                                                "the app's rounds, with trunks kept across rounds")
    bs.add_argument("--cache-mib", type=float, default=64.0, help="memory for kept trunks in --trace (default 64)")
    bs.add_argument("--no-tree", action="store_true", help="one-level forks only (no sub-trunks), for comparison")
    _add_backbone_flags(bs)
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(func=_bench)
    bm = bench.add_parser("model", help="the embedded model on 64 held-out prompts")
    bm.add_argument("--seed", type=seed_int, default=0)
    bm.add_argument("--seeds", type=positive_int, default=3, help="seeds per held-out prompt")
    _add_backbone_flags(bm)
    bm.add_argument("--json", action="store_true")
    bm.set_defaults(func=_bench)

    br = bench.add_parser("round", help="one app round end to end (1 person + 7 personas), seconds per phase")
    br.add_argument("--seed", type=seed_int, default=0)
    br.add_argument("--personas", type=positive_int, default=7)
    br.add_argument("--rounds", type=positive_int, default=1, help="serve this many rounds into the store (logged "
                    "rounds for `eval policy --reward store`)")
    br.add_argument("--store-dir", default="", help="folder of the store (default a fresh temporary one)")
    br.add_argument("--json", action="store_true")
    br.set_defaults(func=_bench_round)

    c = sub.add_parser("calibrate", help="build the fork rule for the configured backbone (or, with --grouping, "
                                         "sweep the grouping threshold)")
    c.add_argument("--anchors", type=positive_int, default=140, help="anchors the rule is fitted on (default 140)")
    c.add_argument("--heldout", type=positive_int, default=60, help="anchors it is validated on (default 60)")
    c.add_argument("--seed", type=seed_int, default=0)
    c.add_argument("--from-pairs", default="", help="refit from pairs an earlier run wrote with --pairs-out "
                                                    "(no generation)")
    c.add_argument("--probe-step", type=int, choices=range(0, 4), default=1,
                   help="shared steps before the probe reads x0 (default 1)")
    c.add_argument("--chunk", type=positive_int, default=16, help="anchors per engine call (default 16)")
    _add_backbone_flags(c)
    c.add_argument("--out", default="", help="the rule file (default: RLLI_FORK_RULE, assets/fork/rule.json)")
    c.add_argument("--pairs-out", default="", help="also write every measured pair here (JSON)")
    c.add_argument("--grouping", action="store_true",
                   help="instead: pairwise precision/recall/F1 of grouping per threshold and linkage on the labelled "
                        "prompt set (assets/bench/grouping_labelled.json)")
    c.add_argument("--grouping-out", default="docs/figures/grouping_sweep.json")
    c.set_defaults(func=_calibrate)

    tr = sub.add_parser("train", help="train a shipped model from scratch")
    train = tr.add_subparsers(dest="what", required=True, metavar="WHAT")
    tt = train.add_parser("tiny-t2i", help="the embedded text-to-image model")
    tt.add_argument("--minutes", type=float, default=110.0, help="wall-clock budget (default 110)")
    tt.add_argument("--images", type=positive_int, default=40_000, help="training images (default 40000)")
    tt.add_argument("--seed", type=seed_int, default=0)
    tt.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1: leaves a core free)")
    tt.add_argument("--out", default="", help="weights folder (default assets/tiny-t2i)")
    tt.add_argument("--run-dir", default="", help="checkpoints and data cache (default runs/tiny-t2i)")
    tt.set_defaults(func=_train)
    tp = train.add_parser("probe", help="the attribute probe of the embedded world")
    tp.add_argument("--seed", type=seed_int, default=0)
    tp.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate trained models")
    evaluate = ev.add_subparsers(dest="what", required=True, metavar="WHAT")

    gr_ = sub.add_parser("grid", help="draw a sample grid PNG (prompts x seeds, and a pair at growing shared steps)")
    gr_.add_argument("--out", default="docs/samples.png")
    gr_.add_argument("--seeds", type=positive_int, default=6)
    gr_.set_defaults(func=_grid)

    sv = sub.add_parser("serve", help="start the web app (RLLI_HOST, RLLI_PORT)")
    sv.set_defaults(func=_serve)

    st = sub.add_parser("settings", help="print the effective settings")
    st.set_defaults(func=_show_settings)

    commands = Commands(top=sub, bench=bench, train=train, eval=evaluate)
    for name in PACKAGE_COMMANDS:
        importlib.import_module(name).register(commands)
    return p


def describe_user_error(e: BaseException) -> str | None:
    """The message for an error the user caused (a bad setting, flag, file or input); None for a bug.

    The CLI prints it as ``error: ...`` with exit code 2, and ``python app.py`` prints the same.
    """
    from pydantic import ValidationError

    from rlli.config import SettingsError
    from rlli.prompts import PromptError

    if isinstance(e, ValidationError):
        problems = "; ".join(
            f"RLLI_{'_'.join(map(str, x['loc'])).upper() or 'value'}: {x['msg']} (got {str(x.get('input'))[:40]!r})"
            for x in e.errors())
        return f"invalid setting ({problems}); see `python -m rlli settings` and the README"
    from rlli.serve.backend import BackendUnavailable
    from rlli.session.studio import StudioError
    from rlli.store.db import StoreError

    if isinstance(e, SettingsError | PromptError | StoreError | StudioError | BackendUnavailable):
        return str(e)
    if isinstance(e, UnicodeDecodeError):
        return "the input is not valid UTF-8 text"
    if isinstance(e, FileNotFoundError | IsADirectoryError | PermissionError):
        return f"{e.strerror or 'cannot open'}: {e.filename}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        Settings().check_device()
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = describe_user_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
