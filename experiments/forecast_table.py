"""The forecasting MASE table of docs/results.md: rnnkit vs seasonal naive, ARIMA and ETS on six
classic series, each forecast over its test part in one rollout from the end of the history.

Tuning used the validation part only.  Each series has one setting (below), the one whose
rollout over the validation part scored best when trained on the data before it: the
``--backtest`` run of this script, which leaves the test part out and scores the validation
part instead (docs/results.md lists every setting tried and its score).  The setting is trained
as ensembles of ``--ensemble`` seeds, of which the ``--select`` models with the best validation
rollouts are kept (ensemble selection), and forecasts the test part.  A series may list several
candidate settings: then each is trained, and they and the equal-weight mean of their forecasts
(a forecast combination, Bates & Granger 1969) are scored by validation-rollout MASE and the
lowest is kept.  The baselines are fitted to the same history (train + valid) and forecast the
same test part.

With ``--backtest`` everything moves one part earlier: the series ends where its test part
begins, so the validation part is scored instead.  ``--select 0 --refit`` keeps all models and
trains them again on train + valid for the number of epochs that was best on validation (a
refit model is a new model that ensemble selection says nothing about, so not with --select).

    python experiments/forecast_table.py [--data ../shared/data/timeseries] [--only airline,co2]
        [--out runs/forecast-table] [--ensemble 10] [--select 5] [--refit] [--backtest] [--report]
        [--setting '{"local_level": true}']

Each candidate is one :class:`~rnnkit.tasks.forecast.estimator.ForecastEstimator` and each row
its ``backtest`` (of the validation part with ``--backtest``, else of the test part).  The
library's progress is logged; this script shows its warnings only.

Needs statsmodels (``pip install -e '.[forecast]'``); the CSV series come from --data.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from rnnkit.errors import DataError
from rnnkit.tasks.forecast.estimator import ForecastEstimator
from rnnkit.tasks.forecast.metrics import all_metrics
from rnnkit.tasks.forecast.run import ForecastDataConfig
from rnnkit.tasks.forecast.task import ForecastModelConfig
from rnnkit.train.config import TrainConfig

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / ".." / "shared" / "data" / "timeseries"

# name -> (label, data settings, candidate settings).  The settings were chosen on the
# validation parts (see the docstring): log where the season grows with the level (the monthly
# sales series), the STL seasonal profile removed (smoothed to 4 harmonics for the 365-day one),
# first differences or a local level (each window read relative to its own mean) for series
# with a trend, the direct 24-step head for airline.  The short monthly series use batches of 8
# so that an epoch has more than 3 steps.
SERIES = {
    "airline": ("airline passengers (last 24 months)",
                dict(csv="airline-passengers.csv", horizon=24, season=12, window=24, batch_size=8),
                [dict(log=True, deseasonalize=True, difference=1, direct=True)]),
    "sunspots": ("monthly sunspots (last 10%)",
                 dict(csv="monthly-sunspots.csv", horizon=282, test="10%", season=1, window=132),
                 [dict(local_level=True)]),
    "temperatures": ("daily minimum temperatures (1990)",
                     dict(csv="daily-min-temperatures.csv", horizon=365, season=365, window=30, batch_size=64),
                     [dict(deseasonalize=True, harmonics=4)]),
    "births": ("daily female births (last 20%)",
               dict(csv="daily-total-female-births.csv", horizon=73, test="20%", season=7, window=28),
               [dict(local_level=True, calendar=False)]),
    "car_sales": ("monthly car sales (last 24 months)",
                  dict(csv="monthly-car-sales.csv", horizon=24, season=12, window=24, batch_size=8),
                  [dict(log=True, deseasonalize=True, local_level=True, window=12)]),
    "co2": ("statsmodels weekly co2 (last 10%)",
            dict(dataset="co2", horizon=228, test="10%", season=52, window=104, batch_size=64),
            [dict(deseasonalize=True, local_level=True)]),
}
MODEL = ForecastModelConfig(cell="lstm", hidden_size=32, num_layers=1, head="gaussian")
TRAIN = TrainConfig(epochs=150, early_stop=15, lr=3e-3, progress=False, log_every=1000, device="cpu")
CLASSICAL = ("seasonal_naive", "arima", "ets")  # the baselines of the table
ENSEMBLE = 10
SELECT = 5  # of the ENSEMBLE models per candidate, keep those with the best validation rollouts


def _json_name(name: str, origin: int = 0) -> str:
    """A row's file in the output folder: ``NAME.json``, or ``NAME-oJ.json`` for origin J > 0."""
    return f"{name}-o{origin}.json" if origin else f"{name}.json"


