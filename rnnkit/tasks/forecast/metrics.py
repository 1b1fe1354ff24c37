"""Point-forecast accuracy: MAE, RMSE, MASE and sMAPE.

- MASE (Hyndman & Koehler 2006, "Another look at measures of forecast accuracy"): the MAE of
  the forecast divided by the in-sample MAE of the seasonal naive forecast with period m on
  the history before the forecast origin, ``mean_t |y_t - y_{t-m}|``; m = 1 for a
  non-seasonal series.  Below 1: better than the in-sample seasonal naive one-step forecast.
- sMAPE (Makridakis 1993; the M4 definition): ``100/h * sum 2|F - A| / (|A| + |F|)``, in
  percent, between 0 and 200; a term with A = F = 0 counts as 0.
"""

from __future__ import annotations

import numpy as np

from rnnkit.errors import DataError


def _pair(truth, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(truth, dtype=np.float64).ravel()
    f = np.asarray(forecast, dtype=np.float64).ravel()
    if a.shape != f.shape or a.size == 0:
        raise ValueError(f"truth and forecast must have the same nonzero length. Expected {a.size}, got {f.size}")
    return a, f


def mae(truth, forecast) -> float:
    a, f = _pair(truth, forecast)
    return float(np.mean(np.abs(a - f)))


def rmse(truth, forecast) -> float:
    a, f = _pair(truth, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2)))


def mase_scale(history, m: int) -> float:
    """In-sample MAE of the seasonal naive forecast, ``mean |y_t - y_{t-m}|`` (m >= 1)."""
    y = np.asarray(history, dtype=np.float64)
    m = max(int(m), 1)
    if len(y) <= m:
        raise DataError(f"MASE with m={m} needs more than {m} history points, got {len(y)}")
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    if scale == 0:
        raise DataError(f"MASE is undefined: the history is exactly periodic with period {m} (scale 0)")
    return scale


def mase(truth, forecast, history, m: int) -> float:
    return mae(truth, forecast) / mase_scale(history, m)


def smape(truth, forecast) -> float:
    a, f = _pair(truth, forecast)
    denom = np.abs(a) + np.abs(f)
    terms = np.where(denom > 0, 2 * np.abs(f - a) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * np.mean(terms))


def all_metrics(truth, forecast, history, m: int) -> dict[str, float]:
    return {"mae": mae(truth, forecast), "rmse": rmse(truth, forecast),
            "mase": mase(truth, forecast, history, m), "smape": smape(truth, forecast)}
