"""Training a forecaster with plain arguments (``rnnkit train forecast`` and
:class:`~rnnkit.tasks.forecast.estimator.ForecastEstimator` call it): the data and its split,
the ensemble, the baselines, the metrics table and the plot.  A trained run is used through
:class:`~rnnkit.tasks.forecast.predictor.ForecastPredictor`.

Protocol: the last ``test`` points (default: ``horizon``) are the test part, forecast in one
rollout from the end of the history before it; the last ``valid`` points before the test
part (default: as many as the test) are the validation part, used for early stopping and for
the validation rollout that tuning reads.  With ``refit`` each model is then trained again on
train + valid for the number of epochs that was best on validation.  Scaling (and any
differencing) is fitted on the data the models are trained on, never on later points.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from rnnkit.errors import DataError, RnnkitError
from rnnkit.extras import require
from rnnkit.settings import MAX_BATCH, MAX_LENGTH, setting
from rnnkit.tasks.forecast.baselines import run_baselines
from rnnkit.tasks.forecast.metrics import all_metrics
from rnnkit.tasks.forecast.series import (
    STATSMODELS_DATASETS,
    Series,
    calendar_features,
    chronological_split,
    default_season,
    future_dates,
    load_statsmodels_series,
    make_windows,
    part_size,
    read_series_csv,
    write_series_csv,
)
from rnnkit.tasks.forecast.task import (
    Forecaster,
    ForecastModelConfig,
    ForecastTask,
    rollout,
    step_inputs,
)
from rnnkit.tasks.forecast.transform import SeriesTransform
from rnnkit.train import TrainConfig, Trainer, distributed, load_weights, run_lock, seed_everything
from rnnkit.train.trainer import pick_device

logger = logging.getLogger(__name__)

BASELINES = "naive,seasonal_naive,arima,ets"
MAX_SAMPLES = 100_000  # sample paths of the prediction intervals
MAX_ENSEMBLE = 1000  # models of an ensemble
SERIES_COPY = "series.csv"  # the run's own copy of its series, which the predictor reads


@dataclass
class ForecastDataConfig:
    csv: Optional[str] = setting(None, "CSV file (.gz too) with a date column and value columns")
    dataset: Optional[str] = setting(None, "or a series bundled with statsmodels: sunspots | co2",
                                     choices=STATSMODELS_DATASETS)
    column: Optional[str] = setting(None, "value column to forecast (default: the only one)")
    drop_last: int = setting(0, "ignore the last N points, as if the data ended there (a backtest)", ge=0)
    date_column: Optional[str] = setting(None, "default: the first column")
    horizon: int = setting(12, "steps to forecast", ge=1, le=MAX_LENGTH)
    test: Optional[str] = setting(None, "test part: count, fraction or percentage (default: horizon)")
    valid: Optional[str] = setting(None, "validation part before it (default: the test size)")
    season: int = setting(0, "seasonal period m (0: 12 monthly, 4 quarterly, 52 weekly, 7 daily, else 1)",
                          ge=0, le=MAX_LENGTH)
    window: int = setting(0, "input window (0: two seasons, at least 12, at most 104)", ge=0, le=MAX_LENGTH)
    log: bool = setting(False, "model log y (positive series whose variation grows with the level)")
    difference: int = setting(0, "1: model first differences", ge=0, le=1)
    seasonal_difference: bool = setting(False, "model y_t - y_{t-m}")
    deseasonalize: bool = setting(False, "remove the STL seasonal profile of period m first (needs statsmodels)")
    harmonics: int = setting(0, "with deseasonalize: smooth the profile to K Fourier harmonics (0: none)",
                             ge=0, le=MAX_LENGTH)
    calendar: bool = setting(True, "calendar covariates (month one-hot; year phase and weekday for daily)")
    batch_size: int = setting(32, "windows per batch", ge=1, le=MAX_BATCH)
    samples: int = setting(200, "sample paths for the prediction intervals (0: none)", ge=0, le=MAX_SAMPLES)
    ensemble: int = setting(1, "models trained with seeds seed .. seed+ensemble-1, averaged", ge=1, le=MAX_ENSEMBLE)
    select: int = setting(0, "keep the models with the `select` best validation rollouts (0: all)",
                          ge=0, le=MAX_ENSEMBLE)
    refit: bool = setting(False, "retrain on train+valid for the best number of epochs")
    baselines: str = setting(BASELINES, 'comma-separated; "" for none')


# --------------------------------------------------------------------------------- data
def read_data(cfg: ForecastDataConfig) -> Series:
    """The series that ``cfg.csv`` or ``cfg.dataset`` names (its ``column`` only, when set), as
    given: ``drop_last`` is not applied."""
    if (cfg.csv is None) == (cfg.dataset is None):
        raise DataError("give exactly one of --csv FILE or --dataset sunspots|co2")
    if cfg.csv is not None:
        return read_series_csv(cfg.csv, [cfg.column] if cfg.column else None, cfg.date_column)
    return load_statsmodels_series(cfg.dataset)


def load_series(cfg: ForecastDataConfig, copy: Optional[str | Path] = None) -> Series:
    """The series of ``cfg`` with its ``drop_last`` applied; read from ``copy`` (a run's own
    copy of its series, written by :func:`copy_series`) instead of ``cfg.csv``/``cfg.dataset``
    when given."""
    series = read_data(cfg) if copy is None else read_series_csv(copy)
    if cfg.drop_last:
        n = len(series.dates)
        if not 0 < cfg.drop_last < n:
            raise DataError(f"drop_last must be between 0 and the series length {n}, got {cfg.drop_last}")
        series = replace(series, values=series.values[:-cfg.drop_last], dates=series.dates[:-cfg.drop_last],
                         notes=series.notes + [f"the last {cfg.drop_last} points are left out (drop_last)"])
    return series


@dataclass
class Prepared:
    y: np.ndarray  # (N,)
    dates: np.ndarray  # (N,)
    freq: str
    season: int
    window: int
    n_test: int
    n_valid: int
    train_end: int
    valid_end: int
    calendar_next: np.ndarray  # (N + extra, K): calendar of date t+1
    notes: list


def copy_series(cfg: ForecastDataConfig, run_dir: Path) -> str:
    """Write the series of ``cfg`` (before ``drop_last``) into ``run_dir`` as ``series.csv``, so
    that the run forecasts and evaluates without the original file (which may move or change);
    the values are written exactly.  A CSV that already is that file is left alone.  Returns
    the copy's name in the run folder."""
    copy = run_dir / SERIES_COPY
    if cfg.csv is not None and Path(cfg.csv).resolve() == copy.resolve():
        return SERIES_COPY
    series = read_data(cfg)
    date_header = "date"
    while date_header in series.columns:  # a value column of that name: the copy's date column is "_date"
        date_header = "_" + date_header
    tmp = run_dir / (SERIES_COPY + ".tmp")
    tmp.unlink(missing_ok=True)
    write_series_csv(series, tmp, date_header)
    tmp.replace(copy)
    return SERIES_COPY


