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
    # shape, mode, torch.nn (ms, TFLOP/s), 3 backends x (ms, TFLOP/s, ratio)
    assert all(line.count("|") == 14 for line in rows)
    header = next(line for line in out.splitlines() if line.startswith("| T, B, H |"))
    assert header.count("|") == 14 and "torch.nn ms | TFLOP/s | fused ms | TFLOP/s | ratio" in header


def test_speed_flops_follow_the_documented_formula():
    speed = runpy.run_path(str(SCRIPT))
    T, B, D, H = 7, 3, 5, 11
    assert speed["lstm_flops"](T, B, D, H, train=False) == 8 * T * B * H * (D + H)
    assert speed["lstm_flops"](T, B, D, H, train=True) == 24 * T * B * H * (D + H)


def test_speed_script_reports_a_backend_that_cannot_run_as_na(capsys, monkeypatch, tmp_path):
    # "fused" refuses bfloat16, and an unknown name stands for a backend absent from this build
    # (as "triton" is without CUDA): both are n/a, and the table is still written.
    speed = runpy.run_path(str(SCRIPT))
    monkeypatch.setitem(speed["main"].__globals__, "BACKENDS", (*speed["BACKENDS"], "absent"))
    table = tmp_path / "speed.md"
    speed["main"](["--shapes", "3x2x4", "--repeats", "1", "--warmup", "0", "--dtype", "bfloat16",
                   "--backends", "bptt", "fused", "absent", "--mode", "infer", "--per-step",
                   "--output", str(table)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 3, 2, 4 |")]
    assert len(rows) == 1 and "| fwd |" in rows[0]  # --mode infer: no fwd+bwd row
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 2 + 3 + 3 * 4  # ms, us/step, TFLOP/s (+ ratio) per model
    assert cells[5:9] != ["n/a"] * 4 and cells[9:] == ["n/a"] * 8
    assert "# n/a fused (3x2x4 fwd): TypeError: backend='fused' supports float32 and float64" in out
    assert "# n/a absent (3x2x4 fwd): ValueError: Unknown backend 'absent'" in out
    assert table.read_text(encoding="utf-8").strip() == out.strip()


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
