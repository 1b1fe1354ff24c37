"""Time series: CSV files with a date column and value columns (``.gz`` read too), the series
that ship with statsmodels, calendar features, chronological splits, a scaler fitted on the
training part only, and input windows built without leakage.

Leakage rules (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed.,
§5.8 "evaluating point forecast accuracy"): the parts are chronological (train, then valid,
then test); whatever is fitted (scaler, transform, model) sees the training part only; a
window's inputs lie strictly before its targets, so a training window never reads a value
at or after the end of the training part.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rnnkit.data.text import bad_utf8_line
from rnnkit.errors import DataError

MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-", "--"}
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m", "%Y/%m/%d", "%Y/%m", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                "%Y")
STATSMODELS_DATASETS = ("sunspots", "co2")
# The largest magnitude a value may have: squares and sums of squares (standardization, RMSE)
# of larger values overflow float64 (about 1.8e308) and give inf or NaN metrics.
MAX_MAGNITUDE = 1e150


@dataclass
class Series:
    """One or more value columns over dates.

    values (N, C) float64; dates (N,) ``datetime64[D]``, strictly increasing; ``freq`` is
    "D", "W", "M", "Q", "Y" or "<k>D" (a step of k days); ``notes`` says what was done to the
    data on loading (for example interpolated missing values)."""

    values: np.ndarray
    dates: np.ndarray
    columns: list[str]
    source: str
    freq: str
    notes: list[str] = field(default_factory=list)

    def column(self, name: Optional[str]) -> np.ndarray:
        """The values of column ``name`` (N,); None picks the only column."""
        if name is None:
            if len(self.columns) != 1:
                raise DataError(f"{self.source}: several value columns ({', '.join(self.columns)}); "
                                "choose one with --column")
            return self.values[:, 0]
        if name not in self.columns:
            raise DataError(f"{self.source}: no value column {name!r}; available: {', '.join(self.columns)}")
        return self.values[:, self.columns.index(name)]


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def parse_date(text: str) -> dt.date:
    """A date in one of ``DATE_FORMATS`` (ISO dates, year-month, year); ValueError otherwise."""
    text = text.strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


def read_series_csv(path: str | Path, columns: Optional[Sequence[str]] = None,
                    date_column: Optional[str] = None) -> Series:
    """Read a CSV file with a header, one date column (default: the first) and value columns
    (default: all others).  Errors name the file, the line and the data row: a missing value
    (empty, NA, NaN, ?), a value that is not a number or whose magnitude exceeds
    ``MAX_MAGNITUDE``, an unparsable or non-increasing date, an unknown column (the message
    lists the available ones)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with _open_text(path) as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{bad_utf8_line(path)}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    # newline="": the csv module splits \n, \r\n and \r itself, also inside quoted fields.
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []  # each row and the file line it ends on (quoted fields may span lines)
    try:
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path}: empty file; expected a header line with a date column and value columns")
    header = [h.strip() for h in rows[0]]
    date_name = date_column if date_column is not None else header[0]
    if date_name not in header:
        raise DataError(f"{path}: no date column {date_name!r}; available: {', '.join(header)}")
    date_idx = header.index(date_name)
    names = list(columns) if columns else [h for i, h in enumerate(header) if i != date_idx]
    for name in names:
        if name not in header or name == date_name:
            available = ", ".join(h for h in header if h != date_name)
            raise DataError(f"{path}: no value column {name!r}; available: {available}")
    if not names:
        raise DataError(f"{path}: only a date column ({date_name!r}); expected at least one value column")
    value_idx = [header.index(n) for n in names]
    dates: list[dt.date] = []
    values: list[list[float]] = []
    for line, row in zip(lines[1:], rows[1:]):
        if not row or not any(cell.strip() for cell in row):
            continue  # blank line (a trailing newline, say)
        where = f"{path}:{line}: row {len(values) + 1}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields as in the header, got {len(row)}")
        try:
            date = parse_date(row[date_idx])
        except ValueError:
            raise DataError(f"{where}: cannot parse date {row[date_idx]!r} in column {date_name!r} "
                            "(expected e.g. 1990-01-31, 1990-01 or 1990)") from None
        if dates and date <= dates[-1]:
            raise DataError(f"{where}: date {row[date_idx].strip()} does not come after {dates[-1]} "
                            "(expected strictly increasing dates)")
        out = []
        for i, name in zip(value_idx, names):
            cell = row[i].strip()
            if cell.lower() in MISSING:
                raise DataError(f"{where}: missing value in column {name!r} (got {row[i]!r}); "
                                "fill or drop it first")
            try:
                number = float(cell)
            except ValueError:
                raise DataError(f"{where}: value {cell!r} in column {name!r} is not a number") from None
            if not math.isfinite(number):
                raise DataError(f"{where}: missing value in column {name!r} (got {cell!r})")
            if abs(number) > MAX_MAGNITUDE:
                raise DataError(f"{where}: value {cell} in column {name!r} is too large: its magnitude must be at "
                                f"most {MAX_MAGNITUDE:g} (larger values overflow in the scaling and the metrics); "
                                "rescale the column, e.g. to other units")
            out.append(number)
        dates.append(date)
        values.append(out)
    if not values:
        raise DataError(f"{path}: no data rows after the header")
    date_array = np.array(dates, dtype="datetime64[D]")
    return Series(np.array(values, dtype=np.float64), date_array, names, str(path), infer_freq(date_array))


