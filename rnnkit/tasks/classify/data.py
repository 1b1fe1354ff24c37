"""Labelled texts for sentence classification: the file formats, the splits and tokenizing.

Two formats, plain or ``.gz``:

- ``LABEL TEXT`` lines (SST, TREC, MR): the first whitespace-separated field is the label,
  the rest of the line the text; blank lines are skipped.
- CSV or TSV with a header row: the text and the label are the columns named by
  ``text_column`` and ``label_column``.  CSV follows RFC 4180 quoting (a quoted field may
  hold commas and line breaks); TSV has no quoting (a quote is a character like any other).

Labels are strings (``0``, ``1``, ``DESC:manner``, ``positive``): any number of classes.
Every error names the file and the line.  ``--data`` is a folder with one file per split
(``train``, ``dev`` or ``valid``, ``test``; ``.txt``/``.tsv``/``.csv``, ``.gz`` too), or one
file cut into train/valid/test by a seeded shuffle.
"""

from __future__ import annotations

import csv
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from rnnkit.data.corpus import parse_fractions
from rnnkit.data.text import read_lines
from rnnkit.errors import DataError
from rnnkit.tasks.tag.treebank import tokenize as plain_text_tokens

logger = logging.getLogger(__name__)

FORMATS = ("auto", "lines", "csv", "tsv")
TOKENIZERS = ("simple", "space")
SPLIT_FILES = {"train": ("train",), "valid": ("dev", "valid"), "test": ("test",)}
SUFFIXES = ("", ".txt", ".tsv", ".csv")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Example:
    """One text as its words (as written; lower-casing is the vocabulary's business), its
    label (None for unlabelled text) and the line of its file it starts on (0: not from a file)."""

    words: list[str]
    label: Optional[str] = None
    line: int = 0

    def __len__(self) -> int:
        return len(self.words)


def tokenize(text: str, tokenizer: str = "simple") -> list[str]:
    """The words of ``text``: ``"space"`` splits on whitespace only (text that is tokenized
    already); ``"simple"`` also splits punctuation off and English clitics as in UD
    (``wasn't`` -> ``was n't``), with the tagger's plain-text tokenizer, so that raw text and
    tokenized corpora like SST come out alike."""
    if tokenizer == "space":
        return text.split()
    if tokenizer == "simple":
        return [word for sentence in plain_text_tokens(text) for word in sentence]
    raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")


def file_format(path: str | Path, fmt: str = "auto") -> str:
    """"lines", "csv" or "tsv": ``fmt`` itself unless "auto", which goes by the name
    (``x.csv``, ``x.tsv.gz``; anything else is ``LABEL TEXT`` lines)."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    name = Path(path).name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    for kind in ("csv", "tsv"):
        if name.endswith("." + kind):
            return kind
    return "lines"


def read_label_lines(path: str | Path, tokenizer: str = "simple") -> list[Example]:
    """The examples of a file of ``LABEL TEXT`` lines (blank lines skipped)."""
    examples = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise DataError(f"{path}:{number}: expected LABEL TEXT (a label, whitespace, then the text), "
                            f"got a label without text: {line.strip()[:80]!r}")
        words = tokenize(parts[1], tokenizer)
        if not words:
            raise DataError(f"{path}:{number}: the text after the label {parts[0][:40]!r} has no words")
        examples.append(Example(words, parts[0], number))
    if not examples:
        raise DataError(f"{path}: no examples (an empty file?); expected LABEL TEXT lines")
    return examples


def _records(path: str | Path, kind: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each record of a CSV or TSV file; blank lines skipped."""
    lines = read_lines(path)
    numbers = []

    def feed() -> Iterator[str]:
        for number, line in lines:
            numbers.append(number)
            yield line + "\n"

    if kind == "csv":
        reader = csv.reader(feed(), strict=True)
    else:
        reader = csv.reader(feed(), delimiter="\t", quoting=csv.QUOTE_NONE)
    while True:
        start = len(numbers) + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}:{start}: not a valid {kind.upper()} record ({exc})") from None
        if row and any(field.strip() for field in row):
            yield start, row


