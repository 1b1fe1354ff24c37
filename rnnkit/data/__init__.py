"""Data loading: text corpora, vocabularies and batching."""

from rnnkit.data.corpus import embedded_corpus, load_splits, split_text
from rnnkit.data.text import EOS, UNK, Vocab, batchify, read_text, tokenize, windows

__all__ = [
    "EOS", "UNK", "Vocab", "batchify", "embedded_corpus", "load_splits", "read_text",
    "split_text", "tokenize", "windows",
]
