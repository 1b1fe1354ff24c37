#!/usr/bin/env bash
# The GPU check of rnnkit in one go, within a time budget (default 465 s, under 8 minutes):
#   1. the CUDA tests: `pytest -m gpu` and tests/engine/test_triton.py, compiled for the GPU
#      (TRITON_INTERPRET unset);
#   2. benchmarks/speed.py --device cuda: backends auto, native, triton and bptt against
#      torch.nn.LSTM, in float32 and bfloat16, training (fwd+bwd) at (T, B, D=H) = (150, 16, 256),
#      (100, 64, 512), (25, 128, 1024), (100, 256, 1024) and inference (fwd, with the time per
#      step) at (256, 1, 256), (100, 4, 512), (25, 4, 1024); ratios and TFLOP/s per model.
# Everything goes to one file: $OUT if set (a folder: $OUT/gpu_check.out), else
# benchmarks/gpu_check.out.  Each step runs under `timeout` with what is left of the budget.
#
# Without CUDA, or with --dry-run, the CUDA tests are skipped (saying so) and the same speed
# commands run on the CPU with tiny shapes: a check of this script itself, not a measurement.
#
#   bash benchmarks/gpu_check.sh              # on a CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run    # anywhere, a few seconds
#   GPU_CHECK_BUDGET=300 OUT=/tmp/check.out bash benchmarks/gpu_check.sh
# The exit status is 0 when every step that ran exited 0.

set -u
cd "$(dirname "$0")/.." || exit 2

dry=0
case "${1:-}" in
    --dry-run) dry=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac

if [[ -n "${PYTHON:-}" ]]; then py=$PYTHON
elif [[ -x .venv/bin/python ]]; then py=.venv/bin/python
else py=python3
fi
out=${OUT:-benchmarks/gpu_check.out}
[[ -d "$out" ]] && out="$out/gpu_check.out"
budget=${GPU_CHECK_BUDGET:-465}
: > "$out" || exit 2
status=0

log() { echo "$*" | tee -a "$out"; }

# run CAP CMD...: run CMD under timeout for at most CAP seconds and what is left of the budget.
run() {
    local cap=$1 left limit rc
    shift
    left=$((budget - SECONDS))
    limit=$((cap < left ? cap : left))
    if ((limit < 10)); then
        log "## skipped, time budget spent: $*"
        status=1
        return
    fi
    log "\$ $*    # timeout ${limit}s"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$out"
    rc=${PIPESTATUS[0]}
    if ((rc == 124 || rc == 137)); then
        log "## timed out after ${limit}s (what it printed before is above)"
    fi
    log "## exit $rc, ${SECONDS}s of ${budget}s used"
    ((rc == 0)) || status=1
}

log "# rnnkit gpu_check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "($(git status --short 2>/dev/null | wc -l) files changed)"
"$py" -c "import platform, torch; print('# python', platform.python_version(), '| torch', torch.__version__,
'| CUDA', torch.version.cuda, '| device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" \
    2>&1 | tee -a "$out"
"$py" -c "import triton; print('# triton', triton.__version__)" 2>/dev/null | tee -a "$out"

if ((dry == 0)) && "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    device=cuda
    repeats=(--repeats 5 --warmup 2)
    train_shapes=(150x16x256 100x64x512 25x128x1024 100x256x1024)
    infer_shapes=(256x1x256 100x4x512 25x4x1024)
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader 2>&1 | sed 's/^/# /' | tee -a "$out"
    unset TRITON_INTERPRET  # the tests compile the kernels for the GPU, not the interpreter
    log ""
    log "## 1. CUDA tests"
    run 110 "$py" -m pytest -q -m gpu -p no:cacheprovider tests
    if [[ -f tests/engine/test_triton.py ]]; then
        run 130 "$py" -m pytest -q -p no:cacheprovider tests/engine/test_triton.py
    else
        log "## tests/engine/test_triton.py does not exist: skipped"
    fi
else
    device=cpu
    repeats=(--repeats 1 --warmup 1)
    train_shapes=(5x2x8)
    infer_shapes=(6x1x8)
    log ""
    if ((dry)); then why="--dry-run given"; else why="CUDA is not available"; fi
    log "## DRY RUN ($why): the CUDA tests are skipped; the speed commands run on the CPU with tiny"
    log "## shapes to check this script; their numbers measure nothing"
fi

log ""
log "## 2. speed.py on $device: training (fwd+bwd)"
run 170 "$py" benchmarks/speed.py --device "$device" --dtype float32 bfloat16 --mode train \
    --backends auto native triton bptt --shapes "${train_shapes[@]}" "${repeats[@]}"
log ""
log "## 3. speed.py on $device: inference (fwd under no_grad, with the time per step)"
run 90 "$py" benchmarks/speed.py --device "$device" --dtype float32 bfloat16 --mode infer --per-step \
    --backends auto native triton bptt --shapes "${infer_shapes[@]}" "${repeats[@]}"

log ""
log "## done in ${SECONDS}s, exit $status; all of the above is in $out"
exit $status
