"""Autoregressive time-series forecasting: predict the next value, feed it back, predict again.

The model reads a window of the last ``window`` points, each step's input being
``[z_t, calendar(t+1)]`` (the transformed value and the calendar covariates of the step it
leads to, known in advance), through a stacked rnnkit RNN/LSTM/GRU, and maps the last
hidden state to the next ``k`` values:

- one-step (k = 1), trained on every window of the training part; forecasts of H steps come
  from the *autoregressive rollout*: append the prediction to the window, slide, predict again;
- direct multi-horizon (k = H, ``direct=True``): all H values from one pass (the "MIMO"
  strategy of Ben Taieb et al. 2012); longer horizons repeat it block by block;
- with ``local_level`` each window is read relative to the mean of its values, and that level
  is added back to the outputs, so the network learns the shape of what follows a window and
  not its absolute level: the per-window normalization that Hewamalage, Bergmeir & Bandara
  (2021) recommend for RNN forecasters of series with a trend;
- a Gaussian head (Nix & Weigend 1994) gives a mean and a log-variance per step, trained by
  the Gaussian negative log-likelihood.  Prediction intervals of a rollout come from
  *sample paths* (as in DeepAR, Salinas et al. 2020): each path draws z ~ N(mu, sigma^2) at
  every step and feeds the draw back, so the spread of later steps includes the uncertainty
  of earlier ones; the intervals are empirical quantiles over the paths.  The point forecast
  is the rollout that feeds back the means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.models import LAYERS
from rnnkit.settings import MAX_LAYERS, MAX_UNITS, setting
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice

HEADS = ("gaussian", "point")


@dataclass
class ForecastModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    hidden_size: int = setting(32, "hidden units per layer", ge=1, le=MAX_UNITS)
    num_layers: int = setting(1, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    dropout: float = setting(0.0, "between stacked layers", ge=0, lt=1)
    head: str = setting("gaussian", "gaussian (mean + log-variance, NLL loss) | point (mean, MSE loss)",
                        choices=HEADS)
    direct: bool = setting(False, "predict all horizon steps at once instead of one step")
    local_level: bool = setting(False, "read each window relative to its own mean value (added back to the output)")


@dataclass
class ForecastTrainConfig(TrainConfig):
    """TrainConfig with the forecasting task's defaults (the helps are TrainConfig's)."""
    epochs: int = 200
    early_stop: int = 20
    lr: float = 3e-3
    log_every: int = 50
    progress: bool = False


class Forecaster(nn.Module):
    """Window -> rnnkit RNN/LSTM/GRU -> linear head on the last hidden state.

    Inputs: x (T, B, F), time first.  Outputs: mean (B, K) and log-variance (B, K) (None for
    the point head), K = ``outputs``.
    """

    def __init__(self, input_size: int, outputs: int, cfg: ForecastModelConfig) -> None:
        super().__init__()
        if cfg.cell not in LAYERS:
            raise ValueError(f"cell must be one of {sorted(LAYERS)}, got {cfg.cell!r}")
        if cfg.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {cfg.head!r}")
        self.cfg, self.outputs = cfg, outputs
        self.rnn = LAYERS[cfg.cell](input_size, cfg.hidden_size, num_layers=cfg.num_layers,
                                    dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden_size, outputs * (2 if cfg.head == "gaussian" else 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        if x.dim() != 3 or x.size(-1) != self.rnn.input_size:
            raise ValueError(f"expected input (T, B, {self.rnn.input_size}), got {tuple(x.shape)}")
        level = None
        if self.cfg.local_level:  # value channel 0 relative to the window's mean (Hewamalage et al. 2021)
            level = x[:, :, 0].mean(0)  # (B,)
            x = torch.cat([(x[:, :, 0] - level).unsqueeze(-1), x[:, :, 1:]], -1)
        out, _ = self.rnn(x)  # (T, B, H)
        y = self.head(out[-1])  # (B, K) or (B, 2K)
        if self.cfg.head == "point":
            mean, log_var = y, None
        else:
            mean, log_var = y.chunk(2, dim=-1)  # (B, K) each
            log_var = log_var.clamp(-12.0, 8.0)
        if level is not None:
            mean = mean + level.unsqueeze(-1)
        return mean, log_var


def forecast_loss(mean: Tensor, log_var: Optional[Tensor], target: Tensor) -> Tensor:
    """Gaussian NLL ``0.5 (log 2 pi + log s^2 + (y - mu)^2 / s^2)`` (mean over entries), or the
    mean squared error for the point head."""
    if log_var is None:
        return ((mean - target) ** 2).mean()
    return 0.5 * (math.log(2 * math.pi) + log_var + (target - mean) ** 2 * torch.exp(-log_var)).mean()


def step_inputs(z: np.ndarray, calendar_next: np.ndarray) -> np.ndarray:
    """Per-step inputs ``[z_t, calendar(t+1)]`` (N, 1+K) from z (N,) and calendar (N, K) of
    the dates t+1."""
    return np.concatenate([np.asarray(z, np.float64)[:, None], calendar_next], axis=1)


@torch.no_grad()
def rollout(models: list[Forecaster], inputs: np.ndarray, calendar_future: np.ndarray, horizon: int,
            window: int, samples: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Forecast ``horizon`` steps in the model's (transformed) scale.

    inputs (N, F): the history's step inputs (the last ``window`` rows are read);
    calendar_future (horizon, K): the calendar of the dates after each forecast step (the
    input row of forecast step h is ``[z_hat_h, calendar_future[h]]``).
    With several models (an ensemble) each step averages their means (and draws from their
    mixture).  Returns the mean path (H,) and ``samples`` sample paths (S, H) (empty for the
    point head or samples=0).
    """
    first = models[0]
    device = next(first.parameters()).device
    gaussian = first.cfg.head == "gaussian" and samples > 0
    paths = 1 + (samples if gaussian else 0)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    buf = torch.as_tensor(inputs[-window:], dtype=torch.float32)  # (W, F)
    buf = buf.unsqueeze(1).repeat(1, paths, 1).to(device)  # (W, P, F)
    cal = torch.as_tensor(calendar_future, dtype=torch.float32).to(device)  # (H, K)
    for model in models:
        model.eval()
    out = torch.zeros(paths, 0, device=device)
    while out.size(1) < horizon:
        means, stds = [], []
        for model in models:
            mean, log_var = model(buf)  # (P, k)
            means.append(mean)
            stds.append(torch.exp(0.5 * log_var) if log_var is not None else torch.zeros_like(mean))
        mean = torch.stack(means).mean(0)  # (P, k)
        step = mean.clone()
        if gaussian:
            pick = torch.randint(len(models), (paths - 1,), generator=generator).to(device)
            mu = torch.stack(means)[pick, torch.arange(1, paths, device=device)]  # (P-1, k)
            sd = torch.stack(stds)[pick, torch.arange(1, paths, device=device)]
            noise = torch.randn(mu.shape, generator=generator).to(device)
            step[1:] = mu + sd * noise
        k = min(step.size(1), horizon - out.size(1))
        step = step[:, :k]
        h0 = out.size(1)
        rows = torch.cat([step.T.unsqueeze(-1), cal[h0:h0 + k].unsqueeze(1).expand(k, paths, -1)], -1)  # (k, P, F)
        buf = torch.cat([buf, rows], 0)[-window:]
        out = torch.cat([out, step], 1)  # (P, h0 + k)
    out = out.cpu().double().numpy()
    return out[0], out[1:]


