"""Where language-modeling text comes from: a file, a PTB-style folder, or the corpus that
ships with every Python installation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rnnkit.data.text import read_text
from rnnkit.errors import DataError

SPLITS = ("train", "valid", "test")


def embedded_corpus() -> str:
    """Real English prose that every CPython installation carries: the standard library's
    bundled documentation topics (``pydoc_data.topics``, the text behind ``help('topic')``),
    about 460 thousand characters, in a fixed order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip it
        raise DataError(
            "the embedded corpus (pydoc_data.topics) is missing from this Python; pass --data"
        ) from exc
    return "\n".join(topics[key].strip() + "\n" for key in sorted(topics))


def parse_fractions(spec: str) -> tuple[float, float, float]:
    """"0.9,0.05,0.05" -> (0.9, 0.05, 0.05); they must be >= 0 and sum to 1."""
    try:
        parts = tuple(float(v) for v in spec.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6 or parts[0] == 0 or parts[1] == 0:
        raise DataError(
            f"split must be three fractions train,valid,test summing to 1 with train and valid > 0, got {spec!r}"
        )
    return parts  # type: ignore[return-value]


def split_text(text: str, fractions=(0.9, 0.05, 0.05)) -> dict[str, str]:
    """Split one text into train/valid/test by position (first part train), at line
    boundaries where one is near; a test fraction of 0 gives no test split."""
    n = len(text)

    def cut(at: float) -> int:
        pos = int(n * at)
        line = text.rfind("\n", 0, pos) + 1
        return line if line > 0 and pos - line < 1000 else pos

    c1, c2 = cut(fractions[0]), cut(fractions[0] + fractions[1]) if fractions[2] > 0 else n
    out = {"train": text[:c1], "valid": text[c1:c2]}
    if fractions[2] > 0:
        out["test"] = text[c2:]
    return out


def _find_split(folder: Path, split: str) -> Optional[Path]:
    for stem in (split, f"ptb.{split}", f"{split}.txt", f"ptb.{split}.txt"):
        for name in (stem, f"{stem}.txt", f"{stem}.gz", f"{stem}.txt.gz"):
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def load_splits(data: Optional[str], fractions=(0.9, 0.05, 0.05)) -> tuple[dict[str, str], str]:
    """Train/valid/test texts and a description of where they came from.

    ``data`` is None (the embedded corpus), a text file — both split by position into
    ``fractions`` — or a folder holding train/valid/test files (``train.txt``,
    ``ptb.train.txt``, ... ``.gz`` too).
    """
    if data is None:
        return split_text(embedded_corpus(), fractions), "embedded corpus (pydoc_data.topics)"
    path = Path(data)
    if path.is_dir():
        found = {split: _find_split(path, split) for split in SPLITS}
        missing = [s for s, p in found.items() if p is None]
        if missing:
            raise DataError(
                f"{path}: expected train/valid/test files (e.g. train.txt or ptb.train.txt), "
                f"missing {', '.join(missing)}"
            )
        return {s: _nonempty(read_text(p), p) for s, p in found.items()}, str(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return split_text(_nonempty(read_text(path), path), fractions), str(path)


def _nonempty(text: str, path: Path) -> str:
    if not text.strip():
        raise DataError(f"{path}: no text in this file ({'only whitespace' if text else 'empty'}); "
                        "expected text to model")
    return text


def split_origin(data: Optional[str], split: str, fractions=(0.9, 0.05, 0.05)) -> str:
    """Where the text of ``split`` comes from, for messages: a folder's file of that split
    (``ptb/ptb.valid.txt: the valid split``), a part of a single file (``corpus.txt: the
    valid part (5%)``) or a part of the embedded corpus."""
    if data is None:
        return f"the embedded corpus's {split} part"
    path = Path(data)
    if path.is_dir():
        return f"{_find_split(path, split) or path}: the {split} split"
    return f"{path}: the {split} part ({fractions[SPLITS.index(split)]:.0%})"