def run_series(name: str, data_dir: Path, out: Path, ensemble: int = ENSEMBLE, select: int = SELECT,
               refit: bool = False, backtest: bool = False, setting: dict | None = None, origin: int = 0,
               origins: int = 1) -> dict:
    """One row of the table; with backtest and ``origins`` > 1, the ``origin``-th of that many
    backtests, each ending ceil(n_valid / origins) points before the one after it."""
    label, base, candidates = SERIES[name]
    if setting is not None:  # try another setting (tuning, with --backtest)
        candidates = [setting]
    base = dict(base)
    if "csv" in base:
        base["csv"] = str(data_dir / base["csv"])
    data = ForecastDataConfig(**base, ensemble=ensemble, select=select, refit=refit, baselines=",".join(CLASSICAL))
    stem = Path(_json_name(name, origin)).stem  # the run folders are STEM-0, STEM-1, ...
    start = time.perf_counter()
    tried = []  # one dict per candidate, in order
    for i, extra in enumerate(candidates):
        estimator = ForecastEstimator(data, MODEL, TRAIN, **extra)
        # with backtest the data end where the test part begins: the validation part becomes the test
        result = estimator.backtest(part="valid" if backtest else "test", origin=origin, origins=origins,
                                    run_dir=out / f"{stem}-{i}")
        tried.append({"setting": extra, "valid_mase": result.valid_mase, "backtest": result,
                      "log": estimator.data.log, "test_forecast": result.forecasts["rnnkit"],
                      "test": result.scores["rnnkit"], "runs": [str(result.run)]})
        print(f"  {name} candidate {extra}: valid MASE {tried[-1]['valid_mase']:.3f}", flush=True)
    p = tried[0]["backtest"].data  # the split is the same for every candidate
    truth, history = p.y[p.valid_end:], p.y[:p.valid_end]
    if len(candidates) > 1:  # the equal-weight combination of the candidates' forecasts is one more
        valid_truth, valid_history = p.y[p.train_end:p.valid_end], p.y[:p.train_end]
        valid_mean = np.mean([t["backtest"].valid_forecast for t in tried], axis=0)
        test_mean = np.mean([t["test_forecast"] for t in tried], axis=0)
        combined = all_metrics(valid_truth, valid_mean, valid_history, p.season)["mase"]
        print(f"  {name} combination of the {len(candidates)}: valid MASE {combined:.3f}", flush=True)
        tried.append({"setting": {"combination": candidates}, "valid_mase": combined, "test_forecast": test_mean,
                      "test": all_metrics(truth, test_mean, history, p.season),
                      "runs": [r for t in tried for r in t["runs"]]})
    best = min(tried, key=lambda t: t["valid_mase"])  # the first of equals
    chosen = best["setting"]
    # the baselines model log y when every chosen candidate does: those of a candidate that agrees
    members = [best] if "backtest" in best else tried[:len(candidates)]
    used_log = all(t["log"] for t in members)
    scored = next(t["backtest"] for t in members if t["log"] == used_log)
    if backtest:
        label += ", backtest: its validation part"
        if origin:
            label += f" moved {scored.shift} points back"
    table = {"rnnkit": best["test"]}
    table.update({k: v for k, v in scored.scores.items() if k != "rnnkit"})
    row = {"name": name, "origin": origin, "label": label, "chosen": chosen, "valid_mase": best["valid_mase"],
           "season": p.season,
           "n_test": p.n_test, "ensemble": ensemble, "select": select, "refit": refit,
           "tried": {json.dumps(t["setting"]): t["valid_mase"] for t in tried},
           "test": table, "models": scored.models, "runs": best["runs"],
           "forecasts": {"dates": [str(d) for d in p.dates[p.valid_end - 2 * p.n_test:]],
                         "history": history[-2 * p.n_test:].tolist(), "truth": truth.tolist(),
                         "rnnkit": best["test_forecast"].tolist(),
                         **{k: v.tolist() for k, v in scored.forecasts.items() if k != "rnnkit"}},
           "seconds": round(time.perf_counter() - start, 1)}
    (out / _json_name(name, origin)).write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| series | m | test points | rnnkit | seasonal naive | ARIMA | ETS | best classical | rnnkit better? |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    wins = 0
    for r in rows:
        t = r["test"]
        classical = {k: t[k]["mase"] for k in CLASSICAL if k in t}
        best = min(classical.values())
        win = t["rnnkit"]["mase"] < best
        wins += win
        cells = [f"{t[k]['mase']:.3f}" if k in t else "—" for k in ("rnnkit", *CLASSICAL)]
        lines.append(f"| {r['label']} | {r['season']} | {r['n_test']} | " + " | ".join(cells)
                     + f" | {best:.3f} | {'yes' if win else 'no'} |")
    lines.append(f"\nrnnkit better than the best classical baseline on {wins} of {len(rows)}.")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """One panel per series: the end of the history, the test truth, rnnkit and the best
    classical baseline."""
    from rnnkit.plotting import pyplot

    plt = pyplot("forecast")
    cols = 2
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(12, 3.2 * ((len(rows) + 1) // cols)),
                             squeeze=False)
    for ax, r in zip(axes.flat, rows):
        f, t = r["forecasts"], r["test"]
        dates = np.array(f["dates"], dtype="datetime64[D]")
        n_hist = len(f["history"])
        best = min(CLASSICAL, key=lambda k: t[k]["mase"])
        ax.plot(dates[:n_hist], f["history"], color="black", lw=0.8)
        ax.plot(dates[n_hist:], f["truth"], color="black", lw=0.8, ls=":", label="truth")
        ax.plot(dates[n_hist:], f[best], color="tab:gray", lw=1, ls="--",
                label=f"{best} (MASE {t[best]['mase']:.2f})")
        ax.plot(dates[n_hist:], f["rnnkit"], color="tab:blue", lw=1.2, label=f"rnnkit (MASE {t['rnnkit']['mase']:.2f})")
        ax.set_title(r["label"], fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def combine_rows(rows: list[dict], others: list[dict]) -> list[dict]:
    """The rows with rnnkit's forecast replaced by the equal-weight mean of its forecast and the
    forecast of the same series and origin in ``others`` (another setting's run); the MASE scale
    is the row's own (MAE / MASE of its rnnkit forecast)."""
    index = {(r["name"], r.get("origin", 0)): r for r in others}
    combined = []
    for r in rows:
        other = index.get((r["name"], r.get("origin", 0)))
        if other is None:
            continue
        f, g = r["forecasts"], other["forecasts"]
        truth, mine, theirs = np.array(f["truth"]), np.array(f["rnnkit"]), np.array(g["rnnkit"])
        if not np.array_equal(truth, np.array(g["truth"])):
            raise DataError(f"{r['name']} origin {r.get('origin', 0)}: the two runs forecast different parts")
        scale = np.abs(mine - truth).mean() / r["test"]["rnnkit"]["mase"]
        mean = (mine + theirs) / 2
        rnnkit = {"mase": float(np.abs(mean - truth).mean() / scale)}
        combined.append({**r, "test": {**r["test"], "rnnkit": rnnkit},
                         "forecasts": {**f, "rnnkit": mean.tolist()}})
    return combined


def origins_markdown(rows: list[dict]) -> str:
    """Rolling-origin summary (Tashman 2000): per series, the mean MASE of each model over the
    backtest origins, and at how many origins rnnkit beat the best classical baseline."""
    lines = ["| series | origins | rnnkit | seasonal naive | ARIMA | ETS | rnnkit better than the best classical |",
             "|---|---:|---:|---:|---:|---:|---|"]
    wins = 0
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        mean = {k: float(np.mean([r["test"][k]["mase"] for r in mine])) for k in ("rnnkit", *CLASSICAL)}
        beat = sum(r["test"]["rnnkit"]["mase"] < min(r["test"][k]["mase"] for k in CLASSICAL) for r in mine)
        win = mean["rnnkit"] < min(mean[k] for k in CLASSICAL)
        wins += win
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(f"{mean[k]:.3f}" for k in mean)
                     + f" | {'yes' if win else 'no'} on the mean; at {beat} of {len(mine)} origins |")
    lines.append(f"\nrnnkit's mean MASE below the best classical baseline's on {wins} of "
                 f"{len(lines) - 2} series.")
    return "\n".join(lines)


def plot_origins(rows: list[dict], path: Path) -> None:
    """One panel per series: MASE of rnnkit and of each classical baseline at every backtest
    origin, oldest first."""
    from rnnkit.plotting import pyplot

    plt = pyplot("forecast")
    names = list(dict.fromkeys(r["name"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: -r["origin"])
        x = [-r["origin"] for r in mine]
        styles = (("rnnkit", dict(color="tab:blue", lw=2)), ("arima", dict(color="tab:red", ls="--")),
                  ("ets", dict(color="tab:green", ls="--")), ("seasonal_naive", dict(color="tab:gray", ls=":")))
        for key, style in styles:
            ax.plot(x, [r["test"][key]["mase"] for r in mine], marker="o", ms=3, label=key, **style)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(x)
        ax.set_xlabel("origin (0: the validation part)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("MASE")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(rows: list[dict], out: Path, by_origin: bool = False, suffix: str = "") -> str:
    """Write the table (table.md and forecasts.png; with ``by_origin`` the rolling-origin
    summary, origins.md and origins.png) into ``out`` and return its markdown."""
    if by_origin:
        table, stem, draw = origins_markdown(rows), "origins", plot_origins
    else:
        table, stem, draw = markdown(rows), "table", plot
    (out / f"{stem}{suffix}.md").write_text(table + "\n", encoding="utf-8")
    if rows and all("forecasts" in r for r in rows):
        draw(rows, out / (f"{stem}{suffix}.png" if by_origin else f"forecasts{suffix}.png"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with the CSV series")
    parser.add_argument("--only", default=",".join(SERIES), help="comma-separated subset of " + ",".join(SERIES))
    parser.add_argument("--out", default="runs/forecast-table")
    parser.add_argument("--ensemble", type=int, default=ENSEMBLE, help="models per candidate (seeds)")
    parser.add_argument("--select", type=int, default=SELECT,
                        help="keep this many of them, those with the best validation rollouts (0: all)")
    parser.add_argument("--backtest", action="store_true",
                        help="leave the test parts out and score the validation parts instead, "
                        "choosing on the parts before them")
    parser.add_argument("--refit", action="store_true",
                        help="train every model again on train + valid before forecasting the test part "
                        "(needs --select 0)")
    parser.add_argument("--setting", type=json.loads, default=None,
                        help="JSON settings to use instead of the series' own, e.g. '{\"local_level\": true}' "
                        "(for tuning with --backtest)")
    parser.add_argument("--origins", type=int, default=1,
                        help="with --backtest: that many backtests per series, each ending ceil(valid / N) "
                        "points before the next, and their mean (rolling-origin evaluation)")
    parser.add_argument("--combine-with", default=None,
                        help="with --report: score the equal-weight mean of rnnkit's forecasts in --out and in "
                        "this folder (another setting's run, or with --origins its rolling origins); writes "
                        "table-combined.md / origins-combined.md")
    parser.add_argument("--report", action="store_true",
                        help="only rebuild table.md and forecasts.png (with --origins: origins.md) from the "
                        "series' JSON files in --out "
                        "(for parts run in separate processes)")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s", level=logging.WARNING)  # the library's warnings, not its progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",")
    if args.origins < 1 or (args.origins > 1 and not args.backtest):
        parser.error(f"--origins needs --backtest and a count >= 1, got {args.origins}")
    if args.combine_with and not args.report:
        parser.error("--combine-with scores saved runs: it needs --report")
    origins = range(args.origins)
    if args.report:
        files = [_json_name(n, j) for n in names for j in origins]
        rows = [json.loads((out / f).read_text(encoding="utf-8")) for f in files if (out / f).is_file()]
        if args.combine_with:  # the equal-weight combination with another setting's run(s)
            other = Path(args.combine_with)
            rows = combine_rows(rows, [json.loads((other / f).read_text(encoding="utf-8")) for f in files
                                       if (other / f).is_file()])
        print(summarize(rows, out, args.origins > 1, "-combined" if args.combine_with else ""))
        return
    start = time.perf_counter()
    rows = []
    for name in names:
        for origin in origins:
            what = f"{name} origin {origin}" if args.origins > 1 else name
            print(f"{what} ...", flush=True)
            try:
                rows.append(run_series(name, Path(args.data), out, args.ensemble, args.select, args.refit,
                                       args.backtest, args.setting, origin, args.origins))
            except DataError as exc:  # e.g. a backtest that leaves too little training data
                print(f"  {what}: skipped: {exc}", flush=True)
                continue
            print(f"  {what}: " + ", ".join(f"{k} {v['mase']:.3f}" for k, v in rows[-1]["test"].items())
                  + f" ({rows[-1]['seconds']:.0f} s)", flush=True)
    print(summarize(rows, out, args.origins > 1))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
