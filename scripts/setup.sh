#!/usr/bin/env bash
# Set up .venv in the repository (idempotent: a second run only checks a stamp and returns).
# Usage: scripts/setup.sh [dev]   - "dev" adds the test tools (pytest, ruff).
set -euo pipefail
cd "$(dirname "$0")/.."
want="requirements.txt"
[ "${1:-}" = "dev" ] && want="requirements-dev.txt"
base_stamp=".venv/.installed-base-$(cat requirements.txt | sha256sum | cut -c1-16)"
dev_stamp=".venv/.installed-dev-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if [ -f "$dev_stamp" ] || { [ "$want" = requirements.txt ] && [ -f "$base_stamp" ]; }; then
  echo "[setup] .venv is up to date ($want)"
  exit 0
fi
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "[setup] installing torch 2.13.0 (CPU wheel) first, so nothing pulls a CUDA build"
.venv/bin/python -m pip install --disable-pip-version-check -q "torch==2.13.0"
echo "[setup] installing $want (a few minutes on a fresh machine)"
.venv/bin/python -m pip install --disable-pip-version-check -q -r "$want"
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"expected torch 2.13.0, got {torch.__version__}"
print(f"[setup] torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU'} build)")
PY
rm -f .venv/.installed-*
touch "$base_stamp"
[ "$want" = requirements-dev.txt ] && touch "$dev_stamp"
echo "[setup] done"
