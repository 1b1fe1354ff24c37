"""The forecasting MASE table of docs/results.md: rnnkit vs seasonal naive, ARIMA and ETS on six
classic series, each forecast over its test part in one rollout from the end of the history.

Tuning used the validation part only: for each series a few candidate settings (below) are
trained as ensembles of ``--ensemble`` seeds, of which the ``--select`` models with the best
validation rollouts are kept (ensemble selection); these candidates and the equal-weight mean of
their forecasts (a forecast combination, Bates & Granger 1969) are scored by validation-rollout
MASE, the lowest is kept, and its test metrics are the ones reported (the test numbers of the
other candidates are not printed).  The baselines are fitted to the same history (train +
valid) and forecast the same test part.  With ``--select 0 --refit`` every candidate's models
are instead all kept and trained again on train + valid for the number of epochs that was best
on validation (the two cannot be combined: a refit model is a new model that the selection
says nothing about).

    python experiments/forecast_table.py [--data ../shared/data/timeseries] [--only airline,co2]
        [--out runs/forecast-table] [--ensemble 10] [--select 5] [--refit] [--backtest] [--report]

Needs statsmodels (``pip install -e '.[forecast]'``); the CSV series come from --data.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from rnnkit.errors import DataError
from rnnkit.tasks.forecast_baselines import run_baselines
from rnnkit.tasks.forecast_metrics import all_metrics
from rnnkit.tasks.forecasting import ForecastModelConfig
from rnnkit.tasks.forecasting_run import ForecastDataConfig, prepare, train_forecast
from rnnkit.train.config import TrainConfig

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent / ".." / "shared" / "data" / "timeseries"

# name -> (label, data settings, candidate overrides).  Candidates differ in the input transform,
# the window, or whether each window is read relative to its own level (local_level); model size
# and training are the same for all.  Each series has the two settings of the first version of
# this table, the first of them with local_level, and for seasonal series the STL seasonal
# profile removed with local_level (for sunspots, m = 1, local_level with the other window).  The
# short monthly series (96 training windows) use batches of 8 so that an epoch has more than 3 steps.
SERIES = {
    "airline": ("airline passengers (last 24 months)",
                dict(csv="airline-passengers.csv", horizon=24, season=12, window=24, batch_size=8),
                [dict(log=True, seasonal_difference=True), dict(log=True, difference=1, seasonal_difference=True),
                 dict(log=True, seasonal_difference=True, local_level=True),
                 dict(log=True, deseasonalize=True, local_level=True)]),
    "sunspots": ("monthly sunspots (last 10%)",
                 dict(csv="monthly-sunspots.csv", horizon=282, test="10%", season=1, window=132),
                 [dict(), dict(window=60), dict(local_level=True), dict(window=60, local_level=True)]),
    "temperatures": ("daily minimum temperatures (1990)",
                     dict(csv="daily-min-temperatures.csv", horizon=365, season=365, window=30, batch_size=64),
                     [dict(), dict(window=60), dict(local_level=True), dict(deseasonalize=True, local_level=True)]),
    "births": ("daily female births (last 20%)",
               dict(csv="daily-total-female-births.csv", horizon=73, test="20%", season=7, window=28),
               [dict(), dict(calendar=False), dict(local_level=True), dict(deseasonalize=True, local_level=True)]),
    "car_sales": ("monthly car sales (last 24 months)",
                  dict(csv="monthly-car-sales.csv", horizon=24, season=12, window=24, batch_size=8),
                  [dict(log=True, seasonal_difference=True), dict(log=True),
                   dict(log=True, seasonal_difference=True, local_level=True),
                   dict(log=True, deseasonalize=True, local_level=True)]),
    "co2": ("statsmodels weekly co2 (last 10%)",
            dict(dataset="co2", horizon=228, test="10%", season=52, window=104, batch_size=64),
            [dict(difference=1), dict(seasonal_difference=True), dict(difference=1, local_level=True),
             dict(deseasonalize=True, local_level=True)]),
}
MODEL = ForecastModelConfig(cell="lstm", hidden_size=32, num_layers=1, head="gaussian")
MODEL_FIELDS = {f.name for f in fields(ForecastModelConfig)}  # candidate keys that set the model
TRAIN = TrainConfig(epochs=150, early_stop=15, lr=3e-3, progress=False, log_every=1000, device="cpu")
ENSEMBLE = 10
SELECT = 5  # of the ENSEMBLE models per candidate, keep those with the best validation rollouts


def _train(name: str, base: dict, extra: dict, out: Path, ensemble: int, select: int, refit: bool) -> dict:
    """Train one candidate setting (an ensemble) with data settings ``base`` and report what the
    table needs: the validation and test rollouts of train_forecast."""
    model_keys = {k: v for k, v in extra.items() if k in MODEL_FIELDS}
    data_keys = {k: v for k, v in extra.items() if k not in MODEL_FIELDS}
    cfg = ForecastDataConfig(**{**base, **data_keys, "ensemble": ensemble, "select": select, "refit": refit,
                                 "baselines": "", "samples": 0})
    with contextlib.redirect_stdout(io.StringIO()):
        result = train_forecast(cfg, replace(MODEL, **model_keys), replace(TRAIN), out)
    return {"setting": extra, "valid_mase": result["valid_rollout"]["mase"],
            "valid_forecast": np.array(result["valid_forecast"]), "test_forecast": np.array(result["test_forecast"]),
            "test": result["test"]["rnnkit"], "runs": [str(out)]}


def _shifted(base: dict, p) -> dict:
    """The data settings one part earlier: the series ends where ``p``'s test part begins, and
    ``p``'s validation part becomes the test part."""
    return {**base, "drop_last": base.get("drop_last", 0) + p.n_test, "test": str(p.n_valid),
            "valid": str(p.n_valid), "horizon": p.n_valid}


