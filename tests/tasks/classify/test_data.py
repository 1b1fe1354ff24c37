"""The classification data formats: LABEL TEXT lines, CSV/TSV with named columns, folders and
single files split by a seeded shuffle; every malformed input is a DataError naming file and line."""

import gzip
import re
from pathlib import Path

import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.classify.data import (
    file_format,
    find_splits,
    label_order,
    load_splits,
    read_examples,
    read_label_lines,
    read_table,
    tokenize,
)
from rnnkit.tasks.classify.run import check_labels
from tests.files import SHARED_DATA

SST2 = SHARED_DATA / "sst2"


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_label_text_lines_plain_and_gz(tmp_path):
    text = "1 a gripping , funny film\n\n0 dull\tand   slow\nDESC:manner how do you do it ?\n"
    for name in ("sst.txt", "sst.txt.gz"):
        examples = read_label_lines(write(tmp_path / name, text), tokenizer="space")
        assert [(e.label, e.words, e.line) for e in examples] == [
            ("1", ["a", "gripping", ",", "funny", "film"], 1), ("0", ["dull", "and", "slow"], 3),
            ("DESC:manner", ["how", "do", "you", "do", "it", "?"], 4)]


def test_the_simple_tokenizer_splits_punctuation_and_clitics_and_keeps_tokenized_text():
    assert tokenize("It wasn't great!", "simple") == ["It", "was", "n't", "great", "!"]
    assert tokenize("it was n't great !", "simple") == ["it", "was", "n't", "great", "!"]
    assert tokenize("  a\tb  ", "space") == ["a", "b"]
    with pytest.raises(ValueError, match="tokenizer must be one of simple, space, got 'bpe'"):
        tokenize("a", "bpe")


def test_csv_and_tsv_with_named_columns(tmp_path):
    csv_text = 'id,review,stars\n1,"Great, really great",pos\n2,"two\nlines",neg\n\n3,Meh,neg\n'
    examples = read_table(write(tmp_path / "r.csv", csv_text), "csv", "review", "stars")
    assert [(e.label, e.words, e.line) for e in examples] == [
        ("pos", ["Great", ",", "really", "great"], 2), ("neg", ["two", "lines"], 3), ("neg", ["Meh"], 6)]
    tsv_text = 'label\ttext\n1\the said "yes\n0\tno\n'  # TSV: a quote is a character
    examples = read_examples(write(tmp_path / "r.tsv.gz", tsv_text), text_column="text", label_column="label",
                             tokenizer="space")
    assert [(e.label, e.words) for e in examples] == [("1", ["he", "said", '"yes']), ("0", ["no"])]
    assert [file_format(n) for n in ("a.csv", "a.TSV", "a.csv.gz", "a.txt", "train")] == [
        "csv", "tsv", "csv", "lines", "lines"]
    assert file_format("a.txt", "csv") == "csv"


def test_labels_are_ordered_by_value_when_integers():
    assert label_order(["10", "2", "-1", "2", "0"]) == ["-1", "0", "2", "10"]
    assert label_order(["pos", "neg", "neutral"]) == ["neg", "neutral", "pos"]


@pytest.mark.parametrize("name,text,reader,message", [
    ("bad.txt", "1 fine text\n0\n", "lines", r"bad.txt:2: expected LABEL TEXT \(a label, whitespace, then the text\), "
                                             r"got a label without text: '0'"),
    ("empty.txt", "", "lines", r"empty.txt: no examples \(an empty file\?\)"),
    ("blank.txt.gz", "\n  \n", "lines", r"blank.txt.gz: no examples"),
    ("cols.csv", "sentence,label\nhi,1\n", "csv", r"cols.csv:1: no column 'text' in the header \(it has 'sentence', "
                                                  r"'label'\); name the columns with --text-column and --label-column"),
    ("ragged.csv", "text,label\na b,1\nc,d,0\n", "csv", r"ragged.csv:3: expected 2 fields as in the header, got 3"),
    ("ragged.tsv", "text\tlabel\na b\n", "tsv", r"ragged.tsv:2: expected 2 fields as in the header, got 1"),
    ("nolabel.csv", "text,label\na b, \n", "csv", r"nolabel.csv:2: empty label \(column 'label'\)"),
    ("notext.csv", "text,label\n ,1\n", "csv", r"notext.csv:2: empty text \(column 'text'\)"),
    ("header.csv", "text,label\n", "csv", r"header.csv: no examples after the header row"),
    ("empty.csv", "", "csv", r"empty.csv: no examples \(an empty file\?\); expected a CSV header row"),
    ("quote.csv", 'text,label\n"a b,1\n', "csv", r"quote.csv:2: not a valid CSV record"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, text, reader, message):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match=message):
        read_examples(path)


def test_bad_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"1 fine\n0 caf\xe9\n")
    with pytest.raises(DataError, match=r"latin.txt:2: not UTF-8 text"):
        read_examples(path)


