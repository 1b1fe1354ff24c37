"""CoNLL-U treebanks for tagging: read word/tag sentences, write tagged text back.

Parsing goes through the ``conllu`` library; each sentence block is checked line by line
first (ten tab-separated fields, a valid ID, a word form and a tag), because the library
accepts short lines silently and its errors carry no line number.  Multiword-token lines
(ID ``3-4``) and empty nodes (ID ``8.1``) are skipped: tags belong to syntactic words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, TextIO

from rnnkit.data.text import read_lines
from rnnkit.errors import DataError

COLUMNS = ("upos", "xpos")
_FIELD_NAMES = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
_ID = re.compile(r"^(\d+|\d+-\d+|\d+\.\d+)$")
_SPLITS = {"train": "train", "valid": "dev", "test": "test"}


@dataclass
class TaggedSentence:
    """One sentence's syntactic words and their tags (``tags`` empty for untagged text)."""

    words: list[str]
    tags: list[str]
    sent_id: Optional[str] = None
    text: Optional[str] = None

    def __len__(self) -> int:
        return len(self.words)


def _conllu():
    try:
        import conllu
    except ImportError:
        raise ImportError("reading CoNLL-U needs the conllu library: pip install 'rnnkit[tag]'") from None
    return conllu


def _blocks(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each blank-line-separated block of a file."""
    block: list[str] = []
    start = 1
    for number, line in read_lines(path):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def _check_block(path, start: int, lines: Sequence[str], column: str) -> None:
    index = _FIELD_NAMES.index(column)
    words = 0
    for offset, line in enumerate(lines):
        if line.startswith("#"):
            continue
        where = f"{path}:{start + offset}"
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"{where}: a CoNLL-U word line has 10 tab-separated fields, "
                            f"got {len(fields)}: {line[:80]!r}")
        if not _ID.match(fields[0]):
            raise DataError(f"{where}: ID must be an integer, a range like 3-4 or a decimal like 8.1, "
                            f"got {fields[0]!r}")
        if not fields[1]:
            raise DataError(f"{where}: empty word form")
        if "-" in fields[0] or "." in fields[0]:
            continue
        words += 1
        if int(fields[0]) != words:
            raise DataError(f"{where}: word IDs must count 1, 2, 3, ... within a sentence; expected {words}, "
                            f"got {fields[0]}")
        if not fields[index] or fields[index] == "_":
            raise DataError(f"{where}: no {column.upper()} tag (column {index + 1} is {fields[index]!r})")
    if words == 0:
        raise DataError(f"{path}:{start}: a sentence block without word lines")


def read_conllu(path: str | Path, column: str = "upos", limit: Optional[int] = None) -> list[TaggedSentence]:
    """Sentences of a CoNLL-U file (plain or ``.gz``) with the ``column`` tags ("upos" or
    "xpos"); at most ``limit`` sentences.  Malformed input raises DataError naming file and line."""
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}, got {column!r}")
    conllu = _conllu()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such CoNLL-U file")
    sentences = []
    for start, lines in _blocks(path):
        _check_block(path, start, lines, column)
        try:
            (tokens,) = conllu.parse("\n".join(lines) + "\n\n")
        except (conllu.exceptions.ParseException, ValueError) as exc:
            raise DataError(f"{path}:{start}: cannot parse this sentence: {exc}") from None
        words = [t for t in tokens if isinstance(t["id"], int)]
        sentences.append(TaggedSentence([t["form"] for t in words], [t[column] for t in words],
                                        tokens.metadata.get("sent_id"), tokens.metadata.get("text")))
        if limit is not None and len(sentences) >= limit:
            break
    if not sentences:
        raise DataError(f"{path}: no sentences (an empty CoNLL-U file?)")
    return sentences


def find_treebank(folder: str | Path) -> dict[str, Path]:
    """{"train", "valid", "test"} files of a UD treebank folder: ``*-ud-{train,dev,test}.conllu``
    (``.gz`` too).  Train and dev are required; test is optional."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected a UD treebank folder with *-ud-train.conllu)")
    found = {}
    for split, name in _SPLITS.items():
        matches = sorted(folder.glob(f"*-ud-{name}.conllu")) + sorted(folder.glob(f"*-ud-{name}.conllu.gz"))
        if len(matches) > 1:
            raise DataError(f"{folder}: several {name} files: {', '.join(m.name for m in matches)}")
        if matches:
            found[split] = matches[0]
    missing = [_SPLITS[s] for s in ("train", "valid") if s not in found]
    if missing:
        raise DataError(f"{folder}: no *-ud-{missing[0]}.conllu[.gz] file (a UD treebank folder has "
                        f"*-ud-train.conllu, *-ud-dev.conllu and *-ud-test.conllu)")
    return found


_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Jr", "Sr", "vs", "etc", "Inc", "Co", "Ltd", "e.g", "i.e")
_TOKEN = re.compile(
    r"""(?:[A-Za-z]\.){2,}          # abbreviations like U.S.
      | (?:""" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r""")\.(?!\w)   # Mr. etc.
      | \d+(?:[.,:]\d+)*            # numbers: 3.5, 1,000, 10:30
      | [^\W\d_]+(?=n't\b)          # "do" of "don't"
      | n't\b                       # the clitic itself
      | '(?:s|m|re|ve|ll|d)\b       # clitics 's 'm 're 've 'll 'd
      | \w+                         # words (hyphens are split off, as in UD English)
      | \S                          # any other character: punctuation
    """, re.VERBOSE | re.IGNORECASE)
_SENTENCE_END = re.compile(
    "".join(rf"(?<!\b{a}\.)" for a in _ABBREVIATIONS if "." not in a) + r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[str, list[str]]]:
    """Plain text to (sentence text, tokens) pairs, simply: one sentence per line, lines split
    further after ``.``/``!``/``?`` before a capital; English clitics split as in UD
    (``don't`` -> ``do n't``, ``I'm`` -> ``I 'm``)."""
    sentences = []
    for line in text.splitlines():
        for part in _SENTENCE_END.split(line.strip()):
            tokens = _TOKEN.findall(part)
            if tokens:
                sentences.append((part, tokens))
    return sentences


def tokenize(text: str) -> list[list[str]]:
    """The tokens of each sentence of plain text (see ``split_sentences``)."""
    return [tokens for _, tokens in split_sentences(text)]


def write_conllu(sentences: Sequence[TaggedSentence], out: TextIO, column: str = "upos") -> None:
    """Tagged sentences as CoNLL-U (ID, FORM and the tag column filled, the rest ``_``)."""
    conllu = _conllu()
    for number, sentence in enumerate(sentences, 1):
        tokens = []
        for i, (word, tag) in enumerate(zip(sentence.words, sentence.tags), 1):
            token = {name: None for name in _FIELD_NAMES}
            token.update(id=i, form=word, lemma=None, **{column: tag})
            tokens.append(token)
        metadata = {"sent_id": sentence.sent_id or str(number), "text": sentence.text or " ".join(sentence.words)}
        out.write(conllu.models.TokenList(tokens, metadata).serialize())


def write_tsv(sentences: Sequence[TaggedSentence], out: TextIO) -> None:
    """Tagged sentences as ``word<TAB>tag`` lines, a blank line after each sentence."""
    for sentence in sentences:
        for word, tag in zip(sentence.words, sentence.tags):
            out.write(f"{word}\t{tag}\n")
        out.write("\n")
