#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lint, then every test, slow ones included.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for the fast ones only).
#
# Services the tests use are provided here when this machine allows it (CI runs as root on Debian):
# Debian's chromium for the browser tests, a local PostgreSQL server for the store tests. When one
# cannot be had, its tests are skipped with a loud reason and everything else still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
SETUP_CALLER=test.sh bash scripts/setup.sh dev || exit 1

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing Debian's chromium for the browser tests"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "[test] WARNING: apt-get could not install chromium: the browser tests will be SKIPPED"
  else
    echo "[test] WARNING: chromium is missing and this is not root (or has no apt-get): the browser tests"
    echo "[test]          will be SKIPPED. Install Debian's chromium (sudo apt-get install chromium) to run them."
  fi
fi

if [ -f scripts/postgres.sh ]; then
  # shellcheck source=/dev/null
  source scripts/postgres.sh || echo "[test] WARNING: no PostgreSQL server: the PostgreSQL store tests will be SKIPPED"
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[test] ruff"
.venv/bin/ruff check .
lint=$?
echo "[test] import-linter: data flows down the layers (pyproject.toml [tool.importlinter])"
.venv/bin/lint-imports --no-cache || lint=1
echo "[test] pytest"
.venv/bin/python -m pytest -ra "$@"
tests=$?
[ "$lint" = 0 ] || echo "[test] ruff found problems (above)"
[ "$tests" = 0 ] && [ "$lint" = 0 ]