FIRST_YEAR = 1001  # of a series without dates; not year 1: plots pad the axis before the first date
LAST_YEAR = 9999  # the last year a CSV date (and numpy's ISO format) writes with four digits


def series_from_values(values, dates=None, name: str = "value") -> Series:
    """A one-column Series from a 1-D sequence of numbers and, optionally, one date per value
    (ISO strings such as "1990-01-31" or "1990-01", ``datetime.date`` or ``datetime64``;
    strictly increasing).  Without dates the points are placed at yearly steps from the year
    1001 (point k, counted from 1, in the year 1000 + k): a step without calendar covariates
    whose default seasonal period is 1.  Errors say what was expected and where it was not."""
    try:
        y = np.asarray(values)
    except ValueError:  # ragged nesting
        raise DataError("expected a 1-D sequence of numbers, got nested sequences of uneven lengths") from None
    if y.ndim != 1:
        raise DataError(f"expected a 1-D sequence of numbers, got an array of shape {tuple(y.shape)}")
    if y.size == 0:
        raise DataError("the series is empty; expected a 1-D sequence of numbers")
    if y.dtype.kind not in "iuf":  # name the first value that is not a number, as it was given
        for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise DataError(f"the series' values must be numbers; got {v!r} ({type(v).__name__}) "
                                f"at position {i}")
    y = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise DataError(f"the series' values must be finite numbers; got {y[bad[0]]} at position {bad[0]} "
                        "(fill or drop missing values first)")
    large = np.flatnonzero(np.abs(y) > MAX_MAGNITUDE)
    if large.size:
        raise DataError(f"the series' values must have a magnitude of at most {MAX_MAGNITUDE:g} (larger values "
                        f"overflow in the scaling and the metrics); got {y[large[0]]} at position {large[0]}")
    if dates is None:
        if len(y) > LAST_YEAR - FIRST_YEAR + 1:
            raise DataError(f"a series without dates is placed in the years {FIRST_YEAR} to {LAST_YEAR}; give "
                            f"dates for one of {len(y)} points")
        when = (np.datetime64(str(FIRST_YEAR), "Y") + np.arange(len(y))).astype("datetime64[D]")
    else:
        try:
            when = np.asarray(dates).astype("datetime64[D]")
        except (ValueError, TypeError) as exc:
            raise DataError(f"cannot read the dates as calendar days ({exc}); expected e.g. 1990-01-31, "
                            "1990-01 or datetime64 values") from None
        if when.ndim != 1 or len(when) != len(y):
            raise DataError(f"expected one date per value: {len(y)} values, got dates of shape {tuple(when.shape)}")
        if np.isnat(when).any():
            raise DataError(f"the date at position {int(np.flatnonzero(np.isnat(when))[0])} is missing (NaT)")
        steps = np.flatnonzero(np.diff(when) <= np.timedelta64(0, "D"))
        if steps.size:
            i = int(steps[0]) + 1
            raise DataError(f"date {when[i]} at position {i} does not come after {when[i - 1]} "
                            "(expected strictly increasing dates)")
    return Series(y[:, None], when, [name], "values", infer_freq(when))


