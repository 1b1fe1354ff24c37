"""Classical forecasting baselines: naive, seasonal naive, ARIMA and ETS (statsmodels).

- naive: the last value, repeated.  seasonal naive: the value one season earlier,
  ``F_{n+h} = y_{n+h-m(1+floor((h-1)/m))}`` (Hyndman & Athanasopoulos, FPP3 §5.2).
- ARIMA (Box & Jenkins 1976) by ``statsmodels.tsa.statespace.SARIMAX``, chosen on the
  history only, in the spirit of ``auto.arima`` (Hyndman & Khandakar 2008): the seasonal
  difference D = 1 when the STL seasonal strength is >= 0.64, the first difference d = 1 when
  a KPSS test rejects stationarity at 5%, then (p, q) in {0,1,2}² and (P, Q) in {0,1}² by AIC.
  Seasons longer than 24 steps (weekly, daily data with a yearly season) use Fourier terms
  as regressors instead of a seasonal ARIMA part (dynamic harmonic regression, FPP3 §10.5),
  their number K in {1, 2, 3, 4} chosen by AIC too.  With ``log`` it is fitted to log y.
- ETS (Hyndman, Koehler, Ord & Snyder 2008) by ``statsmodels.tsa.holtwinters``: trend
  none/additive/damped, season none/additive/multiplicative, chosen by AICc.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from typing import Optional

import numpy as np

logger = logging.getLogger(__name__)


def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    return np.full(horizon, float(history[-1]))


def seasonal_naive(history: np.ndarray, horizon: int, m: int) -> np.ndarray:
    m = max(int(m), 1)
    if len(history) < m:
        raise ValueError(f"seasonal naive needs at least one season of history. Expected >= {m} points, "
                         f"got {len(history)}")
    last = np.asarray(history[-m:], dtype=np.float64)
    return np.array([last[h % m] for h in range(horizon)])


def _statsmodels():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        raise ImportError("the ARIMA and ETS baselines need statsmodels (pip install 'rnnkit[forecast]')") from None


def fourier_terms(t: np.ndarray, m: float, k: int) -> np.ndarray:
    """sin/cos(2 pi j t / m), j = 1..k: (len(t), 2k)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    j = np.arange(1, k + 1)[None, :]
    return np.concatenate([np.sin(2 * np.pi * j * t / m), np.cos(2 * np.pi * j * t / m)], axis=1)


def seasonal_strength(y: np.ndarray, m: int) -> float:
    """Wang, Smith & Hyndman (2006): max(0, 1 - Var(R) / Var(S + R)) of an STL decomposition."""
    from statsmodels.tsa.seasonal import STL

    fit = STL(y, period=m, robust=True).fit()
    resid, seas = fit.resid, fit.seasonal
    return float(max(0.0, 1 - np.var(resid) / max(np.var(seas + resid), 1e-12)))


def _needs_difference(y: np.ndarray) -> bool:
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(kpss(y, regression="c", nlags="auto")[1] < 0.05)


def arima(history: np.ndarray, horizon: int, m: int, log: bool = False,
          max_order: int = 2) -> tuple[np.ndarray, str]:
    """Forecast ``horizon`` steps with an ARIMA chosen by AIC on ``history``, p and q up to
    ``max_order`` (P and Q up to min(1, max_order)); returns the forecast and a description
    of the chosen model."""
    _statsmodels()
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = np.log(history) if log else np.asarray(history, dtype=np.float64)
    n = len(y)
    seasonal = m > 1 and n >= 3 * m
    use_fourier = seasonal and m > 24
    D = 1 if seasonal and not use_fourier and seasonal_strength(y, m) >= 0.64 else 0
    base = y[m:] - y[:-m] if D else y
    exog_all: Optional[np.ndarray] = None
    K = 0
    if use_fourier:
        t = np.arange(n + horizon)

        def fit_k(k):
            X = fourier_terms(t, m, k)
            return _fit(SARIMAX, y, X[:n], (1, 1 if _needs_difference(y - _project(y, X[:n])) else 0, 1),
                        (0, 0, 0, 0))

        scores = {k: fit_k(k) for k in (1, 2, 3, 4) if 2 * k < m}
        scores = {k: r for k, r in scores.items() if r is not None}
        K = min(scores, key=lambda k: scores[k].aic) if scores else 1
        exog_all = fourier_terms(t, m, K)
        base = y - _project(y, exog_all[:n])
    d = 1 if _needs_difference(base) else 0
    exog = exog_all[:n] if exog_all is not None else None
    best, best_spec = None, None
    small = range(min(1, max_order) + 1)
    seasonal_grid = ([(P, D, Q, m) for P in small for Q in small] if (seasonal and not use_fourier)
                     else [(0, 0, 0, 0)])
    for p, q in itertools.product(range(max_order + 1), range(max_order + 1)):
        for sorder in seasonal_grid:
            res = _fit(SARIMAX, y, exog, (p, d, q), sorder)
            if res is not None and (best is None or res.aic < best.aic):
                best, best_spec = res, ((p, d, q), sorder)
    if best is None:
        raise RuntimeError("no ARIMA model could be fitted to this history")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        future = exog_all[n:] if exog_all is not None else None
        out = np.asarray(best.forecast(horizon, exog=future), dtype=np.float64)
    (p, d, q), (P, D, Q, s) = best_spec
    desc = f"ARIMA({p},{d},{q})" + (f"({P},{D},{Q})[{s}]" if s else "") + (f"+Fourier(K={K}, m={m})" if K else "")
    desc += " on log y" if log else ""
    return (np.exp(out) if log else out), desc


