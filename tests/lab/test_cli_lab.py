"""`rnnkit lab NAME` end to end at toy sizes: files written, summary printed, bad input refused."""

import csv

import pytest

from rnnkit.cli import main

pytest.importorskip("matplotlib")


def test_lab_dynamics_experiment_writes_figure_csv_and_summary(tmp_path, capsys):
    rc = main(["lab", "gradients", "--seeds", "2", "--steps", "30", "--hidden", "20", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "s = 3" in out and "figure:" in out
    folder = tmp_path / "gradients"
    assert (folder / "gradients.png").stat().st_size > 10_000
    with open(folder / "gradients.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 30 and {"scale", "seed", "t", "grad_h_norm"} <= set(rows[0])
    assert "settings" in (folder / "summary.txt").read_text()


def test_lab_long_range_at_toy_size(tmp_path, capsys):
    rc = main(["lab", "copy", "--lengths", "3", "--train-steps", "20", "--hidden", "8",
               "--out", str(tmp_path), "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("copy T=3") == 4 and "solved (recall accuracy >= 99%)" in out
    with open(tmp_path / "copy" / "copy.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["tanh", "irnn", "lstm", "gru"]
    assert {r["steps"] for r in rows} == {"20"}  # the step budget is honoured
    assert (tmp_path / "copy" / "copy.png").exists()


def test_lab_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["lab", "exploding"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["lab", "activations", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "steps >= 2" in capsys.readouterr().err
