"""Metrics logs: a CSV file per run (and TensorBoard events when it is installed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

FIELDS = ["kind", "epoch", "step", "loss", "lr", "tokens_per_s", "split", "metric", "value"]


class MetricsLog:
    """Appends rows to ``metrics.csv``: ``kind`` is "step" (training) or "eval"."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=FIELDS)
        if new:
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
                            "lr": f"{lr:.6g}", "tokens_per_s": f"{tokens_per_s:.1f}"})
        self._file.flush()
        if self._tb is not None:
            self._tb.add_scalar("train/loss", loss, step)
            self._tb.add_scalar("train/lr", lr, step)

    def eval(self, epoch: int, step: int, split: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._csv.writerow({"kind": "eval", "epoch": epoch, "step": step, "split": split,
                                "metric": name, "value": f"{value:.6f}"})
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
