#!/usr/bin/env bash
# M4 Hourly (414 series, horizon 48, period 24): the global model against the competition's
# benchmarks.  Everything is chosen on the held-out last 48 points of the training file
# (`--split valid`); the test file is read only with --test, once, for the chosen run.
#   bash experiments/m4_hourly.sh [DATA] [OUT] [--test]
# Each run's flags are below; the log of each is OUT/NAME.log, its folder OUT/NAME.
set -euo pipefail
DATA=${1:-../shared/data/m4}
OUT=${2:-runs/m4-hourly}
TEST=${3:-}
RNNKIT=${RNNKIT:-.venv/bin/rnnkit}
# one thread per run: on a 2-core machine with anything else running, two threads slowed the
# fused kernel 7x (docs/results.md, M4 section); one thread trained faster even when idle
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRAIN="$DATA/Hourly-train.csv.gz"
mkdir -p "$OUT"
train() {  # NAME FLAGS...: train (or resume an interrupted run), then score it on validation
  local name=$1; shift
  local args=(train forecast --m4 "$TRAIN" --horizon 48 --period 24 --run "$OUT/$name" --no-progress "$@")
  if [ ! -f "$OUT/$name/m4.json" ]; then
    if [ -f "$OUT/$name/config.json" ]; then args+=(--resume); fi
    /usr/bin/time -f "$name: %e s wall, %U s user" "$RNNKIT" "${args[@]}" >> "$OUT/$name.log" 2>&1
  fi
  "$RNNKIT" evaluate "$OUT/$name" --split valid --benchmarks naive2,snaive,theta > "$OUT/$name.valid.txt" 2>&1
  cat "$OUT/$name.valid.txt"
}
# the decoders and the additions, one seed each, on validation
train direct                                     # LSTM 2x64, window 168, seasonal naive base
train direct-owa --weighting owa                 # + the loss weighted as OWA weighs errors
train direct-highway-owa --highway 168 --weighting owa   # + LSTNet's linear highway from the window
train rollout --decoder rollout                  # the autoregressive decoder (DeepAR-style)
# the chosen setting, as an ensemble
train chosen-ensemble --highway 168 --weighting owa --ensemble 3 --epochs 12
if [ "$TEST" = "--test" ]; then
  "$RNNKIT" evaluate "$OUT/chosen-ensemble" --m4-test "$DATA/Hourly-test.csv.gz" | tee "$OUT/chosen-ensemble.test.txt"
fi
