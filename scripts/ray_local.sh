#!/usr/bin/env bash
# Start a local Ray cluster, then the web app against it (RLLI_BACKEND=ray) with N engine replicas.
#
#   bash scripts/ray_local.sh [REPLICAS] [COMMAND ...]
#
# REPLICAS: engine replicas (default $RLLI_RAY_REPLICAS or 2). COMMAND: what to run against the cluster instead
# of the web app, e.g. `bash scripts/ray_local.sh 4 .venv/bin/python -m rlli bench serve --replicas 1,2,4`.
# RAY_PORT (default 6390) and RAY_NUM_CPUS (default: all cores) set up the head node; RLLI_RAY_REPLICA_CPUS
# (default 0.5) what each replica reserves. The cluster stops when this script ends (Ctrl+C). See docs/scale-out.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPLICAS="${1:-${RLLI_RAY_REPLICAS:-2}}"
case "$REPLICAS" in
  ''|*[!0-9]*|0) echo "error: REPLICAS must be a whole number >= 1, got '$REPLICAS'" >&2; exit 2 ;;
esac
shift || true
PORT="${RAY_PORT:-6390}"
if [ ! -x .venv/bin/ray ]; then
  echo "error: Ray is not installed: .venv/bin/python -m pip install 'ray[serve]==2.60.0' (or bash scripts/setup.sh)" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"  # the head, `ray status` and the app all use ~/.ray/auth_token
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the replicas import rlli from this checkout

# --block keeps the head in the foreground of its own process: ending that process stops this cluster only
# (`ray stop` would stop every Ray process of this user on the machine).
.venv/bin/ray start --head --port "$PORT" --num-cpus "${RAY_NUM_CPUS:-$(nproc)}" --include-dashboard=false \
  --disable-usage-stats --block >/dev/null &
RAY_PID=$!
stop_head() {
  kill "$RAY_PID" 2>/dev/null || true
  wait "$RAY_PID" 2>/dev/null || true
  # `ray start` left its address for later `ray.init()` calls; it points at the head that just stopped
  if grep -qs ":$PORT\$" /tmp/ray/ray_current_cluster; then rm -f /tmp/ray/ray_current_cluster; fi
}
trap stop_head EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 120); do
  if .venv/bin/ray status --address "127.0.0.1:$PORT" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$RAY_PID" 2>/dev/null; then echo "error: the Ray head did not start (port $PORT taken?)" >&2; exit 1; fi
  sleep 1
done
export RLLI_BACKEND=ray RLLI_RAY_ADDRESS="127.0.0.1:$PORT" RLLI_RAY_REPLICAS="$REPLICAS"
echo "[ray_local] Ray head on 127.0.0.1:$PORT; $REPLICAS engine replica(s); RLLI_BACKEND=ray"
if [ "$#" -gt 0 ]; then
  "$@"
else
  echo "[ray_local] RLLI Studio on http://${RLLI_HOST:-127.0.0.1}:${RLLI_PORT:-7860} (Ctrl+C stops the app and the cluster)"
  .venv/bin/python app.py
fi
