#!/usr/bin/env bash
# M4 Hourly (414 series, horizon 48, period 24): the global model against the competition's
# benchmarks.  Everything is chosen on the held-out last 48 points of the training file
# (validation); the test file is read only with --test, once, for the chosen run.
#   bash experiments/m4_hourly.sh [DATA] [OUT] [--test]
# The runs below are the ones docs/results.md reports (M4 section), with their flags; several
# were stopped after a few epochs once their validation curve had said what it had to say:
# OUT/NAME/members/0/metrics.csv holds every validation score of each.
set -euo pipefail
DATA=${1:-../shared/data/m4}
OUT=${2:-runs/m4-hourly}
TEST=${3:-}
RNNKIT=${RNNKIT:-.venv/bin/rnnkit}
# one thread per run: with other processes on a 2-core machine two threads slowed the fused
# kernel about 7x, and one thread trained faster even when idle (docs/results.md)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRAIN="$DATA/Hourly-train.csv.gz"
mkdir -p "$OUT"
train() {  # NAME FLAGS...: train (or resume an interrupted run); its log is OUT/NAME.log
  local name=$1; shift
  local args=(train forecast --m4 "$TRAIN" --horizon 48 --period 24 --run "$OUT/$name" --no-progress "$@")
  [ -f "$OUT/$name/m4.json" ] && return 0
  if [ -f "$OUT/$name/config.json" ]; then args+=(--resume); fi
  /usr/bin/time -f "$name: %e s wall, %U s user" "$RNNKIT" "${args[@]}" >> "$OUT/$name.log" 2>&1
  tail -n 3 "$OUT/$name.log"
}
if [ "${ABLATIONS:-0}" = 1 ]; then  # the validation runs that chose the final setting
  train A                                               # LSTM 2x64 over 168 steps, seasonal naive base
  train AW --weighting owa                              # + the loss weighted as OWA weighs errors
  train R --decoder rollout                             # the autoregressive decoder instead
  train HD --highway 144 --weighting owa                # + the highway on a week of seasonal differences
  train HD2 --window 336 --highway 312 --rnn-window 168 --weighting owa   # two weeks for the highway
  train HD3 --window 336 --highway 312 --weighting owa  # ... and for the network too
fi
# the chosen setting: three members of ten epochs each
train final --window 336 --highway 312 --rnn-window 168 --weighting owa --ensemble 3 --epochs 10
"$RNNKIT" evaluate "$OUT/final" --split valid --benchmarks naive2,snaive,theta --out "$OUT/final/evaluation"
if [ "$TEST" = "--test" ]; then  # once
  "$RNNKIT" evaluate "$OUT/final" --m4-test "$DATA/Hourly-test.csv.gz" --benchmarks all \
    --out "$OUT/final/evaluation" | tee "$OUT/final.test.txt"
fi
