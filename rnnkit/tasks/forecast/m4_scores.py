"""The M4 competition's accuracy measures and statistical benchmarks, as the competition defined
them: Makridakis, Spiliotis & Assimakopoulos (2020), "The M4 Competition: 100,000 time series
and 61 forecasting methods", International Journal of Forecasting 36(1), 54-74 (M4 below), and
the competition's published R code, ``Benchmarks and Evaluation.R`` (Mcompetitions/M4-methods),
whose details are re-derived here.

Measures (per series, over the h steps of the horizon; then averaged over the series):

- sMAPE ``mean 200 |F - A| / (|A| + |F|)`` (percent); MASE (Hyndman & Koehler 2006) the MAE of
  the forecast over ``mean |y_t - y_{t-m}|`` on the whole in-sample series: both are those of
  ``metrics.py`` (a term with A = F = 0 counts 0 there; M4's code would give NaN).
- MSIS (M4, after Gneiting & Raftery 2007): the interval score of a (1 - alpha) interval
  ``(U - L) + 2/alpha (L - A)[A < L] + 2/alpha (A - U)[A > U]``, averaged over the horizon and
  scaled like MASE.
- OWA: ``(sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2``, on the dataset means.

Benchmarks: M4 deseasonalizes a series that passes a 90% autocorrelation test for seasonality
with a classical multiplicative decomposition, forecasts the adjusted series and multiplies the
forecast back by the seasonal indices (Naive and sNaive excepted).  SES, Holt and Damped are R's
``forecast::ses``/``holt``: ETS(A,N,N), ETS(A,A,N) and ETS(A,Ad,N) with their smoothing
parameters and initial states estimated together by minimizing the in-sample MSE (Hyndman,
Koehler, Ord & Snyder 2008) with R's Nelder-Mead, re-implemented here (``fit_ets``,
``nelder_mead``): where that optimizer stops decides M4's published Holt, Damped and Comb
figures, which a better optimizer (statsforecast's port of ``ets``) misses by 6 to 46%.
The automatic ETS and ARIMA (``auto_ets``, ``auto_arima``) are statsforecast's.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from rnnkit.errors import DataError
from rnnkit.extras import require
from rnnkit.tasks.forecast.metrics import mase, mase_scale, smape

logger = logging.getLogger(__name__)

__all__ = ["BENCHMARKS", "M4_STATISTICAL", "PUBLISHED_HOURLY", "PUBLISHED_HOURLY_MSIS", "PUBLISHED_HOURLY_OWA",
           "smape", "mase", "msis", "coverage", "score", "owa", "owa_per_series", "seasonality_test",
           "seasonal_indices", "deseasonalize", "naive", "snaive", "naive2", "ses", "holt", "damped", "theta", "comb",
           "auto_ets", "auto_arima", "benchmark_forecasts", "run_benchmarks", "benchmark_table", "fit_ets", "EtsFit",
           "nelder_mead"]

BENCHMARKS = ("naive", "snaive", "naive2", "ses", "holt", "damped", "theta", "comb", "auto_ets", "auto_arima")
# the eight of M4's benchmark code: about 30 s on M4 Hourly with 2 workers, where auto_ets takes
# about 5 minutes and auto_arima about 30
M4_STATISTICAL = BENCHMARKS[:8]
# the benchmarks fitted by statsforecast (the others need numpy only)
NEEDS_STATSFORECAST = ("auto_ets", "auto_arima")

# M4 Hourly (414 series, h = 48, m = 24), (sMAPE, MASE) of the statistical benchmarks as
# published in the M4 results: Makridakis, Spiliotis & Assimakopoulos (2020) and the
# competition's "Evaluation and Ranks" table (Mcompetitions/M4-methods).
PUBLISHED_HOURLY = {
    "naive2": (18.383, 2.395),
    "snaive": (13.912, 1.193),
    "ses": (18.094, 2.385),
    "theta": (18.138, 2.455),
    "damped": (19.265, 2.956),
    "comb": (22.053, 4.582),
}
# The same sources, M4 Hourly: MSIS of the 95% intervals (Smyl's ES-RNN, and the ARIMA and ETS
# standards for comparison) and OWA (the sNaive and the machine-learning benchmarks, Smyl's
# winning ES-RNN and the best hourly submission, Doornik, Castle & Hendry).
PUBLISHED_HOURLY_MSIS = {"smyl": 7.928, "arima": 7.538, "ets": 17.487}
PUBLISHED_HOURLY_OWA = {"snaive": 0.627, "rnn": 1.036, "mlp": 0.921, "smyl": 0.440, "doornik": 0.410}

SEASONALITY_TCRIT = 1.645  # M4's 90% test: |r_m| beyond 1.645 standard errors (two-sided level 10%)


# ---- measures ---------------------------------------------------------------------------------

def _interval(actual, lower, upper) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, lo, hi = (np.asarray(x, dtype=np.float64).ravel() for x in (actual, lower, upper))
    if not (a.shape == lo.shape == hi.shape) or a.size == 0:
        raise ValueError(f"actual, lower and upper must have the same nonzero length, got {a.size}, {lo.size} "
                         f"and {hi.size}")
    if np.any(lo > hi):
        k = int(np.flatnonzero(lo > hi)[0])
        raise ValueError(f"lower must not exceed upper; got lower {lo[k]} > upper {hi[k]} at step {k + 1}")
    return a, lo, hi


def msis(actual, lower, upper, insample, m: int, alpha: float = 0.05) -> float:
    """Mean scaled interval score of a (1 - alpha) prediction interval [lower, upper] (M4):
    ``mean_h[(U - L) + 2/alpha (L - A)[A < L] + 2/alpha (A - U)[A > U]] / mean_t |y_t - y_{t-m}|``,
    the scale being MASE's on the whole in-sample series."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    a, lo, hi = _interval(actual, lower, upper)
    penalty = (hi - lo) + 2 / alpha * (lo - a) * (a < lo) + 2 / alpha * (a - hi) * (a > hi)
    return float(np.mean(penalty)) / mase_scale(insample, m)


