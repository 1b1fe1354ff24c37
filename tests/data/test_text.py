import gzip

import pytest
import torch

from rnnkit.data import EOS, UNK, Vocab, batchify, load_splits, read_text, split_text, tokenize, windows
from rnnkit.errors import DataError


def test_read_plain_and_gz(tmp_path):
    (tmp_path / "a.txt").write_text("héllo\nworld\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write("héllo\nworld\n")
    assert read_text(tmp_path / "a.txt") == read_text(tmp_path / "a.txt.gz") == "héllo\nworld\n"


def test_read_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file"):
        read_text(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not UTF-8"):
        read_text(bad)


def test_word_tokens_end_lines_with_eos_and_vocab_round_trip():
    toks = tokenize("a b\n\nb c\n", "word")
    assert toks == ["a", "b", EOS, "b", "c", EOS]
    vocab = Vocab.build(toks, "word")
    assert vocab.itos[:2] == [UNK, EOS] and vocab.itos[2] == "b"  # most frequent first
    ids = vocab.encode(toks + ["zzz"])
    assert ids[-1].item() == vocab.unk
    assert vocab.decode(vocab.encode(toks)) == "a b\nb c\n"
    assert Vocab.from_dict(vocab.to_dict()).itos == vocab.itos


def test_char_vocab_and_max_size():
    vocab = Vocab.build(tokenize("aaabbc", "char"), "char", max_size=3)
    assert vocab.itos == [UNK, "a", "b"]
    assert vocab.decode(vocab.encode(list("abc"))) == "ab" + UNK


def test_batchify_makes_contiguous_parallel_streams():
    ids = torch.arange(10)
    streams = batchify(ids, 3)  # 9 tokens used, 3 steps each
    assert streams.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(DataError, match="too short"):
        batchify(torch.arange(3), 2)


def test_windows_shift_targets_by_one():
    stream = torch.arange(12).view(6, 2)
    pairs = windows(stream, 2)
    assert [p[0].shape[0] for p in pairs] == [2, 2, 1]
    for x, y in pairs:
        assert torch.equal(y, x + 2)  # the next step of each stream


def test_splits_from_file_folder_and_embedded(tmp_path):
    text = "".join(f"line {i}\n" for i in range(100))
    assert "".join(split_text(text).values()) == text
    (tmp_path / "ptb.train.txt").write_text("a b\n")
    (tmp_path / "ptb.valid.txt").write_text("b\n")
    with pytest.raises(DataError, match="missing test"):
        load_splits(str(tmp_path))
    with gzip.open(tmp_path / "ptb.test.txt.gz", "wt") as f:
        f.write("a\n")
    splits, _ = load_splits(str(tmp_path))
    assert splits == {"train": "a b\n", "valid": "b\n", "test": "a\n"}
    embedded, source = load_splits(None)
    assert "pydoc" in source and len(embedded["train"]) > 300_000


def test_split_fractions():
    from rnnkit.data.corpus import parse_fractions

    assert parse_fractions("0.9,0.1,0") == (0.9, 0.1, 0.0)
    for bad in ("0.9,0.1", "0.5,0.2,0.2", "1,0,0", "a,b,c"):
        with pytest.raises(DataError, match="split must be three fractions"):
            parse_fractions(bad)
    text = "".join(f"line {i}\n" for i in range(100))
    parts = split_text(text, (0.9, 0.1, 0.0))
    assert set(parts) == {"train", "valid"} and parts["train"].count("\n") == 90
