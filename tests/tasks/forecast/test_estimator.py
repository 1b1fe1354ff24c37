"""ForecastEstimator and ForecastPredictor against oracles: fit/predict is `rnnkit train forecast`
then `rnnkit forecast`, a backtest scores what training by hand on the cut series scores,
and bad input fails with a clear error."""

import numpy as np
import pytest

import rnnkit
from rnnkit.errors import DataError, RnnkitError
from rnnkit.tasks.forecast.baselines import seasonal_naive
from rnnkit.tasks.forecast.estimator import ForecastEstimator
from rnnkit.tasks.forecast.metrics import all_metrics
from rnnkit.tasks.forecast.predictor import ForecastPredictor
from rnnkit.tasks.forecast.run import ForecastDataConfig, forecast_from, make_transform, prepare
from rnnkit.tasks.forecast.series import make_windows, series_from_values, write_series_csv
from rnnkit.tasks.forecast.task import ForecastModelConfig, ForecastTask, ForecastTrainConfig, step_inputs
from rnnkit.train import Trainer, load_weights, seed_everything

TINY = dict(epochs=2, hidden_size=6, baselines="", samples=20, device="cpu")


def _monthly(n=96, seed=0):
    t = np.arange(n)
    values = 50 + 0.5 * t + 8 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(seed).normal(0, 1, n)
    dates = [f"{1990 + i // 12}-{i % 12 + 1:02d}" for i in range(n)]
    return values, dates


def _printed(rows):
    """The lines `rnnkit forecast` prints for these rows."""
    keys = list(rows[0])
    return ["\t".join(keys)] + ["\t".join(r[k] if k == "date" else f"{r[k]:.6g}" for k in keys) for r in rows]


