"""The M4 competition's file formats: the series files and the submission (forecast) files.

Makridakis, Spiliotis & Assimakopoulos (2020), "The M4 Competition: 100,000 time series and 61
forecasting methods", International Journal of Forecasting 36(1), 54-74; the files are those of
the competition's repository (``Dataset/Train/<Frequency>-train.csv`` and
``Dataset/Test/<Frequency>-test.csv``).

- Series file: a header row ``"V1","V2",...``, then one row per series: its id (``"H1"``) and
  its values, every cell quoted; a series shorter than the longest one ends in empty cells
  (``""``, or no cells at all).  The test file has the same ids, each with exactly the horizon's
  number of values (48 for Hourly): the true future.
- Submission file: a header ``id,F1,...,Fh`` and one row per series: its id and its h forecasts.

Errors are ``DataError`` naming the file, the line (1-based, as an editor counts) and, for a
cell, its column (1-based, with the header's name for it).
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rnnkit.data.text import bad_utf8_line
from rnnkit.errors import DataError

logger = logging.getLogger(__name__)

HOURLY_HORIZON, HOURLY_PERIOD = 48, 24  # M4 Hourly: 414 series, forecast 48 hours ahead


@dataclass
class M4Set:
    """The series of one M4 file, in file order.

    ids: the series ids ("H1", ...); series: one float64 array per series, its trailing empty
    cells stripped (lengths differ); path: the file they were read from."""

    ids: list[str]
    series: list[np.ndarray]
    path: str = ""
    lines: list[int] = field(default_factory=list, repr=False)  # the file line of each series

    def __len__(self) -> int:
        return len(self.ids)


def _open_text(path: Path, mode: str = "r", compressed: bool | None = None):
    """A text handle on ``path``, gzip when ``compressed`` (default: a ``.gz`` suffix)."""
    if path.suffix == ".gz" if compressed is None else compressed:
        return gzip.open(path, mode + "t", encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


def _column(header: list[str], index: int) -> str:
    """``column 5 ("V5")``: the 1-based column of cell ``index`` and its header name."""
    name = f' ("{header[index]}")' if index < len(header) and header[index] else ""
    return f"column {index + 1}{name}"


def _parse_values(cells: list[str], where: str, header: list[str]) -> np.ndarray:
    """The values of one row (the cells after the id) as float64; DataError at the first cell
    that is not a finite number or an empty cell before a non-empty one."""
    stripped = [c.strip() for c in cells]
    end = len(stripped)
    while end and not stripped[end - 1]:
        end -= 1
    values = stripped[:end]
    if not values:
        raise DataError(f"{where}: the series has no values; expected an id followed by at least one number")
    if "" in values:
        gap = values.index("")
        after = next(i for i in range(gap + 1, end) if values[i])
        raise DataError(f"{where}: ragged row: empty cell at {_column(header, gap + 1)} followed by the value "
                        f"{values[after]!r} at {_column(header, after + 1)}; a series may end in empty cells "
                        "but have none inside it")
    try:
        out = np.array(values, dtype=np.float64)
    except ValueError:
        for i, text in enumerate(values):
            try:
                float(text)
            except ValueError:
                raise DataError(f"{where}, {_column(header, i + 1)}: {text!r} is not a number") from None
        out = np.array([float(text) for text in values])  # numpy refused what float() reads
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{where}, {_column(header, i + 1)}: {values[i]!r} is not a finite number; "
                        "expected a finite value (M4 series have no missing values inside them)")
    return out


def read_m4(path: str | Path, *, min_length: int = 1) -> M4Set:
    """Read an M4 series file (``.gz`` too): ids and values in file order.

    Errors (``DataError``, naming the file, the line and the column with its header name): no
    such file, an empty file or no header, a cell that is not a number (the text found), a
    non-finite value (``nan``, ``inf``), an empty cell followed by a value (a ragged row), a
    row with an id but no values, a row with more cells than the header, an empty or
    duplicate id (with the line of its first use), a series shorter than ``min_length``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    ids: list[str] = []
    series: list[np.ndarray] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = None
            for row in reader:
                line = reader.line_num
                if header is None:
                    if not any(cell.strip() for cell in row):
                        continue  # blank lines before the header
                    header = [cell.strip() for cell in row]
                    continue
                if not any(cell.strip() for cell in row):
                    continue  # a blank line (a trailing newline, say)
                where = f"{path}:{line}"
                if len(row) > len(header):
                    raise DataError(f"{where}: {len(row)} cells, but the header has {len(header)} columns")
                sid = row[0].strip()
                if not sid:
                    raise DataError(f"{where}, {_column(header, 0)}: empty series id; expected an id such as "
                                    f"'H1' followed by the values")
                where = f"{where}: series {sid!r}"
                if sid in seen:
                    raise DataError(f"{where}: duplicate id (first on line {seen[sid]}); ids must be unique")
                values = _parse_values(row[1:], where, header)
                if len(values) < min_length:
                    raise DataError(f"{where}: {len(values)} values; expected at least {min_length}")
                seen[sid] = line
                ids.append(sid)
                series.append(values)
                lines.append(line)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{bad_utf8_line(path)}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if header is None:
        raise DataError(f'{path}: empty file; expected a header row "V1","V2",... and one row per series')
    if not ids:
        raise DataError(f"{path}: no series after the header")
    logger.info(f"{path}: {len(ids)} series of {min(map(len, series))} to {max(map(len, series))} values")
    return M4Set(ids, series, str(path), lines)