def _project(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Least-squares fit of y on [1, X] (the seasonal part the Fourier terms explain)."""
    A = np.concatenate([np.ones((len(y), 1)), X], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return A[:, 1:] @ coef[1:]


def _fit(SARIMAX, y, exog, order, seasonal_order):
    d = order[1] + seasonal_order[1]
    # SARIMAX applies the trend polynomial to the differenced series: "c" is a mean (d = 0) or
    # a drift (d = 1, a linear trend in levels); after two differences no constant.
    trend = "c" if d <= 1 else "n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = SARIMAX(y, exog=exog, order=order, seasonal_order=seasonal_order, trend=trend).fit(disp=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
    return res if np.isfinite(res.aic) else None


def ets(history: np.ndarray, horizon: int, m: int) -> tuple[np.ndarray, str]:
    """Forecast with the Holt-Winters/ETS model of lowest AICc on ``history``."""
    _statsmodels()
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = np.asarray(history, dtype=np.float64)
    positive = bool((y > 0).all())
    seasons: list[Optional[str]] = [None]
    if m > 1 and len(y) >= 2 * m + 2:
        seasons += ["add"] + (["mul"] if positive else [])
    init = "estimated" if m <= 24 else "heuristic"  # hundreds of initial states: estimate too slow
    best, best_desc = None, ""
    for (trend, damped), season in itertools.product([(None, False), ("add", False), ("add", True)], seasons):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = ExponentialSmoothing(y, trend=trend, damped_trend=damped, seasonal=season,
                                           seasonal_periods=m if season else None,
                                           initialization_method=init).fit()
            except (np.linalg.LinAlgError, ValueError):
                continue
        score = res.aicc
        if np.isfinite(score) and (best is None or score < best.aicc):
            best = res
            best_desc = (f"ETS(trend={'damped ' if damped else ''}{trend or 'none'}, "
                         f"season={season or 'none'}{f', m={m}' if season else ''})")
    if best is None:
        raise RuntimeError("no ETS model could be fitted to this history")
    return np.asarray(best.forecast(horizon), dtype=np.float64), best_desc


def run_baselines(history: np.ndarray, horizon: int, m: int, log: bool = False,
                  names=("naive", "seasonal_naive", "arima", "ets")) -> dict[str, dict]:
    """{name: {"forecast": (H,), "model": description, "seconds": fit time}}, each fitted model
    logged.  A baseline that cannot be fitted (or statsmodels missing) is logged with its error
    and left out."""
    out: dict[str, dict] = {}
    for name in names:
        start = time.perf_counter()
        try:
            if name == "naive":
                forecast, desc = naive(history, horizon), "last value"
            elif name == "seasonal_naive":
                forecast, desc = seasonal_naive(history, horizon, m), f"m={max(m, 1)}"
            elif name == "arima":
                forecast, desc = arima(history, horizon, m, log)
            elif name == "ets":
                forecast, desc = ets(history, horizon, m)
            else:
                raise ValueError(f"unknown baseline {name!r}")
        except (ImportError, RuntimeError) as exc:
            logger.info(f"baseline {name} skipped: {exc}")
            continue
        out[name] = {"forecast": forecast, "model": desc, "seconds": time.perf_counter() - start}
        logger.info(f"baseline {name}: {desc} ({out[name]['seconds']:.1f} s)")
    return out