def coverage(actual, lower, upper) -> float:
    """The share of the horizon's actual values inside [lower, upper] (bounds included)."""
    a, lo, hi = _interval(actual, lower, upper)
    return float(np.mean((a >= lo) & (a <= hi)))


def score(actuals, forecasts, insamples: Sequence[np.ndarray], m: int, lower=None, upper=None,
          alpha: float = 0.05) -> dict:
    """Score N forecasts (N, h) of ``actuals`` (N, h) with M4's measures.

    Returns per-series arrays (N,) under "smape" and "mase", and, when the interval bounds
    ``lower`` and ``upper`` (N, h) are given, "msis" and "coverage"; each also as a dataset
    mean under "<name>_mean" (the mean over all series and steps, as M4 reports)."""
    a = np.asarray(actuals, dtype=np.float64)
    f = np.asarray(forecasts, dtype=np.float64)
    if a.ndim != 2 or a.shape != f.shape:
        raise ValueError(f"actuals and forecasts must both have shape (N, h); got {a.shape} and {f.shape}")
    if len(insamples) != len(a):
        raise ValueError(f"one in-sample series per forecast: expected {len(a)}, got {len(insamples)}")
    if (lower is None) != (upper is None):
        raise ValueError("give both lower and upper bounds, or neither")
    out: dict = {"smape": np.array([smape(a[i], f[i]) for i in range(len(a))])}
    try:
        scales = np.array([mase_scale(y, m) for y in insamples])
    except DataError as exc:
        bad = next(i for i, y in enumerate(insamples) if _scale_fails(y, m))
        raise DataError(f"series {bad} (0-based): {exc}") from None
    out["mase"] = np.mean(np.abs(a - f), axis=1) / scales
    if lower is not None:
        lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        if lo.shape != a.shape or hi.shape != a.shape:
            raise ValueError(f"lower and upper must have the shape of actuals {a.shape}; got {lo.shape} and "
                             f"{hi.shape}")
        out["msis"] = np.array([msis(a[i], lo[i], hi[i], insamples[i], m, alpha) for i in range(len(a))])
        out["coverage"] = np.array([coverage(a[i], lo[i], hi[i]) for i in range(len(a))])
    for key in list(out):
        out[f"{key}_mean"] = float(np.mean(out[key]))
    return out


def _scale_fails(y, m: int) -> bool:
    try:
        mase_scale(y, m)
    except DataError:
        return True
    return False


def owa(smape_mean: float, mase_mean: float, naive2_smape_mean: float, naive2_mase_mean: float) -> float:
    """Overall weighted average (M4): ``(sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2`` on
    the dataset means (M4 divides the means, not each series' ratios)."""
    if naive2_smape_mean <= 0 or naive2_mase_mean <= 0:
        raise ValueError(f"Naive2's means must be positive, got sMAPE {naive2_smape_mean} and MASE "
                         f"{naive2_mase_mean}")
    return 0.5 * (smape_mean / naive2_smape_mean + mase_mean / naive2_mase_mean)


