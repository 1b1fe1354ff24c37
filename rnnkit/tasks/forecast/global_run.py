"""Training one global forecaster on many series (``rnnkit train forecast --m4 FILE``).

Protocol: the last ``holdout`` points of every series (default: the horizon) are its
validation part.  Training windows take their targets only from the points before it; the
validation forecast starts at it, from the window just before, and is scored as M4 scored
its test set (sMAPE, MASE, OWA against Naive2 on the same points, MSIS of the interval).
The checkpoint with the best validation OWA is kept.  Forecasts past the end of the data
then read the whole series, the held-out points included, as their input window: the model
has never been trained on those targets, only conditioned on them.

An ensemble trains ``ensemble`` members one after another, each in ``members/<i>`` with its
own seed and checkpoints; a run stopped by Ctrl-C or SIGTERM continues with ``--resume``
from the member it was training (a finished member's Trainer, resumed, has nothing left to
do; a resume that raises ``--epochs`` trains every member further).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from rnnkit.errors import DataError, RnnkitError
from rnnkit.settings import MAX_BATCH, MAX_LENGTH, setting
from rnnkit.tasks.forecast.global_model import (
    WEIGHTINGS,
    GlobalForecaster,
    GlobalModelConfig,
    SeriesBank,
    forecast_windows,
    to_tensors,
    window_loss,
)
from rnnkit.train import distributed, load_weights, run_lock
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice
from rnnkit.train.run import changed_settings, check_resume, log_resume, read_record, write_run_config
from rnnkit.train.trainer import Trainer, seed_everything

logger = logging.getLogger(__name__)

MAX_ENSEMBLE = 100
RECORD = "m4.json"  # a finished global run's record


@dataclass
class GlobalDataConfig:
    m4: Optional[str] = setting(None, "M4-format CSV (.gz too): a header, then per row a series id and its "
                                "values (shorter series end in empty cells)")
    horizon: int = setting(0, "steps to forecast (required with --m4; 48 for M4 hourly)", ge=0, le=MAX_LENGTH)
    period: int = setting(0, "seasonal period (required with --m4: 24 hourly, 12 monthly, 4 quarterly, 1 none)",
                          ge=0, le=MAX_LENGTH)
    window: int = setting(0, "input window (0: seven seasons, at least 2 x horizon)", ge=0, le=MAX_LENGTH)
    holdout: int = setting(0, "last points of each series held out for validation (0: the horizon)",
                           ge=0, le=MAX_LENGTH)
    windows_per_series: int = setting(64, "training windows drawn from each series per epoch", ge=1, le=10**6)
    batch_size: int = setting(256, "windows per batch", ge=1, le=MAX_BATCH)
    log: bool = setting(True, "normalize windows by log(y / level) (positive series) instead of y / level - 1")
    weighting: str = setting("equal", "loss weight of each window: equal, or owa (half as sMAPE weighs errors, half "
                             "as MASE does: level / in-sample seasonal naive error)", choices=WEIGHTINGS)
    ensemble: int = setting(1, "members trained with seeds seed .. seed+ensemble-1; their quantiles averaged",
                            ge=1, le=MAX_ENSEMBLE)


@dataclass
class GlobalTrainConfig(TrainConfig):
    """TrainConfig with the global forecaster's defaults (the helps are TrainConfig's)."""
    epochs: int = 30
    lr: float = 3e-3
    clip: float = 1.0
    schedule: str = "cosine"
    log_every: int = 50


def resolved(cfg: GlobalDataConfig) -> GlobalDataConfig:
    """``cfg`` with its defaults worked out (window, holdout), after checking what must be given."""
    if not cfg.m4:
        raise DataError("give the M4-format training file: --m4 FILE")
    if cfg.horizon < 1:
        raise DataError("give the forecast horizon: --horizon H (48 for M4 hourly, 18 monthly, 8 quarterly)")
    if cfg.period < 1:
        raise DataError("give the seasonal period: --period M (24 for hourly, 12 monthly, 4 quarterly, "
                        "1 for none)")
    window = cfg.window or max(7 * cfg.period, 2 * cfg.horizon)
    if window < cfg.period:
        raise DataError(f"the window must hold at least one season (the normalization level is the mean of the "
                        f"last {cfg.period} inputs); got --window {window}")
    return GlobalDataConfig(**{**asdict(cfg), "window": window, "holdout": cfg.holdout or cfg.horizon})


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (as stored: a .gz file's compressed bytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def validation_truth(bank: SeriesBank, series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
    """Origins (the first held-out point), the held-out horizon (N, H) and the histories before."""
    origins = bank.fit_ends.copy()
    truth = np.stack([s[o:o + bank.horizon] for s, o in zip(series, origins)])
    return origins, truth, [s[:o] for s, o in zip(series, origins)]


class GlobalForecastTask:
    """The global forecaster as the Trainer sees it: each epoch draws ``windows_per_series``
    windows from every series (a fresh draw per epoch, from the run's seed); validation
    forecasts the held-out part of every series and scores it as M4 did."""

    monitor = ("owa", "min")

    def __init__(self, series: list[np.ndarray], cfg: GlobalDataConfig, model_cfg: GlobalModelConfig,
                 seed: int) -> None:
        from rnnkit.tasks.forecast.m4_scores import run_benchmarks

        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        self.series = series
        self.bank = SeriesBank(series, cfg.holdout, cfg.window, cfg.horizon, cfg.period, cfg.log, cfg.weighting)
        self.origins, self.truth, self.histories = validation_truth(self.bank, series)
        self.naive2 = run_benchmarks(self.histories, cfg.horizon, cfg.period, ["naive2"], workers=1,
                                     progress=False)["naive2"]
        self._naive2_scores = self.score(self.naive2)

    def build_model(self) -> GlobalForecaster:
        return GlobalForecaster(self.model_cfg, self.cfg.horizon, self.cfg.period)

    def train_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        pairs = self.bank.training_origins(rng, self.cfg.windows_per_series)
        pairs = pairs[rng.permutation(len(pairs))]
        return [pairs[i:i + self.cfg.batch_size] for i in range(0, len(pairs), self.cfg.batch_size)]

    def shard(self, batch: np.ndarray, rank: int, world: int) -> Optional[np.ndarray]:
        check_global_batch(self.cfg.batch_size, world, "windows")
        part = batch[shard_slice(len(batch), rank, world)]
        return part if len(part) else None

    def train_step(self, model: GlobalForecaster, batch: np.ndarray, state):
        device = next(model.parameters()).device
        t = to_tensors(self.bank.gather(batch[:, 0], batch[:, 1]), device)
        return window_loss(model, t), int(t["target"].numel()), None

    def score(self, forecast: np.ndarray, lower=None, upper=None) -> dict:
        from rnnkit.tasks.forecast.m4_scores import score

        return score(self.truth, forecast, self.histories, self.cfg.period, lower=lower, upper=upper)

    def forecast(self, models: list[GlobalForecaster]) -> np.ndarray:
        return forecast_windows(models, self.bank, np.arange(len(self.series)), self.origins)

    @torch.no_grad()
    def evaluate(self, model: GlobalForecaster, split: str) -> dict[str, float]:
        """Validation: sMAPE, MASE, OWA (against Naive2 on the same points) and, with an
        interval, MSIS and coverage of the held-out part."""
        was_training = model.training
        scores = self.scores_of(self.forecast([model]), model.median)
        model.train(was_training)
        return scores

    def scores_of(self, q: np.ndarray, median: int) -> dict[str, float]:
        """The validation scores of quantile forecasts q (N, H, Q): sMAPE, MASE and OWA of the
        median, MSIS and coverage of the outermost pair (when there is one)."""
        from rnnkit.tasks.forecast.m4_scores import owa

        lower, upper = (q[..., 0], q[..., -1]) if q.shape[-1] > 1 else (None, None)
        return summary_scores(self.score(q[..., median], lower, upper), self._naive2_scores, owa)

    def meta(self) -> dict:
        with torch.device("meta"):  # the sizes only: no memory, no initialization
            model = self.build_model()
        return {"task": "forecast", "kind": "global", "model": asdict(self.model_cfg),
                "input_size": model.rnn.input_size, "outputs": model.head.out_features,
                "horizon": self.cfg.horizon, "period": self.cfg.period, "window": self.cfg.window,
                "log": self.cfg.log}


def summary_scores(scores: dict, naive2: dict, owa) -> dict[str, float]:
    """The dataset means of :func:`~rnnkit.tasks.forecast.m4_scores.score`'s measures, with OWA."""
    out = {"smape": scores["smape_mean"], "mase": scores["mase_mean"]}
    out["owa"] = float(owa(out["smape"], out["mase"], naive2["smape_mean"], naive2["mase_mean"]))
    for key in ("msis", "coverage"):
        if key in scores:
            out[key] = scores[f"{key}_mean"]
    return out


def read_training_series(cfg: GlobalDataConfig):
    from rnnkit.tasks.forecast.m4 import read_m4

    need = cfg.window + cfg.horizon + cfg.holdout
    try:
        return read_m4(cfg.m4, min_length=need)
    except DataError as exc:
        if f"at least {need}" not in str(exc):
            raise
        raise DataError(f"{exc} (a window of {cfg.window}, a horizon of {cfg.horizon} and {cfg.holdout} held-out "
                        f"points; a smaller --window or --holdout fits shorter series)") from None


def train_global(data_cfg: GlobalDataConfig, model_cfg: GlobalModelConfig, train_cfg: TrainConfig,
                 run_dir: str | Path, resume: bool = False, override: bool = False) -> dict:
    """Train the global forecaster (``ensemble`` members) on every series of ``data_cfg.m4`` in
    ``run_dir``, then write the run's record ``m4.json`` with the validation scores of the
    ensemble and of Naive2.  {"status": "finished" | "interrupted", ...}."""
    cfg = resolved(data_cfg)
    run_dir = Path(run_dir)
    folder = run_lock.acquire(run_dir) if distributed.is_main() else None
    try:
        return _train_global(cfg, data_cfg, model_cfg, train_cfg, run_dir, resume, override)
    finally:
        if folder is not None:
            run_lock.release(folder, every=True)


def _train_global(cfg: GlobalDataConfig, given: GlobalDataConfig, model_cfg: GlobalModelConfig,
                  train_cfg: TrainConfig, run_dir: Path, resume: bool, override: bool) -> dict:
    started = time.perf_counter()
    configs = (given, model_cfg, train_cfg)
    record = {"task": "forecast", "data": asdict(given), "model": asdict(model_cfg), "train": asdict(train_cfg)}
    if resume:
        if not (run_dir / "config.json").is_file():
            raise RnnkitError(f"{run_dir}: no run to resume (config.json is missing)")
        previous = read_record(run_dir)
        check_resume(previous, configs, override)
    elif (run_dir / "config.json").exists() or (run_dir / RECORD).exists():
        raise RnnkitError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run")
    data = read_training_series(cfg)
    digest = file_digest(cfg.m4)
    main = distributed.is_main()
    if main and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, configs, task="forecast")
        (run_dir / "data.json").write_text(json.dumps({"m4": str(cfg.m4), "sha256": digest, "ids": data.ids},
                                                      indent=1) + "\n", encoding="utf-8")
    elif resume:
        known = json.loads((run_dir / "data.json").read_text(encoding="utf-8"))
        if known["sha256"] != digest:
            raise DataError(f"{cfg.m4} is not the file this run was trained on (its sha256 differs from the "
                            f"run's data.json); resume with the same file")
        if main:
            log_resume(run_dir, changed_settings(previous, configs))
    n_points = sum(len(s) for s in data.series)
    logger.info(f"data: {cfg.m4}: {len(data)} series, {n_points:,} points; horizon {cfg.horizon}, period "
                f"{cfg.period}, window {cfg.window}, last {cfg.holdout} points of each series held out; model "
                f"{model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()} ({model_cfg.decoder} "
                f"decoder, {model_cfg.base} base, quantiles {model_cfg.quantiles}) x{cfg.ensemble}")
    members, scores = [], []
    task = GlobalForecastTask(data.series, cfg, model_cfg, train_cfg.seed)
    for i in range(cfg.ensemble):
        member_dir = run_dir / "members" / str(i)
        task.seed = seed = train_cfg.seed + i
        seed_everything(seed, train_cfg.deterministic)
        model = task.build_model()
        trainer = Trainer(model, task, replace(train_cfg, seed=seed), member_dir, record)
        if resume and (member_dir / "checkpoints" / "last").exists():  # a finished member returns at once
            logger.info(f"member {i}: resuming from {trainer.resume()} (step {trainer.step})")
        elif cfg.ensemble > 1:
            logger.info(f"member {i} of {cfg.ensemble}: seed {seed}")
        summary = trainer.fit()
        if summary["status"] == "interrupted":
            logger.info(f"interrupted by {summary.get('signal')} while training member {i} (checkpoints/last "
                        f"of {member_dir} holds step {summary['step']}); continue with --resume")
            return {"status": "interrupted", "signal": summary.get("signal")}
        if not main:
            continue
        where = member_dir / "checkpoints" / ("best" if (member_dir / "checkpoints" / "best").is_dir() else "last")
        load_weights(model, where, torch.device("cpu"))
        members.append(model.eval())
        scores.append(task.evaluate(model, "valid"))
        logger.info(f"member {i} validation (its best checkpoint): "
                    + ", ".join(f"{k} {v:.4f}" for k, v in scores[-1].items()))
    if not main:
        return {"status": "finished"}
    ens = task.scores_of(task.forecast(members), members[0].median)
    elapsed = time.perf_counter() - started
    result = {"task": "forecast", "kind": "global", "members": [f"members/{i}" for i in range(cfg.ensemble)],
              "member_valid": scores, "valid": ens,
              "naive2_valid": {k: task._naive2_scores[f"{k}_mean"] for k in ("smape", "mase")},
              "seconds": round(elapsed, 1)}
    (run_dir / RECORD).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    logger.info("validation (held-out last points): " + ", ".join(f"{k} {v:.4f}" for k, v in ens.items())
                + f"; Naive2 sMAPE {task._naive2_scores['smape_mean']:.3f} MASE {task._naive2_scores['mase_mean']:.3f}")
    logger.info(f"run folder {run_dir} ({elapsed:.0f} s)")
    return {**result, "status": "finished"}
