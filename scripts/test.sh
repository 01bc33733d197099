#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, then every test, slow ones included.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for the fast ones only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test] installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[test] chromium is missing and this is not root: the browser tests will fail (apt-get install chromium)"
  fi
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
exec .venv/bin/python -m pytest -ra "$@"
