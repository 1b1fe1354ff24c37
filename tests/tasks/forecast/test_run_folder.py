"""A forecast run folder stands on its own: it keeps a copy of its series (the CSV may move),
old runs without one still read the recorded CSV, ``--plot`` into a folder writes and prints
the real file, and ``--resume`` is refused in one line with the reason."""

import json
import shutil

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.errors import DataError, RnnkitError


def write_csv(path, n=72):
    t = np.arange(n)
    values = 100 + t + 10 * np.sin(2 * np.pi * t / 12)
    path.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{v:.3f}\n"
                                              for i, v in enumerate(values)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small run on a CSV in its own folder: (run, csv)."""
    folder = tmp_path_factory.mktemp("forecast-run")
    (folder / "data").mkdir()
    csv = write_csv(folder / "data" / "sales.csv")
    run = folder / "run"
    assert main(["train", "forecast", "--csv", str(csv), "--horizon", "6", "--run", str(run), "--epochs", "1",
                 "--hidden-size", "4", "--samples", "0", "--baselines", "naive"]) == 0
    return run, csv


def forecast_rows(run, capsys, *flags):
    capsys.readouterr()
    assert main(["forecast", str(run), "--horizon", "3", *flags]) == 0
    return capsys.readouterr().out


def test_the_run_keeps_its_series_and_forecasts_after_the_csv_moved(trained, tmp_path, capsys):
    from rnnkit.tasks.forecast.series import read_series_csv

    run, csv = trained
    info = json.loads((run / "forecast.json").read_text())
    assert info["series"] == "series.csv"
    copy, original = read_series_csv(run / "series.csv"), read_series_csv(csv)
    np.testing.assert_array_equal(copy.values, original.values)  # exactly, not to 6 digits
    np.testing.assert_array_equal(copy.dates, original.dates)
    before = forecast_rows(run, capsys)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    evaluated = capsys.readouterr().out

    moved = tmp_path / "elsewhere.csv"
    shutil.move(csv, moved)
    try:
        assert forecast_rows(run, capsys) == before
        assert main(["evaluate", str(run)]) == 0
        assert capsys.readouterr().out == evaluated
    finally:
        shutil.move(moved, csv)


def test_an_old_run_without_a_copy_reads_the_recorded_csv(trained, tmp_path, capsys):
    run, csv = trained
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    info = json.loads((old / "forecast.json").read_text())
    del info["series"]
    (old / "forecast.json").write_text(json.dumps(info))
    (old / "series.csv").unlink()
    assert forecast_rows(old, capsys) == forecast_rows(run, capsys)

    import rnnkit

    moved = tmp_path / "elsewhere.csv"
    shutil.move(csv, moved)
    try:
        with pytest.raises(DataError, match=f"{csv}: no such file"):
            rnnkit.load(old).forecast(3)
    finally:
        shutil.move(moved, csv)


def test_a_value_column_named_date_survives_the_copy(tmp_path):
    from rnnkit.tasks.forecast.run import ForecastDataConfig, copy_series, load_series, read_data

    csv = tmp_path / "odd.csv"
    csv.write_text("when,date\n2000-01-01,1.5\n2000-01-02,-2\n2000-01-03,3e-7\n", encoding="utf-8")
    cfg = ForecastDataConfig(csv=str(csv), column="date")
    assert copy_series(cfg, tmp_path) == "series.csv"
    copied, given = load_series(cfg, tmp_path / "series.csv"), read_data(cfg)
    assert copied.columns == given.columns == ["date"]
    np.testing.assert_array_equal(copied.column("date"), given.column("date"))
    np.testing.assert_array_equal(copied.dates, given.dates)
    # a CSV that already is the run's copy (ForecastEstimator writes one) is left alone
    stamp = (tmp_path / "series.csv").stat().st_mtime_ns
    assert copy_series(ForecastDataConfig(csv=str(tmp_path / "series.csv")), tmp_path) == "series.csv"
    assert (tmp_path / "series.csv").stat().st_mtime_ns == stamp


def test_plot_into_a_folder_writes_forecast_png_and_prints_that_path(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run, _ = trained
    folder = tmp_path / "plots"
    folder.mkdir()
    out = forecast_rows(run, capsys, "--plot", str(folder))
    assert out.strip().splitlines()[-1] == f"plot: {folder / 'forecast.png'}"
    assert (folder / "forecast.png").is_file() and not (tmp_path / "plots.png").exists()

    out = forecast_rows(run, capsys, "--plot", str(tmp_path / "future"))  # no suffix: matplotlib adds .png
    assert out.strip().splitlines()[-1] == f"plot: {tmp_path / 'future.png'}"
    assert (tmp_path / "future.png").is_file()

    assert main(["forecast", str(run), "--plot", str(tmp_path / "absent" / "f.png")]) == 2
    err = capsys.readouterr().err
    assert err == f"rnnkit: error: cannot write the plot {tmp_path / 'absent' / 'f.png'}: no folder {tmp_path / 'absent'}\n"


def test_resume_is_refused_in_one_line_with_the_reason(tmp_path, capsys):
    assert main(["train", "forecast", "--csv", "x.csv", "--run", str(tmp_path / "run"), "--resume"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("rnnkit: error: forecast runs on one series are not resumable: ")
    assert captured.err.count("\n") == 1 and "unrecognized" not in captured.err
    assert not (tmp_path / "run").exists()

    from rnnkit.tasks.forecast import commands

    with pytest.raises(RnnkitError, match="not resumable"):
        commands.train(None, None, None, str(tmp_path / "run"), True, None)