def prepare(cfg: ForecastDataConfig, extra: int = 0, copy: Optional[str | Path] = None) -> Prepared:
    """Load the series (from ``copy``, a run's own copy, when given) and work out season, window
    and the chronological split; the calendar covariates run ``extra`` steps past the end (for
    forecasts beyond the data)."""
    series = load_series(cfg, copy)
    y = series.column(cfg.column)
    m = cfg.season or default_season(series.freq)
    window = cfg.window or min(max(12, 2 * m), 104)
    if cfg.horizon < 1:
        raise DataError(f"horizon must be >= 1, got {cfg.horizon}")
    n = len(y)
    n_test = part_size(cfg.test if cfg.test is not None else cfg.horizon, n, "test")
    n_valid = part_size(cfg.valid if cfg.valid is not None else n_test, n, "valid")
    lost = cfg.difference + (m if cfg.seasonal_difference else 0)
    split = chronological_split(n, n_test, n_valid, min_train=window + lost + 2)
    all_dates = np.concatenate([series.dates, future_dates(series.dates, series.freq, extra + 1)])
    cal = calendar_features(all_dates[1:], series.freq) if cfg.calendar else np.zeros((n + extra, 0))
    return Prepared(y, series.dates, series.freq, m, window, n_test, n_valid, split.train_end,
                    split.valid_end, cal, list(series.notes))


def make_transform(cfg: ForecastDataConfig, p: Prepared, fit_end: int) -> SeriesTransform:
    if cfg.deseasonalize and p.season < 2:
        raise DataError(f"deseasonalize needs a seasonal period m >= 2 (--season), got m={p.season}")
    if cfg.harmonics and not cfg.deseasonalize:
        raise DataError("harmonics smooths the seasonal profile that --deseasonalize removes; add --deseasonalize")
    return SeriesTransform(cfg.log, cfg.difference, p.season if cfg.seasonal_difference else 0,
                           profile_period=p.season if cfg.deseasonalize else 0,
                           harmonics=cfg.harmonics).fit(p.y[:fit_end])