def owa_per_series(smape, mase, naive2_smape, naive2_mase) -> np.ndarray:
    """OWA of each series against Naive2 on the same series (N,): the mean of the two ratios.
    A ratio over a Naive2 error of 0 is 1 when the method's error is 0 too, and NaN (undefined)
    otherwise; average with ``np.nanmean`` where that can happen.  Not M4's OWA, which divides
    the dataset means (``owa``): a per-series diagnostic."""
    def ratio(x, base):
        x, base = np.asarray(x, dtype=np.float64), np.asarray(base, dtype=np.float64)
        if x.shape != base.shape:
            raise ValueError(f"the method's and Naive2's errors must have the same shape, got {x.shape} and "
                             f"{base.shape}")
        safe = np.where(base > 0, base, 1.0)
        return np.where(base > 0, x / safe, np.where(x == 0, 1.0, np.nan))
    return 0.5 * (ratio(smape, naive2_smape) + ratio(mase, naive2_mase))


# ---- seasonality -------------------------------------------------------------------------------

def _acf(y: np.ndarray, nlags: int) -> np.ndarray:
    """The biased sample autocorrelations at lags 1..nlags, as R's ``acf``:
    ``r_k = sum_{t=1}^{n-k} (y_t - ybar)(y_{t+k} - ybar) / sum_t (y_t - ybar)^2``."""
    x = y - y.mean()
    c0 = float(x @ x)
    return np.array([float(x[: len(x) - k] @ x[k:]) / c0 for k in range(1, nlags + 1)])


def seasonality_test(y, m: int) -> bool:
    """M4's 90% test for seasonality of period ``m``: seasonal iff ``|r_m| > 1.645 sqrt((1 + 2
    sum_{k=1}^{m-1} r_k^2) / n)``, r the sample autocorrelations of y (Bartlett's standard error
    of r_m under an MA(m-1) null).  False when m <= 1, when n < 3m (M4's rule) and for a
    constant series.  As in M4's code, which reads lag m of R's ``acf`` at its default length
    ``floor(10 log10 n)``, the test also says False when m exceeds that length (n < 10^(m/10):
    fewer than 251 points for m = 24; the M4 Hourly series have 700 or more)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    n = len(y)
    if m <= 1 or n < 3 * m:
        return False
    if m > min(int(math.floor(10 * math.log10(n))), n - 1):
        return False  # R's acf stops before lag m: M4's test reads NA and says "not seasonal"
    if np.ptp(y) == 0:
        return False
    r = _acf(y, m)
    limit = SEASONALITY_TCRIT * math.sqrt((1 + 2 * float(np.sum(r[: m - 1] ** 2))) / n)
    return bool(abs(r[m - 1]) > limit)


def seasonal_indices(y, m: int) -> np.ndarray:
    """The m seasonal indices of a classical multiplicative decomposition, as R's
    ``decompose(type="multiplicative")`` (Kendall & Stuart 1983): the trend is the centred moving
    average of order m (a 2 x m average, weights ``(1/2, 1, ..., 1, 1/2)/m``, for even m); each
    index is the mean of ``y_t / trend_t`` over the points of its season position (position 0 is
    the first observation), ignoring the ends without a trend; the indices are then divided by
    their mean, so that they average 1.  Needs at least 2m points and a positive trend."""
    y = np.asarray(y, dtype=np.float64).ravel()
    n = len(y)
    if m < 2 or n < 2 * m:
        raise DataError(f"a seasonal decomposition with period {m} needs m >= 2 and at least {2 * m} points, "
                        f"got m={m} and {n} points")
    weights = np.full(m + 1, 1.0 / m) if m % 2 == 0 else np.full(m, 1.0 / m)
    if m % 2 == 0:
        weights[0] = weights[-1] = 0.5 / m
    half = len(weights) // 2
    trend = np.convolve(y, weights, mode="valid")  # (n - 2 half,), the trend at t = half .. n-half-1
    if np.any(trend <= 0):
        raise DataError("a multiplicative decomposition needs a positive trend; the series' moving average "
                        f"reaches {trend.min():g}")
    ratios = y[half: n - half] / trend
    position = np.arange(half, n - half) % m
    figure = np.array([ratios[position == p].mean() for p in range(m)])  # (m,)
    return figure / figure.mean()


def deseasonalize(y, m: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M4's seasonal adjustment: (adjusted series (n,), in-sample indices (n,), out-of-sample
    indices (horizon,)).  When ``seasonality_test(y, m)`` says seasonal, the indices are those of
    ``seasonal_indices`` placed on the series' positions and continued past its end (M4 repeats
    the last m in-sample indices); otherwise (and for m <= 1) they are all 1."""
    y = np.asarray(y, dtype=np.float64).ravel()
    n = len(y)
    if not seasonality_test(y, m):
        return y.copy(), np.ones(n), np.ones(horizon)
    figure = seasonal_indices(y, m)
    inside = figure[np.arange(n) % m]
    future = figure[np.arange(n, n + horizon) % m]
    return y / inside, inside, future


