"""`python -m rlli ...`: the command line."""

from __future__ import annotations

import argparse
import sys


def _train(args) -> int:
    from rlli.diffusion.tiny.train import TrainConfig, train

    cfg = TrainConfig(minutes=args.minutes, images=args.images, seed=args.seed)
    if args.out:
        cfg.out = args.out
    if args.run_dir:
        cfg.run_dir = args.run_dir
    train(cfg, log=lambda m: print(m, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rlli", description="RLLI Studio command line")
    sub = p.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a shipped model from scratch")
    tr.add_argument("what", choices=["tiny-t2i"], help="which model")
    tr.add_argument("--minutes", type=float, default=95.0, help="wall-clock budget (default 95)")
    tr.add_argument("--images", type=int, default=40_000, help="training images to render (default 40000)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default="", help="weights folder (default assets/tiny-t2i)")
    tr.add_argument("--run-dir", default="", help="checkpoints and data cache (default runs/tiny-t2i)")
    tr.set_defaults(func=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
