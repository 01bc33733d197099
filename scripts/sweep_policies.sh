#!/usr/bin/env bash
# The symmetric sweep of issue 16: the same number of configurations per arm (3), the same recipe and budget as
# the shipped arms (1,500 iterations x 16 rounds, behaviour cloning, best of 8 for G-DDPG), the same seeds (SEEDS,
# kept apart from the shipped seeds 0..9), chosen on the validation rounds (train.VALIDATION_SEED): each run's
# train.json holds its final validation reward. Prints one line per run, then each configuration's mean.
#   G-DDPG: (actor/critic lr, T) in (3e-4, 5) [shipped], (1e-3, 5), (3e-4, 10)
#   DDPG:   lr in 1e-3 [shipped], 3e-4, 1e-4
#   bash scripts/sweep_policies.sh            # 6 configurations x 3 seeds, 2 runs at a time, into runs/sweep/
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"100 101 102"}
ITERATIONS=${ITERATIONS:-1500}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs/sweep
configs=(
  "gddpg-lr3e-4-T5 --algo gddpg --denoise-steps 5 --bc 1 --best-of 8 --actor-lr 3e-4 --critic-lr 3e-4"
  "ddpg-lr1e-3 --algo ddpg --bc 1 --actor-lr 1e-3 --critic-lr 1e-3"
  "gddpg-lr1e-3-T5 --algo gddpg --denoise-steps 5 --bc 1 --best-of 8 --actor-lr 1e-3 --critic-lr 1e-3"
  "ddpg-lr3e-4 --algo ddpg --bc 1 --actor-lr 3e-4 --critic-lr 3e-4"
  "gddpg-lr3e-4-T10 --algo gddpg --denoise-steps 10 --bc 1 --best-of 8 --actor-lr 3e-4 --critic-lr 3e-4"
  "ddpg-lr1e-4 --algo ddpg --bc 1 --actor-lr 1e-4 --critic-lr 1e-4"
)
for SEED in $SEEDS; do
printf '%s\n' "${configs[@]}" | xargs -P "$JOBS" -L 1 bash -c '
  name=$0
  nice -n 10 '"$PY"' -m rlli.policy.train "$@" --seed '"$SEED"' --iterations '"$ITERATIONS"' --minutes 30 \
    --no-progress --out runs/sweep/$name-s'"$SEED"' > runs/sweep/$name-s'"$SEED"'.log 2>&1 || echo "$name failed"'
done
for f in runs/sweep/*/train.json; do
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); v=d['validation']; print(sys.argv[1].split('/')[2], 'validation reward', round(v['reward'], 4), 'at_bounds', round(v['at_bounds'], 3), 'iterations', d['iterations_done'], 'wall_s', d['wall_s'])" "$f"
done
"$PY" - <<'PY'
import json, pathlib, re, statistics
runs = {}
for f in sorted(pathlib.Path("runs/sweep").glob("*/train.json")):
    runs.setdefault(re.sub(r"-s\d+$", "", f.parent.name), []).append(json.loads(f.read_text())["validation"]["reward"])
for name, r in sorted(runs.items(), key=lambda kv: -statistics.mean(kv[1])):
    print(f"{name:>18s}  mean validation reward {statistics.mean(r):.4f} over {len(r)} seeds: {', '.join(f'{x:.4f}' for x in r)}")
PY
