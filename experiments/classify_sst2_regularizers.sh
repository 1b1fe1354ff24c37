#!/usr/bin/env bash
# SST-2 after the first test read: regularizers and variants of the bidirectional max-pooling
# model, chosen and compared on dev only (no test read).  Two runs at a time, one thread each.
#   bash experiments/classify_sst2_regularizers.sh [DATA] [OUT]
#   python experiments/classify_sst2_dev_report.py OUT [ROUND1_OUT]
set -euo pipefail
DATA=${1:-../shared/data/sst2}
OUT=${2:-runs/sst2-dev}
RNNKIT=${RNNKIT:-.venv/bin/rnnkit}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
train() {  # NAME FLAGS...
  local name=$1; shift
  [ -f "$OUT/$name/checkpoints/best/model.safetensors" ] && return 0
  "$RNNKIT" train classify --data "$DATA" --run "$OUT/$name" --no-progress --threads 1 --pooling max "$@" \
    > "$OUT/$name.log" 2>&1
  tail -n 1 "$OUT/$name.log"
}
export -f train
export DATA OUT RNNKIT
xargs -P 2 -L 1 bash -c 'train "$@"' _ <<'RUNS'
base-max-s0 --seed 0
char50-max-s0 --char-hidden 50 --seed 0
e100-max-s0 --embed-size 100 --seed 0
wd-max-s0 --optimizer adamw --weight-decay 0.01 --seed 0
gru-max-s0 --cell gru --seed 0
adv05-max-s0 --adversarial 0.05 --seed 0
lm03-max-s0 --lm-weight 0.3 --seed 0
adv02-max-s0 --adversarial 0.02 --seed 0
lm10-max-s0 --lm-weight 1.0 --seed 0
adv10-max-s0 --adversarial 0.1 --seed 0
base-max-s1 --seed 1
RUNS
