"""One recurrent forecaster for many series at once (a *global* model).

Recurrent forecasters beat the statistical methods when they learn across many series
rather than one (Smyl 2020, "A hybrid method of exponential smoothing and recurrent neural
networks for time series forecasting", IJF 36(1), the M4 winner; Salinas, Flunkert,
Gasthaus & Januschowski 2020, "DeepAR", IJF 36(3); Hewamalage, Bergmeir & Bandara 2021,
"Recurrent neural networks for time series forecasting: current status and future
directions", IJF 37(1)).  This module holds the model and its training windows:

- **windows**: an input window of ``window`` points ending at an origin and the ``horizon``
  points after it, drawn from every series (every origin whose targets lie inside the
  training part of its series: no window reads or predicts a held-out point);
- **per-window normalization**: each window is divided by its *level*, the mean of its
  last ``period`` inputs (one season, so the level does not depend on the phase), and, with
  ``log``, logged: the network sees ``z = log(y / level)``, the shape of the series around
  its current level, which is what series of very different scales share (Hewamalage et al.
  2021, section 4.2; Smyl 2020 normalizes by the Holt-Winters level the same way);
- **seasonal position**: each step's input carries the position in the season of the step it
  leads to (hour of day for hourly data), counted from the series' first observation, as a
  one-hot vector or a learned embedding;
- **multi-horizon output** by one of two decoders:
  ``direct`` maps the last hidden state to all ``horizon`` steps at once (MIMO; Ben Taieb,
  Bontempi, Atiya & Sorjamaa 2012); ``rollout`` predicts one step ahead at every step
  (teacher-forced in training, on every step after the first season) and forecasts by
  feeding its median back, step by step, keeping the recurrent state (DeepAR's decoder);
- optionally (direct decoder) a **linear highway** from the last ``highway`` inputs to every
  output, in parallel with the network: the autoregressive component of LSTNet (Lai, Chang,
  Yang & Liu 2018, "Modeling long- and short-term temporal patterns with deep neural
  networks", SIGIR), which gives the outputs the values one week back (and any linear
  combination of the window) without asking the recurrent state to carry them that far.
  Over the seasonal naive base it reads the window's seasonal differences ``z_t - z_{t-m}``,
  so that it adds nothing to a series that repeats its season exactly (the weekly naive
  forecast is such a combination: minus the sum of the daily differences of the last six
  days at the same hour);
- **quantile outputs** trained by the pinball loss (Koenker & Bassett 1978), the mean over
  quantiles ``q`` of ``max(q (y - f), (q - 1)(y - f))``; the median is the point forecast and
  an outer pair of quantiles the prediction interval (the 2.5% and 97.5% quantiles give the
  95% interval that M4 scored by MSIS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.errors import DataError
from rnnkit.models import LAYERS
from rnnkit.settings import MAX_LAYERS, MAX_LENGTH, MAX_UNITS, setting

DECODERS = ("direct", "rollout")
SEASON_INPUTS = ("onehot", "embedding", "none")
BASES = ("snaive", "none")
WEIGHTINGS = ("equal", "owa")
QUANTILES = "0.025,0.5,0.975"


def parse_quantiles(text: str) -> tuple[float, ...]:
    """"0.025,0.5,0.975" -> (0.025, 0.5, 0.975): sorted, distinct, strictly between 0 and 1,
    with the median among them (it is the point forecast)."""
    try:
        values = tuple(sorted({float(v) for v in str(text).split(",") if v.strip()}))
    except ValueError:
        raise DataError(f"quantiles must be comma-separated numbers like {QUANTILES!r}, got {text!r}") from None
    if not values or not all(0 < q < 1 for q in values):
        raise DataError(f"quantiles must lie strictly between 0 and 1, got {text!r}")
    if 0.5 not in values:
        raise DataError(f"quantiles must include the median 0.5 (the point forecast), got {text!r}")
    return values


@dataclass
class GlobalModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    hidden_size: int = setting(64, "hidden units per layer", ge=1, le=MAX_UNITS)
    num_layers: int = setting(2, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    dropout: float = setting(0.0, "between stacked layers", ge=0, lt=1)
    decoder: str = setting("direct", "direct (all horizon steps from the last state) | rollout (one step at a "
                           "time, the median fed back)", choices=DECODERS)
    season_input: str = setting("onehot", "seasonal position input: onehot | embedding | none",
                                choices=SEASON_INPUTS)
    embedding_size: int = setting(8, "size of the seasonal position embedding", ge=1, le=MAX_UNITS)
    base: str = setting("snaive", "snaive: the network predicts the correction to the seasonal naive forecast "
                        "(the last season repeated, in the normalized scale) | none: the values themselves",
                        choices=BASES)
    highway: int = setting(0, "direct decoder: also map the last N normalized inputs (their seasonal differences "
                           "over the snaive base) linearly to every output (LSTNet's autoregressive highway; "
                           "0: none)", ge=0, le=MAX_LENGTH)
    rnn_window: int = setting(0, "direct decoder: the network reads only the last N steps of the window (the "
                              "highway and the base still see all of it; 0: the whole window)",
                              ge=0, le=MAX_LENGTH)
    quantiles: str = setting(QUANTILES, "quantiles the model predicts (pinball loss); the median is the "
                             "forecast, the outermost pair the interval")


class GlobalForecaster(nn.Module):
    """Normalized window -> stacked rnnkit RNN/LSTM/GRU -> quantiles of the future.

    ``forward(z, season)``: z (T, B) normalized values, season (T, B) integer positions in the
    season of the step each input leads to.  Returns (direct) (B, horizon, Q) from the last
    step, or (rollout) (T, B, Q), the quantiles of the next value at every step, with the
    final recurrent state.
    """

    def __init__(self, cfg: GlobalModelConfig, horizon: int, period: int) -> None:
        super().__init__()
        if cfg.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {cfg.decoder!r}")
        if cfg.season_input not in SEASON_INPUTS:
            raise ValueError(f"season_input must be one of {SEASON_INPUTS}, got {cfg.season_input!r}")
        self.cfg, self.horizon, self.period = cfg, int(horizon), max(int(period), 1)
        self.quantiles = parse_quantiles(cfg.quantiles)
        self.register_buffer("q", torch.tensor(self.quantiles), persistent=False)
        season_size = {"onehot": self.period, "embedding": cfg.embedding_size, "none": 0}[cfg.season_input]
        if cfg.season_input == "embedding":
            self.season_embedding = nn.Embedding(self.period, cfg.embedding_size)
        if cfg.rnn_window and cfg.decoder != "direct":
            raise ValueError("rnn_window shortens what the direct decoder's network reads; the rollout decoder "
                             "reads every step (use --rnn-window 0)")
        self.rnn = LAYERS[cfg.cell](1 + season_size, cfg.hidden_size, num_layers=cfg.num_layers,
                                    dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        steps = self.horizon if cfg.decoder == "direct" else 1
        self.head = nn.Linear(cfg.hidden_size, steps * len(self.quantiles))
        if cfg.highway and cfg.decoder != "direct":
            raise ValueError("highway maps the input window to the direct decoder's outputs; the rollout decoder "
                             "has none (use --decoder direct, or --highway 0)")
        if cfg.highway:
            self.highway = nn.Linear(cfg.highway, steps * len(self.quantiles))
            nn.init.zeros_(self.highway.weight)  # it starts from the base alone and learns what to add
            nn.init.zeros_(self.highway.bias)

    def highway_inputs(self, z: Tensor) -> Tensor:
        """(B, highway): the last ``highway`` inputs or, over the seasonal naive base, their
        seasonal differences ``z_t - z_{t-m}``, which vanish on a series that repeats its
        season exactly (there the base is already right, and the highway adds nothing)."""
        n = self.cfg.highway
        if self.cfg.base == "snaive":
            return (z[-n:] - z[-n - self.period:z.size(0) - self.period]).T
        return z[-n:].T

    def step_inputs(self, z: Tensor, season: Tensor) -> Tensor:
        parts = [z.unsqueeze(-1)]
        if self.cfg.season_input == "onehot":
            parts.append(nn.functional.one_hot(season, self.period).to(z.dtype))
        elif self.cfg.season_input == "embedding":
            parts.append(self.season_embedding(season).to(z.dtype))
        return torch.cat(parts, -1)

    def forward(self, z: Tensor, season: Tensor, state=None, history: Optional[Tensor] = None):
        if z.dim() != 2 or season.shape != z.shape:
            raise ValueError(f"expected z and season of the same shape (T, B), got {tuple(z.shape)} "
                             f"and {tuple(season.shape)}")
        inputs = self.step_inputs(z, season)
        if self.cfg.rnn_window and self.cfg.decoder == "direct":
            inputs = inputs[-self.cfg.rnn_window:]
        out, state = self.rnn(inputs, state)
        if self.cfg.decoder == "direct":
            pred = self.head(out[-1])
            if self.cfg.highway:
                need = self.cfg.highway + (self.period if self.cfg.base == "snaive" else 0)
                if z.size(0) < need:
                    raise ValueError(f"the highway reads the last {self.cfg.highway} inputs"
                                     f"{' and their seasonal differences' if need > self.cfg.highway else ''}; "
                                     f"needs a window of {need}, got {z.size(0)}")
                pred = pred + self.highway(self.highway_inputs(z))
            pred = pred.view(z.size(1), self.horizon, len(self.quantiles))
            if self.cfg.base == "snaive":  # the last season, repeated over the horizon
                if z.size(0) < self.period:
                    raise ValueError(f"the seasonal naive base needs a window of at least one season "
                                     f"({self.period} steps), got {z.size(0)}")
                reps = -(-self.horizon // self.period)
                pred = pred + z[-self.period:].T.repeat(1, reps)[:, :self.horizon, None]
            return pred, state
        pred = self.head(out)  # (T, B, Q): step s predicts the value after it
        if self.cfg.base == "snaive":  # step s's base is the value one season before step s + 1
            base = torch.zeros_like(z)
            if history is not None:
                z = torch.cat([history, z], 0)
            k = z.size(0) - base.size(0)  # steps of history before this call's inputs
            start = max(self.period - 1 - k, 0)
            if start < base.size(0):
                base[start:] = z[k + start + 1 - self.period:z.size(0) + 1 - self.period]
            pred = pred + base.unsqueeze(-1)
        return pred, state

    @property
    def median(self) -> int:
        return self.quantiles.index(0.5)

    @torch.no_grad()
    def predict(self, z: Tensor, season: Tensor, future_season: Tensor) -> Tensor:
        """Quantiles of the ``horizon`` steps after the window: (B, horizon, Q), normalized.

        z, season: the window (T, B); future_season (horizon, B): the positions of the steps
        after each forecast step (the input of step h leads to step h + 1)."""
        if self.cfg.decoder == "direct":
            return self(z, season)[0]
        out, state = self(z, season)
        steps = [out[-1]]  # (B, Q): the first future value
        seen = z[-self.period:]  # the seasonal naive base of the next step reads back one season
        for h in range(1, self.horizon):
            nxt = steps[-1][:, self.median].unsqueeze(0)  # (1, B) the median fed back
            out, state = self(nxt, future_season[h - 1:h], state, history=seen)
            seen = torch.cat([seen, nxt], 0)[-self.period:]
            steps.append(out[-1])
        return torch.stack(steps, 1)


def pinball_loss(pred: Tensor, target: Tensor, q: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Mean pinball (quantile) loss; pred (..., B, Q), target (..., B), q (Q,); ``weight`` (B,)
    weighs each window (its mean should be about 1)."""
    diff = target.unsqueeze(-1) - pred
    loss = torch.maximum(q * diff, (q - 1) * diff)
    if weight is not None:
        loss = loss * weight.unsqueeze(-1)
    return loss.mean()