def _name_ids(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def read_m4_test(path: str | Path, train: M4Set, horizon: int) -> np.ndarray:
    """The true future of ``train``'s series from an M4 test file: (N, horizon), in ``train``'s
    id order.  Errors: those of ``read_m4``; ids that differ from ``train``'s (counts and a few
    of the missing and extra ids); a row without exactly ``horizon`` values (how many it has)."""
    test = read_m4(path)
    path = Path(path)
    known, given = set(train.ids), set(test.ids)
    if known != given:
        missing = [i for i in train.ids if i not in given]
        extra = [i for i in test.ids if i not in known]
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the {len(train)} training ids are missing ({_name_ids(missing)})")
        if extra:
            parts.append(f"{len(extra)} ids are not in the training file {train.path} ({_name_ids(extra)})")
        raise DataError(f"{path}: the ids differ from the training file's: " + "; ".join(parts))
    for sid, values, line in zip(test.ids, test.series, test.lines):
        if len(values) != horizon:
            raise DataError(f"{path}:{line}: series {sid!r} has {len(values)} values; expected exactly "
                            f"{horizon} (the horizon)")
    row = {sid: i for i, sid in enumerate(test.ids)}
    return np.stack([test.series[row[sid]] for sid in train.ids])  # (N, horizon)


def write_m4_forecasts(path: str | Path, ids: Sequence[str], forecasts: np.ndarray) -> None:
    """Write forecasts in the M4 submission format: header ``id,F1,...,Fh``, one row per series.
    Values are written with ``repr`` (the shortest text that reads back to the same float64);
    the file is written to ``<path>.tmp`` and then moved over ``path``, so that a reader never
    sees half a file; a ``.gz`` path is written gzip-compressed."""
    path = Path(path)
    values = np.asarray(forecasts, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(ids) or values.shape[1] == 0:
        raise ValueError(f"forecasts must have shape (len(ids), horizon) = ({len(ids)}, h >= 1), "
                         f"got {tuple(values.shape)}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = (int(k) for k in bad[0])
        raise ValueError(f"forecasts must be finite; got {values[i, j]} for {ids[i]!r} at step {j + 1}")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _open_text(tmp, "w", compressed=path.suffix == ".gz") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id"] + [f"F{j + 1}" for j in range(values.shape[1])])
            for sid, row in zip(ids, values.tolist()):
                writer.writerow([sid] + [repr(v) for v in row])
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.debug(f"wrote {len(ids)} forecasts of {values.shape[1]} steps to {path}")


def read_m4_forecasts(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a submission file written by ``write_m4_forecasts`` (or the competition's): the ids
    and the forecasts (N, h).  Errors as ``read_m4``'s, and rows of different lengths."""
    data = read_m4(path)
    lengths = {len(s) for s in data.series}
    if len(lengths) != 1:
        short = min(range(len(data)), key=lambda i: len(data.series[i]))
        raise DataError(f"{path}:{data.lines[short]}: series {data.ids[short]!r} has {len(data.series[short])} "
                        f"forecasts; expected {max(lengths)} as the longest row has")
    return data.ids, np.stack(data.series)

