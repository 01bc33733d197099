#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, then every test, slow ones included.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for the fast ones only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
exec .venv/bin/python -m pytest -ra "$@"