class SeriesBank:
    """The series of a data set, padded into one matrix for fast window gathering.

    ``values`` (N, L) float64, NaN after each series' end; ``lengths`` (N,);
    ``fit_ends`` (N,): targets of training windows must end at or before it (the length
    minus the held-out part).  Windows are (series, origin) pairs; the origin is the index
    of the first forecast step.  ``held_out=None``: a bank to forecast from, not to train on
    (no training windows are checked for; forecasts read the last ``window`` points).
    """

    def __init__(self, series: list[np.ndarray], held_out: Optional[int], window: int, horizon: int, period: int,
                 log: bool = True, weighting: str = "equal") -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if not series:
            raise DataError("no series: expected at least one, got none")
        self.window, self.horizon, self.period, self.log = int(window), int(horizon), max(int(period), 1), log
        self.lengths = np.array([len(s) for s in series], dtype=np.int64)
        self.values = np.full((len(series), int(self.lengths.max())), np.nan)
        for i, s in enumerate(series):
            self.values[i, :len(s)] = s
        if log and np.nanmin(self.values) <= 0:
            i = int(np.nanargmin(np.nanmin(self.values, axis=1)))
            raise DataError(f"log normalization needs positive values; series {i} has "
                            f"{np.nanmin(self.values[i]):g} (train without --log)")
        self.fit_ends = self.lengths - int(held_out or 0)
        self.weighting = weighting
        if held_out is None:
            return
        short = np.flatnonzero(self.fit_ends - self.window - self.horizon < 0)
        if len(short):
            i = int(short[0])
            raise DataError(f"{len(short)} series are too short for a window of {self.window} and a horizon of "
                            f"{self.horizon} after holding out {held_out} points; series {i} has "
                            f"{self.lengths[i]} points, needs at least {self.window + self.horizon + held_out}")

        if weighting == "owa":
            self._owa_weights()

    def _owa_weights(self) -> None:
        """Per-series MASE scales of the training part, mean |y_t - y_{t-m}| (m = 1 when the
        part is shorter than two seasons), and the mean over series of ``level / scale``."""
        m = self.period
        self.scales = np.empty(len(self.lengths))
        ratios = np.empty(len(self.lengths))
        for i, end in enumerate(self.fit_ends):
            y = self.values[i, :end]
            lag = m if end > 2 * m else 1
            self.scales[i] = max(float(np.mean(np.abs(y[lag:] - y[:-lag]))), 1e-12 * max(abs(y).max(), 1e-300))
            ratios[i] = float(np.mean(y)) / self.scales[i]
        self.mean_ratio = float(np.mean(ratios))

    def window_weights(self, rows: np.ndarray, level: np.ndarray) -> np.ndarray:
        """OWA weighting of each window's loss: half for sMAPE, which the normalized error
        already measures, and half for MASE, whose error is the normalized one times
        ``level / scale`` (relative to its mean over series; capped at 50 times it, against a
        series that is constant but for one step)."""
        r = np.minimum(level / self.scales[rows] / self.mean_ratio, 50.0)
        return 0.5 * (1.0 + r)

    def training_origins(self, rng: np.random.Generator, per_series: int) -> np.ndarray:
        """``per_series`` random (series, origin) pairs per series, (N * per_series, 2); origins
        from ``window`` to ``fit_end - horizon`` (targets never pass the held-out part)."""
        n = len(self.lengths)
        lo = np.full(n, self.window)
        hi = self.fit_ends - self.horizon  # inclusive
        rows = np.repeat(np.arange(n), per_series)
        origins = lo[rows] + (rng.random(len(rows)) * (hi[rows] - lo[rows] + 1)).astype(np.int64)
        return np.stack([rows, origins], 1)

    def gather(self, rows: np.ndarray, origins: np.ndarray, with_targets: bool = True):
        """Normalized windows for (series, origin) pairs: z (W, B), season (W, B) of the step each
        input leads to, future_season (H, B), level (B,), the targets ``z`` (B, H) (NaN past a
        series' end) and the raw targets (B, H)."""
        idx = origins[:, None] + np.arange(-self.window, 0)[None, :]  # (B, W)
        x = self.values[rows[:, None], idx]
        if np.isnan(x).any():
            raise DataError("a window reaches before the start or past the end of its series")
        level = x[:, -self.period:].mean(1)  # (B,)
        season = (idx + 1) % self.period
        future = origins[:, None] + np.arange(self.horizon)[None, :]
        future_season = (future + 1) % self.period
        out = {"z": self.normalize(x, level).T, "season": season.T, "future_season": future_season.T,
               "level": level}
        if with_targets:
            if self.weighting == "owa":
                out["weight"] = self.window_weights(rows, level)
            y = np.full(future.shape, np.nan)
            inside = future < self.lengths[rows][:, None]
            y[inside] = self.values[np.broadcast_to(rows[:, None], future.shape)[inside], future[inside]]
            out["y"], out["target"] = y, self.normalize(y, level)
        return out

    def normalize(self, y: np.ndarray, level: np.ndarray) -> np.ndarray:
        r = y / level[:, None]
        return np.log(r) if self.log else r - 1.0

    def denormalize(self, z: np.ndarray, level: np.ndarray) -> np.ndarray:
        shape = (-1,) + (1,) * (z.ndim - 1)
        r = np.exp(z) if self.log else z + 1.0
        return r * level.reshape(shape)


