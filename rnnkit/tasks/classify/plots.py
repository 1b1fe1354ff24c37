"""Figures of a classification run: the confusion matrix and attention heat maps (matplotlib,
off-screen; the ``lab`` extra brings it)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rnnkit.plotting import pyplot, save

MAX_CELL_LABEL = 20  # characters of a class or word name shown on an axis


def _short(text: str) -> str:
    return text if len(text) <= MAX_CELL_LABEL else text[:MAX_CELL_LABEL - 1] + "…"


def confusion_png(table: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The confusion matrix as a PNG: rows gold, columns predicted, colour the share of the row,
    each cell's count written in it (up to 30 classes)."""
    plt = pyplot("lab")
    counts = np.asarray(table, dtype=float).reshape(len(labels), len(labels))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2.2 + 0.5 * n, 1.6 + 0.45 * n), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share of the gold class's texts")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.6 else "black")
    names = [_short(label) for label in labels]
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=9)
    return save(fig, Path(path))


def attention_png(rows: Sequence[tuple[Sequence[str], Sequence[float], str]], path: str | Path) -> Path:
    """Attention heat maps as a PNG: one strip per text (``(words, weights, caption)``), each
    word's cell coloured by its weight (the weights of a text sum to 1)."""
    plt = pyplot("lab")
    if not rows:
        raise ValueError("no texts to draw")
    longest = max(len(words) for words, _, _ in rows)
    width = min(2.0 + 0.42 * longest, 40.0)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, 1.35 * len(rows) + 0.3), dpi=100, squeeze=False,
                             layout="constrained")
    top = max(max(weights) for _, weights, _ in rows)
    for ax, (words, weights, caption) in zip(axes[:, 0], rows):
        values = np.full((1, longest), np.nan)
        values[0, : len(weights)] = weights
        image = ax.imshow(values, cmap="Reds", vmin=0, vmax=top, aspect="equal")
        ax.set_xticks(range(len(words)), [_short(w) for w in words], rotation=60, ha="right", fontsize=8)
        ax.set_yticks([])
        ax.set_xlim(-0.5, longest - 0.5)
        ax.set_title(caption, fontsize=9, loc="left")
        for t, weight in enumerate(weights):
            ax.text(t, 0, f"{weight:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if weight > 0.6 * top else "black")
    fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="attention weight")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
