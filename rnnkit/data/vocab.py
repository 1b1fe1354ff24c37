"""A token vocabulary with the four specials ``<pad> <unk> <s> </s>`` at ids 0-3, and the
padding of id lists into a time-first batch: shared by the tasks that read sentences
(translation, tagging)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every token vocabulary


class TokenVocab:
    """Token <-> id map of one side; ids 0-3 are ``<pad> <unk> <s> </s>``."""

    pad, unk, bos, eos = 0, 1, 2, 3

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = list(tokens)
        if tuple(self.itos[:4]) != SPECIALS:
            raise ValueError(f"a token vocabulary starts with {SPECIALS}, got {tuple(self.itos[:4])}")
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1,
              max_size: Optional[int] = None) -> "TokenVocab":
        """Tokens seen at least ``min_count`` times, most frequent first (ties by first
        appearance), at most ``max_size`` including the specials."""
        counts = Counter(tok for sentence in sentences for tok in sentence)
        ordered = [tok for tok, n in counts.most_common() if n >= min_count and tok not in SPECIALS]
        if max_size is not None:
            ordered = ordered[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + ordered)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        get, unk = self.stoi.get, self.unk
        ids = [get(tok, unk) for tok in tokens]
        return ([self.bos] if bos else []) + ids + ([self.eos] if eos else [])

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``</s>``, without ``<s>`` and ``<pad>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.itos[i])
        return out

    def to_dict(self) -> dict:
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, data: dict) -> "TokenVocab":
        return cls(data["itos"])


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Time-first padded ids (T, B) and lengths (B,) of a list of id lists."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((int(lengths.max()), len(seqs)), pad, dtype=torch.long)
    for b, seq in enumerate(seqs):
        out[: len(seq), b] = torch.tensor(seq, dtype=torch.long)
    return out, lengths  # (T, B), (B,)