# ---- exponential smoothing as R's forecast::ses and holt fitted it for M4 --------------------------

# R's ets() bounds (forecast package): alpha, beta in [1e-4, 0.9999] with beta <= alpha; phi in [0.8, 0.98]
ETS_LOWER = {"alpha": 1e-4, "beta": 1e-4, "phi": 0.8}
ETS_UPPER = {"alpha": 0.9999, "beta": 0.9999, "phi": 0.98}
NM_BIG = 1.0e35  # the value R's Nelder-Mead gives a point where the objective is infinite (out of bounds)
NM_RELTOL = math.sqrt(np.finfo(np.float64).eps)  # R's optim default reltol, about 1.49e-8


def nelder_mead(fn, x0: Sequence[float], reltol: float = NM_RELTOL, maxit: int = 2000
                ) -> tuple[list[float], float, int, int]:
    """Minimize ``fn`` from ``x0`` by the Nelder-Mead simplex method (Nelder & Mead 1965) in the
    variant of Nash (1990), *Compact Numerical Methods for Computers*, Algorithm 19, which R's
    ``optim(method="Nelder-Mead")`` implements and which R's ``ets`` used to fit the M4
    benchmarks; returns (x, fn(x), evaluations, status: 0 converged, 1 ``maxit`` reached,
    10 a shrink did not reduce the simplex).

    Its details decide where it stops on the ETS objectives, so they are kept:
    - the initial simplex moves each coordinate by the same step, 10% of the largest
      ``|x0_i|`` (0.1 if all are 0); with an initial level of hundreds in x0, the steps of the
      smoothing parameters leave their bounds, and those vertices start at ``NM_BIG``;
    - reflection 1, expansion 2, contraction 1/2, shrink 1/2 towards the best vertex; a
      non-finite value counts as ``NM_BIG``;
    - it stops when the worst value is within ``reltol (|fn(x0)| + reltol)`` of the best, or
      after ``maxit`` evaluations."""
    n = len(x0)
    start = [float(v) for v in x0]
    f0 = fn(start)
    if not math.isfinite(f0):
        raise ValueError("the objective is not finite at the starting point")
    calls = 1
    tolerance = reltol * (abs(f0) + reltol)
    step = max(0.1 * abs(v) for v in start) or 0.1
    simplex = [start]  # n + 1 vertices
    values = [f0]
    size = 0.0
    for i in range(n):
        vertex = list(start)
        trial = step
        while vertex[i] == start[i]:  # a step lost in rounding is made 10 times larger
            vertex[i] = start[i] + trial
            trial *= 10
        size += trial
        simplex.append(vertex)
        values.append(NM_BIG)
    old_size = size  # the simplex's size, which each shrink must reduce
    best, recompute, status = 0, True, 0

    def value(x):
        nonlocal calls
        calls += 1
        f = fn(x)
        return f if math.isfinite(f) else NM_BIG

    while True:
        if recompute:
            values = [values[j] if j == best else value(simplex[j]) for j in range(n + 1)]
            recompute = False
        low = high = values[best]
        worst = best
        for j in range(n + 1):
            if j != best:
                if values[j] < low:
                    best, low = j, values[j]
                if values[j] > high:
                    worst, high = j, values[j]
        if high <= low + tolerance:
            break
        w = simplex[worst]
        centroid = [(sum(v[i] for v in simplex) - w[i]) / n for i in range(n)]
        reflected = [2 * c - wi for c, wi in zip(centroid, w)]
        f_reflected = value(reflected)
        if f_reflected < low:
            expanded = [2 * r - c for r, c in zip(reflected, centroid)]
            f_expanded = value(expanded)
            if f_expanded < f_reflected:
                simplex[worst], values[worst] = expanded, f_expanded
            else:
                simplex[worst], values[worst] = reflected, f_reflected
        else:
            if f_reflected < high:
                simplex[worst], values[worst] = reflected, f_reflected
            w = simplex[worst]
            contracted = [0.5 * wi + 0.5 * c for wi, c in zip(w, centroid)]
            f_contracted = value(contracted)
            if f_contracted < values[worst]:
                simplex[worst], values[worst] = contracted, f_contracted
            elif f_reflected >= high:  # shrink towards the best vertex
                b = simplex[best]
                size = 0.0
                for j in range(n + 1):
                    if j != best:
                        simplex[j] = [0.5 * (v - bi) + bi for v, bi in zip(simplex[j], b)]
                        size += sum(abs(v - bi) for v, bi in zip(simplex[j], b))
                recompute = True
                if size >= old_size:
                    status = 10
                    break
                old_size = size
        if calls > maxit:
            status = 1
            break
    return simplex[best], values[best], calls, status


