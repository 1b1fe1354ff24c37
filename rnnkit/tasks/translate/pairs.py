"""Sentence pairs for translation: the TSV reader, a split grouped by source sentence,
tokenizers (word level, or subword through sentencepiece) and the pair vocabulary.

The TSV format is the one of the Tatoeba/manythings files: ``source<TAB>target`` per line,
UTF-8, ``.gz`` read too; a third column (the attribution of newer files) is ignored.
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path
from typing import Iterable, Sequence

from rnnkit.data.text import read_lines
from rnnkit.errors import DataError


# ---------------------------------------------------------------------------------- reading
def read_pairs(path: str | Path, reverse: bool = False) -> list[tuple[str, str]]:
    """The (source, target) pairs of a TSV file, in file order; ``reverse`` swaps the columns.

    Errors name the file and line: an empty line, a line without a tab, an empty side.
    """
    pairs = []
    for number, line in read_lines(path):
        if not line.strip():
            raise DataError(f"{path}:{number}: empty line; expected 'source<TAB>target'")
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(
                f"{path}:{number}: expected 'source<TAB>target' (2 tab-separated columns), "
                f"got 1 column: {line[:60]!r}"
            )
        source, target = cols[0].strip(), cols[1].strip()
        if not source or not target:
            side = "source" if not source else "target"
            raise DataError(f"{path}:{number}: empty {side} sentence in {line[:60]!r}")
        pairs.append((target, source) if reverse else (source, target))
    if not pairs:
        raise DataError(f"{path}: no sentence pairs in the file")
    return pairs


def part_count(spec: str | float | int, total: int, what: str) -> int:
    """A part size given as a count ("5000") or a fraction of ``total`` ("0.05")."""
    try:
        value = float(spec)
    except (TypeError, ValueError):
        raise DataError(f"{what} size must be a count or a fraction, got {spec!r}") from None
    count = int(round(value * total)) if 0 < value < 1 else int(value)
    if count < 1 or count >= total:
        raise DataError(f"{what} size must be between 1 and {total - 1} pairs, got {spec!r} ({count})")
    return count


def grouped_split(pairs: Sequence[tuple[str, str]], valid: str | int, test: str | int,
                  seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Split into train/valid/test by a seeded shuffle of the distinct source sentences, so
    all translations of one source sentence land in the same part (no leak of alternative
    translations from train into test).  The test part takes whole groups until it holds at
    least ``test`` pairs, then the valid part likewise; the rest is train.  File order (the
    Tatoeba files are sorted by length) never matters."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        groups.setdefault(pair[0], []).append(pair)
    n_test = part_count(test, len(pairs), "test")
    n_valid = part_count(valid, len(pairs), "valid")
    if n_test + n_valid >= len(pairs):
        raise DataError(f"test ({n_test}) + valid ({n_valid}) pairs leave no training pairs of {len(pairs)}")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    parts: dict[str, list] = {"test": [], "valid": [], "train": []}
    for key in keys:
        if len(parts["test"]) < n_test:
            parts["test"].extend(groups[key])
        elif len(parts["valid"]) < n_valid:
            parts["valid"].extend(groups[key])
        else:
            parts["train"].extend(groups[key])
    return parts


# ------------------------------------------------------------------------------ tokenizers
_WORD = re.compile(r"\w+|[^\w\s]")
_NO_SPACE_BEFORE = set(".,!?;:)]}%»…")
_NO_SPACE_AFTER = set("¿¡([{«")


class WordTokenizer:
    """Words and single punctuation marks (``"¿Qué?"`` -> ``¿ qué ?``), optionally
    lower-cased.  ``detokenize`` glues punctuation back to its word."""

    kind = "word"

    def __init__(self, lower: bool = True) -> None:
        self.lower = lower

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lower else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        out = ""
        for tok in tokens:
            glue = not out or tok in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER or tok == "'" or out[-1] == "'"
            out += tok if glue else " " + tok
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lower": self.lower}


class SubwordTokenizer:
    """Subword pieces from a sentencepiece model (Kudo & Richardson 2018; unigram LM by
    default) trained on the training sentences; the model travels as bytes, so a run folder
    needs no extra file."""

    kind = "subword"

    def __init__(self, model_proto: bytes, lower: bool = True) -> None:
        spm = _sentencepiece()
        self.lower = lower
        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, lower: bool = True,
              model_type: str = "unigram") -> "SubwordTokenizer":
        import io

        spm = _sentencepiece()
        buffer = io.BytesIO()
        text = [s.lower() if lower else s for s in sentences]
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=buffer, vocab_size=vocab_size,
                model_type=model_type, character_coverage=1.0, hard_vocab_limit=False,
                minloglevel=2, num_threads=1,
            )
        except RuntimeError as exc:
            raise DataError(f"sentencepiece could not train a {vocab_size}-piece model: {exc}") from None
        return cls(buffer.getvalue(), lower)

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(text.lower() if self.lower else text, out_type=str)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.processor.decode_pieces(list(tokens))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lower": self.lower,
                "model": base64.b64encode(self.model_proto).decode("ascii")}


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("the subword tokenizer needs sentencepiece: pip install 'rnnkit[translate]'") from None
    return sentencepiece


def tokenizer_from_dict(data: dict):
    if data["kind"] == "word":
        return WordTokenizer(data["lower"])
    if data["kind"] == "subword":
        return SubwordTokenizer(base64.b64decode(data["model"]), data["lower"])
    raise ValueError(f"tokenizer kind must be 'word' or 'subword', got {data['kind']!r}")
