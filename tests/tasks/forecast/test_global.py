"""The global forecaster (``rnnkit train forecast --m4``): windows, the seasonal naive base,
the decoders, training on synthetic seasonal series, and the CLI round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.errors import DataError
from rnnkit.tasks.forecast.global_model import (
    GlobalForecaster,
    GlobalModelConfig,
    SeriesBank,
    forecast_windows,
    parse_quantiles,
    pinball_loss,
    to_tensors,
    window_loss,
)
from rnnkit.tasks.forecast.m4 import read_m4_forecasts
from rnnkit.tasks.forecast.m4_scores import smape, snaive
from rnnkit.train import read_state


def seasonal_series(n_series: int, period: int, extra: int = 0, seed: int = 0, noise: float = 0.02) -> list:
    """Positive series with a multiplicative season, a trend and noise, of different lengths
    and scales."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_series):
        n = 150 + 7 * i + extra
        t = np.arange(n)
        season = 1 + 0.4 * np.sin(2 * np.pi * (t + 3 * i) / period)
        trend = 1 + (0.004 + 0.001 * (i % 3)) * t
        out.append((20 + 15 * i) * season * trend * np.exp(rng.normal(0, noise, n)))
    return out


def write_m4(path: Path, series: list, prefix: str = "S") -> None:
    width = max(len(s) for s in series)
    lines = [",".join(f'"V{j + 1}"' for j in range(width + 1))]
    for i, s in enumerate(series):
        cells = [f'"{v:.6f}"' for v in s] + ['""'] * (width - len(s))
        lines.append(f'"{prefix}{i}",' + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------ windows
def test_training_windows_never_reach_the_held_out_part():
    series = seasonal_series(6, 6)
    bank = SeriesBank(series, held_out=8, window=20, horizon=8, period=6)
    pairs = bank.training_origins(np.random.default_rng(0), 500)
    rows, origins = pairs[:, 0], pairs[:, 1]
    assert (origins - bank.window >= 0).all()
    assert (origins + bank.horizon <= bank.lengths[rows] - 8).all()  # targets end before the held-out part
    # every allowed origin is drawn, the last one included (no off-by-one at the boundary)
    for i in range(6):
        drawn = set(origins[rows == i].tolist())
        assert max(drawn) == bank.lengths[i] - 8 - bank.horizon and min(drawn) == bank.window


def test_gather_normalizes_by_the_last_season_and_inverts():
    series = seasonal_series(3, 6)
    bank = SeriesBank(series, held_out=8, window=12, horizon=8, period=6)
    rows, origins = np.array([0, 2]), np.array([30, 55])
    b = bank.gather(rows, origins)
    for k, (i, o) in enumerate(zip(rows, origins)):
        level = series[i][o - 6:o].mean()
        assert b["level"][k] == pytest.approx(level)
        np.testing.assert_allclose(b["z"][:, k], np.log(series[i][o - 12:o] / level))
        np.testing.assert_allclose(b["y"][k], series[i][o:o + 8])
        np.testing.assert_array_equal(b["season"][:, k], (np.arange(o - 12, o) + 1) % 6)
    np.testing.assert_allclose(bank.denormalize(b["target"], b["level"]), b["y"])


def test_owa_weights_by_hand():
    """Window weight 0.5 (1 + r / mean r), r = level / scale: scale is the series' in-sample
    seasonal naive error on its training part, mean r is over the series of mean / scale."""
    a = np.tile([1.0, 3.0], 20)  # period 2: |y_t - y_{t-2}| = 0 ... use a drift to make it nonzero
    a = a + 0.1 * np.arange(40)  # scale 0.2, mean of the first 30 (training part) 3.45
    b = 10 * np.ones(40) + np.arange(40) % 3  # period 2: |y_t - y_{t-2}| over 30 points
    bank = SeriesBank([a, b], held_out=10, window=4, horizon=2, period=2, weighting="owa")
    scale_b = np.mean(np.abs(b[2:30] - b[:28]))
    assert bank.scales[0] == pytest.approx(0.2) and bank.scales[1] == pytest.approx(scale_b)
    mean_r = (np.mean(a[:30]) / 0.2 + np.mean(b[:30]) / scale_b) / 2
    batch = bank.gather(np.array([0, 1]), np.array([10, 20]))
    level = np.array([a[8:10].mean(), b[18:20].mean()])
    expected = 0.5 * (1 + np.minimum(level / np.array([0.2, scale_b]) / mean_r, 50))
    np.testing.assert_allclose(batch["weight"], expected)
    assert "weight" not in SeriesBank([a, b], held_out=10, window=4, horizon=2, period=2).gather(
        np.array([0]), np.array([10]))


def test_series_too_short_or_not_positive_are_refused():
    with pytest.raises(DataError, match="too short.*needs at least 36"):
        SeriesBank([np.ones(35) + 1, np.ones(80) + 1], held_out=8, window=20, horizon=8, period=6)
    with pytest.raises(DataError, match="positive values; series 1 has -1"):
        SeriesBank([np.ones(80), -np.ones(80)], held_out=8, window=20, horizon=8, period=6)


def test_pinball_loss_by_hand():
    pred = torch.tensor([[1.0, 2.0, 3.0]])
    q = torch.tensor([0.1, 0.5, 0.9])
    # target 2.5: diffs 1.5, 0.5, -0.5 -> 0.1*1.5, 0.5*0.5, (0.9-1)*(-0.5) = 0.15, 0.25, 0.05; mean 0.15
    assert float(pinball_loss(pred, torch.tensor([2.5]), q)) == pytest.approx(0.15)


def test_quantiles_must_hold_the_median():
    assert parse_quantiles("0.9, 0.5,0.1") == (0.1, 0.5, 0.9)
    with pytest.raises(DataError, match="median"):
        parse_quantiles("0.1,0.9")
    with pytest.raises(DataError, match="between 0 and 1"):
        parse_quantiles("0,0.5")


# ------------------------------------------------------------------- the seasonal naive base
@pytest.mark.parametrize("decoder, extra", [("direct", {}), ("rollout", {}),
                                            ("direct", {"highway": 12, "rnn_window": 10})])
def test_a_silent_network_forecasts_the_seasonal_naive(decoder, extra):
    """With the head's weights and bias at zero the network adds nothing to its base: the
    forecast is exactly the seasonal naive one (the last season repeated), for both decoders
    (and with the highway, which starts at zero)."""
    series = seasonal_series(5, 6)
    cfg = GlobalModelConfig(hidden_size=8, num_layers=1, decoder=decoder, **extra)
    model = GlobalForecaster(cfg, horizon=15, period=6)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    bank = SeriesBank(series, held_out=15, window=24, horizon=15, period=6)
    q = forecast_windows([model], bank, np.arange(5), bank.fit_ends)
    for i, s in enumerate(series):
        expected = snaive(s[:bank.fit_ends[i]], 15, 6)
        for j in range(q.shape[-1]):
            np.testing.assert_allclose(q[i, :, j], expected, rtol=1e-5)


def test_rollout_step_by_step_equals_the_teacher_forced_pass():
    """Feeding the true values one step at a time (with the state and the one-season history
    carried) gives the outputs of one teacher-forced pass over the whole sequence."""
    torch.manual_seed(0)
    model = GlobalForecaster(GlobalModelConfig(hidden_size=8, num_layers=2, decoder="rollout"), horizon=5, period=4)
    z = torch.randn(13, 3)
    season = torch.arange(13).remainder(4).unsqueeze(1).expand(13, 3).contiguous()
    full, _ = model(z, season)
    out, state = model(z[:9], season[:9])
    np.testing.assert_allclose(out.detach(), full[:9].detach(), rtol=1e-5, atol=1e-6)
    for t in range(9, 13):
        out, state = model(z[t:t + 1], season[t:t + 1], state, history=z[t - 4:t])
        np.testing.assert_allclose(out[0].detach(), full[t].detach(), rtol=1e-5, atol=1e-6)


def test_highway_is_a_linear_map_of_the_window_beside_the_network():
    """The highway starts at zero (the model is then the network over its base) and adds
    W d[-N:] + b to every output, d the seasonal differences z_t - z_{t-m}: checked against
    the same sum computed by hand; a series that repeats its season gets nothing from it."""
    torch.manual_seed(0)
    cfg = GlobalModelConfig(hidden_size=6, num_layers=1, highway=10)
    model = GlobalForecaster(cfg, horizon=4, period=5)
    plain = GlobalForecaster(GlobalModelConfig(hidden_size=6, num_layers=1), horizon=4, period=5)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("highway")})
    z, season = torch.randn(16, 3), torch.randint(0, 5, (16, 3))
    torch.testing.assert_close(model(z, season)[0], plain(z, season)[0])
    torch.nn.init.normal_(model.highway.weight)
    torch.nn.init.normal_(model.highway.bias)
    diffs = z[-10:] - z[-15:-5]  # over the seasonal naive base: the seasonal differences, period 5
    extra = (diffs.T @ model.highway.weight.T + model.highway.bias).view(3, 4, 3)
    torch.testing.assert_close(model(z, season)[0], plain(z, season)[0] + extra)
    periodic = torch.arange(15.0).remainder(5).unsqueeze(1).expand(15, 3) / 10
    torch.testing.assert_close(model.highway_inputs(periodic), torch.zeros(3, 10))
    with pytest.raises(ValueError, match="highway"):
        GlobalForecaster(GlobalModelConfig(decoder="rollout", highway=10), horizon=4, period=5)