@dataclass
class EtsFit:
    """An additive-error ETS model without season fitted by ``fit_ets``: smoothing parameters,
    initial and final states, the in-sample one-step MSE and the optimizer's evaluations and
    status (that of ``nelder_mead``)."""

    trend: str  # "N" (SES) or "A" (Holt)
    damped: bool
    alpha: float
    beta: float  # 0 without trend
    phi: float  # 1 unless damped
    level0: float
    slope0: float
    level: float
    slope: float
    mse: float
    evaluations: int
    status: int

    def forecast(self, horizon: int) -> np.ndarray:
        """``l_n + (phi + ... + phi^k) b_n`` for k = 1..horizon (horizon,)."""
        k = np.arange(1, horizon + 1)
        steps = np.cumsum(self.phi ** k) if self.damped else k.astype(np.float64)
        return self.level + steps * self.slope


def _ets_pass(y: list[float], alpha: float, beta: float, phi: float, level: float, slope: float,
              trend: bool) -> tuple[float, float, float]:
    """One pass of ETS(A,N,N) or ETS(A,A(d),N) over y (Hyndman et al. 2008, Table 2.3):
    ``e_t = y_t - l_{t-1} - phi b_{t-1}``, ``l_t = l_{t-1} + phi b_{t-1} + alpha e_t``,
    ``b_t = phi b_{t-1} + beta e_t``; returns (mean of e_t^2, l_n, b_n).  Plain Python floats:
    a few hundred passes per fit, each a sequential loop that numpy cannot vectorize."""
    sse = 0.0
    if not trend:
        for value in y:
            e = value - level
            sse += e * e
            level += alpha * e
        return sse / len(y), level, 0.0
    ratio = beta / alpha
    for value in y:
        damped_slope = phi * slope
        predicted = level + damped_slope
        e = value - predicted
        sse += e * e
        new_level = predicted + alpha * e
        slope = damped_slope + ratio * (new_level - level - damped_slope)  # = phi b + beta e, as R writes it
        level = new_level
    return sse / len(y), level, slope


