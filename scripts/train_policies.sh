#!/usr/bin/env bash
# Reproduce the shipped allocation policies: G-DDPG and DDPG, 5 seeds each, same budget, then the
# learning-curve figure, the evaluation and the benchmark.
#
#   bash scripts/train_policies.sh            # 2 runs at a time (a 2-core machine)
#   JOBS=10 bash scripts/train_policies.sh    # all 10 at once (16 cores)
#
# Each run uses one torch thread and stops at ITERATIONS or MINUTES, whichever comes first.
# Checkpoints land in runs/policy/<algo>-s<seed>/ and are copied to assets/policies/<algo>/seed<seed>/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2 3 4"}
ITERATIONS=${ITERATIONS:-4000}
MINUTES=${MINUTES:-10}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs/policy

jobs_list=()
for seed in $SEEDS; do for algo in gddpg ddpg; do jobs_list+=("$algo $seed"); done; done
printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -L 1 bash -c '
  algo=$0; seed=$1
  '"$PY"' -m rlli.policy.train --algo "$algo" --seed "$seed" --iterations '"$ITERATIONS"' --minutes '"$MINUTES"' \
      --threads 1 --no-progress --out "runs/policy/$algo-s$seed" > "runs/policy/$algo-s$seed.log" 2>&1
  tail -n 1 "runs/policy/$algo-s$seed.log"'

for seed in $SEEDS; do for algo in gddpg ddpg; do
  dst="assets/policies/$algo/seed$seed"
  mkdir -p "$dst"
  cp "runs/policy/$algo-s$seed/"{actor.safetensors,config.json,curve.csv,train.json} "$dst/"
done; done

if [ "${SKIP_EVAL:-0}" != "1" ]; then
  $PY -m rlli eval policy-curves --out docs/figures/policy_learning_curve.svg
  $PY -m rlli eval policy --json > assets/policies/eval.json
  $PY -m rlli eval policy
  $PY -m rlli bench policy --json > assets/policies/bench.json
  $PY -m rlli bench policy
fi
