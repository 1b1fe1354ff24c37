"""The forecasting commands: ``rnnkit train forecast``, ``rnnkit evaluate`` of a forecast run,
``rnnkit forecast``.  Satisfies :class:`rnnkit.tasks.base.Task`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.settings import MAX_LENGTH, MAX_SEED, bounded
from rnnkit.tasks.base import add_run_option, chosen_run
from rnnkit.tasks.forecast.run import MAX_SAMPLES, ForecastDataConfig
from rnnkit.tasks.forecast.task import ForecastModelConfig, ForecastTrainConfig

NAME = "forecast"
HELP = "time-series forecaster (autoregressive RNN/LSTM/GRU) against classical baselines"
DESCRIPTION = ("Train a forecaster on a CSV series (or a statsmodels series) and compare it on the "
               "test part (the last --horizon points unless --test says otherwise) with naive, seasonal naive, "
               "ARIMA and ETS. Settings: defaults < --config file < flags.")
CONFIGS = (ForecastDataConfig, ForecastModelConfig, ForecastTrainConfig)
RESUMABLE = False
NOT_RESUMABLE = ("forecast runs are not resumable: a run trains its small models one after another in a few "
                 "minutes, then selects, refits and compares them with the baselines, and writes its results "
                 "only at the end; start it again with a new --run")


class _NotResumable(argparse.Action):
    """``--resume``: refused with the reason, in one line, before anything is read or trained."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(2, f"rnnkit: error: {NOT_RESUMABLE}\n")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action=_NotResumable, nargs=0,
                        help="not available: forecast runs are not resumable (they train in minutes); "
                        "start a new --run instead")


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.errors import RnnkitError
    from rnnkit.tasks.forecast.run import train_forecast

    if resume:
        raise RnnkitError(NOT_RESUMABLE)
    return train_forecast(data_cfg, model_cfg, train_cfg, run)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.forecast.predictor import ForecastPredictor

    return ForecastPredictor.load(run, checkpoint, device)


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    pass


def evaluate(args: argparse.Namespace) -> None:
    from rnnkit.tasks.forecast.run import format_table

    table = load(args.run, args.checkpoint, args.device).evaluate(args.split)
    print(f"{args.split}: " + format_table(table, 0).split("\n", 1)[1])


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
    return {"forecast": _forecast}


def _forecast(args: argparse.Namespace) -> int:
    from rnnkit.tasks.forecast.predictor import plot_path

    plot = None
    if args.plot:
        from rnnkit.extras import require

        require("matplotlib", "forecast", "rnnkit forecast --plot")
        plot = plot_path(args.plot)  # a folder gets forecast.png: print the file that is written
    predictor = load(chosen_run(args, NAME), args.checkpoint, args.device)
    rows = predictor.forecast(args.horizon, args.samples, args.seed, args.test, plot)
    keys = list(rows[0]) if rows else []
    print("\t".join(keys))
    for row in rows:
        print("\t".join(row[k] if k == "date" else f"{row[k]:.6g}" for k in keys))
    if plot:
        print(f"plot: {plot}")
    return 0
