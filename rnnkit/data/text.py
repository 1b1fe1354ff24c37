"""Plain-text corpora for language modeling: reading, vocabularies and stream batching."""

from __future__ import annotations

import contextlib
import gzip
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from rnnkit.errors import DataError

UNK, EOS = "<unk>", "<eos>"
LEVELS = ("char", "word")


def bad_utf8_line(path: str | Path) -> int | str:
    """The line (1-based; ``\\n``, ``\\r\\n`` and ``\\r`` end lines) of the first byte of ``path``
    (decompressed for ``.gz``, as far as a cut archive goes) that is not UTF-8, for error
    messages; "?" where it cannot be found."""
    path = Path(path)
    raw = bytearray()
    # block by block, so that a cut or damaged archive still yields the bytes before the damage
    with contextlib.suppress(OSError, EOFError):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 16), b""):
                raw += block
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(re.findall(rb"\r\n|\r|\n", raw[: exc.start])) + 1
    return "?"


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``; ``.gz`` files are decompressed.  Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{bad_utf8_line(path)}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file, plain or ``.gz``; a missing
    file, bad bytes or a broken archive raise DataError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            for number, line in enumerate(handle, 1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        # the decoder reads ahead of the lines yielded: find the bad byte's own line
        raise DataError(f"{path}:{bad_utf8_line(path)}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None


def tokenize(text: str, level: str) -> list[str]:
    """Characters (newlines included), or whitespace-separated words with ``<eos>`` ending
    each non-empty line (the Penn Treebank convention of Mikolov et al.)."""
    if level == "char":
        return list(text)
    if level == "word":
        tokens: list[str] = []
        for line in text.splitlines():
            words = line.split()
            if words:
                tokens.extend(words)
                tokens.append(EOS)
        return tokens
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


class Vocab:
    """Token <-> id maps.  Word vocabularies reserve ``<unk>`` (id 0) and ``<eos>`` (id 1);
    character vocabularies reserve ``<unk>`` for characters unseen in training."""

    def __init__(self, tokens: Sequence[str], level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        self.level = level
        self.itos = list(tokens)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        self.unk = self.stoi[UNK]

    @classmethod
    def build(cls, tokens: Iterable[str], level: str, max_size: Optional[int] = None) -> "Vocab":
        """Most frequent first (ties by first appearance), after the special tokens."""
        counts = Counter(tokens)
        specials = [UNK, EOS] if level == "word" else [UNK]
        ordered = [tok for tok, _ in counts.most_common() if tok not in specials]
        if max_size is not None:
            ordered = ordered[: max(0, max_size - len(specials))]
        return cls(specials + ordered, level)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> Tensor:
        get, unk = self.stoi.get, self.unk
        return torch.tensor([get(tok, unk) for tok in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        toks = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(toks)
        lines, words = [], []
        for tok in toks:
            if tok == EOS:
                lines.append(" ".join(words) + "\n")
                words = []
            else:
                words.append(tok)
        return "".join(lines) + " ".join(words)

    def to_dict(self) -> dict:
        return {"level": self.level, "itos": self.itos}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        return cls(data["itos"], data["level"])


def batchify(ids: Tensor, batch_size: int, what: str = "a stream") -> Tensor:
    """Cut one long id stream into ``batch_size`` parallel streams laid side by side:
    returns (T, B), column b holding the b-th contiguous slice (Zaremba et al. 2014).  The
    tail that does not fill a full row is dropped.  ``what`` names the stream in the error
    of one too short (e.g. ``"corpus.txt: the train part"``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = ids.numel() // batch_size
    if steps < 2:
        if batch_size == 1:
            raise DataError(f"{what} of {ids.numel()} tokens is too short (need at least 2 tokens)")
        raise DataError(f"{what} of {ids.numel()} tokens is too short for batch size {batch_size} (need at least "
                        f"{2 * batch_size} tokens: 2 for each of the {batch_size} parallel streams)")
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def windows(stream: Tensor, bptt: int) -> list[tuple[Tensor, Tensor]]:
    """Consecutive (input, target) windows of at most ``bptt`` steps over a (T, B) stream;
    the target is the input shifted one step ahead."""
    out = []
    for start in range(0, stream.shape[0] - 1, bptt):
        end = min(start + bptt, stream.shape[0] - 1)
        out.append((stream[start:end], stream[start + 1 : end + 1]))
    return out
