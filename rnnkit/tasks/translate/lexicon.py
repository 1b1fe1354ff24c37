"""A word-translation table learnt from sentence pairs with IBM Model 1 (Brown et al. 1993,
"The Mathematics of Statistical Machine Translation", section 4.2), used to replace the
unknown words of a translation (Luong et al. 2015, "Addressing the Rare Word Problem in
Neural Machine Translation"; Jean et al. 2015).

Model 1 explains each target word ``f_j`` of a pair by one source word ``e_i`` (or an empty
"NULL" word) chosen uniformly, then drawn from ``t(f | e)``.  Expectation–maximization:
the expected count of the link (e, f) in a pair is ``t(f|e) / sum_i t(f|e_i)`` for every
occurrence of f, and ``t(f|e)`` is re-estimated as the link counts of e normalized over f.
Every distinct (e, f) co-occurrence is one entry of a flat array, so one iteration is a few
``bincount`` calls over all co-occurrences rather than a loop over pairs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rnnkit.errors import DataError

NULL = "<null>"


class IBMModel1:
    """``t(f | e)`` over the co-occurring (source word, target word) types of a corpus.

    ``src_types`` / ``tgt_types``: the word types (``src_types[0]`` is the NULL word);
    ``link_src`` / ``link_tgt`` / ``prob``: one entry per distinct co-occurring pair."""

    def __init__(self, src_types: list[str], tgt_types: list[str], link_src: np.ndarray, link_tgt: np.ndarray,
                 prob: np.ndarray) -> None:
        self.src_types, self.tgt_types = src_types, tgt_types
        self.link_src, self.link_tgt, self.prob = link_src, link_tgt, prob

    @classmethod
    def fit(cls, pairs: Iterable[tuple[Sequence[str], Sequence[str]]], iterations: int = 5) -> "IBMModel1":
        """EM from uniform ``t(f|e)`` (every f that co-occurs with e equally likely)."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        src_index: dict[str, int] = {NULL: 0}
        tgt_index: dict[str, int] = {}
        occ_src, occ_tgt, occ_word = [], [], []  # one row per (source position, target position) of a pair
        n_words = 0  # target word occurrences so far: the id of each occurrence's denominator
        for src, tgt in pairs:
            if not tgt:
                continue
            e = np.array([0] + [src_index.setdefault(w, len(src_index)) for w in src], dtype=np.int64)
            f = np.array([tgt_index.setdefault(w, len(tgt_index)) for w in tgt], dtype=np.int64)
            occ_src.append(np.repeat(e, len(f)))
            occ_tgt.append(np.tile(f, len(e)))
            occ_word.append(np.tile(np.arange(n_words, n_words + len(f)), len(e)))
            n_words += len(f)
        if not occ_src:
            raise DataError("IBM Model 1 needs at least one pair with a non-empty target side")
        o_src, o_tgt, o_word = np.concatenate(occ_src), np.concatenate(occ_tgt), np.concatenate(occ_word)
        n_tgt = len(tgt_index)
        keys, link = np.unique(o_src * n_tgt + o_tgt, return_inverse=True)  # occurrence -> its (e, f) entry
        link_src, link_tgt = keys // n_tgt, keys % n_tgt
        per_src = np.bincount(link_src, minlength=len(src_index)).astype(np.float64)
        prob = 1.0 / per_src[link_src]
        for _ in range(iterations):
            t = prob[link]
            denominator = np.bincount(o_word, weights=t, minlength=n_words)  # sum_i t(f_j | e_i) per f_j
            counts = np.bincount(link, weights=t / denominator[o_word], minlength=len(keys))
            totals = np.bincount(link_src, weights=counts, minlength=len(src_index))
            prob = counts / totals[link_src]
        src_types = sorted(src_index, key=src_index.get)
        tgt_types = sorted(tgt_index, key=tgt_index.get)
        return cls(src_types, tgt_types, link_src, link_tgt, prob)

    def probability(self, target: str, source: str) -> float:
        """``t(target | source)``; 0 for a pair that never co-occurred."""
        try:
            e, f = self.src_types.index(source), self.tgt_types.index(target)
        except ValueError:
            return 0.0
        hit = np.flatnonzero((self.link_src == e) & (self.link_tgt == f))
        return float(self.prob[hit[0]]) if len(hit) else 0.0

    def best_translations(self) -> dict[str, str]:
        """Each source word's most probable target word (ties: the one seen first)."""
        src, tgt, prob = self.link_src, self.link_tgt, self.prob
        order = np.lexsort((tgt, -prob, src))  # by source, then falling probability
        first = np.ones(len(order), dtype=bool)
        first[1:] = src[order][1:] != src[order][:-1]
        best = order[first]
        return {self.src_types[e]: self.tgt_types[f] for e, f in zip(src[best], tgt[best]) if e != 0}


def save_lexicon(lexicon: dict[str, str], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(lexicon, fh, ensure_ascii=False, sort_keys=True)
    tmp.replace(path)
    return path


def load_lexicon(path: str | Path) -> dict[str, str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        table = json.load(fh)
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise DataError(f"{path}: expected a JSON object of source word -> target word")
    return table