def fit_ets(y, trend: str = "N", damped: bool = False) -> EtsFit:
    """Fit ETS(A,N,N) (``trend="N"``: simple exponential smoothing), ETS(A,A,N) (``"A"``: Holt's
    linear trend) or ETS(A,Ad,N) (``"A"``, ``damped``: Gardner & McKenzie 1985) as R's
    ``forecast::ses`` and ``holt`` do, which is how M4 fitted its SES, Holt, Damped, Theta and
    Comb benchmarks: ``ets(y, "ANN"|"AAN", damped=..., opt.crit="mse")``.

    - Start (R's ``initparam``/``initstate``): alpha 0.2, beta 0.02 (a tenth of the way to
      alpha), phi 0.978; the initial level (and slope) by least squares on the first 10 points
      (the level alone: their mean).
    - Objective: the in-sample mean squared one-step error over all parameters and initial
      states together, infinite outside R's bounds (``ETS_LOWER``, ``ETS_UPPER``, beta <= alpha;
      R's admissibility conditions add nothing to these without a season), minimized by
      ``nelder_mead``, R's optimizer.  Its large first steps make it stop short of the MSE
      minimum on many M4 series (statsforecast's port of ``ets`` finds lower MSEs there), and
      that is what M4's published Holt, Damped and Comb figures reflect.

    R falls back to ``HoltWinters`` on series of fewer than (parameters + 5) points; here every
    series is fitted the same way, with at least 2 points needed for a trend."""
    if trend not in ("N", "A"):
        raise ValueError(f"trend must be 'N' or 'A', got {trend!r}")
    if damped and trend == "N":
        raise ValueError("a damped model needs trend='A'")
    values = [float(v) for v in np.asarray(y, dtype=np.float64).ravel()]
    n = len(values)
    has_trend = trend == "A"
    if n < (2 if has_trend else 1):
        raise DataError(f"ETS(A,{trend}{'d' if damped else ''},N) needs at least {2 if has_trend else 1} points, "
                        f"got {n}")
    lo, hi = ETS_LOWER, ETS_UPPER
    alpha0 = lo["alpha"] + 0.2 * (hi["alpha"] - lo["alpha"])
    start = [alpha0]
    if has_trend:
        start.append(lo["beta"] + 0.1 * (min(hi["beta"], alpha0) - lo["beta"]))
    if damped:
        start.append(lo["phi"] + 0.99 * (hi["phi"] - lo["phi"]))
    first = np.array(values[: min(10, n)])
    if has_trend:
        t = np.arange(1.0, len(first) + 1)
        slope0 = float(np.sum((t - t.mean()) * (first - first.mean())) / np.sum((t - t.mean()) ** 2))
        level0 = float(first.mean() - slope0 * t.mean())  # the line at t = 0, before the first point
        if abs(level0 + slope0) < 1e-8:  # R perturbs a start with l0 + b0 = 0 (for multiplicative errors)
            level0, slope0 = level0 * (1 + 1e-3), slope0 * (1 - 1e-3)
        start += [level0, slope0]
    else:
        start.append(float(first.mean()))

    def unpack(p):
        alpha = p[0]
        beta = p[1] if has_trend else 0.0
        phi = p[2] if damped else 1.0
        return alpha, beta, phi, p[-2] if has_trend else p[-1], p[-1] if has_trend else 0.0

    def objective(p) -> float:
        alpha, beta, phi, level0, slope0 = unpack(p)
        if not lo["alpha"] <= alpha <= hi["alpha"]:
            return math.inf
        if has_trend and not (lo["beta"] <= beta <= min(alpha, hi["beta"])):
            return math.inf
        if damped and not lo["phi"] <= phi <= hi["phi"]:
            return math.inf
        return _ets_pass(values, alpha, beta, phi, level0, slope0, has_trend)[0]

    best, mse, calls, status = nelder_mead(objective, start)
    alpha, beta, phi, level0, slope0 = unpack(best)
    _, level, slope = _ets_pass(values, alpha, beta, phi, level0, slope0, has_trend)
    if status:
        logger.debug(f"ETS(A,{trend}{'d' if damped else ''},N): Nelder-Mead status {status} after {calls} evaluations")
    return EtsFit(trend, damped, alpha, beta, phi, level0, slope0, level, slope, mse, calls, status)


# ---- benchmarks --------------------------------------------------------------------------------

def _statsforecast(what: str) -> None:
    require("statsforecast", "forecast", what)


def _theta(y: np.ndarray, horizon: int) -> np.ndarray:
    """M4's classic Theta (Assimakopoulos & Nikolopoulos 2000), the ``Theta.classic`` of M4's
    code: theta line 0 is the OLS line of y on t = 1..n, extrapolated; theta line 2 is
    ``2 y - line0`` in sample, extrapolated by SES (``fit_ets``); the forecast is their
    equal-weight mean, negative values set to 0 (as M4's code does for Theta alone)."""
    n = len(y)
    t = np.arange(1, n + 1, dtype=np.float64)
    slope = float(np.sum((t - t.mean()) * (y - y.mean())) / np.sum((t - t.mean()) ** 2))
    intercept = float(y.mean() - slope * t.mean())
    line0_in = intercept + slope * t  # (n,)
    line0_out = intercept + slope * np.arange(n + 1, n + horizon + 1)  # (horizon,)
    line2_out = fit_ets(2 * y - line0_in, "N").forecast(horizon)
    return np.maximum(0.5 * (line0_out + line2_out), 0.0)


def _auto_ets(y: np.ndarray, horizon: int, m: int) -> np.ndarray:
    from statsforecast.models import AutoETS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(AutoETS(season_length=max(m, 1)).forecast(y=y, h=horizon)["mean"], dtype=np.float64)


def _auto_arima(y: np.ndarray, horizon: int, m: int) -> np.ndarray:
    from statsforecast.models import AutoARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # approximation=None: R's rule (CSS during the search when n > 150 or m > 12), 20 times faster on
        # M4 Hourly than statsforecast's default of exact likelihood throughout
        model = AutoARIMA(season_length=max(m, 1), approximation=None)
        return np.asarray(model.forecast(y=y, h=horizon)["mean"], dtype=np.float64)


