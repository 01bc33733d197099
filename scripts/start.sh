#!/usr/bin/env bash
# Set up (if needed) and start the web app on the embedded defaults: http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[start] RLLI Studio on http://${RLLI_HOST:-127.0.0.1}:${RLLI_PORT:-7860} (Ctrl+C stops it)"
exec .venv/bin/python app.py