def test_an_unknown_label_names_file_and_line(tmp_path):
    examples = read_examples(write(tmp_path / "dev.txt", "0 a\n\n7 b\n"))
    with pytest.raises(DataError, match=re.escape("dev.txt:3: label '7' is not one of the training labels (0, 1)")):
        check_labels(examples, ["0", "1"], tmp_path / "dev.txt")


def test_a_folder_with_sst2_layout(tmp_path):
    for name in ("train.txt", "dev.txt", "test.txt.gz"):
        write(tmp_path / name, "".join(f"{i % 2} text {name} {i}\n" for i in range(10)))
    files = find_splits(tmp_path)
    assert {k: v.name for k, v in files.items()} == {"train": "train.txt", "valid": "dev.txt", "test": "test.txt.gz"}
    data = load_splits(str(tmp_path), ("train", "valid"))
    assert set(data.examples) == {"train", "valid"} and len(data.examples["train"]) == 10
    assert data.examples["valid"][0].words == ["text", "dev", ".", "txt", "0"]  # the simple tokenizer splits "."
    write(tmp_path / "valid.csv", "text,label\na,1\n")
    with pytest.raises(DataError, match="several valid files: dev.txt, valid.csv"):
        find_splits(tmp_path)
    with pytest.raises(DataError, match="no train file"):
        find_splits(tmp_path / "..")


def test_a_folder_without_dev_takes_validation_from_train(tmp_path):
    write(tmp_path / "train.tsv", "label\ttext\n" + "".join(f"{i % 3}\tword{i}\n" for i in range(100)))
    data = load_splits(str(tmp_path), ("train", "valid"), split="0.8,0.2,0")
    train, valid = data.examples["train"], data.examples["valid"]
    assert len(valid) == 20 and len(train) == 80
    assert not {e.line for e in train} & {e.line for e in valid}
    again = load_splits(str(tmp_path), ("train",), split="0.8,0.2,0").examples["train"]
    assert [e.line for e in again] == [e.line for e in train]  # the same cut when only train is asked for


def test_one_file_is_split_by_a_seeded_shuffle(tmp_path):
    path = write(tmp_path / "all.txt", "".join(f"{i % 2} text {i}\n" for i in range(50)))
    parts = load_splits(str(path), split="0.6,0.2,0.2", seed=7)
    lines = {k: [e.line for e in v] for k, v in parts.examples.items()}
    assert [len(lines[k]) for k in ("train", "valid", "test")] == [30, 10, 10]
    assert sorted(sum(lines.values(), [])) == list(range(1, 51))
    assert lines == {k: [e.line for e in v] for k, v in load_splits(str(path), split="0.6,0.2,0.2",
                                                                     seed=7).examples.items()}
    assert lines != {k: [e.line for e in v] for k, v in load_splits(str(path), split="0.6,0.2,0.2",
                                                                     seed=8).examples.items()}
    assert parts.files["test"] == path
    assert "test" not in load_splits(str(path), split="0.8,0.2,0").examples
    with pytest.raises(DataError, match="split must be three fractions"):
        load_splits(str(path), split="0.5,0.5")
    with pytest.raises(DataError, match="nope: no such file or folder"):
        load_splits(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="classification needs --data"):
        load_splits(None)


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_sst2_train_and_dev_read():
    data = load_splits(str(SST2), ("train", "valid"))
    assert (len(data.examples["train"]), len(data.examples["valid"])) == (6920, 872)
    assert label_order(e.label for e in data.examples["train"]) == ["0", "1"]
