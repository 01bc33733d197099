#!/usr/bin/env bash
# The -LI arm (issue 16, part 3): G-DDPG with the shipped recipe (scripts/train_policies.sh: --bc 1 --best-of 8,
# T = 5, the same iterations and seeds) whose QoE comes from a persona judge through a reward model fitted on
# BUDGET judge queries, instead of the parametric trait judge.
#
#   bash scripts/train_li.sh                          # the embedded LLM judge (or RLLI_LLM_* endpoint), 10 seeds
#   JUDGE=trait ARM=gddpg_trait_rm bash scripts/train_li.sh   # the control: the trait judge through the same pipeline
#   BUDGET=400 SEEDS="0 1 2" bash scripts/train_li.sh
#
# 1. asks the judge BUDGET queries (cached in runs/policy/judge-queries.json: a rerun asks only what is missing)
#    and fits the reward model -> runs/policy/<arm>-reward_model.json (held-out R^2 / MAE / Spearman in the log);
# 2. trains every seed on that reward model (JOBS at a time, 1 torch thread each, nice -n 10);
# 3. copies each seed to assets/policies/<arm>/seed<k>/ with reward_model.json beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"0 1 2 3 4 5 6 7 8 9"}
ITERATIONS=${ITERATIONS:-1500}
MINUTES=${MINUTES:-15}
BUDGET=${BUDGET:-144}
JUDGE=${JUDGE:-llm}
ARM=${ARM:-gddpg_li}
LOGS=${LOGS:-runs/policy}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs/policy "$LOGS"

rm_file="runs/policy/$ARM-fit/reward_model.json"
nice -n 10 $PY -m rlli train policy --judge "$JUDGE" --query-budget "$BUDGET" --fit-only --out "runs/policy/$ARM-fit" \
  2>&1 | tee "$LOGS/$ARM-fit.log"

printf '%s\n' $SEEDS | xargs -P "$JOBS" -I{} bash -c '
  seed={}
  nice -n 10 '"$PY"' -m rlli.policy.train --algo gddpg --denoise-steps 5 --bc 1 --best-of 8 --reward-model '"$rm_file"' \
      --seed "$seed" --iterations '"$ITERATIONS"' --minutes '"$MINUTES"' --threads 1 --no-progress \
      --out "runs/policy/'"$ARM"'-s$seed" > "'"$LOGS"'/'"$ARM"'-s$seed.log" 2>&1
  tail -n 1 "'"$LOGS"'/'"$ARM"'-s$seed.log"'

if [ "${SKIP_COPY:-0}" != "1" ]; then
  mkdir -p "assets/policies/$ARM"
  cp "$rm_file" "assets/policies/$ARM/reward_model.json"  # what eval policy --judge llm scores with
  for seed in $SEEDS; do
    dst="assets/policies/$ARM/seed$seed"
    mkdir -p "$dst"
    cp "runs/policy/$ARM-s$seed/"{actor.safetensors,critic.safetensors,config.json,curve.csv,train.json,reward_model.json} "$dst/"
  done
fi