def test_fit_predict_is_what_rnnkit_forecast_prints_for_a_run_with_the_same_settings(tmp_path, capsys):
    from rnnkit.cli import main

    values, dates = _monthly()
    csv = tmp_path / "series.csv"
    csv.write_text("Month,Sales\n" + "".join(f"{d},{v!r}\n" for d, v in zip(dates, values.tolist())))
    run = tmp_path / "cli"
    assert main(["train", "forecast", "--csv", str(csv), "--horizon", "12", "--run", str(run), "--epochs", "2",
                 "--hidden-size", "6", "--samples", "20", "--baselines", "", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["forecast", str(run), "--horizon", "5"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()

    est = ForecastEstimator(horizon=12, **TINY).fit(values, dates, run_dir=tmp_path / "est")
    rows = est.predict(5)
    assert _printed(rows) == printed
    assert list(rows[0]) == ["date", "forecast", "lo95", "lo80", "hi80", "hi95"] and rows[0]["date"] == "1998-01-01"
    # the same trained models: the CLI run's predictor forecasts the estimator's numbers exactly
    cli = rnnkit.load(run)
    assert isinstance(cli, ForecastPredictor)
    assert cli.forecast(5) == rows
    # (training's test rollout ran beside 20 sample paths, a larger batch: equal to rounding)
    assert est.result["test"]["rnnkit"] == pytest.approx(cli.evaluate("test")["rnnkit"], rel=1e-6)
    # the estimator's run folder is a run like any other
    assert rnnkit.load(tmp_path / "est").forecast(5, samples=0) == est.predict(5, samples=0)
    for bad in (0, -3):
        with pytest.raises(DataError, match=f"horizon must be >= 1, got {bad}"):
            est.predict(bad)
    with pytest.raises(DataError, match="series.csv exists already"):
        est.fit(values, dates, run_dir=tmp_path / "est")


def test_backtest_scores_what_training_by_hand_on_the_cut_series_scores(tmp_path):
    values, dates = _monthly(seed=1)
    est = ForecastEstimator(horizon=12, **{**TINY, "baselines": "seasonal_naive"})
    bt = est.backtest(values, dates)
    assert est.predictor is None and bt.run is None  # a temporary run; the estimator is not fitted by it

    # oracle: the series cut where its test part (12) begins; its last 12 points (its validation
    # part) scored by one model trained on the points before them, validated on the 12 before those
    cut = tmp_path / "cut.csv"
    write_series_csv(series_from_values(values[:-12], dates[:-12]), cut)
    cfg = ForecastDataConfig(csv=str(cut), horizon=12, test="12", valid="12", samples=0, baselines="")
    p = prepare(cfg)
    assert (p.train_end, p.valid_end, len(p.y)) == (60, 72, 84)
    transform = make_transform(cfg, p, p.train_end)
    seed_everything(0)
    z = transform.forward(p.y)
    inputs = step_inputs(z, p.calendar_next[:len(z)])
    task = ForecastTask(make_windows(inputs, z, p.window, 1, 0, p.train_end),
                        make_windows(inputs, z, p.window, 1, p.train_end, p.valid_end),
                        ForecastModelConfig(hidden_size=6), cfg.batch_size, 0,
                        {"input_size": inputs.shape[1], "outputs": 1, "transform": transform.to_dict()})
    model = task.build_model()
    Trainer(model, task, ForecastTrainConfig(epochs=2, device="cpu"), tmp_path / "manual").fit()
    load_weights(model, tmp_path / "manual" / "checkpoints" / "best", "cpu")
    forecast = forecast_from([model.eval()], transform, p, p.valid_end, 12, 0)["forecast"]
    history, truth = values[:72], values[72:84]
    np.testing.assert_array_equal(bt.truth, truth)
    np.testing.assert_array_equal(bt.forecasts["rnnkit"], forecast)
    assert bt.scores["rnnkit"]["mase"] == pytest.approx(all_metrics(truth, forecast, history, 12)["mase"], rel=1e-12)
    naive = all_metrics(truth, seasonal_naive(history, 12, 12), history, 12)
    assert list(bt.scores) == ["rnnkit", "seasonal_naive"] and bt.scores["seasonal_naive"] == naive
    assert bt.models == {"seasonal_naive": "m=12"} and bt.shift == 0

    # rolling origin: origin 1 of 2 ends ceil(12 / 2) = 6 points earlier
    earlier = est.backtest(values, dates, origin=1, origins=2, run_dir=tmp_path / "o1")
    assert earlier.shift == 6 and earlier.run == tmp_path / "o1"
    np.testing.assert_array_equal(earlier.truth, values[66:78])
    assert rnnkit.load(tmp_path / "o1").data.drop_last == 18


def test_values_without_dates_are_placed_in_years_and_bad_input_fails_clearly(tmp_path):
    values, _ = _monthly(n=60)
    est = ForecastEstimator(horizon=6, season=12, **{**TINY, "epochs": 1, "samples": 0})
    with pytest.raises(RnnkitError, match=r"not fitted yet: call fit\(series\) first"):
        est.predict(3)
    rows = est.fit(list(values)).predict(3)
    assert [r["date"] for r in rows] == ["1061-01-01", "1062-01-01", "1063-01-01"]
    assert list(rows[0]) == ["date", "forecast"]  # samples=0: no intervals

    with pytest.raises(TypeError, match="unknown setting 'hiden_size'"):
        ForecastEstimator(hiden_size=8)
    with pytest.raises(DataError, match="the series is empty"):
        est.fit([])
    with pytest.raises(DataError, match=r"must be numbers; got 'b' \(str\) at position 1"):
        est.fit([1.0, "b", 3.0])
    with pytest.raises(DataError, match="must be finite numbers; got nan at position 2"):
        est.fit([1.0, 2.0, float("nan")])
    with pytest.raises(DataError, match=r"1-D sequence of numbers, got an array of shape \(3, 2\)"):
        est.fit(np.zeros((3, 2)))
    with pytest.raises(DataError, match="one date per value: 60 values"):
        est.fit(values, ["2000-01"] * 3)
    with pytest.raises(DataError, match="horizon must be >= 1, got 0"):
        ForecastEstimator(horizon=0, **TINY).fit(values)
    with pytest.raises(DataError, match="no data: give a series"):
        est.fit()
    with pytest.raises(ValueError, match="part must be one of"):
        est.backtest(values, part="train")
    with pytest.raises(DataError, match="origin must be between 0 and origins - 1 = 1, got 2"):
        est.backtest(values, origin=2, origins=2)
    with pytest.raises(RnnkitError, match="split must be valid or test"):
        est.predictor.evaluate("train")
