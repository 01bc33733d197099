#!/usr/bin/env bash
# The policy figures beyond the one-round evaluation, on the shipped checkpoints (assets/policies/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
$py -m rlli eval policy --env sequential --episodes 10 --episode-length 20 --json > assets/policies/eval-sequential.json
RLLI_NET_SERVER_GHZ=5 $py -m rlli eval policy --env sequential --episodes 10 --episode-length 20 --json \
  > assets/policies/eval-sequential-server5.json
$py -m rlli eval policy --states 100 --live-like 60 --json > assets/policies/eval-live.json
$py -m rlli bench policy --policy ddpg --json > assets/policies/bench-ddpg.json