def write_series_csv(series: Series, path: str | Path, date_column: str = "date") -> Path:
    """Write ``series`` as a CSV that :func:`read_series_csv` reads back exactly (ISO dates
    in the first column, named ``date_column``, then the shortest repr of each value);
    refuses to overwrite an existing file."""
    path = Path(path)
    try:
        handle = open(path, "x", newline="", encoding="utf-8")
    except FileExistsError:
        raise DataError(f"{path} exists already; not overwriting it") from None
    with handle:
        writer = csv.writer(handle)
        writer.writerow([date_column] + list(series.columns))
        for date, row in zip(series.dates, series.values):
            writer.writerow([str(date)] + [repr(float(v)) for v in row])
    return path


def load_statsmodels_series(name: str) -> Series:
    """A series bundled with statsmodels (offline): ``sunspots`` (yearly sunspot numbers,
    1700-2008) or ``co2`` (weekly Mauna Loa CO2, 1958-2001; its 59 missing weeks are filled
    by linear interpolation in time, and ``notes`` says so)."""
    if name not in STATSMODELS_DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(STATSMODELS_DATASETS)}")
    try:
        import statsmodels.datasets as datasets
    except ImportError:
        raise DataError(f"dataset {name!r} needs statsmodels (pip install 'rnnkit[forecast]')") from None
    notes: list[str] = []
    if name == "sunspots":
        frame = datasets.sunspots.load_pandas().data
        years = frame["YEAR"].astype(int).to_numpy()
        dates = np.array([f"{y:04d}-01-01" for y in years], dtype="datetime64[D]")
        values = frame[["SUNACTIVITY"]].to_numpy(dtype=np.float64)
        columns = ["SUNACTIVITY"]
    else:
        frame = datasets.co2.load_pandas().data
        dates = frame.index.to_numpy().astype("datetime64[D]")
        raw = frame["co2"].to_numpy(dtype=np.float64)
        missing = np.isnan(raw)
        if missing.any():
            days = dates.astype(np.int64)
            raw = raw.copy()
            raw[missing] = np.interp(days[missing], days[~missing], raw[~missing])
            notes.append(f"co2: {int(missing.sum())} missing weekly values filled by linear interpolation")
        values = raw[:, None]
        columns = ["co2"]
    return Series(values, dates, columns, f"statsmodels:{name}", infer_freq(dates), notes)


def infer_freq(dates: np.ndarray) -> str:
    """"D", "W", "M", "Q" or "Y" from the median step between dates; else "<k>D"."""
    if len(dates) < 2:
        return "D"
    step = float(np.median(np.diff(dates).astype(np.int64)))
    for freq, (lo, hi) in {"D": (0.5, 1.5), "W": (6.5, 7.5), "M": (27, 32), "Q": (88, 93),
                           "Y": (360, 370)}.items():
        if lo <= step <= hi:
            return freq
    return f"{round(step)}D"


def default_season(freq: str) -> int:
    """The usual seasonal period of a frequency: 12 monthly, 4 quarterly, 52 weekly, 7 daily."""
    return {"M": 12, "Q": 4, "W": 52, "D": 7}.get(freq, 1)


