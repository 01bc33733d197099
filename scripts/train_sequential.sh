#!/usr/bin/env bash
# Train the allocation policies on the sequential environment (issue 16, part 2): users who stay, a server queue,
# batteries; the same recipe as the shipped one-round policies (behaviour cloning toward the better of greedy's
# and the taken action, plus Q ascent normalised by |Q|; G-DDPG decides by the best of 8 draws scored by its
# critic), the same budget and seeds for both arms:
#   gddpg   diffusion actor, T = 5, --bc 1 --best-of 8
#   ddpg    MLP actor (TD3+BC style), --bc 1
#
#   bash scripts/train_sequential.sh                          # 10 seeds x 2 arms, 2 runs at a time
#   SERVER_GHZ=5 SEEDS="0 1 2" bash scripts/train_sequential.sh   # the contended server (where lookahead pays)
#   JOBS=16 bash scripts/train_sequential.sh                  # more cores
#
# Every run gets the same budget, ITERATIONS (x 16 rounds); MINUTES is only a safety stop (a 4-minute wall-clock
# budget gave 458..1694 iterations on a shared 2-core machine: unequal budgets). One torch thread, niced (the checkpoint
# is written at every validation, so a stopped run keeps its last one). Logs go to $LOGS/<tag>-<arm>-s<seed>.log;
# checkpoints to runs/policy/<tag>-<arm>-s<seed>/, copied to $DEST/<arm>/seed<seed>/ (actor, config, curve, train
# summary; the critic only for G-DDPG, whose best-of-8 reads it: DDPG's deterministic actor does not).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2 3 4 5 6 7 8 9"}
ARMS=${ARMS:-"gddpg ddpg"}
ITERATIONS=${ITERATIONS:-1000}
MINUTES=${MINUTES:-10}
SERVER_GHZ=${SERVER_GHZ:-20}
if [ "$SERVER_GHZ" = 20 ]; then TAG=seq; DEST_DEFAULT=assets/policies/sequential; else
  TAG=seq-server$SERVER_GHZ; DEST_DEFAULT=assets/policies/sequential/server$SERVER_GHZ; fi
DEST=${DEST:-$DEST_DEFAULT}
LOGS=${LOGS:-runs/policy}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs/policy "$LOGS"

flags() {
  case "$1" in
    gddpg) echo "--algo gddpg --denoise-steps 5 --bc 1 --best-of 8" ;;
    ddpg) echo "--algo ddpg --bc 1" ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}

jobs_list=()
for seed in $SEEDS; do for arm in $ARMS; do jobs_list+=("$arm $seed $(flags "$arm")"); done; done
printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -L 1 bash -c '
  arm=$0; seed=$1; shift 1
  run="'"$TAG"'-$arm-s$seed"
  nice -n 10 '"$PY"' -m rlli.policy.train_sequential "$@" --seed "$seed" --iterations '"$ITERATIONS"' \
      --minutes '"$MINUTES"' --server-ghz '"$SERVER_GHZ"' --threads 1 --no-progress --out "runs/policy/$run" \
      > "'"$LOGS"'/$run.log" 2>&1
  tail -n 1 "'"$LOGS"'/$run.log"'

for seed in $SEEDS; do for arm in $ARMS; do
  src="runs/policy/$TAG-$arm-s$seed"
  dst="$DEST/$arm/seed$seed"
  mkdir -p "$dst"
  cp "$src/"{actor.safetensors,config.json,curve.csv,train.json} "$dst/"
  [ "$arm" = ddpg ] || cp "$src/critic.safetensors" "$dst/"
done; done