class ForecastTask:
    """Forecasting as the Trainer sees it: shuffled mini-batches of (window, targets) pairs
    from the training part; validation loss on the pairs whose targets lie in the
    validation part (their inputs may reach back into the training part, never forward)."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                 model_cfg: ForecastModelConfig, batch_size: int, seed: int, meta: dict) -> None:
        if len(train[0]) == 0:
            raise ValueError("no training windows: the training part is shorter than window + horizon")
        self.X = torch.as_tensor(train[0], dtype=torch.float32).transpose(0, 1)  # (W, N, F)
        self.Y = torch.as_tensor(train[1], dtype=torch.float32)  # (N, k)
        self.vX = torch.as_tensor(valid[0], dtype=torch.float32).transpose(0, 1)
        self.vY = torch.as_tensor(valid[1], dtype=torch.float32)
        self.model_cfg, self.batch_size, self.seed, self._meta = model_cfg, batch_size, seed, meta

    def build_model(self) -> Forecaster:
        return Forecaster(self.X.size(-1), self.Y.size(-1), self.model_cfg)

    def train_batches(self, epoch: int):
        generator = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        order = torch.randperm(self.Y.size(0), generator=generator)
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def shard(self, batch: Tensor, rank: int, world: int) -> Optional[Tensor]:
        """Rank's block of a batch's windows (torchrun); None when a short batch has none left."""
        check_global_batch(self.batch_size, world, "windows")
        part = batch[shard_slice(len(batch), rank, world)]
        return part if len(part) else None

    def train_step(self, model: Forecaster, batch: Tensor, state):
        device = next(model.parameters()).device
        x, y = self.X[:, batch].to(device), self.Y[batch].to(device)  # (W, B, F), (B, k)
        mean, log_var = model(x)
        return forecast_loss(mean, log_var, y), int(y.numel()), None

    @torch.no_grad()
    def evaluate(self, model: Forecaster, split: str) -> dict[str, float]:
        """One-step (or direct) loss and MSE in the transformed scale on the validation pairs
        (on the training pairs when there is no validation part)."""
        was_training = model.training
        model.eval()
        X, Y = (self.vX, self.vY) if self.vY.numel() else (self.X, self.Y)
        device = next(model.parameters()).device
        mean, log_var = model(X.to(device))
        metrics = {"loss": float(forecast_loss(mean, log_var, Y.to(device))),
                   "mse": float(((mean - Y.to(device)) ** 2).mean())}
        model.train(was_training)
        return metrics

    def meta(self) -> dict:
        return {"task": "forecast", "model": asdict(self.model_cfg), **self._meta}