def require_extras(cfg: ForecastDataConfig) -> None:
    """statsmodels, where these settings need it (the ARIMA and ETS baselines, the statsmodels
    series, the seasonal profile), checked before any training: else ImportError naming the
    extra that installs it."""
    baselines = {"arima", "ets"} & {b.strip() for b in cfg.baselines.split(",")}
    uses = [use for use, needed in (("the ARIMA and ETS baselines", baselines),
                                    (f"--dataset {cfg.dataset}", cfg.dataset is not None),
                                    ("--deseasonalize", cfg.deseasonalize)) if needed]
    if uses:
        hint = "the baselines can be left out: --baselines naive,seasonal_naive" if baselines else ""
        require("statsmodels", "forecast", f"rnnkit train forecast with {' and '.join(uses)}", hint)


# ------------------------------------------------------------------------------- models
def _train_member(p: Prepared, cfg: ForecastDataConfig, model_cfg: ForecastModelConfig, train_cfg: TrainConfig,
                  transform: SeriesTransform, fit_end: int, valid_end: int, folder: Path, seed: int) -> Forecaster:
    """Train one model on windows with targets in [0, fit_end), validating on [fit_end, valid_end)."""
    seed_everything(seed, train_cfg.deterministic)
    z = transform.forward(p.y)
    inputs = step_inputs(z, p.calendar_next[:len(z)])
    k = cfg.horizon if model_cfg.direct else 1
    train = make_windows(inputs, z, p.window, k, 0, fit_end)
    valid = make_windows(inputs, z, p.window, k, fit_end, valid_end)
    meta = {"input_size": inputs.shape[1], "outputs": k, "transform": transform.to_dict()}
    task = ForecastTask(train, valid, model_cfg, cfg.batch_size, seed, meta)
    model = task.build_model()
    trainer = Trainer(model, task, replace(train_cfg, seed=seed), folder)
    summary = trainer.fit()
    if summary["status"] == "interrupted":
        raise MemberStopped(summary.get("signal") or "SIGINT", folder)
    best = folder / "checkpoints" / "best"
    if best.is_dir() and trainer.is_main:  # torchrun: only rank 0 forecasts with the models
        load_weights(model, best, trainer.device)
    model.best_epochs = max(1, summary["epoch"] - trainer.bad_epochs)  # epochs until the best validation
    return model.eval()


def forecast_from(models: list, transform: SeriesTransform, p: Prepared, origin: int, horizon: int,
                  samples: int, seed: int = 0) -> dict:
    """Forecast ``horizon`` steps after ``origin`` from the history y[:origin]: the mean path
    and, with samples, 80% and 95% intervals, on the original scale."""
    z = transform.forward(p.y[:origin])
    inputs = step_inputs(z, p.calendar_next[:origin])
    if not np.isfinite(inputs[-p.window:]).all():
        raise DataError(f"the history before the forecast ({origin} points) is shorter than the window "
                        f"{p.window} plus the points lost to differencing")
    z_mean, z_paths = rollout(models, inputs, p.calendar_next[origin:origin + horizon], horizon, p.window,
                              samples, seed)
    history = p.y[:origin]
    out = {"forecast": transform.inverse(z_mean, history)[0]}
    if len(z_paths):
        paths = transform.inverse(z_paths, history)  # (S, H)
        for name, q in (("lo95", 2.5), ("lo80", 10), ("hi80", 90), ("hi95", 97.5)):
            out[name] = np.percentile(paths, q, axis=0)
    return out


class MemberStopped(Exception):
    """Ctrl-C or SIGTERM stopped the training of one member of the ensemble."""

    def __init__(self, signal: str, folder: Path) -> None:
        super().__init__(signal)
        self.signal, self.folder = signal, folder


def train_forecast(cfg: ForecastDataConfig, model_cfg: ForecastModelConfig, train_cfg: TrainConfig,
                   run_dir: str | Path) -> dict:
    """Train the forecaster (an ensemble of ``cfg.ensemble`` models) in ``run_dir``, run the
    baselines, log and save the test metrics table and the plot; the run's record
    (``forecast.json``) with "status": "finished".  The run folder keeps its own copy of the
    series (``series.csv``), which the predictor reads, and is locked while the run trains.

    Ctrl-C or SIGTERM stops the member in training (its checkpoint saved) and the whole run:
    {"status": "interrupted", "signal": ...}, and no ``forecast.json`` (forecast runs are not
    resumable: start again with another folder)."""
    require_extras(cfg)
    folder = run_lock.acquire(run_dir) if distributed.is_main() else None
    try:
        return {**_train_forecast(cfg, model_cfg, train_cfg, Path(run_dir)), "status": "finished"}
    except MemberStopped as stop:
        logger.info(f"interrupted by {stop.signal} while training {stop.folder}; the run is incomplete "
                    f"(no forecast.json): start it again with another --run")
        return {"status": "interrupted", "signal": stop.signal}
    finally:
        if folder is not None:
            run_lock.release(folder, every=True)