def to_tensors(batch: dict, device) -> dict:
    out = {}
    for key, value in batch.items():
        dtype = torch.long if key in ("season", "future_season") else torch.float32
        out[key] = torch.as_tensor(np.asarray(value), dtype=dtype, device=device)
    return out


def window_loss(model: GlobalForecaster, t: dict) -> Tensor:
    """Pinball loss of one batch of windows (tensors from :func:`to_tensors`)."""
    if model.cfg.decoder == "direct":
        pred, _ = model(t["z"], t["season"])  # (B, H, Q)
        return pinball_loss(pred.transpose(0, 1), t["target"].T, model.q, t.get("weight"))
    # rollout: teacher-forced over the window and the future; each step predicts the next value
    z = torch.cat([t["z"], t["target"].T[:-1]], 0)  # (W + H - 1, B)
    season = torch.cat([t["season"], t["future_season"][:-1]], 0)
    pred, _ = model(z, season)  # (W + H - 1, B, Q)
    target = torch.cat([t["z"][1:], t["target"].T], 0)  # the next value of every step
    start = model.period - 1  # after the first season: the level is known by then
    return pinball_loss(pred[start:], target[start:], model.q, t.get("weight"))


@torch.no_grad()
def forecast_windows(models: list[GlobalForecaster], bank: SeriesBank, rows: np.ndarray, origins: np.ndarray,
                     batch_size: int = 512, device: Optional[torch.device] = None) -> np.ndarray:
    """Quantile forecasts (B, horizon, Q) in the data's scale from the windows ending before
    ``origins``; an ensemble averages its members' quantiles (in the normalized scale)."""
    device = device or next(models[0].parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        b = bank.gather(rows[start:start + batch_size], origins[start:start + batch_size], with_targets=False)
        t = to_tensors(b, device)
        preds = [m.eval().predict(t["z"], t["season"], t["future_season"]) for m in models]
        z = torch.stack(preds).mean(0).double().cpu().numpy()  # (B, H, Q)
        z = np.sort(z, axis=-1)  # quantiles do not cross
        out.append(bank.denormalize(z, b["level"]))
    return np.concatenate(out, 0)
