"""What every lab experiment shares: its settings, its result, random models and inputs."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

import rnnkit
from rnnkit import init


@dataclass
class LabSettings:
    """Sizes of the dynamics experiments (1-5).  ``quick`` halves the seeds."""

    hidden: int = 100  # n, units per layer
    steps: int = 200  # T
    seeds: int = 10  # independent weight draws
    batch: int = 16  # input sequences per draw


@dataclass
class LabResult:
    """An experiment's summary lines, tables (written as CSV) and figures (PNG), plus the
    numbers the summary states (``facts``, for tests and docs)."""

    name: str
    lines: list[str] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def write_tables(self, out_dir: Path) -> list[Path]:
        paths = []
        for stem, rows in self.tables.items():
            if not rows:
                continue
            path = Path(out_dir) / f"{stem}.csv"
            fields = list(dict.fromkeys(k for row in rows for k in row))
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
            paths.append(path)
        return paths


def random_layer(mode: str, n: int, seed: int, scale: float, nonlinearity: str = "tanh",
                 forget_bias: Optional[float] = None, input_size: Optional[int] = None) -> torch.nn.Module:
    """One layer in float64 with ``W_hh ~ N(0, scale/n)``, ``W_ih ~ N(0, 1/D)`` and zero
    biases (then the forget-gate bias, for an LSTM), drawn from ``seed``."""
    D = input_size or n
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        if mode == "LSTM":
            layer = rnnkit.LSTM(D, n, dtype=torch.float64)
        else:
            layer = rnnkit.RNN(D, n, nonlinearity=nonlinearity, dtype=torch.float64)
        init.hidden_normal_(layer, scale)
        init.input_normal_(layer, 1 / math.sqrt(D))
        init.zero_bias_(layer)
        if forget_bias is not None:
            init.forget_bias_(layer, forget_bias)
    finally:
        torch.set_rng_state(generator_state)
    return layer


def random_inputs(T: int, B: int, D: int, seed: int, impulse: bool = False) -> torch.Tensor:
    """(T, B, D) standard normal inputs; with ``impulse`` only the first step is non-zero, so
    what follows is the recurrence alone."""
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(T, B, D, generator=g, dtype=torch.float64)
    if impulse:
        x[1:] = 0
    return x


def geometric_mean(values) -> float:
    values = [float(v) for v in values]
    if any(v < 0 or math.isnan(v) for v in values):
        return float("nan")
    if any(v == 0 for v in values):
        return 0.0  # underflow of a vanishing quantity
    if any(math.isinf(v) for v in values):
        return math.inf
    return math.exp(sum(math.log(v) for v in values) / len(values))