def _train_forecast(cfg: ForecastDataConfig, model_cfg: ForecastModelConfig, train_cfg: TrainConfig,
                    run_dir: Path) -> dict:
    started = time.perf_counter()
    if (run_dir / "forecast.json").exists():
        raise RnnkitError(f"{run_dir} already holds a forecast run; choose another --run")
    if cfg.select < 0 or cfg.select > cfg.ensemble:
        raise DataError(f"select must be between 0 and the ensemble size {cfg.ensemble}, got {cfg.select}")
    if cfg.select and cfg.refit:
        raise DataError("select keeps the models whose validation rollouts were best, and refit would replace "
                        "them with new models trained on train + valid that the selection says nothing about; "
                        "use one or the other")
    p = prepare(cfg)
    for note in p.notes:
        logger.info(f"note: {note}")
    record = {"task": "forecast", "data": asdict(cfg), "model": asdict(model_cfg), "train": asdict(train_cfg)}
    main = distributed.is_main()  # torchrun: every rank trains, rank 0 forecasts, compares and writes
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        series_copy = copy_series(cfg, run_dir)
    logger.info(f"data: {cfg.csv or 'statsmodels:' + str(cfg.dataset)} column {cfg.column or '(only)'}: "
                f"{len(p.y)} points, frequency {p.freq}, season m={p.season}; "
                f"train {p.train_end}, valid {p.n_valid}, test {p.n_test}; "
                f"window {p.window}; model {model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()} "
                f"({'direct' if model_cfg.direct else 'one-step'}, {model_cfg.head} head) x{cfg.ensemble}")

    transform = make_transform(cfg, p, p.train_end)
    models, epochs = [], []
    for i in range(cfg.ensemble):
        models.append(_train_member(p, cfg, model_cfg, train_cfg, transform, p.train_end, p.valid_end,
                                    run_dir / "members" / str(i), train_cfg.seed + i))
        epochs.append(models[-1].best_epochs)
    valid_truth, valid_history = p.y[p.train_end:p.valid_end], p.y[:p.train_end]
    kept, member_mase = list(range(cfg.ensemble)), []
    if main:
        if cfg.select:  # ensemble selection (Caruana et al. 2004), by each model's own validation rollout
            member_mase = [all_metrics(valid_truth, forecast_from([m], transform, p, p.train_end, p.n_valid, 0)
                                       ["forecast"], valid_history, p.season)["mase"] for m in models]
            kept = sorted(sorted(range(cfg.ensemble), key=lambda i: (member_mase[i], i))[:cfg.select])
            logger.info("validation rollout MASE per model: " + " ".join(f"{v:.3f}" for v in member_mase)
                        + f"; kept {kept}")
    kept = distributed.broadcast(kept)  # torchrun: every rank refits the same models
    models, epochs = [models[i] for i in kept], [epochs[i] for i in kept]
    if main:
        valid_fc = forecast_from(models, transform, p, p.train_end, p.n_valid, 0)
        valid_metrics = all_metrics(valid_truth, valid_fc["forecast"], valid_history, p.season)
        logger.info("validation rollout: " + ", ".join(f"{k} {v:.4f}" for k, v in valid_metrics.items()))

    member_dirs = [f"members/{i}" for i in kept]
    if cfg.refit:
        transform = make_transform(cfg, p, p.valid_end)
        refit_cfg = replace(train_cfg, early_stop=0)
        models = []
        for i, n_epochs in zip(kept, epochs):
            folder = run_dir / "members" / f"{i}-refit"
            logger.info(f"refit {i}: {n_epochs} epochs on train + valid")
            models.append(_train_member(p, cfg, model_cfg, replace(refit_cfg, epochs=n_epochs), transform,
                                        p.valid_end, p.valid_end, folder, train_cfg.seed + i))
            # no validation part: "best" is the lowest training loss, the last epoch is what we want
            if main:
                shutil.rmtree(folder / "checkpoints" / "best", ignore_errors=True)
                load_weights(models[-1], folder / "checkpoints", pick_device(train_cfg.device))
        member_dirs = [f"members/{i}-refit" for i in kept]
    if not main:
        return {"task": "forecast", "members": member_dirs, "best_epochs": epochs}

    truth = p.y[p.valid_end:]
    history = p.y[:p.valid_end]
    test_fc = forecast_from(models, transform, p, p.valid_end, p.n_test, cfg.samples, train_cfg.seed)
    table = {"rnnkit": all_metrics(truth, test_fc["forecast"], history, p.season)}
    names = [b.strip() for b in cfg.baselines.split(",") if b.strip()]
    baselines = run_baselines(history, p.n_test, p.season, cfg.log, names)
    for name, result in baselines.items():
        table[name] = all_metrics(truth, result["forecast"], history, p.season)
    elapsed = time.perf_counter() - started
    result = {
        "task": "forecast", "members": member_dirs, "series": series_copy, "transform": transform.to_dict(),
        "season": p.season, "window": p.window, "freq": p.freq, "n": len(p.y), "train_end": p.train_end,
        "valid_end": p.valid_end, "n_test": p.n_test, "best_epochs": epochs, "notes": p.notes,
        "member_valid_mase": member_mase, "valid_rollout": valid_metrics, "test": table,
        "valid_forecast": [float(v) for v in valid_fc["forecast"]],
        "test_forecast": [float(v) for v in test_fc["forecast"]],
        "baseline_models": {k: v["model"] for k, v in baselines.items()}, "seconds": round(elapsed, 1),
    }
    (run_dir / "forecast.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _write_table(run_dir / "forecast_metrics.csv", table)
    series = {"rnnkit": test_fc["forecast"], **{k: v["forecast"] for k, v in baselines.items()}}
    _write_forecast_csv(run_dir / "forecast.csv", p.dates[p.valid_end:], truth, test_fc, series)
    logger.info(format_table(table, p.season))
    try:
        plot_forecast(run_dir / "forecast.png", p.dates[:p.valid_end], history, p.dates[p.valid_end:], truth,
                      test_fc, {k: v["forecast"] for k, v in baselines.items()},
                      title=f"{cfg.csv or cfg.dataset}: test forecast")
        logger.info(f"plot: {run_dir / 'forecast.png'}")
    except ImportError as exc:
        logger.info(f"no plot: {exc}")
    logger.info(f"run folder {run_dir} ({elapsed:.0f} s)")
    return result


# ------------------------------------------------------------------------------ reports
def format_table(table: dict, season: int) -> str:
    lines = [f"test metrics (MASE scaled by the in-sample seasonal naive MAE, m={max(season, 1)}):",
             f"{'model':<16}{'MAE':>12}{'RMSE':>12}{'MASE':>9}{'sMAPE %':>9}"]
    for name, m in table.items():
        lines.append(f"{name:<16}{m['mae']:>12.4g}{m['rmse']:>12.4g}{m['mase']:>9.3f}{m['smape']:>9.2f}")
    return "\n".join(lines)


def _write_table(path: Path, table: dict) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "mae", "rmse", "mase", "smape"])
        for name, m in table.items():
            writer.writerow([name] + [f"{m[k]:.6g}" for k in ("mae", "rmse", "mase", "smape")])


