"""A trained forecast run in Python: ``rnnkit.load(run).forecast(24)``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rnnkit.errors import CheckpointError, DataError, RnnkitError
from rnnkit.tasks.forecast.metrics import all_metrics
from rnnkit.tasks.forecast.run import ForecastDataConfig, forecast_from, plot_forecast, prepare
from rnnkit.tasks.forecast.series import future_dates
from rnnkit.tasks.forecast.task import Forecaster, ForecastModelConfig, ForecastTrainConfig
from rnnkit.tasks.forecast.transform import SeriesTransform
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.record_schema import FORECAST_RECORD, RUN_CONFIG, read_record, run_path
from rnnkit.train.trainer import pick_device

BANDS = ("lo95", "lo80", "hi80", "hi95")


class ForecastPredictor:
    """The ensemble of a trained forecast run with the transform it works in and its data settings.

    ``models`` are its :class:`~rnnkit.tasks.forecast.task.Forecaster` members (in eval mode),
    ``transform`` the :class:`~rnnkit.tasks.forecast.transform.SeriesTransform` fitted in
    training, ``data`` the run's :class:`~rnnkit.tasks.forecast.run.ForecastDataConfig`,
    ``info`` the run's ``forecast.json``, ``series`` the run's own copy of its series (its
    ``series.csv``), which is read again for each forecast; a run without one (written before
    runs kept their series) reads the ``csv`` or ``dataset`` of ``data`` instead.
    """

    def __init__(self, models: list[Forecaster], transform: SeriesTransform, data: ForecastDataConfig,
                 info: dict, series: Optional[Path] = None) -> None:
        self.models, self.transform, self.data, self.info = models, transform, data, info
        self.series = series

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "ForecastPredictor":
        """The models of a trained run; ``checkpoint`` is "best" (each member's best validation
        checkpoint, its last where it has none) or "last"."""
        run = Path(run)
        if checkpoint not in ("best", "last"):
            raise CheckpointError(f"a forecast run is an ensemble of models, each with its own checkpoints; "
                                  f"--checkpoint must be best or last, got {checkpoint!r}")
        unfinished = "not a finished forecast run"
        record = read_record(run / "config.json", RUN_CONFIG, "run record", unfinished, data=ForecastDataConfig,
                             model=ForecastModelConfig, train=ForecastTrainConfig)
        info = read_record(run / "forecast.json", FORECAST_RECORD, "forecast record", unfinished,
                           transform=SeriesTransform)
        dev = pick_device(device)
        models = []
        for member in info["members"]:
            where, meta = task_checkpoint(run_path(run, member), "forecast", checkpoint, model=ForecastModelConfig,
                                          transform=SeriesTransform)
            model = build_checked(where, meta, lambda cfg: Forecaster(meta["input_size"], meta["outputs"],
                                                                      ForecastModelConfig(**cfg)))
            load_weights(model, where, dev)
            models.append(model.to(dev).eval())
        series = run_path(run, info["series"]) if info.get("series") else None
        return cls(models, SeriesTransform(**info["transform"]), ForecastDataConfig(**record["data"]), info, series)

    def forecast(self, horizon: Optional[int] = None, samples: Optional[int] = None, seed: int = 0,
                 test: bool = False, plot: Optional[str | Path] = None) -> list[dict]:
        """Forecast ``horizon`` steps (default: the run's) past the end of the run's data or, with
        ``test``, over its test part from the same origin as in training; one row per step:
        date, forecast, truth (with ``test``) and, with ``samples`` sample paths (default: the
        run's) of a Gaussian head, the 80% and 95% interval bounds lo95, lo80, hi80, hi95.
        ``plot``: write a PNG of the history and the forecast there (a folder: its
        ``forecast.png``; see :func:`plot_path`)."""
        cfg = self.data
        horizon = cfg.horizon if horizon is None else horizon
        if horizon < 1:
            raise DataError(f"horizon must be >= 1, got {horizon}")
        plot = plot_path(plot) if plot else None
        p = prepare(cfg, extra=horizon, copy=self.series)
        n_samples = cfg.samples if samples is None else samples
        if test:
            origin, horizon = p.valid_end, len(p.y) - p.valid_end
            dates, truth = p.dates[origin:], p.y[origin:]
        else:
            origin = len(p.y)
            dates, truth = future_dates(p.dates, p.freq, horizon), None
        fc = forecast_from(self.models, self.transform, p, origin, horizon, n_samples, seed)
        if plot:
            plot_forecast(plot, p.dates[:origin], p.y[:origin], dates, truth, fc,
                          title=f"{cfg.csv or cfg.dataset}: {'test' if test else 'future'} forecast")
        rows = []
        for i, date in enumerate(dates):
            row = {"date": str(date), "forecast": float(fc["forecast"][i])}
            if truth is not None:
                row["truth"] = float(truth[i])
            row.update({k: float(fc[k][i]) for k in BANDS if k in fc})
            rows.append(row)
        return rows

    def evaluate(self, split: str = "test") -> dict:
        """{model: {"mae", "rmse", "mase", "smape"}} of the rollout over the run's validation or
        test part; for the test part also the baselines' metrics recorded in training."""
        if split not in ("valid", "test"):
            raise RnnkitError(f"split must be valid or test, got {split!r}")
        p = prepare(self.data, copy=self.series)
        origin, end = (p.train_end, p.valid_end) if split == "valid" else (p.valid_end, len(p.y))
        fc = forecast_from(self.models, self.transform, p, origin, end - origin, 0)
        metrics = {"rnnkit": all_metrics(p.y[origin:end], fc["forecast"], p.y[:origin], p.season)}
        if split == "test":
            metrics.update({k: v for k, v in self.info["test"].items() if k != "rnnkit"})
        return metrics


def plot_path(plot: str | Path) -> Path:
    """Where ``forecast(plot=...)`` writes its PNG: an existing folder (or a path ending in a
    separator) gets ``forecast.png`` inside it; a name without a suffix gets ``.png`` (what
    matplotlib would add); the folder it goes into must exist."""
    text = str(plot)
    path = Path(plot)
    if path.is_dir() or text.endswith(("/", "\\")):
        path = path / "forecast.png"
    elif not path.suffix:
        path = path.with_name(path.name + ".png")
    if not path.parent.is_dir():
        raise RnnkitError(f"cannot write the plot {path}: no folder {path.parent}")
    return path
