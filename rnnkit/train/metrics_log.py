"""Metrics logs: a CSV file per run (and TensorBoard events when it is installed)."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

# New columns go at the end, so that readers of older files (by name or by position) keep working.
FIELDS = ["kind", "epoch", "step", "loss", "lr", "tokens_per_s", "split", "metric", "value", "time"]


def utc_now() -> str:
    """The wall-clock time of a row: ISO 8601 in UTC, to the millisecond (``2024-05-01T12:00:00.123Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header(path: Path) -> Optional[list[str]]:
    """The column names of an existing, non-empty CSV file; None for a missing or empty one."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), None) or None


class MetricsLog:
    """Appends rows to ``metrics.csv``: ``kind`` is "step" (training) or "eval"; ``time`` is
    when the row was written (UTC, ISO 8601).  A resumed run appends with the columns its file
    already has (a file from before the ``time`` column stays without it)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        header = _header(self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=header or FIELDS, extrasaction="ignore")
        if header is None:
            self._csv.writeheader()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except Exception:  # tensorboard not installed
                self._tb = None

    def step(self, epoch: int, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self._csv.writerow({"kind": "step", "epoch": epoch, "step": step, "loss": f"{loss:.6f}",
                            "lr": f"{lr:.6g}", "tokens_per_s": f"{tokens_per_s:.1f}", "time": utc_now()})
        self._file.flush()
        if self._tb is not None:
            self._tb.add_scalar("train/loss", loss, step)
            self._tb.add_scalar("train/lr", lr, step)

    def eval(self, epoch: int, step: int, split: str, metrics: dict[str, float]) -> None:
        now = utc_now()
        for name, value in metrics.items():
            self._csv.writerow({"kind": "eval", "epoch": epoch, "step": step, "split": split,
                                "metric": name, "value": f"{value:.6f}", "time": now})
            if self._tb is not None:
                self._tb.add_scalar(f"{split}/{name}", value, step)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path, kind: Optional[str] = None) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if kind is None or r["kind"] == kind]