def select_candidate(name: str, base: dict, candidates: list, out: Path, ensemble: int, select: int) -> tuple:
    """Score every candidate (and the mean of their forecasts) by MASE on the validation part,
    forecast in one rollout by models trained on the data before it only (early stopping and
    ensemble selection on the part before that).  Returns (best candidate, every score, how)."""
    p = prepare(ForecastDataConfig(**base))
    shifted = _shifted(base, p)
    try:
        prepare(ForecastDataConfig(**shifted))
        for extra in candidates:  # the shorter history must leave every candidate training windows
            lost = extra.get("difference", 0) + (p.season if extra.get("seasonal_difference") else 0)
            window = extra.get("window", p.window)
            if p.train_end - p.n_valid < window + lost + max(8, p.n_valid // 4):
                raise DataError(f"{p.train_end - p.n_valid} points before the validation part's own validation "
                                f"part leave too few training windows for window {window}")
    except DataError as exc:
        print(f"  {name}: no clean selection rollout ({exc}); choosing by the final models' validation "
              f"rollouts instead", flush=True)
        return None, {}, "final models' validation rollout"
    q = prepare(ForecastDataConfig(**shifted))
    truth, history = q.y[q.valid_end:], q.y[:q.valid_end]
    tried = []
    for i, extra in enumerate(candidates):
        tried.append(_train(name, shifted, extra, out / f"{name}-select-{i}", ensemble, select, False))
        tried[-1]["score"] = tried[-1]["test"]["mase"]
        print(f"  {name} candidate {extra}: selection MASE {tried[-1]['score']:.3f}", flush=True)
    mean = np.mean([t["test_forecast"] for t in tried], axis=0)
    tried.append({"setting": {"combination": candidates},
                  "score": all_metrics(truth, mean, history, q.season)["mase"]})
    print(f"  {name} combination of the {len(candidates)}: selection MASE {tried[-1]['score']:.3f}", flush=True)
    best = min(tried, key=lambda t: t["score"])  # the first of equals
    return best["setting"], {json.dumps(t["setting"]): t["score"] for t in tried}, "clean selection rollout"


def run_series(name: str, data_dir: Path, out: Path, ensemble: int = ENSEMBLE, select: int = SELECT,
               refit: bool = False, backtest: bool = False) -> dict:
    label, base, candidates = SERIES[name]
    base = dict(base)
    if "csv" in base:
        base["csv"] = str(data_dir / base["csv"])
    if backtest:  # the data end where the test part begins: the validation part becomes the test
        base = _shifted(base, prepare(ForecastDataConfig(**base)))
        label += ", backtest: its validation part"
    start = time.perf_counter()
    p = prepare(ForecastDataConfig(**base))  # the split is the same for every candidate
    valid_truth, valid_history = p.y[p.train_end:p.valid_end], p.y[:p.train_end]
    truth, history = p.y[p.valid_end:], p.y[:p.valid_end]
    chosen, scores, how = select_candidate(name, base, candidates, out, ensemble, select)
    final = chosen.get("combination", [chosen]) if chosen is not None else candidates
    tried = [_train(name, base, extra, out / f"{name}-{i}", ensemble, select, refit) for i, extra in enumerate(final)]
    if len(tried) > 1:  # the equal-weight combination of the candidates' forecasts
        valid_mean = np.mean([t["valid_forecast"] for t in tried], axis=0)
        test_mean = np.mean([t["test_forecast"] for t in tried], axis=0)
        tried.append({"setting": {"combination": final}, "test_forecast": test_mean,
                      "valid_mase": all_metrics(valid_truth, valid_mean, valid_history, p.season)["mase"],
                      "test": all_metrics(truth, test_mean, history, p.season),
                      "runs": [r for t in tried for r in t["runs"]]})
    if chosen is None:  # fall back: the final models' own validation rollouts choose
        scores = {json.dumps(t["setting"]): t["valid_mase"] for t in tried}
        for key, score in scores.items():
            print(f"  {name} candidate {key}: validation MASE {score:.3f}", flush=True)
        best = min(tried, key=lambda t: t["valid_mase"])
    else:
        best = tried[-1]  # the chosen setting, or the combination of the chosen settings
    chosen = best["setting"]
    used_log = all(c.get("log") for c in chosen.get("combination", [chosen]))
    baselines = run_baselines(history, p.n_test, p.season, log=used_log, names=("seasonal_naive", "arima", "ets"))
    table = {"rnnkit": best["test"]}
    table.update({k: all_metrics(truth, v["forecast"], history, p.season) for k, v in baselines.items()})
    row = {"name": name, "label": label, "chosen": chosen, "chosen_by": how, "valid_mase": best["valid_mase"],
           "season": p.season, "n_test": p.n_test, "ensemble": ensemble, "select": select, "refit": refit,
           "tried": scores, "test": table, "models": {k: v["model"] for k, v in baselines.items()},
           "runs": best["runs"],
           "forecasts": {"dates": [str(d) for d in p.dates[p.valid_end - 2 * p.n_test:]],
                         "history": history[-2 * p.n_test:].tolist(), "truth": truth.tolist(),
                         "rnnkit": best["test_forecast"].tolist(),
                         **{k: np.asarray(v["forecast"]).tolist() for k, v in baselines.items()}},
           "seconds": round(time.perf_counter() - start, 1)}
    (out / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| series | m | test points | rnnkit | seasonal naive | ARIMA | ETS | best classical | rnnkit better? |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    wins = 0
    for r in rows:
        t = r["test"]
        classical = {k: t[k]["mase"] for k in ("seasonal_naive", "arima", "ets") if k in t}
        best = min(classical.values())
        win = t["rnnkit"]["mase"] < best
        wins += win
        cells = [f"{t[k]['mase']:.3f}" if k in t else "—" for k in ("rnnkit", "seasonal_naive", "arima", "ets")]
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
        best = min(("seasonal_naive", "arima", "ets"), key=lambda k: t[k]["mase"])
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


def report(rows: list[dict], out: Path) -> str:
    table = markdown(rows)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    if all("forecasts" in r for r in rows):
        plot(rows, out / "forecasts.png")
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
    parser.add_argument("--report", action="store_true",
                        help="only rebuild table.md and forecasts.png from the series' JSON files in --out "
                        "(for parts run in separate processes)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",")
    if args.report:
        rows = [json.loads((out / f"{n}.json").read_text(encoding="utf-8")) for n in names
                if (out / f"{n}.json").is_file()]
        print(report(rows, out))
        return
    start = time.perf_counter()
    rows = []
    for name in names:
        print(f"{name} ...", flush=True)
        try:
            rows.append(run_series(name, Path(args.data), out, args.ensemble, args.select, args.refit, args.backtest))
        except DataError as exc:  # e.g. a backtest that leaves too little training data
            print(f"  {name}: skipped: {exc}", flush=True)
            continue
        print(f"  {name}: " + ", ".join(f"{k} {v['mase']:.3f}" for k, v in rows[-1]["test"].items())
              + f" ({rows[-1]['seconds']:.0f} s)", flush=True)
    print(report(rows, out))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
