#!/usr/bin/env bash
# SST-2 (sentence level, no pretrained vectors): uni- vs bidirectional LSTM with final-state
# pooling, three seeds each, the same budget; then the pooling choices of the bidirectional
# model on dev (seed 0).  Tuning reads dev only; the test split is read once, by
# experiments/classify_sst2_report.py --test, for the setting chosen on dev.
#   bash experiments/classify_sst2.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data/sst2}
OUT=${2:-runs/sst2}
RNNKIT=${RNNKIT:-.venv/bin/rnnkit}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
train() {  # NAME FLAGS...
  local name=$1; shift
  [ -f "$OUT/$name/checkpoints/best/model.safetensors" ] && return 0
  "$RNNKIT" train classify --data "$DATA" --run "$OUT/$name" --no-progress "$@" > "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.log"
}
for seed in 0 1 2; do
  train "bi-final-s$seed" --pooling final --seed "$seed"
  train "uni-final-s$seed" --pooling final --no-bidirectional --seed "$seed"
done
for pooling in max mean attention; do
  train "bi-$pooling-s0" --pooling "$pooling" --seed 0
done
