"""The forecasting commands: ``rnnkit train forecast``, ``rnnkit evaluate`` of a forecast run,
``rnnkit forecast``.  Satisfies :class:`rnnkit.tasks.base.Task`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Optional

from rnnkit.errors import RnnkitError
from rnnkit.settings import MAX_LENGTH, MAX_SEED, ConfigError, bounded
from rnnkit.tasks.base import add_run_option, chosen_run
from rnnkit.tasks.forecast.global_model import GlobalModelConfig
from rnnkit.tasks.forecast.global_predictor import is_global_run
from rnnkit.tasks.forecast.global_run import GlobalDataConfig, GlobalTrainConfig
from rnnkit.tasks.forecast.run import MAX_SAMPLES, ForecastDataConfig
from rnnkit.tasks.forecast.task import ForecastModelConfig, ForecastTrainConfig

NAME = "forecast"
HELP = "time-series forecaster: one series against classical baselines, or one global model for many (--m4)"
DESCRIPTION = ("Train a forecaster on a CSV series (or a statsmodels series) and compare it on the "
               "test part (the last --horizon points unless --test says otherwise) with naive, seasonal naive, "
               "ARIMA and ETS; or, with --m4 FILE, one global model on every series of an M4-format file "
               "(--horizon and --period required), validated on the last --holdout points of each series. "
               "Settings: defaults < --config file < flags.")
CONFIGS = (ForecastDataConfig, ForecastModelConfig, ForecastTrainConfig)
GLOBAL_CONFIGS = (GlobalDataConfig, GlobalModelConfig, GlobalTrainConfig)
RESUMABLE = False  # single-series runs; --resume continues --m4 runs (check_resumable)
NOT_RESUMABLE = ("forecast runs on one series are not resumable: a run trains its small models one after another "
                 "in a few minutes, then selects, refits and compares them with the baselines, and writes its "
                 "results only at the end; start it again with a new --run (global --m4 runs do resume)")
GLOBAL_DEFAULTS = ("window seven seasons (at least twice the horizon), log on, hidden-size 64, num-layers 2, "
                   "batch-size 256, epochs 30, lr 0.003, clip 1, schedule cosine")


def _names(configs) -> set[str]:
    return {f.name for cls in configs for f in dataclasses.fields(cls)}


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    from rnnkit.settings import add_dataclass_flags

    shared = _names(CONFIGS)
    for cls, title in zip(GLOBAL_CONFIGS, ("many series (--m4) data", "many series (--m4) model",
                                           "many series (--m4) training")):
        add_dataclass_flags(parser, cls, title, skip=shared,
                            description=f"the flags above also apply; their defaults with --m4: {GLOBAL_DEFAULTS}"
                            if cls is GlobalDataConfig else None)


def _is_global(args: argparse.Namespace, record: Optional[dict]) -> bool:
    if record is not None:
        return isinstance(record.get("data"), dict) and "m4" in record["data"]
    if getattr(args, "m4", None):
        return True
    if getattr(args, "config", None):
        from rnnkit.settings import load_config_file

        values = load_config_file(args.config)
        return bool(values.get("m4") or (values.get("data") or {}).get("m4"))
    return False


def check_resumable(args: argparse.Namespace, run: str) -> None:
    """``--resume`` continues global (--m4) runs only: the reason, in one line, for any other."""
    config = Path(run) / "config.json"
    if _is_global(args, None) or is_global_run(run):
        return
    if config.is_file():
        raise RnnkitError(NOT_RESUMABLE)
    raise RnnkitError(NOT_RESUMABLE if getattr(args, "csv", None) or getattr(args, "dataset", None)
                      else f"{run}: no run to resume (config.json is missing)")


def configs_for(args: argparse.Namespace, record: Optional[dict]) -> tuple:
    """The global model's configs for --m4 (or a global run resumed), else the single series'
    ones; a flag of the other kind is refused, naming it."""
    chosen, other = (GLOBAL_CONFIGS, CONFIGS) if _is_global(args, record) else (CONFIGS, GLOBAL_CONFIGS)
    foreign = sorted(n for n in _names(other) - _names(chosen) if getattr(args, n, None) is not None)
    if foreign:
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        if chosen is GLOBAL_CONFIGS:
            raise ConfigError(f"{flags}: a setting of single-series forecasting (--csv/--dataset), not of the "
                              f"global --m4 model")
        raise ConfigError(f"{flags}: a setting of the global model, which trains on an M4-format file: add --m4 FILE "
                          f"(and --horizon, --period)")
    return chosen


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    if isinstance(data_cfg, GlobalDataConfig):
        from rnnkit.tasks.forecast.global_run import train_global

        return train_global(data_cfg, model_cfg, train_cfg, run, resume, getattr(args, "override", False))
    from rnnkit.tasks.forecast.run import train_forecast

    if resume or getattr(args, "override", False):
        raise RnnkitError(NOT_RESUMABLE)
    return train_forecast(data_cfg, model_cfg, train_cfg, run)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.forecast.global_predictor import GlobalForecastPredictor, is_global_run
    from rnnkit.tasks.forecast.predictor import ForecastPredictor

    if is_global_run(run):
        return GlobalForecastPredictor.load(run, checkpoint, device)
    return ForecastPredictor.load(run, checkpoint, device)


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("global (--m4) runs")
    group.add_argument("--m4-test", help="M4-format file of the true futures of the training file's series "
                       "(needed for --split test)")
    group.add_argument("--m4", help="the M4-format training file (default: the run's); its series must be the run's")
    group.add_argument("--benchmarks", help="comma-separated M4 benchmarks to score beside the model: naive, snaive, "
                       "naive2, ses, holt, damped, theta, comb, auto_ets, auto_arima, or all (default: all but "
                       "auto_arima, which takes about 30 minutes on the 414 hourly series with 2 workers)")
    group.add_argument("--workers", type=bounded(int, ge=1, le=256), default=2,
                       help="processes for the benchmarks (default: 2)")
    group.add_argument("--out", help="folder for the score table, its JSON and the plots (default: RUN/evaluation)")


def evaluate(args: argparse.Namespace) -> None:
    from rnnkit.tasks.forecast.global_predictor import GlobalForecastPredictor

    predictor = load(args.run, args.checkpoint, args.device)
    given = [flag for flag, name in (("--m4-test", "m4_test"), ("--m4", "m4"), ("--benchmarks", "benchmarks"),
                                     ("--out", "out")) if getattr(args, name, None) is not None]
    if not isinstance(predictor, GlobalForecastPredictor):
        if given:
            raise ConfigError(f"{', '.join(given)}: options of global (--m4) runs; {args.run} is a single-series "
                              f"forecast run")
        from rnnkit.tasks.forecast.run import format_table

        table = predictor.evaluate(args.split)
        print(f"{args.split}: " + format_table(table, 0).split("\n", 1)[1])
        return
    from rnnkit.tasks.forecast.global_predictor import format_table as global_table

    names = [n.strip() for n in args.benchmarks.split(",") if n.strip()] if args.benchmarks else None
    out = Path(args.out) if args.out else Path(args.run) / "evaluation"
    result = predictor.evaluate(args.split, test=args.m4_test, train=args.m4, benchmarks=names,
                                workers=args.workers, out=out)
    print(global_table(result["table"], args.split))
    for file in result.get("files", []):
        print(f"wrote {file}")


def add_commands(sub) -> dict:
    fo = sub.add_parser("forecast", help="forecast past the end of the data with a trained forecast run")
    add_run_option(fo, NAME, positional=True)
    fo.add_argument("--horizon", type=bounded(int, ge=1, le=MAX_LENGTH), default=None,
                    help="steps to forecast (default: the run's)")
    fo.add_argument("--test", action="store_true", help="forecast the run's test part instead, next to the truth")
    fo.add_argument("--plot", help="write a PNG plot to this file (a folder: its forecast.png)")
    fo.add_argument("--samples", type=bounded(int, ge=0, le=MAX_SAMPLES), default=None,
                    help="sample paths for the intervals (default: the run's)")
    fo.add_argument("--seed", type=bounded(int, ge=0, le=MAX_SEED), default=0)
    fo.add_argument("--checkpoint", default="best", choices=["best", "last"])
    fo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    group = fo.add_argument_group("global (--m4) runs")
    group.add_argument("--m4", help="M4-format file of the series to forecast from their ends (default: the run's "
                       "training file)")
    group.add_argument("--out", help="CSV in the M4 submission format (id, F1..Fh) for the median forecasts "
                       "(default: RUN/forecasts.csv)")
    group.add_argument("--intervals", action="store_true",
                       help="also write the interval bounds, OUT-lower.csv and OUT-upper.csv, in the same format")
    return {"forecast": _forecast}


def _forecast(args: argparse.Namespace) -> int:
    from rnnkit.tasks.forecast.global_predictor import is_global_run
    from rnnkit.tasks.forecast.predictor import plot_path

    run = chosen_run(args, NAME)
    if is_global_run(run):
        return _forecast_many(args, run)
    given = [flag for flag, name in (("--m4", "m4"), ("--out", "out"), ("--intervals", "intervals"))
             if getattr(args, name, None)]
    if given and (run / "config.json").is_file():  # else loading says what is wrong with the folder
        raise ConfigError(f"{', '.join(given)}: options of global (--m4) runs; {run} is a single-series forecast run")

    plot = None
    if args.plot:
        from rnnkit.extras import require

        require("matplotlib", "forecast", "rnnkit forecast --plot")
        plot = plot_path(args.plot)  # a folder gets forecast.png: print the file that is written
    predictor = load(run, args.checkpoint, args.device)
    rows = predictor.forecast(args.horizon, args.samples, args.seed, args.test, plot)
    keys = list(rows[0]) if rows else []
    print("\t".join(keys))
    for row in rows:
        print("\t".join(row[k] if k == "date" else f"{row[k]:.6g}" for k in keys))
    if plot:
        print(f"plot: {plot}")
    return 0


def _forecast_many(args: argparse.Namespace, run: Path) -> int:
    """``rnnkit forecast RUN --m4 FILE --out F``: the median forecasts of every series in the M4
    submission format (and the interval bounds beside them with ``--intervals``)."""
    from rnnkit.tasks.forecast.m4 import write_m4_forecasts
    from rnnkit.tasks.forecast.predictor import plot_path

    given = [flag for flag, name in (("--horizon", "horizon"), ("--samples", "samples"))
             if getattr(args, name) is not None]
    given += ["--test"] if args.test else []
    if given:
        raise ConfigError(f"{', '.join(given)}: options of single-series runs; a global run forecasts its own "
                          f"horizon from the end of each series of --m4")
    predictor = load(run, args.checkpoint, args.device)
    fc = predictor.forecast(args.m4)
    out = Path(args.out) if args.out else run / "forecasts.csv"
    write_m4_forecasts(out, fc["ids"], fc["forecast"])
    print(f"wrote {out}: {len(fc['ids'])} series x {fc['forecast'].shape[1]} steps (median forecasts)")
    if args.intervals:
        levels = fc["levels"]
        for name, key, level in (("lower", "lower", levels[0]), ("upper", "upper", levels[-1])):
            path = out.with_name(f"{out.name.split('.')[0]}-{name}.csv" + (".gz" if out.name.endswith(".gz") else ""))
            write_m4_forecasts(path, fc["ids"], fc[key])
            print(f"wrote {path}: the {level:g} quantile")
    if args.plot:
        from rnnkit.extras import require
        from rnnkit.tasks.forecast.global_predictor import plot_forecast_page, series_of

        require("matplotlib", "forecast", "rnnkit forecast --plot")
        path = plot_path(args.plot)
        _, histories = series_of(args.m4 or predictor.data.m4)
        plot_forecast_page(path, fc["ids"], histories, None, fc, predictor.data.period, seed=args.seed,
                           title="forecasts past the end of the data")
        print(f"plot: {path}")
    return 0
