"""Shared figure helpers (matplotlib on the off-screen Agg backend); matplotlib is optional:
the ``lab``, ``forecast`` and ``test`` extras bring it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot(extra: str = "lab"):
    """matplotlib's pyplot on the non-interactive Agg backend, or a clear error naming the
    extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"plots need matplotlib: pip install 'rnnkit[{extra}]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_band(ax, curves: np.ndarray, label: str, color=None, x=None) -> None:
    """Geometric mean over seeds (rows) as a line, min..max over seeds as a band."""
    curves = np.asarray(curves, dtype=float)
    curves = np.where(curves > 0, curves, np.nan)
    x = np.arange(1, curves.shape[1] + 1) if x is None else x
    logs = np.log10(curves)
    line, = ax.plot(x, 10 ** np.nanmean(logs, axis=0), label=label, color=color, lw=1.6)
    ax.fill_between(x, 10 ** np.nanmin(logs, axis=0), 10 ** np.nanmax(logs, axis=0),
                    color=line.get_color(), alpha=0.18, lw=0)
    ax.set_yscale("log")


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
