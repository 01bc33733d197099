#!/usr/bin/env bash
# Rebuild every shipped artifact from scratch, in order (about 2.5 hours on 2 CPU cores):
# the attribute probe, the embedded text-to-image model, the calibration table, the benchmark
# figures (docs/figures/*.json), the sample grid, the policies and the screenshots.
# Nothing else should run meanwhile: a concurrent job slows training steps several-fold.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
mkdir -p docs/figures
$py -m rlli train probe
$py -m rlli train tiny-t2i --minutes 110
$py -m rlli calibrate --pairs-out assets/fork/pairs.json
$py -m rlli bench model --json | tee docs/figures/bench-model.json
$py -m rlli bench sharing --json | tee docs/figures/bench-sharing.json
$py -m rlli grid --out docs/samples.png
RLLI_TEST_SCREENSHOTS=docs/screenshots $py -m pytest tests/test_browser.py -k journey -q   # docs/screenshots/*.png
JOBS=2 ITERATIONS=6000 MINUTES=6.2 bash scripts/train_policies.sh   # + eval, bench and the learning curve
$py -m rlli bench store --json | tee docs/figures/store-bench-sqlite.json
$py -m rlli bench round --json | tee docs/figures/bench-round.json
