"""Push this repository to a Hugging Face Docker Space, the shipped weights included.

A plain ``git push`` to the Hub is refused for files over 10 MiB that are not in Git LFS (the
embedded model's weights are 21 MB). The Hub's upload API stores large files through LFS by itself,
so this script uploads the files git tracks (nothing ignored: no .venv, no database, no images).

    HF_TOKEN=hf_... python scripts/deploy_space.py OWNER/SPACE_NAME [--private] [--hardware cpu-basic]
    python scripts/deploy_space.py OWNER/SPACE_NAME --dry-run     # list what would be uploaded

The token comes from the environment (HF_TOKEN) or ``huggingface-cli login``; it is never printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB_PLAIN_LIMIT = 10 * 1024 * 1024  # the Hub refuses plain-git files above this; the upload API uses LFS


def tracked_files(root: Path = ROOT) -> list[str]:
    """Files git tracks in the repository (what a clone has), as relative paths."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return sorted(p for p in out.stdout.decode().split("\0") if p and (root / p).is_file())


def plan(root: Path = ROOT) -> list[tuple[str, int, bool]]:
    """(path, bytes, goes through LFS) for every file the Space gets."""
    rows = []
    for p in tracked_files(root):
        size = (root / p).stat().st_size
        rows.append((p, size, size > HUB_PLAIN_LIMIT or p.endswith((".safetensors", ".gguf", ".png"))))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("space", help="OWNER/NAME of the Space (created as a Docker Space if missing)")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--hardware", default="", help="e.g. cpu-basic, t4-small (needs billing on the account)")
    ap.add_argument("--dry-run", action="store_true", help="list the files and stop")
    args = ap.parse_args(argv)
    if args.space.count("/") != 1 or not all(args.space.split("/")):
        print(f"error: expected OWNER/NAME, got {args.space!r}", file=sys.stderr)
        return 2
    rows = plan()
    total = sum(size for _, size, _ in rows)
    print(f"{len(rows)} files, {total / 1e6:.1f} MB; through LFS: "
          + ", ".join(f"{p} ({s / 1e6:.1f} MB)" for p, s, lfs in rows if lfs and s > HUB_PLAIN_LIMIT))
    if args.dry_run:
        for p, size, lfs in rows:
            print(f"{size:>12,d}  {'lfs ' if lfs else '    '} {p}")
        return 0
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    try:
        api.create_repo(args.space, repo_type="space", space_sdk="docker", private=args.private, exist_ok=True)
        api.upload_folder(folder_path=str(ROOT), repo_id=args.space, repo_type="space",
                          allow_patterns=[p for p, _, _ in rows], commit_message="Deploy RLLI Studio")
        if args.hardware:
            api.request_space_hardware(args.space, args.hardware)
    except Exception as e:  # network, auth and permission errors: say which, without the token
        print(f"error: the upload to {args.space} failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        return 1
    print(f"deployed: https://huggingface.co/spaces/{args.space}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