def test_rnn_window_limits_what_the_network_reads():
    """With --rnn-window 8 (no highway, no scale) the steps before the last 8 change nothing;
    without it they do."""
    torch.manual_seed(2)
    short = GlobalForecaster(GlobalModelConfig(hidden_size=5, num_layers=1, rnn_window=8), horizon=4, period=3)
    full = GlobalForecaster(GlobalModelConfig(hidden_size=5, num_layers=1), horizon=4, period=3)
    full.load_state_dict(short.state_dict())
    z, season = torch.randn(20, 2), torch.randint(0, 3, (20, 2))
    other = z.clone()
    other[:12] = torch.randn(12, 2)
    torch.testing.assert_close(short(z, season)[0], short(other, season)[0])
    assert not torch.allclose(full(z, season)[0], full(other, season)[0])


def test_direct_base_needs_a_whole_season():
    model = GlobalForecaster(GlobalModelConfig(hidden_size=4, num_layers=1), horizon=3, period=6)
    with pytest.raises(ValueError, match="at least one season"):
        model(torch.zeros(5, 2), torch.zeros(5, 2, dtype=torch.long))


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("decoder", ["direct", "rollout"])
def test_trained_global_model_beats_the_seasonal_naive(decoder):
    """Series with a trend: the seasonal naive forecast lags behind it, a global model trained
    on windows of all the series at once learns to follow it (sMAPE on held-out points)."""
    torch.manual_seed(0)
    period, horizon = 6, 12
    series = seasonal_series(8, period, extra=horizon)
    bank = SeriesBank(series, held_out=horizon, window=24, horizon=horizon, period=period)
    model = GlobalForecaster(GlobalModelConfig(hidden_size=24, num_layers=1, decoder=decoder), horizon, period)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(150):
        pairs = bank.training_origins(rng, 8)
        loss = window_loss(model, to_tensors(bank.gather(pairs[:, 0], pairs[:, 1]), "cpu"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = forecast_windows([model], bank, np.arange(8), bank.fit_ends)
    truth = [s[o:o + horizon] for s, o in zip(series, bank.fit_ends)]
    ours = np.mean([smape(t, f) for t, f in zip(truth, q[..., model.median])])
    base = np.mean([smape(t, snaive(s[:o], horizon, period)) for t, s, o in zip(truth, series, bank.fit_ends)])
    assert ours < 0.8 * base, (ours, base)


# ------------------------------------------------------------------------------------ CLI
def _tiny(tmp_path: Path) -> tuple[Path, Path, list, list]:
    full = seasonal_series(6, 6, extra=8, seed=1)
    train, future = [s[:-8] for s in full], [s[-8:] for s in full]
    write_m4(tmp_path / "train.csv", train)
    write_m4(tmp_path / "test.csv", future)
    return tmp_path / "train.csv", tmp_path / "test.csv", train, future


def test_cli_round_trip_train_forecast_evaluate(tmp_path, capsys):
    train_file, test_file, train, future = _tiny(tmp_path)
    run = tmp_path / "run"
    args = ["train", "forecast", "--m4", str(train_file), "--horizon", "8", "--period", "6", "--run", str(run),
            "--epochs", "2", "--hidden-size", "8", "--windows-per-series", "8", "--batch-size", "16",
            "--no-progress"]
    assert main(args) == 0
    record = json.loads((run / "m4.json").read_text())
    assert record["members"] == ["members/0"] and set(record["valid"]) >= {"smape", "mase", "owa", "msis"}
    out = tmp_path / "fc.csv"
    assert main(["forecast", str(run), "--m4", str(train_file), "--out", str(out), "--intervals"]) == 0
    ids, median = read_m4_forecasts(out)
    _, lower = read_m4_forecasts(tmp_path / "fc-lower.csv")
    _, upper = read_m4_forecasts(tmp_path / "fc-upper.csv")
    assert ids == [f"S{i}" for i in range(6)] and median.shape == (6, 8)
    assert (lower <= median + 1e-9).all() and (median <= upper + 1e-9).all()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--m4-test", str(test_file), "--benchmarks", "snaive",
                 "--out", str(tmp_path / "ev")]) == 0
    table = json.loads((tmp_path / "ev" / "test-scores.json").read_text())["table"]
    recount = np.mean([smape(t, f) for t, f in zip(future, median)])
    assert table["rnnkit"]["smape"] == pytest.approx(recount, rel=1e-6)  # the forecast file, scored again
    assert table["snaive"]["smape"] == pytest.approx(np.mean([smape(t, snaive(s, 8, 6))
                                                              for t, s in zip(future, train)]))
    assert table["naive2"]["owa"] == pytest.approx(1.0)
    assert "rnnkit" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--split", "valid", "--m4-test", str(test_file)]) == 2
    assert "--m4-test goes with --split test" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--benchmarks", "snaive"]) == 2  # the test split needs the truth
    assert "--m4-test" in capsys.readouterr().err


