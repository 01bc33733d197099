#!/usr/bin/env bash
# The README's sharing and round figures, in one go (writes JSON under docs/figures/). Run on an idle machine:
# absolute seconds depend on it; passes and quality do not.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
$py -m rlli bench sharing --oracle --repeats 2 --json > docs/figures/sharing_builtin.json
$py -m rlli bench sharing --oracle --repeats 2 --prompts assets/bench/paraphrase_mix.txt --json > docs/figures/sharing_paraphrase.json
$py -m rlli bench sharing --trace assets/bench/trace_one_per_window.txt --json > docs/figures/sharing_trace.json
$py -m rlli bench round --json > docs/figures/bench-round.json