def _write_forecast_csv(path: Path, dates, truth, fc: dict, series: dict) -> None:
    bands = [k for k in ("lo95", "lo80", "hi80", "hi95") if k in fc]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date"] + (["truth"] if truth is not None else []) + list(series) + bands)
        for i, date in enumerate(dates):
            row = [str(date)] + ([f"{truth[i]:.6g}"] if truth is not None else [])
            row += [f"{series[k][i]:.6g}" for k in series] + [f"{fc[k][i]:.6g}" for k in bands]
            writer.writerow(row)


def plot_forecast(path: str | Path, hist_dates, history, dates, truth, fc: dict, others: Optional[dict] = None,
                  title: str = "", context: Optional[int] = None) -> None:
    """PNG of the recent history, the truth (if known), the forecast and its 80%/95% intervals."""
    from rnnkit.plotting import pyplot

    plt = pyplot("forecast")

    horizon = len(dates)
    keep = context or max(3 * horizon, 60)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(hist_dates[-keep:], history[-keep:], color="black", lw=1, label="history")
    if truth is not None:
        ax.plot(dates, truth, color="black", lw=1, ls=":", label="truth")
    if "lo95" in fc:
        ax.fill_between(dates, fc["lo95"], fc["hi95"], color="tab:blue", alpha=0.15, label="95% interval")
        ax.fill_between(dates, fc["lo80"], fc["hi80"], color="tab:blue", alpha=0.3, label="80% interval")
    ax.plot(dates, fc["forecast"], color="tab:blue", lw=1.5, label="rnnkit")
    for (name, values), color in zip((others or {}).items(), ("tab:gray", "tab:olive", "tab:red", "tab:green")):
        ax.plot(dates, values, color=color, lw=1, ls="--", label=name)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
