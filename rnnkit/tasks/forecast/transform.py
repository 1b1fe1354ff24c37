"""The invertible transform a forecaster works in: optional log, optional removal of a seasonal
profile, optional first difference, optional seasonal difference, then standardization fitted
on the training part only.

    w_t = log y_t (or y_t);   v_t = w_t - S[t mod p] (or w_t);   d_t = v_t - v_{t-1} (or v_t);
    s_t = d_t - d_{t-m} (or d_t);   z_t = (s_t - mean) / std

(Box & Jenkins 1976: differencing and seasonal differencing to reach a stationary series;
Hyndman & Athanasopoulos, FPP3 §9.1.)  The seasonal profile S (period p) is the per-phase mean
of the seasonal component of an STL decomposition (Cleveland et al. 1990) of w over the
training part, optionally smoothed to its first K Fourier harmonics (a long period such as 365
days needs it: each day's mean over a few years is noisy).  Deseasonalizing before the RNN is
what Bandara, Bergmeir & Smyl (2020) and Hewamalage, Bergmeir & Bandara (2021) found RNN
forecasters need on seasonal series.
Forecasts made in z are mapped back by undoing each step with the known history and the
forecasts made so far.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from rnnkit.errors import DataError
from rnnkit.tasks.forecast.series import Scaler


@dataclass
class SeriesTransform:
    log: bool = False
    difference: int = 0  # 0 or 1
    season: int = 0  # lag of the seasonal difference (0: none)
    mean: float = 0.0
    std: float = 1.0
    profile_period: int = 0  # period p of the seasonal profile removed before differencing (0: none)
    profile: Optional[list] = None  # S[0..p-1], fitted by fit(); S[k] belongs to positions t = k mod p
    harmonics: int = 0  # smooth the profile to its first K Fourier harmonics (0: keep every phase's mean)

    def __post_init__(self) -> None:
        if self.difference not in (0, 1):
            raise DataError(f"difference must be 0 or 1, got {self.difference}")
        if self.season < 0:
            raise DataError(f"the seasonal-difference lag must be >= 0, got {self.season}")
        if self.profile_period < 0 or self.profile_period == 1:
            raise DataError(f"the seasonal-profile period must be 0 (none) or >= 2, got {self.profile_period}")
        if self.harmonics and not (self.profile_period and 0 < 2 * self.harmonics < self.profile_period):
            raise DataError(f"harmonics K must satisfy 0 < 2K < the profile period, got K={self.harmonics} "
                            f"for period {self.profile_period}")
        if self.profile is not None and len(self.profile) != self.profile_period:
            raise DataError(f"the seasonal profile has {len(self.profile)} values for period {self.profile_period}")

    @property
    def lost(self) -> int:
        """How many leading points have no transformed value (NaN)."""
        return self.difference + self.season

    def _log(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.log:
            if (y <= 0).any():
                bad = int(np.argmax(y <= 0))
                raise DataError(f"log needs positive values; got {y[bad]} at position {bad}")
            y = np.log(y)
        return y

    def _seasonal(self, start: int, n: int) -> np.ndarray:
        """S at positions start .. start + n - 1 (zeros without a profile)."""
        if not self.profile_period:
            return np.zeros(n)
        if self.profile is None:
            raise DataError("the seasonal profile is not fitted yet: call fit() on the training part first")
        return np.asarray(self.profile, np.float64)[(start + np.arange(n)) % self.profile_period]

    def _fit_profile(self, w: np.ndarray) -> None:
        p = self.profile_period
        if len(w) < 2 * p + 1:
            raise DataError(f"a seasonal profile of period {p} needs at least {2 * p + 1} training points "
                            f"(two whole cycles), got {len(w)}")
        try:
            from statsmodels.tsa.seasonal import STL
        except ImportError:
            raise DataError("the seasonal profile needs statsmodels: pip install 'rnnkit[forecast]'") from None
        seasonal = np.asarray(STL(w, period=p, robust=True).fit().seasonal)  # (N,)
        phase = np.arange(len(w)) % p
        profile = np.bincount(phase, seasonal, p) / np.bincount(phase, minlength=p)
        profile = profile - profile.mean()
        if self.harmonics:  # least-squares projection on sin/cos(2 pi k t / p), k = 1..K
            angle = 2 * np.pi * np.arange(p)[:, None] * np.arange(1, self.harmonics + 1)[None, :] / p
            basis = np.concatenate([np.sin(angle), np.cos(angle)], 1)  # (p, 2K)
            profile = basis @ np.linalg.lstsq(basis, profile, rcond=None)[0]
        self.profile = profile.tolist()

    def _stationary(self, y: np.ndarray) -> np.ndarray:
        y = self._log(y)
        out = y - self._seasonal(0, len(y))
        if self.difference:
            out = np.concatenate([[np.nan], np.diff(out)])
        if self.season:
            m = self.season
            out = np.concatenate([np.full(m, np.nan), out[m:] - out[:-m]])
        return out  # (N,)

    def fit(self, y_train: np.ndarray) -> "SeriesTransform":
        """Fit the seasonal profile (if any) and the standardization on the training part (only)."""
        if self.profile_period:
            self._fit_profile(self._log(y_train))
        s = self._stationary(y_train)
        if np.isfinite(s).sum() < 2:
            raise DataError(f"the training part ({len(y_train)} points) is too short for "
                            f"difference={self.difference}, seasonal lag {self.season}")
        scaler = Scaler.fit(s)
        self.mean, self.std = scaler.mean, scaler.std
        return self

    def forward(self, y: np.ndarray) -> np.ndarray:
        """z (N,) of y (N,); the first ``lost`` entries are NaN."""
        return (self._stationary(y) - self.mean) / self.std

    def inverse(self, z_future: np.ndarray, y_history: np.ndarray) -> np.ndarray:
        """Map forecasts z (S, H) that continue ``y_history`` (N,) back to the original scale."""
        z = np.atleast_2d(np.asarray(z_future, dtype=np.float64))
        samples, horizon = z.shape
        s = z * self.std + self.mean  # (S, H)
        n = len(y_history)
        hist = self._log(y_history) - self._seasonal(0, n)
        if self.difference:
            d_hist = np.diff(hist)
        else:
            d_hist = hist
        if self.season:
            m = self.season
            if len(d_hist) < m:
                raise DataError(f"the history ({len(y_history)} points) is shorter than the seasonal lag {m}")
            d = np.concatenate([np.broadcast_to(d_hist[-m:], (samples, m)), np.zeros((samples, horizon))], 1)
            for h in range(horizon):
                d[:, m + h] = s[:, h] + d[:, h]
            d = d[:, m:]  # (S, H)
        else:
            d = s
        w = hist[-1] + np.cumsum(d, axis=1) if self.difference else d  # (S, H)
        w = w + self._seasonal(n, horizon)
        return np.exp(np.clip(w, -700, 700)) if self.log else w  # clip: no overflow on wild paths

    def to_dict(self) -> dict:
        return asdict(self)
