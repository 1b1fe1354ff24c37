"""Fit a forecaster in Python, darts-style, over the training code of ``rnnkit train forecast``::

    est = ForecastEstimator(horizon=12, season=12, baselines="")
    est.fit(values, dates)                 # a Series, or a 1-D sequence of numbers (dates optional)
    rows = est.predict(24)                 # 24 steps past the end: date, forecast, interval bounds
    bt = est.backtest(values, dates)       # its validation part, next to the classical baselines
    bt.scores["rnnkit"]["mase"], bt.scores["arima"]["mase"]

``fit`` is ``rnnkit train forecast`` on the series: the same split (the last ``test`` points
held out, ``valid`` before them for early stopping), ensemble, selection and refit, in a run
folder (``run_dir``, or a temporary one kept while the estimator lives); ``predict`` is
``rnnkit forecast RUN``: the models forecast from the end of the whole series.  ``backtest``
scores a setting the way ``experiments/forecast_table.py --backtest`` chooses settings.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from rnnkit.errors import DataError, RnnkitError
from rnnkit.tasks.forecast.baselines import run_baselines
from rnnkit.tasks.forecast.metrics import all_metrics
from rnnkit.tasks.forecast.predictor import ForecastPredictor
from rnnkit.tasks.forecast.run import ForecastDataConfig, Prepared, prepare, train_forecast
from rnnkit.tasks.forecast.series import Series, series_from_values, write_series_csv
from rnnkit.tasks.forecast.task import ForecastModelConfig, ForecastTrainConfig
from rnnkit.train.config import TrainConfig

PARTS = ("valid", "test")


@dataclass
class Backtest:
    """One backtest of a setting: the rollout over a part of a series by models trained on the
    data before it, next to the classical baselines fitted to the same history and scored on
    the same part.

    ``scores``: {model: {"mae", "rmse", "mase", "smape"}}, "rnnkit" first, then the baselines;
    ``forecasts``: {model: (H,)}, the forecasts of the scored part; ``models``: {baseline: the
    model it fitted}; ``valid_mase`` and ``valid_forecast``: the rollout over the validation
    part before the scored one (what choosing among settings reads); ``data``: the series as
    the backtest saw it, cut right after the scored part ``data.y[data.valid_end:]``;
    ``shift``: how many points that part was moved back (rolling origin); ``run``: the run
    folder, None when it was a temporary one.
    """

    scores: dict[str, dict[str, float]]
    forecasts: dict[str, np.ndarray]
    models: dict[str, str]
    valid_mase: float
    valid_forecast: np.ndarray
    data: Prepared
    shift: int
    run: Optional[Path]

    @property
    def truth(self) -> np.ndarray:
        """The scored part (H,)."""
        return self.data.y[self.data.valid_end:]

    @property
    def history(self) -> np.ndarray:
        """Everything before it (N - H,): what the models and the baselines were fitted on."""
        return self.data.y[:self.data.valid_end]


class ForecastEstimator:
    """A forecaster with its settings: ``data`` (:class:`~rnnkit.tasks.forecast.run.ForecastDataConfig`:
    horizon, split, season, window, transforms, ensemble, baselines, ...), ``model``
    (:class:`~rnnkit.tasks.forecast.task.ForecastModelConfig`) and ``train``
    (:class:`~rnnkit.tasks.forecast.task.ForecastTrainConfig`, or any ``TrainConfig``), each
    defaulting to the defaults of ``rnnkit train forecast``; keyword settings, by field name,
    override fields of any of the three: ``ForecastEstimator(horizon=12, hidden_size=16, epochs=50)``.

    The ``baselines`` setting names the classical baselines to compare with (fit: in the run's
    test metrics, as ``rnnkit train forecast`` does; backtest: on the backtest's part);
    ``baselines=""`` skips them (ARIMA's order search is the slow part of a long series).

    After :meth:`fit`: ``predictor`` (the run's :class:`~rnnkit.tasks.forecast.predictor.ForecastPredictor`),
    ``result`` (what training reported: the test metrics, the validation rollout, ...) and
    ``run`` (the run folder).
    """

    def __init__(self, data: Optional[ForecastDataConfig] = None, model: Optional[ForecastModelConfig] = None,
                 train: Optional[TrainConfig] = None, **settings) -> None:
        configs = {"data": data or ForecastDataConfig(), "model": model or ForecastModelConfig(),
                   "train": train or ForecastTrainConfig()}
        for name, value in settings.items():
            owners = [key for key, cfg in configs.items() if name in {f.name for f in fields(cfg)}]
            if len(owners) != 1:
                raise TypeError(f"unknown setting {name!r}: expected a field of ForecastDataConfig, "
                                "ForecastModelConfig or ForecastTrainConfig")
            configs[owners[0]] = replace(configs[owners[0]], **{name: value})
        self.data, self.model, self.train = configs["data"], configs["model"], configs["train"].validate()
        self.predictor: Optional[ForecastPredictor] = None
        self.result: Optional[dict] = None
        self.run: Optional[Path] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None  # the temporary run folder of the fit

    def fit(self, series=None, dates=None, run_dir: Optional[str | Path] = None) -> "ForecastEstimator":
        """Train on ``series`` as ``rnnkit train forecast`` does (same split, seeds, ensemble).

        ``series``: a :class:`~rnnkit.tasks.forecast.series.Series` (its ``column`` setting picks
        the column) or a 1-D sequence of numbers with optional ``dates`` (see
        :func:`~rnnkit.tasks.forecast.series.series_from_values`; without dates the steps carry
        no calendar); None reads the ``csv`` or ``dataset`` setting instead.  The run is written
        into ``run_dir`` (with the series as ``series.csv``), which then loads with
        ``rnnkit.load``; without it, into a temporary folder kept while the estimator lives.
        """
        tmp = None
        if run_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="rnnkit-forecast-")
            run_dir = tmp.name
        folder = Path(run_dir)
        result = train_forecast(self._data_of(series, dates, folder), self.model, self.train, folder)
        self.predictor = ForecastPredictor.load(folder, device=self.train.device)
        self.result, self.run, self._tmp = result, folder, tmp
        return self

    def predict(self, horizon: Optional[int] = None, samples: Optional[int] = None, seed: int = 0) -> list[dict]:
        """Forecast ``horizon`` steps (default: the horizon setting) past the end of the fitted
        series, as ``rnnkit forecast RUN`` does: one row per step with date and forecast (the
        rollout of the means) and, for the Gaussian head with ``samples`` sample paths (default:
        the samples setting), the 80% and 95% interval bounds lo95, lo80, hi80, hi95."""
        if self.predictor is None:
            raise RnnkitError("this ForecastEstimator is not fitted yet: call fit(series) first")
        return self.predictor.forecast(horizon, samples, seed)

    def backtest(self, series=None, dates=None, part: str = "valid", origin: int = 0, origins: int = 1,
                 run_dir: Optional[str | Path] = None) -> Backtest:
        """Score this setting on a part of ``series`` (as in :meth:`fit`) by models trained on
        the data before it, next to the baselines (the ``baselines`` setting) fitted to the same
        history; the models are trained anew (in ``run_dir``, or a temporary folder) and the
        estimator's fit is left alone.

        ``part="valid"``: the series ends where its test part begins, and its validation part
        is scored (with a validation part of the same size before it for early stopping):
        choosing a setting this way never reads the test part.  ``part="test"``: the test part,
        as ``rnnkit train forecast`` reports it.  ``origin`` j of ``origins`` K moves the scored
        part j * ceil(size / K) points back; ``[est.backtest(s, origin=j, origins=4) for j in
        range(4)]`` is a rolling-origin evaluation (Tashman 2000).  The forecasts are the mean
        rollouts (no sample paths).
        """
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        if origins < 1:
            raise DataError(f"origins must be >= 1, got {origins}")
        if not 0 <= origin < origins:
            raise DataError(f"origin must be between 0 and origins - 1 = {origins - 1}, got {origin}")
        with _run_folder(run_dir) as folder:
            cfg = replace(self._data_of(series, dates, folder), samples=0, baselines="")
            whole = prepare(cfg)
            size = whole.n_test
            if part == "valid":  # one part earlier: the validation part becomes the test part
                size = whole.n_valid
                cfg = replace(cfg, drop_last=cfg.drop_last + whole.n_test, test=str(size), valid=str(size),
                              horizon=size)
            shift = origin * -(-size // origins)
            cfg = replace(cfg, drop_last=cfg.drop_last + shift)
            p = prepare(cfg)
            result = train_forecast(cfg, self.model, self.train, folder)
        history, truth = p.y[:p.valid_end], p.y[p.valid_end:]
        names = [b.strip() for b in self.data.baselines.split(",") if b.strip()]
        baselines = run_baselines(history, p.n_test, p.season, cfg.log, names)
        scores = {"rnnkit": result["test"]["rnnkit"]}
        scores.update({k: all_metrics(truth, v["forecast"], history, p.season) for k, v in baselines.items()})
        forecasts = {"rnnkit": np.array(result["test_forecast"])}
        forecasts.update({k: np.asarray(v["forecast"]) for k, v in baselines.items()})
        return Backtest(scores, forecasts, {k: v["model"] for k, v in baselines.items()},
                        result["valid_rollout"]["mase"], np.array(result["valid_forecast"]), p, shift,
                        None if run_dir is None else Path(run_dir))

    def _data_of(self, series, dates, folder: Path) -> ForecastDataConfig:
        """The data settings of a run on ``series``: an in-memory series is written into the
        run folder as series.csv and read from there, as a CSV given to the CLI is."""
        cfg = self.data
        if series is None:
            if dates is not None:
                raise DataError("dates were given without a series")
            if cfg.csv is None and cfg.dataset is None:
                raise DataError("no data: give a series (or the csv or dataset setting)")
            return cfg
        if cfg.csv is not None or cfg.dataset is not None:
            raise DataError(f"a series was given and the data settings name one too "
                            f"({cfg.csv or cfg.dataset}); give one or the other")
        if isinstance(series, Series):
            if dates is not None:
                raise DataError("a Series has its own dates; give dates only with plain values")
            name = (cfg.column or series.columns[0]).strip()
            series = series_from_values(series.column(cfg.column), series.dates, name or "value")
        else:
            series = series_from_values(series, dates)
        if series.columns[0] == "date":  # the CSV's date column has that name
            series = replace(series, columns=["value"])
        folder.mkdir(parents=True, exist_ok=True)
        path = write_series_csv(series, folder / "series.csv").resolve()
        return replace(cfg, csv=str(path), dataset=None, column=series.columns[0], date_column=None)


@contextmanager
def _run_folder(run_dir: Optional[str | Path]) -> Iterator[Path]:
    """``run_dir``, or a temporary folder removed afterwards."""
    if run_dir is not None:
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="rnnkit-forecast-") as tmp:
        yield Path(tmp)
