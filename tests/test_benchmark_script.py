"""The benchmark script runs end to end on a tiny shape (no timing is asserted)."""

import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def test_speed_script_prints_a_ratio_table(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--shapes", "4x2x8", "--repeats", "1", "--warmup", "0"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 4, 2, 8 |")]
    assert len(rows) == 2  # fwd+bwd and fwd
    assert all(line.count("|") == 10 for line in rows)  # shape, mode, torch.nn, 3 backends x 2