def test_resume_continues_a_stopped_run(tmp_path):
    train_file, _, _, _ = _tiny(tmp_path)
    run = tmp_path / "run"
    base = ["train", "forecast", "--m4", str(train_file), "--horizon", "8", "--period", "6", "--run", str(run),
            "--epochs", "2", "--hidden-size", "8", "--windows-per-series", "8", "--batch-size", "16",
            "--no-progress"]
    assert main(base + ["--max-steps", "2"]) == 0  # stops early, as an interruption would
    assert read_state(run / "members" / "0")["step"] == 2
    assert main(base) != 0  # the folder holds a run: refused without --resume
    assert main(base + ["--resume", "--max-steps", "0"]) == 0
    assert read_state(run / "members" / "0")["step"] == 2 * 3  # 6 series x 8 windows / 16 = 3 batches per epoch, 2 epochs
    assert main(base + ["--resume", "--hidden-size", "9"]) != 0  # settings are the run's


@pytest.mark.parametrize("flags, message", [
    (["--direct"], "--direct: a setting of single-series forecasting"),
    (["--csv", "x.csv"], "--csv: a setting of single-series"),
])
def test_single_series_flags_are_refused_with_m4(tmp_path, capsys, flags, message):
    train_file, _, _, _ = _tiny(tmp_path)
    code = main(["train", "forecast", "--m4", str(train_file), "--horizon", "8", "--period", "6",
                 "--run", str(tmp_path / "r")] + flags)
    assert code != 0 and message in capsys.readouterr().err


def test_global_flags_without_m4_are_refused(tmp_path, capsys):
    assert main(["train", "forecast", "--dataset", "co2", "--decoder", "rollout", "--run", str(tmp_path / "r")]) != 0
    assert "--decoder: a setting of the global model" in capsys.readouterr().err


def test_a_series_too_short_for_the_window_is_named_with_the_reason(tmp_path, capsys):
    train_file, _, _, _ = _tiny(tmp_path)
    assert main(["train", "forecast", "--m4", str(train_file), "--horizon", "8", "--period", "6", "--window", "300",
                 "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "series 'S0': 150 values; expected at least 316 (a window of 300, a horizon of 8 and 8 held-out" in err


def test_horizon_and_period_are_required(tmp_path, capsys):
    train_file, _, _, _ = _tiny(tmp_path)
    assert main(["train", "forecast", "--m4", str(train_file), "--period", "6", "--run", str(tmp_path / "r")]) != 0
    assert "--horizon" in capsys.readouterr().err
    assert main(["train", "forecast", "--m4", str(train_file), "--horizon", "8", "--run", str(tmp_path / "r")]) != 0
    assert "--period" in capsys.readouterr().err
