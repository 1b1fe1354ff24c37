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


def _run(script, argv, monkeypatch, capsys):
    path = SCRIPT.parent / script
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


def test_grid_script_prints_a_ratio_per_point(capsys, monkeypatch):
    out = _run("grid.py", ["--batches", "2", "--sizes", "8", "--layers", "1", "--steps", "3", "--rounds", "1",
                           "--min-rounds", "1", "--warmup", "0"], monkeypatch, capsys)
    rows = [line for line in out.splitlines() if line.startswith("| 2 | 8 | 1 |")]
    assert {row.split("|")[4].strip() for row in rows} == {"train", "no_grad", "inference_mode"}


def test_compile_speed_script_compares_compiled_with_eager(capsys, monkeypatch):
    out = _run("compile_speed.py", ["--shape", "3x2x8", "--layers", "1", "--repeats", "1", "--backend", "eager"],
               monkeypatch, capsys)
    assert out.count("rnnkit compiled") == 2 and "graphs compiled" in out