def _check(y, horizon: int, m: int) -> np.ndarray:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon}")
    if int(m) != m or m < 1:
        raise ValueError(f"the seasonal period m must be a positive integer, got {m}")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) < 2:
        raise DataError(f"a series must be 1-D with at least 2 points, got shape {tuple(y.shape)}")
    if not np.all(np.isfinite(y)):
        k = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(f"a series must be finite; got {y[k]} at position {k}")
    return y


def benchmark_forecasts(y, horizon: int, m: int, names: Sequence[str] = BENCHMARKS) -> dict[str, np.ndarray]:
    """M4's benchmarks for one series: {name: forecast (horizon,)}, in the order of ``names``.

    - naive: the last value; snaive: the last m values repeated (not deseasonalized).
    - On the seasonally adjusted series (``deseasonalize``), re-seasonalized with the
      out-of-sample indices: naive2 (naive), ses, holt, damped (``fit_ets``), theta (``_theta``),
      comb (the mean of ses, holt and damped, M4's "Comb S-H-D").
    - auto_ets, auto_arima: statsforecast's ports of R's ``ets`` and ``auto.arima`` (Hyndman &
      Khandakar 2008), model chosen by AICc, applied directly to the series with season length
      m, not to the adjusted series: both model the season themselves (seasonal ETS states,
      seasonal differencing and seasonal ARMA terms), which is what R's ``ets()`` and
      ``auto.arima()`` do with a series of frequency m, the forecast package's defaults that M4
      used for its ETS and ARIMA standards for comparison.
    As in M4's code, negative forecasts are set to 0 for Theta alone (the others are left as they
    are: M4's published MASE of Comb includes Holt's negative forecasts on 4 Hourly series)."""
    y = _check(y, horizon, m)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; valid: {', '.join(BENCHMARKS)}")
    adjusted = future = None
    if any(n not in ("naive", "snaive", "auto_ets", "auto_arima") for n in names):
        adjusted, _, future = deseasonalize(y, m, horizon)
    fitted: dict[str, np.ndarray] = {}

    def smoothing(name: str) -> np.ndarray:  # on the adjusted series, each fitted once
        if name not in fitted:
            trend, damp = {"ses": ("N", False), "holt": ("A", False), "damped": ("A", True)}[name]
            fitted[name] = fit_ets(adjusted, trend, damp).forecast(horizon)
        return fitted[name]

    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "naive":
            out[name] = np.full(horizon, y[-1])
        elif name == "snaive":
            last = y[-m:]
            out[name] = last[np.arange(horizon) % len(last)]
        elif name == "naive2":
            out[name] = adjusted[-1] * future
        elif name in ("ses", "holt", "damped"):
            out[name] = smoothing(name) * future
        elif name == "theta":
            out[name] = _theta(adjusted, horizon) * future
        elif name == "comb":
            out[name] = (smoothing("ses") + smoothing("holt") + smoothing("damped")) / 3 * future
        elif name == "auto_ets":
            out[name] = _auto_ets(y, horizon, m)
        else:  # auto_arima
            out[name] = _auto_arima(y, horizon, m)
    return out


def _one(name: str, y, horizon: int, m: int) -> np.ndarray:
    if name in NEEDS_STATSFORECAST:
        _statsforecast(f"the M4 benchmark {name}")
    return benchmark_forecasts(y, horizon, m, (name,))[name]


def naive(y, horizon: int, m: int = 1) -> np.ndarray:
    """The last value repeated (m is not used)."""
    return _one("naive", y, horizon, m)


def snaive(y, horizon: int, m: int) -> np.ndarray:
    """Seasonal naive: the last m values repeated."""
    return _one("snaive", y, horizon, m)


def naive2(y, horizon: int, m: int) -> np.ndarray:
    """Naive on the seasonally adjusted series, re-seasonalized (M4's reference for OWA)."""
    return _one("naive2", y, horizon, m)


def ses(y, horizon: int, m: int) -> np.ndarray:
    """Simple exponential smoothing, ETS(A,N,N), on the adjusted series, re-seasonalized."""
    return _one("ses", y, horizon, m)


def holt(y, horizon: int, m: int) -> np.ndarray:
    """Holt's linear trend, ETS(A,A,N), on the adjusted series, re-seasonalized."""
    return _one("holt", y, horizon, m)


def damped(y, horizon: int, m: int) -> np.ndarray:
    """Damped trend (Gardner & McKenzie 1985), ETS(A,Ad,N), on the adjusted series, re-seasonalized."""
    return _one("damped", y, horizon, m)