def read_table(path: str | Path, kind: str, text_column: str = "text", label_column: str = "label",
               tokenizer: str = "simple") -> list[Example]:
    """The examples of a CSV (``kind`` "csv") or TSV ("tsv") file with a header row naming
    ``text_column`` and ``label_column``; every row has the header's number of fields."""
    records = _records(path, kind)
    first = next(records, None)
    if first is None:
        raise DataError(f"{path}: no examples (an empty file?); expected a {kind.upper()} header row naming the "
                        f"columns {text_column!r} and {label_column!r}, then one row per example")
    start, header = first
    names = [name.strip() for name in header]
    names[0] = names[0].lstrip("\ufeff").strip()  # a byte-order mark that a spreadsheet wrote
    for flag, name in (("--text-column", text_column), ("--label-column", label_column)):
        if name not in names:
            shown = ", ".join(repr(n[:40]) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise DataError(f"{path}:{start}: no column {name!r} in the header (it has {shown}); name the "
                            f"columns with --text-column and --label-column ({flag} is {name!r})")
    text_at, label_at = names.index(text_column), names.index(label_column)
    examples = []
    for number, row in records:
        if len(row) != len(names):
            raise DataError(f"{path}:{number}: expected {len(names)} fields as in the header, got {len(row)}")
        label = row[label_at].strip()
        if not label:
            raise DataError(f"{path}:{number}: empty label (column {label_column!r})")
        words = tokenize(row[text_at], tokenizer)
        if not words:
            raise DataError(f"{path}:{number}: empty text (column {text_column!r})")
        examples.append(Example(words, label, number))
    if not examples:
        raise DataError(f"{path}: no examples after the header row")
    return examples


def read_examples(path: str | Path, fmt: str = "auto", text_column: str = "text", label_column: str = "label",
                  tokenizer: str = "simple") -> list[Example]:
    """The labelled examples of one file, in its format (see :func:`file_format`)."""
    kind = file_format(path, fmt)
    if kind == "lines":
        return read_label_lines(path, tokenizer)
    return read_table(path, kind, text_column, label_column, tokenizer)


def find_splits(folder: str | Path) -> dict[str, Path]:
    """{"train", "valid", "test"} files of a folder: ``train``, ``dev`` or ``valid``, ``test``,
    each bare or ``.txt``/``.tsv``/``.csv``, ``.gz`` too.  Train is required."""
    folder = Path(folder)
    found = {}
    for split, stems in SPLIT_FILES.items():
        matches = [folder / f"{stem}{suffix}{gz}" for stem in stems for suffix in SUFFIXES for gz in ("", ".gz")]
        matches = [m for m in matches if m.is_file()]
        if len(matches) > 1:
            raise DataError(f"{folder}: several {split} files: {', '.join(m.name for m in matches)}")
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        raise DataError(f"{folder}: no train file (expected train.txt, dev.txt and test.txt, as SST-2 has them; "
                        ".tsv, .csv and .gz too; or give one file to split)")
    return found


def shuffled_parts(examples: Sequence[Example], fractions: Sequence[float], seed: int) -> list[list[Example]]:
    """``examples`` shuffled with ``seed`` and cut into consecutive parts of the given
    fractions (summing to 1; the last part takes the rest)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    parts, start = [], 0
    for k, fraction in enumerate(fractions):
        end = len(order) if k == len(fractions) - 1 else start + round(fraction * len(order))
        parts.append([examples[i] for i in order[start:end]])
        start = end
    return parts


@dataclass
class Splits:
    """The examples of each split, the file each comes from (for messages) and where the data
    came from as a whole."""

    examples: dict[str, list[Example]]
    files: dict[str, Path]
    source: str


def load_splits(data: Optional[str], splits: Sequence[str] = ("train", "valid", "test"), fmt: str = "auto",
                text_column: str = "text", label_column: str = "label", tokenizer: str = "simple",
                split: str = "0.8,0.1,0.1", seed: int = 1234) -> Splits:
    """The ``splits`` of ``data``: a folder of split files (:func:`find_splits`; without a dev
    file the validation part is cut from train, its share ``valid / (train + valid)`` of
    ``split``), or one file cut into the ``split`` fractions ``train,valid,test`` by a shuffle
    seeded with ``seed`` (the same cut every time).  A split the data lacks (a folder without
    test, a test fraction of 0) is left out."""
    if data is None:
        raise DataError("classification needs --data: a folder with train.txt, dev.txt (or valid.txt) and test.txt "
                        "(LABEL TEXT lines, or CSV/TSV with --text-column and --label-column), or one such file")
    path = Path(data)
    fractions = parse_fractions(split)

    def read(file: Path) -> list[Example]:
        return read_examples(file, fmt, text_column, label_column, tokenizer)

    if path.is_dir():
        files = find_splits(path)
        out: dict[str, list[Example]] = {}
        for name in splits:
            if name in files:
                out[name] = read(files[name])
        if "valid" in splits and "valid" not in files:
            train = out["train"] if "train" in out else read(files["train"])
            share = fractions[1] / (fractions[0] + fractions[1])
            kept, out["valid"] = shuffled_parts(train, (1 - share, share), seed)
            files["valid"] = files["train"]
            if "train" in out:
                out["train"] = kept
            logger.info(f"{path}: no dev file; validation: {len(out['valid'])} examples ({share:.0%}) of "
                        f"{files['train'].name}, seed {seed}")
        elif "train" in splits and "valid" not in files:
            share = fractions[1] / (fractions[0] + fractions[1])
            out["train"] = shuffled_parts(out["train"], (1 - share, share), seed)[0]
        return Splits(out, files, str(path))
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    parts = dict(zip(("train", "valid", "test"), shuffled_parts(read(path), fractions, seed)))
    out = {name: parts[name] for name in splits if parts.get(name)}
    return Splits(out, {name: path for name in out}, str(path))


def label_order(labels) -> list[str]:
    """Distinct labels in order: by value when all are integers (``-1 0 1 10``), else as strings."""
    distinct = set(labels)
    if all(_INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))
    return sorted(distinct)
