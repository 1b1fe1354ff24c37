"""A trained global forecaster in Python: ``rnnkit.load(run).forecast(series)``, and its
M4-style evaluation against the competition's benchmarks on the same series."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rnnkit.errors import CheckpointError, DataError, RnnkitError
from rnnkit.tasks.forecast.global_model import GlobalForecaster, GlobalModelConfig, SeriesBank, forecast_windows
from rnnkit.tasks.forecast.global_run import (
    RECORD,
    GlobalDataConfig,
    GlobalTrainConfig,
    file_digest,
    resolved,
    summary_scores,
    validation_truth,
)
from rnnkit.tasks.forecast.transform import SeriesTransform
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.record_schema import RUN_CONFIG, read_record, run_path
from rnnkit.train.trainer import pick_device

logger = logging.getLogger(__name__)

SPLITS = ("valid", "test")
# every benchmark but AutoARIMA, which takes about half an hour on the 414 hourly series with two
# processes (``benchmarks=["all"]`` adds it)
DEFAULT_BENCHMARKS = ("naive", "snaive", "naive2", "ses", "holt", "damped", "theta", "comb", "auto_ets")


def is_global_run(run: str | Path) -> bool:
    """Whether ``run`` is a global (many-series) forecast run: its config names an M4 file."""
    try:
        data = json.loads((Path(run) / "config.json").read_text(encoding="utf-8")).get("data", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(data, dict) and "m4" in data


class GlobalForecastPredictor:
    """The members of a trained global run (``models``, in eval mode), the run's resolved
    data settings (``data``: horizon, period, window, holdout, log), its folder and its record
    (``info``, from ``m4.json``)."""

    def __init__(self, models: list[GlobalForecaster], data: GlobalDataConfig, run: Path, info: dict) -> None:
        self.models, self.data, self.run, self.info = models, data, Path(run), info

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "GlobalForecastPredictor":
        run = Path(run)
        if checkpoint not in ("best", "last"):
            raise CheckpointError(f"a global forecast run is an ensemble of members, each with its own checkpoints; "
                                  f"--checkpoint must be best or last, got {checkpoint!r}")
        unfinished = "not a finished global forecast run (train it to the end, or --resume it)"
        record = read_record(run / "config.json", RUN_CONFIG, "run record", unfinished, data=GlobalDataConfig,
                             model=GlobalModelConfig, train=GlobalTrainConfig)
        if not (run / RECORD).is_file():
            raise CheckpointError(f"{run}: {unfinished}; {RECORD} is missing")
        info = json.loads((run / RECORD).read_text(encoding="utf-8"))
        data = resolved(GlobalDataConfig(**record["data"]))
        dev = pick_device(device)
        models = []
        for member in info["members"]:
            where, meta = task_checkpoint(run_path(run, member), "forecast", checkpoint, model=GlobalModelConfig,
                                          transform=SeriesTransform)  # the single-series runs' key: absent here
            if meta.get("kind") != "global":
                raise CheckpointError(f"{where}: not a checkpoint of a global forecaster (task.kind is missing)")
            model = build_checked(where, meta, lambda cfg: GlobalForecaster(GlobalModelConfig(**cfg), data.horizon,
                                                                            data.period))
            load_weights(model, where, dev)
            models.append(model.to(dev).eval())
        return cls(models, data, run, info)

    # ---------------------------------------------------------------------------- forecasts
    def _series(self, series) -> tuple[list[str], list[np.ndarray]]:
        return series_of(self.data.m4 if series is None else series)

    def forecast(self, series=None, origins: Optional[Sequence[int]] = None) -> dict:
        """Forecast the ``horizon`` steps after the end of each series (or after ``origins``,
        per series, when given): ``series`` an M4-format file, an
        :class:`~rnnkit.tasks.forecast.m4.M4Set` or a list of arrays (default: the run's
        training file).  Returns {"ids", "forecast" (N, H) the median, "lower", "upper"
        (N, H) the outermost quantiles, "quantiles" (N, H, Q), "levels" the quantile levels}."""
        ids, arrays = self._series(series)
        d = self.data
        short = [i for i, s in enumerate(arrays) if len(s) < d.window]
        if short:
            raise DataError(f"{len(short)} series are shorter than the model's input window of {d.window} points; "
                            f"series {ids[short[0]]} has {len(arrays[short[0]])}")
        bad = [i for i, s in enumerate(arrays) if not np.isfinite(s).all() or (d.log and (s <= 0).any())]
        if bad:
            raise DataError(f"series {ids[bad[0]]} has {'non-positive or ' if d.log else ''}non-finite values; the "
                            f"model {'takes logs of ' if d.log else 'reads '}its windows")
        bank = SeriesBank(arrays, None, d.window, d.horizon, d.period, d.log)
        ends = bank.lengths if origins is None else np.asarray(origins, dtype=np.int64)
        q = forecast_windows(self.models, bank, np.arange(len(arrays)), ends)
        return {"ids": ids, "forecast": q[..., self.models[0].median], "lower": q[..., 0], "upper": q[..., -1],
                "quantiles": q, "levels": list(self.models[0].quantiles)}

    # --------------------------------------------------------------------------- evaluation
    def evaluate(self, split: str = "test", test: Optional[str | Path] = None, train: Optional[str | Path] = None,
                 benchmarks: Optional[Sequence[str]] = None, workers: int = 2, out: Optional[str | Path] = None,
                 plots: bool = True, seed: int = 0) -> dict:
        """Score the model and the M4 benchmarks on the same series: ``split`` "valid" (the
        held-out last points of the training file) or "test" (the training file's series,
        forecast from their ends, against ``test``, an M4-format file of their true futures).
        ``benchmarks``: names from :data:`~rnnkit.tasks.forecast.m4_scores.BENCHMARKS` (default
        :data:`DEFAULT_BENCHMARKS`; "all" for every one).
        Returns {"table": {name: {"smape", "mase", "owa", ...}}, "per_series": {...}} and, with
        ``out`` (a folder), writes ``<split>-scores.csv``, ``<split>-scores.json`` and the
        plots there."""
        from rnnkit.tasks.forecast.m4 import read_m4, read_m4_test
        from rnnkit.tasks.forecast.m4_scores import BENCHMARKS, owa, score

        if split not in SPLITS:
            raise RnnkitError(f"split must be valid or test, got {split!r}")
        d = self.data
        train = train or d.m4
        data = read_m4(train)
        digest = file_digest(train)
        self._check_same_series(train, data, digest)
        if split == "valid" and test is not None:
            raise DataError("--split valid scores the held-out last points of the training file; --m4-test goes "
                            "with --split test")
        if split == "test":
            if test is None:
                raise DataError("--split test needs the true futures: --m4-test TEST.csv[.gz]")
            truth = read_m4_test(test, data, d.horizon)
            histories = list(data.series)
            fc = self.forecast(data)
        else:
            bank = SeriesBank(list(data.series), d.holdout, d.window, d.horizon, d.period, d.log)
            origins, truth, histories = validation_truth(bank, list(data.series))
            fc = self.forecast(data, origins)
        names = list(DEFAULT_BENCHMARKS if benchmarks is None else benchmarks)
        if "all" in names:
            names = [n for n in names if n != "all"] + [n for n in BENCHMARKS if n not in names]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            raise DataError(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}, or all")
        if "naive2" not in names:
            names.insert(0, "naive2")  # OWA is relative to it
        bench = self._benchmarks(split, digest, histories, names, workers)
        rows = {"rnnkit": score(truth, fc["forecast"], histories, d.period, lower=fc["lower"], upper=fc["upper"])}
        rows.update({name: score(truth, bench[name], histories, d.period) for name in names})
        n2 = rows["naive2"]
        table = {name: summary_scores(s, n2, owa) for name, s in rows.items()}
        per_series = {name: {"smape": s["smape"], "mase": s["mase"]} for name, s in rows.items()}
        result = {"split": split, "table": table, "per_series": per_series, "ids": data.ids}
        if out is not None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            write_table(out / f"{split}-scores.csv", table)
            (out / f"{split}-scores.json").write_text(json.dumps({"split": split, "train": str(train),
                                                                  "test": str(test) if test else None,
                                                                  "table": table}, indent=2) + "\n",
                                                      encoding="utf-8")
            result["files"] = [str(out / f"{split}-scores.csv"), str(out / f"{split}-scores.json")]
            if plots:
                try:
                    result["files"] += self._plots(out, split, data.ids, histories, truth, fc, per_series, seed)
                except ImportError as exc:
                    logger.warning(f"no plots: {exc}")
        return result

    def _check_same_series(self, train, data, digest: str) -> None:
        known_file = self.run / "data.json"
        if not known_file.is_file():
            return
        known = json.loads(known_file.read_text(encoding="utf-8"))
        if known.get("ids") != list(data.ids):
            raise DataError(f"{train} does not hold the series this run was trained on (the ids differ from the "
                            f"run's data.json)")
        if known.get("sha256") != digest:
            logger.warning(f"{train} is not byte for byte the file the run was trained on (same ids); scoring it")

    def _benchmarks(self, split: str, digest: str, histories, names: list[str], workers: int) -> dict:
        """The benchmarks' forecasts, cached in the run folder by the training file's ``digest``."""
        from rnnkit.tasks.forecast.m4_scores import run_benchmarks

        d = self.data
        key = f"{split}-{digest[:16]}-h{d.horizon}-m{d.period}-o{d.holdout if split == 'valid' else 0}"
        cache = self.run / "benchmarks" / f"{key}.npz"
        have = {}
        if cache.is_file():
            with np.load(cache) as saved:
                have = {k: saved[k] for k in saved.files}
        missing = [n for n in names if n not in have]
        if missing:
            logger.info(f"benchmarks on {len(histories)} series: {', '.join(missing)} ({workers} processes)")
            have.update(run_benchmarks(histories, d.horizon, d.period, missing, workers=workers, progress=True))
            try:
                cache.parent.mkdir(exist_ok=True)
                tmp = cache.with_suffix(".tmp.npz")
                np.savez(tmp, **have)
                tmp.replace(cache)
            except OSError as exc:
                logger.warning(f"benchmark forecasts not cached ({exc})")
        return {n: have[n] for n in names}

    def _plots(self, out: Path, split: str, ids, histories, truth, fc: dict, per_series: dict, seed: int) -> list:
        files = [plot_forecast_page(out / f"{split}-forecasts.png", ids, histories, truth, fc, self.data.period,
                                    seed=seed, title=f"{split}: forecasts and {interval_name(fc['levels'])}")]
        if "theta" in per_series:
            files.append(plot_owa_against(out / f"{split}-owa-vs-theta.png", per_series, "theta",
                                          title=f"{split}: per-series OWA, rnnkit against Theta"))
        return [str(f) for f in files]


def series_of(series) -> tuple[list[str], list[np.ndarray]]:
    """(ids, arrays) of an M4-format file, an :class:`~rnnkit.tasks.forecast.m4.M4Set` or a
    list of arrays (ids "0", "1", ...)."""
    from rnnkit.tasks.forecast.m4 import M4Set, read_m4

    if isinstance(series, (str, Path)):
        series = read_m4(series)
    if isinstance(series, M4Set):
        return list(series.ids), list(series.series)
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in series]
    return [str(i) for i in range(len(arrays))], arrays


def interval_name(levels: Sequence[float]) -> str:
    if len(levels) < 2:
        return "no interval"
    return f"{100 * (levels[-1] - levels[0]):.0f}% intervals"


def write_table(path: Path, table: dict) -> None:
    keys = ["smape", "mase", "owa", "msis", "coverage"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method"] + keys)
        for name, row in table.items():
            writer.writerow([name] + [f"{row[k]:.6g}" if k in row else "" for k in keys])


def format_table(table: dict, split: str) -> str:
    lines = [f"{split}: {'method':<12}{'sMAPE':>9}{'MASE':>8}{'OWA':>8}{'MSIS':>9}{'cover':>8}"]
    pad = " " * (len(split) + 2)
    for name, row in sorted(table.items(), key=lambda kv: kv[1]["owa"]):
        msis = f"{row['msis']:>9.3f}" if "msis" in row else f"{'':>9}"
        cover = f"{100 * row['coverage']:>7.1f}%" if "coverage" in row else ""
        lines.append(f"{pad}{name:<12}{row['smape']:>9.3f}{row['mase']:>8.3f}{row['owa']:>8.3f}{msis}{cover}")
    return "\n".join(lines)


def plot_forecast_page(path: Path, ids, histories, truth, fc: dict, period: int, count: int = 6, seed: int = 0,
                       title: str = "") -> Path:
    """A page of ``count`` series picked at random (fixed seed): the last weeks of history,
    the truth (when given), the median forecast and the interval."""
    from rnnkit.plotting import pyplot

    plt = pyplot("forecast")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(ids), size=min(count, len(ids)), replace=False).tolist())
    cols = 2
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), squeeze=False)
    horizon = fc["forecast"].shape[1]
    for ax, i in zip(axes.ravel(), picks):
        hist = histories[i][-max(4 * period, 2 * horizon):]
        t0 = len(histories[i])
        ax.plot(np.arange(t0 - len(hist), t0), hist, color="black", lw=0.9)
        future = np.arange(t0, t0 + horizon)
        if truth is not None:
            ax.plot(future, truth[i], color="black", lw=0.9, ls=":", label="truth")
        ax.fill_between(future, fc["lower"][i], fc["upper"][i], color="tab:blue", alpha=0.2, label="interval")
        ax.plot(future, fc["forecast"][i], color="tab:blue", lw=1.3, label="rnnkit")
        ax.set_title(str(ids[i]), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(picks):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_owa_against(path: Path, per_series: dict, other: str, title: str = "") -> Path:
    """Per-series OWA of rnnkit (y) against ``other`` (x), log-log, with the diagonal: points
    below it are series where rnnkit is better."""
    from rnnkit.plotting import pyplot

    plt = pyplot("forecast")
    from rnnkit.tasks.forecast.m4_scores import owa_per_series

    n2 = per_series["naive2"]
    x, y = (owa_per_series(per_series[name]["smape"], per_series[name]["mase"], n2["smape"], n2["mase"])
            for name in (other, "rnnkit"))
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(x[keep], y[keep], s=8, alpha=0.6)
    lo, hi = min(x[keep].min(), y[keep].min()), max(x[keep].max(), y[keep].max())
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    better = int((y[keep] < x[keep]).sum())
    ax.set_xlabel(f"OWA of {other}")
    ax.set_ylabel("OWA of rnnkit")
    ax.set_title(f"{title}\nrnnkit better on {better} of {int(keep.sum())} series", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