def theta(y, horizon: int, m: int) -> np.ndarray:
    """M4's classic Theta on the adjusted series, re-seasonalized."""
    return _one("theta", y, horizon, m)


def comb(y, horizon: int, m: int) -> np.ndarray:
    """M4's Comb: the mean of SES, Holt and Damped on the adjusted series, re-seasonalized."""
    return _one("comb", y, horizon, m)


def auto_ets(y, horizon: int, m: int) -> np.ndarray:
    """Automatic ETS (statsforecast ``AutoETS``, R's ``ets``) with season length m."""
    return _one("auto_ets", y, horizon, m)


def auto_arima(y, horizon: int, m: int) -> np.ndarray:
    """Automatic ARIMA (statsforecast ``AutoARIMA``, R's ``auto.arima``) with season length m."""
    return _one("auto_arima", y, horizon, m)


def _forecast_chunk(start: int, chunk: list[np.ndarray], horizon: int, m: int,
                    names: tuple[str, ...]) -> tuple[int, list[dict[str, np.ndarray]]]:
    out = []
    for k, y in enumerate(chunk):
        try:
            out.append(benchmark_forecasts(y, horizon, m, names))
        except DataError as exc:
            raise DataError(f"series {start + k} (0-based): {exc}") from None
    return start, out


def run_benchmarks(series: Sequence[np.ndarray], horizon: int, m: int, names: Sequence[str],
                   workers: int = 2, progress: bool = True, chunk_size: Optional[int] = None
                   ) -> dict[str, np.ndarray]:
    """The benchmarks ``names`` on every series: {name: forecasts (N, horizon)}, in series order.

    The series go in chunks (``chunk_size``, default about 8 chunks per worker) to ``workers``
    processes (``workers <= 1``: in this process); a tqdm bar counts the series when
    ``progress``.  Deterministic: every fit is deterministic and the results are placed by
    series index whatever the order in which chunks finish."""
    names = tuple(dict.fromkeys(names))  # each once, in the order given
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; valid: {', '.join(BENCHMARKS)}" if unknown
                         else f"no benchmark named; valid: {', '.join(BENCHMARKS)}")
    if any(n in NEEDS_STATSFORECAST for n in names):
        _statsforecast(f"the M4 benchmarks {', '.join(n for n in names if n in NEEDS_STATSFORECAST)}")
    series = [np.asarray(y, dtype=np.float64) for y in series]
    n = len(series)
    if n == 0:
        return {name: np.zeros((0, horizon)) for name in names}
    workers = max(1, min(int(workers), n))
    if chunk_size is None:
        chunk_size = max(1, math.ceil(n / (8 * workers)))
    starts = range(0, n, chunk_size)
    results: list[Optional[dict[str, np.ndarray]]] = [None] * n
    from tqdm import tqdm

    began = time.perf_counter()
    with tqdm(total=n, desc="M4 benchmarks", unit="series", disable=not progress) as bar:
        if workers == 1:
            for s in starts:
                _, out = _forecast_chunk(s, series[s: s + chunk_size], horizon, m, names)
                results[s: s + len(out)] = out
                bar.update(len(out))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_forecast_chunk, s, series[s: s + chunk_size], horizon, m, names)
                           for s in starts]
                for future in as_completed(futures):
                    s, out = future.result()
                    results[s: s + len(out)] = out
                    bar.update(len(out))
    logger.info(f"M4 benchmarks {', '.join(names)} on {n} series: {time.perf_counter() - began:.1f} s "
                f"with {workers} worker(s)")
    return {name: np.stack([r[name] for r in results]) for name in names}


def benchmark_table(forecasts: dict[str, np.ndarray], actuals, insamples: Sequence[np.ndarray],
                    m: int) -> dict[str, dict[str, float]]:
    """{name: {"smape", "mase", "owa"}}: the dataset means of each forecast set (N, h) in
    ``forecasts`` and its OWA against the "naive2" entry, which must be among them."""
    if "naive2" not in forecasts:
        raise ValueError("OWA is relative to Naive2: include 'naive2' in the forecasts")
    means = {}
    for name, f in forecasts.items():
        s = score(actuals, f, insamples, m)
        means[name] = (s["smape_mean"], s["mase_mean"])
    base = means["naive2"]
    return {name: {"smape": sm, "mase": ma, "owa": owa(sm, ma, *base)} for name, (sm, ma) in means.items()}
