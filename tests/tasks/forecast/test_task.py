"""Forecaster: sine rollout, direct head, Gaussian loss, baselines with known answers, metrics
on hand-computed numbers, and a CLI round trip."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnkit.errors import DataError
from rnnkit.tasks.forecast.baselines import naive, seasonal_naive
from rnnkit.tasks.forecast.metrics import all_metrics, mae, mase, mase_scale, rmse, smape
from rnnkit.tasks.forecast.series import make_windows
from rnnkit.tasks.forecast.task import (
    Forecaster,
    ForecastModelConfig,
    ForecastTask,
    forecast_loss,
    rollout,
)
from rnnkit.train import TrainConfig, Trainer

pytest.importorskip("statsmodels")


def test_metrics_on_hand_computed_numbers():
    truth, forecast = [1.0, 2.0, 4.0], [2.0, 2.0, 1.0]
    assert mae(truth, forecast) == pytest.approx(4 / 3)
    assert rmse(truth, forecast) == pytest.approx(math.sqrt(10 / 3))
    # sMAPE = 100/3 * (2*1/3 + 0 + 2*3/5)
    assert smape(truth, forecast) == pytest.approx(100 / 3 * (2 / 3 + 6 / 5))
    assert smape([0.0], [0.0]) == 0.0
    history = [1.0, 3.0, 2.0, 5.0]  # m=1: |2| + |1| + |3| = 6 over 3 -> 2
    assert mase_scale(history, 1) == 2.0
    assert mase(truth, forecast, history, 1) == pytest.approx(2 / 3)
    assert mase_scale([1.0, 2.0, 4.0, 3.0], 2) == pytest.approx(2.0)  # |4-1| + |3-2| over 2
    with pytest.raises(ValueError, match="same nonzero length. Expected 3, got 2"):
        mae(truth, [1.0, 2.0])


def test_naive_and_seasonal_naive_exact_on_a_seasonal_series():
    season = np.array([5.0, 1.0, 3.0, 8.0])
    y = np.tile(season, 10)  # pure seasonal, period 4
    np.testing.assert_array_equal(seasonal_naive(y[:30], 10, 4), y[30:40])
    np.testing.assert_array_equal(naive(y[:30], 3), [y[29]] * 3)
    with pytest.raises(ValueError, match="Expected >= 4 points, got 2"):
        seasonal_naive(y[:2], 3, 4)


def test_arima_and_ets_follow_a_linear_trend():
    from rnnkit.tasks.forecast.baselines import arima, ets

    rng = np.random.default_rng(0)
    t = np.arange(80, dtype=float)
    y = 10 + 0.5 * t + 0.05 * rng.normal(size=80)
    truth = 10 + 0.5 * np.arange(80, 92)
    for fn in (lambda h: arima(y, h, 1, max_order=0), lambda h: ets(y, h, 1)):
        forecast, desc = fn(12)
        assert np.abs(forecast - truth).max() < 0.5, desc


def test_ets_and_arima_on_a_seasonal_series_beat_naive():
    from rnnkit.tasks.forecast.baselines import arima, ets

    t = np.arange(96)
    y = 50 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(1).normal(size=96)
    truth = (50 + 0.3 * np.arange(96, 108) + 5 * np.sin(2 * np.pi * np.arange(96, 108) / 12))
    for forecast, desc in (arima(y, 12, 12, max_order=0), ets(y, 12, 12)):
        assert mae(truth, forecast) < 0.5, desc


@pytest.mark.slow
def test_arima_full_grid_on_a_seasonal_series():
    from rnnkit.tasks.forecast.baselines import arima

    t = np.arange(96)
    y = 50 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(1).normal(size=96)
    truth = (50 + 0.3 * np.arange(96, 108) + 5 * np.sin(2 * np.pi * np.arange(96, 108) / 12))
    forecast, desc = arima(y, 12, 12)
    assert mae(truth, forecast) < 0.5, desc


def _sine_task(n=400, period=20, window=20, horizon=1, head="point"):
    z = np.sin(2 * np.pi * np.arange(n) / period)
    X, Y = make_windows(z[:, None], z, window, horizon, 0, n - 60)
    Xv, Yv = make_windows(z[:, None], z, window, horizon, n - 60, n)
    cfg = ForecastModelConfig(cell="lstm", hidden_size=24, head=head, direct=horizon > 1)
    return z, ForecastTask((X, Y), (Xv, Yv), cfg, batch_size=32, seed=0, meta={})


def test_rollout_of_a_model_trained_on_a_noiseless_sine_reproduces_it(tmp_path):
    torch.manual_seed(0)
    z, task = _sine_task()
    model = task.build_model()
    cfg = TrainConfig(epochs=30, lr=1e-2, progress=False, device="cpu", log_every=1000)
    Trainer(model, task, cfg, tmp_path).fit()
    origin, horizon = 340, 60  # three periods past the training part, fed back step by step
    mean, paths = rollout([model], z[:origin, None], np.zeros((horizon, 0)), horizon, 20)
    assert paths.shape == (0, horizon)
    err = np.abs(mean - z[origin:origin + horizon]).max()
    assert err < 0.1, f"rollout drifts from the sine by {err:.3f}"


def test_direct_head_and_gaussian_head_shapes_and_sample_paths():
    z, task = _sine_task(horizon=5, head="gaussian")
    model = task.build_model()
    mean, log_var = model(task.X[:, :7])
    assert mean.shape == (7, 5) and log_var.shape == (7, 5)
    # a 12-step forecast from a 5-step head: blocks of 5, 5 and 2
    mean_path, paths = rollout([model, task.build_model()], z[:100, None], np.zeros((12, 0)), 12, 20,
                               samples=50, seed=3)
    assert mean_path.shape == (12,) and paths.shape == (50, 12)
    assert np.isfinite(paths).all() and paths.std(axis=0).min() > 0
    again, paths_again = rollout([model, task.build_model()], z[:100, None], np.zeros((12, 0)), 12, 20, 50, 3)
    assert again.shape == (12,) and paths_again.shape == (50, 12)


@pytest.mark.parametrize("head,direct", [("gaussian", False), ("point", True)])
def test_local_level_reads_each_window_relative_to_its_mean(head, direct):
    torch.manual_seed(0)
    cfg = ForecastModelConfig(hidden_size=6, head=head, direct=direct, local_level=True)
    model = Forecaster(3, 4 if direct else 1, cfg)
    x = torch.randn(10, 5, 3)
    mean, log_var = model(x)
    # oracle: the same weights without local_level, fed the centred window, plus the level
    plain = Forecaster(3, 4 if direct else 1, replace(cfg, local_level=False))
    plain.load_state_dict(model.state_dict())
    level = x[:, :, 0].mean(0)
    centred = x.clone()
    centred[:, :, 0] -= level
    ref_mean, ref_log_var = plain(centred)
    torch.testing.assert_close(mean, ref_mean + level[:, None])
    # a shift of the values shifts the forecast by the same amount and leaves the rest alone
    shifted = x.clone()
    shifted[:, :, 0] += 3.0
    mean2, log_var2 = model(shifted)
    torch.testing.assert_close(mean2, mean + 3.0)
    if head == "gaussian":
        torch.testing.assert_close(log_var, ref_log_var)
        torch.testing.assert_close(log_var2, log_var)
    # the input is not changed in place
    torch.testing.assert_close(x[:, :, 0].mean(0), level)


def test_gaussian_nll_matches_torch():
    mean, log_var, y = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    expected = torch.nn.functional.gaussian_nll_loss(mean, y, log_var.exp(), full=True)
    torch.testing.assert_close(forecast_loss(mean, log_var, y), expected)
    torch.testing.assert_close(forecast_loss(mean, None, y), ((mean - y) ** 2).mean())


def test_model_errors_say_expected_and_got():
    with pytest.raises(ValueError, match="cell must be one of"):
        Forecaster(1, 1, ForecastModelConfig(cell="transformer"))
    model = Forecaster(3, 1, ForecastModelConfig(hidden_size=4))
    with pytest.raises(ValueError, match=r"expected input \(T, B, 3\), got \(5, 2, 2\)"):
        model(torch.zeros(5, 2, 2))


def test_cli_train_forecast_evaluate_round_trip(tmp_path, capsys):
    from rnnkit.cli import main

    t = np.arange(120)
    values = 100 + t + 10 * np.sin(2 * np.pi * t / 12)
    dates = [f"{1990 + i // 12}-{i % 12 + 1:02d}" for i in range(120)]
    csv = tmp_path / "series.csv"
    csv.write_text('"Month","Sales"\n' + "".join(f'"{d}",{v:.3f}\n' for d, v in zip(dates, values)))
    run = tmp_path / "run"
    rc = main(["train", "forecast", "--csv", str(csv), "--column", "Sales", "--horizon", "12", "--run", str(run),
               "--epochs", "3", "--hidden-size", "8", "--samples", "20", "--baselines", "naive,seasonal_naive"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "test metrics" in out and "seasonal_naive" in out
    for name in ("forecast.png", "forecast.csv", "forecast_metrics.csv", "forecast.json", "config.json"):
        assert (run / name).is_file(), name
    info = json.loads((run / "forecast.json").read_text())
    assert set(info["test"]) == {"rnnkit", "naive", "seasonal_naive"} and info["n_test"] == 12
    # the stored forecasts are the ones the recorded metrics were computed from
    truth, history = values.round(3)[info["valid_end"]:], values.round(3)[:info["valid_end"]]
    recomputed = all_metrics(truth, np.array(info["test_forecast"]), history, 12)
    assert recomputed["mase"] == pytest.approx(info["test"]["rnnkit"]["mase"], rel=1e-9)
    valid_truth = values.round(3)[info["train_end"]:info["valid_end"]]
    recomputed = all_metrics(valid_truth, np.array(info["valid_forecast"]), values.round(3)[:info["train_end"]], 12)
    assert recomputed["mase"] == pytest.approx(info["valid_rollout"]["mase"], rel=1e-9)

    assert main(["evaluate", str(run)]) == 0
    assert "rnnkit" in capsys.readouterr().out
    assert main(["forecast", str(run), "--horizon", "3", "--plot", str(tmp_path / "f.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("date\tforecast\tlo95") and lines[1].startswith("2000-01-01")
    assert len(lines) == 5 and (tmp_path / "f.png").is_file()

    bad = tmp_path / "bad.csv"
    bad.write_text("Month,Sales\n1990-01,1\n1990-02,\n")
    assert main(["train", "forecast", "--csv", str(bad), "--run", str(tmp_path / "r2")]) == 2
    assert "bad.csv:3: row 2: missing value in column 'Sales'" in capsys.readouterr().err
    assert main(["train", "forecast", "--csv", str(csv), "--column", "Slaes", "--run", str(tmp_path / "r3")]) == 2
    assert "no value column 'Slaes'; available: Sales" in capsys.readouterr().err


def test_cli_deseasonalized_local_level_run_reloads_to_the_same_forecast(tmp_path, capsys):
    from rnnkit.cli import main
    from rnnkit.tasks.forecast.predictor import ForecastPredictor

    t = np.arange(96)
    values = np.exp(4 + 0.01 * t + 0.2 * np.sin(2 * np.pi * t / 12))
    csv = tmp_path / "series.csv"
    csv.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{v:.4f}\n"
                                             for i, v in enumerate(values)))
    run = tmp_path / "run"
    assert main(["train", "forecast", "--csv", str(csv), "--horizon", "12", "--run", str(run), "--epochs", "2",
                 "--hidden-size", "6", "--samples", "0", "--baselines", "", "--log", "--deseasonalize",
                 "--harmonics", "3", "--local-level"]) == 0, capsys.readouterr().out
    info = json.loads((run / "forecast.json").read_text())
    assert len(info["transform"]["profile"]) == 12 and info["transform"]["profile_period"] == 12
    # the reloaded run (weights, local_level, the fitted profile) forecasts what training recorded
    again = ForecastPredictor.load(run, device="cpu").evaluate("test")["rnnkit"]["mase"]
    assert again == pytest.approx(info["test"]["rnnkit"]["mase"], rel=1e-6)
    assert main(["train", "forecast", "--csv", str(csv), "--horizon", "12", "--run", str(tmp_path / "r2"),
                 "--season", "1", "--deseasonalize"]) == 2
    assert "deseasonalize needs a seasonal period m >= 2 (--season), got m=1" in capsys.readouterr().err
    assert main(["train", "forecast", "--csv", str(csv), "--horizon", "12", "--run", str(tmp_path / "r3"),
                 "--harmonics", "2"]) == 2
    assert "harmonics smooths the seasonal profile that --deseasonalize removes" in capsys.readouterr().err


def test_ensemble_selection_keeps_the_models_with_the_best_validation_rollouts(tmp_path):
    from rnnkit.tasks.forecast.run import ForecastDataConfig, train_forecast

    t = np.arange(96)
    values = 50 + 0.5 * t + 8 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 1, 96)
    csv = tmp_path / "series.csv"
    csv.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{v:.3f}\n"
                                           for i, v in enumerate(values)))
    data = ForecastDataConfig(csv=str(csv), horizon=12, ensemble=4, select=2, samples=0, baselines="")
    train = TrainConfig(epochs=3, lr=1e-2, progress=False, device="cpu", log_every=1000)
    info = train_forecast(data, ForecastModelConfig(hidden_size=6), train, tmp_path / "run")
    scores = info["member_valid_mase"]
    assert len(scores) == 4 and len(set(scores)) == 4
    best_two = sorted(np.argsort(scores)[:2].tolist())
    assert info["members"] == [f"members/{i}" for i in best_two]
    assert len(info["best_epochs"]) == 2
    # the ensemble's validation rollout is the mean of the two kept models' rollouts
    from rnnkit.tasks.forecast.run import forecast_from, make_transform, prepare
    from rnnkit.train import load_weights

    p = prepare(data)
    transform = make_transform(data, p, p.train_end)
    kept = []
    for i in best_two:
        model = Forecaster(p.calendar_next.shape[1] + 1, 1, ForecastModelConfig(hidden_size=6))
        load_weights(model, tmp_path / "run" / "members" / str(i) / "checkpoints" / "best", "cpu")
        kept.append(model.eval())
    mean = forecast_from(kept, transform, p, p.train_end, p.n_valid, 0)["forecast"]
    np.testing.assert_allclose(mean, info["valid_forecast"], rtol=1e-6)
    with pytest.raises(DataError, match="select must be between 0 and the ensemble size 4, got 5"):
        train_forecast(replace(data, select=5), ForecastModelConfig(hidden_size=6), train, tmp_path / "r2")
    with pytest.raises(DataError, match="use one or the other"):
        train_forecast(replace(data, refit=True), ForecastModelConfig(hidden_size=6), train, tmp_path / "r3")


def test_drop_last_cuts_the_series_as_if_it_ended_earlier(tmp_path):
    from rnnkit.tasks.forecast.run import ForecastDataConfig, prepare

    csv = tmp_path / "series.csv"
    csv.write_text("Month,Sales\n" + "".join(f"{1990 + i // 12}-{i % 12 + 1:02d},{10 + i}\n" for i in range(72)))
    full = prepare(ForecastDataConfig(csv=str(csv), horizon=12))
    cut = prepare(ForecastDataConfig(csv=str(csv), horizon=12, drop_last=12))
    np.testing.assert_array_equal(cut.y, full.y[:-12])
    assert str(cut.dates[-1]) == "1994-12-01" and cut.valid_end == full.valid_end - 12
    # the calendar of the first forecast step follows the cut, not the file's end
    np.testing.assert_array_equal(cut.calendar_next[len(cut.y) - 1], full.calendar_next[len(cut.y) - 1])
    assert any("drop_last" in note for note in cut.notes)
    with pytest.raises(DataError, match="drop_last must be between 0 and the series length 72, got 72"):
        prepare(ForecastDataConfig(csv=str(csv), horizon=12, drop_last=72))
