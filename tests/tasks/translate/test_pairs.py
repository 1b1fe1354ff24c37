
import pytest

from rnnkit.data.vocab import TokenVocab, pad_batch
from rnnkit.errors import DataError
from rnnkit.tasks.translate.pairs import (
    SubwordTokenizer,
    WordTokenizer,
    grouped_split,
    read_pairs,
    tokenizer_from_dict,
)
from tests.files import SHARED_DATA, write_text

SPA_ENG = SHARED_DATA / "spa_eng" / "spa.txt.gz"


def write(tmp_path, text, name="pairs.tsv"):
    return write_text(tmp_path / name, text)


@pytest.mark.parametrize("name", ["pairs.tsv", "pairs.tsv.gz"])
def test_read_pairs_plain_and_gzip(tmp_path, name):
    path = write(tmp_path, "Go.\tVe.\nHi.\tHola.\tCC-BY 2.0 attribution\r\n", name)
    assert read_pairs(path) == [("Go.", "Ve."), ("Hi.", "Hola.")]
    assert read_pairs(path, reverse=True) == [("Ve.", "Go."), ("Hola.", "Hi.")]


@pytest.mark.parametrize("text,message", [
    ("Go.\tVe.\n\nHi.\tHola.\n", r"pairs.tsv:2: empty line; expected 'source<TAB>target'"),
    ("Go.\tVe.\nHi. Hola.\n", r"pairs.tsv:2: expected 'source<TAB>target' \(2 tab-separated columns\), got 1 column"),
    ("Go.\tVe.\nHi.\t \n", r"pairs.tsv:2: empty target sentence"),
    ("\tVe.\n", r"pairs.tsv:1: empty source sentence"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_pairs(write(tmp_path, text))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "absent.tsv")
    with pytest.raises(DataError, match="no sentence pairs"):
        read_pairs(write(tmp_path, ""))


def toy_pairs(n=300):
    # several translations for many sources, sorted by length like the Tatoeba file
    pairs = [(f"sentence {i // 3}", f"frase {i} {'x ' * (i % 5)}".strip()) for i in range(n)]
    return sorted(pairs, key=lambda p: len(p[0]))


def test_grouped_split_keeps_alternative_translations_together():
    pairs = toy_pairs()
    parts = grouped_split(pairs, valid="30", test="0.2", seed=3)
    assert sum(len(p) for p in parts.values()) == len(pairs)
    assert len(parts["test"]) >= 60 and len(parts["valid"]) >= 30
    sources = {name: {s for s, _ in part} for name, part in parts.items()}
    assert not sources["train"] & sources["test"]
    assert not sources["train"] & sources["valid"]
    assert not sources["valid"] & sources["test"]


def test_grouped_split_is_seeded_and_ignores_file_order():
    pairs = toy_pairs()
    a = grouped_split(pairs, "30", "60", seed=1)
    b = grouped_split(list(reversed(pairs)), "30", "60", seed=1)
    assert {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}
    c = grouped_split(pairs, "30", "60", seed=2)
    assert sorted(a["test"]) != sorted(c["test"])
    # not a split by position: the test part spans short and long sentences
    positions = sorted(pairs.index(p) for p in a["test"])
    assert positions[0] < len(pairs) // 4 and positions[-1] > 3 * len(pairs) // 4


def test_grouped_split_bad_sizes():
    with pytest.raises(DataError, match="test size must be between 1 and 299 pairs, got '300'"):
        grouped_split(toy_pairs(), "10", "300")
    with pytest.raises(DataError, match="valid size must be a count or a fraction, got 'many'"):
        grouped_split(toy_pairs(), "many", "10")


def test_word_tokenizer_splits_punctuation_and_lower_cases():
    tok = WordTokenizer(lower=True)
    assert tok.tokenize("¿Dónde está Tom?") == ["¿", "dónde", "está", "tom", "?"]
    assert tok.tokenize("I don't know, really.") == ["i", "don", "'", "t", "know", ",", "really", "."]
    assert tok.detokenize(["¿", "dónde", "está", "tom", "?"]) == "¿dónde está tom?"
    assert tok.detokenize(["i", "don", "'", "t", "know", ",", "really", "."]) == "i don't know, really."
    assert WordTokenizer(lower=False).tokenize("Tom") == ["Tom"]


def test_pair_vocab_specials_min_count_and_decode():
    vocab = TokenVocab.build([["a", "b", "a"], ["a", "c"]], min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "<s>", "</s>", "a"]
    assert vocab.encode(["a", "zzz"], bos=True, eos=True) == [2, 4, 1, 3]
    assert vocab.decode([2, 4, 1, 3, 4]) == ["a", "<unk>"]
    assert TokenVocab.from_dict(vocab.to_dict()).itos == vocab.itos
    ids, lengths = pad_batch([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 8], [6, 0], [7, 0]] and lengths.tolist() == [3, 1]


def test_subword_tokenizer_round_trip():
    pytest.importorskip("sentencepiece")
    sentences = [f"the cat number {i} sat on the mat with {i * 7} friends." for i in range(300)]
    tok = SubwordTokenizer.train(sentences, vocab_size=60, lower=True)
    pieces = tok.tokenize("The cat sat on the mat.")
    assert len(pieces) > 3
    assert tok.detokenize(pieces) == "the cat sat on the mat."
    again = tokenizer_from_dict(tok.to_dict())
    assert again.tokenize("The cat sat on the mat.") == pieces


@pytest.mark.skipif(not SPA_ENG.is_file(), reason="../shared/data/spa_eng is absent")
def test_real_spa_eng_file_and_its_grouped_split():
    pairs = read_pairs(SPA_ENG)
    assert len(pairs) == 118121 and pairs[0] == ("Go.", "Ve.")
    parts = grouped_split(pairs, "3000", "6000", seed=1234)
    assert len(parts["test"]) >= 5000
    assert not {s for s, _ in parts["train"]} & {s for s, _ in parts["test"]}
