"""benchmarks/gpu_check.sh in its dry run: CUDA tests skipped with a line saying so, the speed
commands on the CPU with tiny shapes, everything in one file."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_the_tables_to_one_file(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, GPU_CHECK_BUDGET="120")
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (tmp_path / "gpu_check.out").read_text(encoding="utf-8")  # OUT is a folder here
    assert text == done.stdout
    assert "## DRY RUN (--dry-run given): the CUDA tests are skipped" in text
    assert "-m pytest" not in text
    for dtype in ("float32", "bfloat16"):
        assert text.count(f", cpu, {dtype}, threads") == 2  # a table per mode
    lines = text.splitlines()
    assert sum(line.startswith("| T, B, H | mode | torch.nn ms | TFLOP/s | auto ms") for line in lines) == 2
    assert sum("| torch.nn ms | us/step | TFLOP/s | auto ms" in line for line in lines) == 2
    train = [line for line in lines if line.startswith("| 5, 2, 8 | fwd+bwd |")]
    infer = [line for line in lines if line.startswith("| 6, 1, 8 | fwd |")]
    assert len(train) == 2 and len(infer) == 2
    for row in train + infer:
        cells = [c.strip() for c in row.strip("|").split("|")]
        per_model = 3 if row in infer else 2
        assert len(cells) == 2 + per_model + 4 * (per_model + 1)  # torch.nn, auto, native, triton, bptt
        assert cells[2] != "n/a"  # torch.nn always runs
    assert "## done in" in lines[-1] and "exit 0" in lines[-1]


def test_gpu_check_refuses_an_unknown_argument():
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "usage: bash benchmarks/gpu_check.sh [--dry-run]" in done.stderr