def future_dates(dates: np.ndarray, freq: str, count: int) -> np.ndarray:
    """The ``count`` dates after the last one, continuing the frequency (calendar months for
    "M"/"Q"/"Y", fixed day steps otherwise)."""
    last = dates[-1]
    months = {"M": 1, "Q": 3, "Y": 12}.get(freq)
    if months is not None:
        base = last.astype("datetime64[M]")
        day = (last - base.astype("datetime64[D]")).astype(np.int64)
        out = []
        for k in range(1, count + 1):
            month = base + k * months
            length = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
            out.append(month.astype("datetime64[D]") + min(int(day), int(length) - 1))
        return np.array(out, dtype="datetime64[D]")
    step = 7 if freq == "W" else 1 if freq == "D" else int(freq[:-1])
    return last + np.arange(1, count + 1) * step


def calendar_features(dates: np.ndarray, freq: str) -> np.ndarray:
    """Calendar covariates of each date (N, K), known in advance for future dates:
    monthly: month-of-year one-hot (12); quarterly: quarter one-hot (4); weekly and daily:
    sin/cos of the year's phase, 3 harmonics (6); daily also day-of-week one-hot (7);
    yearly or other: none (K = 0)."""
    n = len(dates)
    months = dates.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    if freq == "M":
        return np.eye(12)[months]
    if freq == "Q":
        return np.eye(4)[months // 3]
    if freq not in ("W", "D"):
        return np.zeros((n, 0))
    year_start = dates.astype("datetime64[Y]").astype("datetime64[D]")
    phase = 2 * np.pi * (dates - year_start).astype(np.int64) / 365.25  # (N,)
    parts = [f(k * phase)[:, None] for k in (1, 2, 3) for f in (np.sin, np.cos)]
    if freq == "D":
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        parts.append(np.eye(7)[weekday])
    return np.concatenate(parts, axis=1)


def part_size(spec: str | int | float, n: int, what: str) -> int:
    """A part's length from a count ("24"), a fraction ("0.1") or a percentage ("10%")."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            size = round(n * float(text[:-1]) / 100)
        elif "." in text:
            value = float(text)
            size = round(n * value) if value < 1 else int(value)
        else:
            size = int(text)
    except ValueError:
        raise DataError(f"{what} must be a count (24), a fraction (0.1) or a percentage (10%), got {spec!r}") from None
    if size < 1:
        raise DataError(f"{what} must hold at least one point, got {spec!r} of {n} points")
    return size


@dataclass
class Split:
    """Chronological parts of a series of length n: train [0, train_end), valid
    [train_end, valid_end), test [valid_end, n)."""

    train_end: int
    valid_end: int
    n: int


def chronological_split(n: int, test: int, valid: int, min_train: int = 1) -> Split:
    """Train, then valid, then test, by position; errors say what did not fit."""
    train = n - test - valid
    if test < 0 or valid < 0 or train < min_train:
        raise DataError(f"a series of {n} points cannot hold test {test} and valid {valid} "
                        f"with at least {min_train} training points (expected n >= {test + valid + min_train})")
    return Split(train, train + valid, n)


@dataclass
class Scaler:
    """Standardization z = (x - mean) / std, fitted on the training part only."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, train: np.ndarray) -> "Scaler":
        values = np.asarray(train, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise DataError("cannot fit a scaler on an empty training part")
        std = float(values.std())
        return cls(float(values.mean()), std if std > 1e-12 else 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def make_windows(features: np.ndarray, target: np.ndarray, window: int, horizon: int,
                 start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (input, target) pair whose targets ``target[t : t + horizon]`` lie inside
    [start, end), with inputs ``features[t - window : t]`` (strictly before t).

    features (N, F), target (N,) -> X (W, window, F), Y (W, horizon).  Nothing at or after
    ``end`` is read: windows for a part ending at ``end`` depend on ``[0, end)`` only.
    Positions whose inputs or targets are NaN (the start of a differenced series) are skipped."""
    first = max(start, window)
    ts = [t for t in range(first, end - horizon + 1)
          if np.isfinite(target[t:t + horizon]).all() and np.isfinite(features[t - window:t]).all()]
    if not ts:
        return np.zeros((0, window, features.shape[1])), np.zeros((0, horizon))
    X = np.stack([features[t - window:t] for t in ts])  # (W, window, F)
    Y = np.stack([target[t:t + horizon] for t in ts])  # (W, horizon)
    return X, Y
