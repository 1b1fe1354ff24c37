import io

import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.tag.treebank import (
    TaggedSentence,
    find_treebank,
    read_conllu,
    tokenize,
    write_conllu,
    write_tsv,
)
from tests.files import SHARED_DATA, write_text

EWT = SHARED_DATA / "ud_english_ewt"

SAMPLE = """# sent_id = s1
# text = I'm here.
1-2\tI'm\t_\t_\t_\t_\t_\t_\t_\t_
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2\t'm\tbe\tAUX\tVBP\t_\t3\tcop\t_\t_
3\there\there\tADV\tRB\t_\t0\troot\t_\tSpaceAfter=No
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = s2
1\tRun\trun\tVERB\tVB\t_\t0\troot\t_\t_
2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_
"""


def write(tmp_path, text, name="t.conllu"):
    return write_text(tmp_path / name, text)


@pytest.mark.parametrize("name", ["t.conllu", "t.conllu.gz"])
def test_reads_words_and_skips_multiword_tokens_and_empty_nodes(tmp_path, name):
    sentences = read_conllu(write(tmp_path, SAMPLE, name))
    assert [s.words for s in sentences] == [["I", "'m", "here", "."], ["Run", "!"]]
    assert [s.tags for s in sentences] == [["PRON", "AUX", "ADV", "PUNCT"], ["VERB", "PUNCT"]]
    assert sentences[0].sent_id == "s1" and sentences[0].text == "I'm here."
    assert sentences[1].text is None


def test_xpos_column_and_limit(tmp_path):
    path = write(tmp_path, SAMPLE)
    (only,) = read_conllu(path, "xpos", limit=1)
    assert only.tags == ["PRP", "VBP", "RB", "."]
    with pytest.raises(ValueError, match="column must be one of"):
        read_conllu(path, "deprel")


@pytest.mark.parametrize("bad, line, message", [
    ("1\tI\tI\tPRON\n", 1, "10 tab-separated fields, got 4"),
    ("1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\nx\tam\tbe\tAUX\tVBP\t_\t1\tcop\t_\t_\n", 2, "ID must be"),
    ("1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n3\tam\tbe\tAUX\tVBP\t_\t1\tcop\t_\t_\n", 2, "expected 2, got 3"),
    ("# c\n1\tI\tI\t_\tPRP\t_\t0\troot\t_\t_\n", 2, "no UPOS tag"),
    ("1\t\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n", 1, "empty word form"),
    ("# only a comment\n", 1, "without word lines"),
    ("1\tI\tI\tPRON\tPRP\t_\tzero\troot\t_\t_\n", 1, "cannot parse"),
])
def test_malformed_files_name_file_and_line(tmp_path, bad, line, message):
    good = "1\tOk\tok\tINTJ\tUH\t_\t0\troot\t_\t_\n\n"
    path = write(tmp_path, good + bad)
    with pytest.raises(DataError, match=message) as info:
        read_conllu(path)
    assert f"{path}:{line + 2}" in str(info.value)


def test_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="no such"):
        read_conllu(tmp_path / "absent.conllu")
    with pytest.raises(DataError, match="no sentences"):
        read_conllu(write(tmp_path, "\n\n"))
    bad = tmp_path / "latin1.conllu"
    bad.write_bytes("1\tcaf\xe9\t_\tNOUN\tNN\t_\t0\troot\t_\t_\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.conllu:1: not UTF-8"):
        read_conllu(bad)


def test_find_treebank(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        find_treebank(tmp_path / "none")
    write(tmp_path, SAMPLE, "xx_t-ud-train.conllu.gz")
    with pytest.raises(DataError, match="no \\*-ud-dev.conllu"):
        find_treebank(tmp_path)
    write(tmp_path, SAMPLE, "xx_t-ud-dev.conllu")
    found = find_treebank(tmp_path)
    assert found["train"].name == "xx_t-ud-train.conllu.gz" and found["valid"].name == "xx_t-ud-dev.conllu"
    assert "test" not in found
    write(tmp_path, SAMPLE, "xx_t-ud-dev.conllu.gz")
    with pytest.raises(DataError, match="several dev files"):
        find_treebank(tmp_path)


def test_written_conllu_reads_back_and_tsv_layout(tmp_path):
    sentences = [TaggedSentence(["I", "ran", "."], ["PRON", "VERB", "PUNCT"]),
                 TaggedSentence(["Go"], ["VERB"], sent_id="x", text="Go")]
    out = io.StringIO()
    write_conllu(sentences, out)
    back = read_conllu(write(tmp_path, out.getvalue()))
    assert [(s.words, s.tags) for s in back] == [(s.words, s.tags) for s in sentences]
    assert back[1].sent_id == "x" and back[0].text == "I ran ."
    out = io.StringIO()
    write_tsv(sentences, out)
    assert out.getvalue() == "I\tPRON\nran\tVERB\n.\tPUNCT\n\nGo\tVERB\n\n"


@pytest.mark.parametrize("text, expected", [
    ("I don't know.", [["I", "do", "n't", "know", "."]]),
    ("It's 3.5 kg, isn't it?", [["It", "'s", "3.5", "kg", ",", "is", "n't", "it", "?"]]),
    ("Mr. Smith left. We'll see!", [["Mr.", "Smith", "left", "."], ["We", "'ll", "see", "!"]]),
    ("the U.S. economy\nsecond line", [["the", "U.S.", "economy"], ["second", "line"]]),
    ("well-known", [["well", "-", "known"]]),
    ("  \n\n", []),
])
def test_tokenize(text, expected):
    assert tokenize(text) == expected


@pytest.mark.skipif(not EWT.is_dir(), reason="../shared/data/ud_english_ewt is absent")
def test_ud_english_ewt_counts_match_the_treebank_statistics():
    files = find_treebank(EWT)
    counts = {split: read_conllu(path) for split, path in files.items()}
    # stats.xml of UD_English-EWT v2.16: sentences and syntactic words per split
    assert {k: len(v) for k, v in counts.items()} == {"train": 12544, "valid": 2001, "test": 2077}
    assert {k: sum(map(len, v)) for k, v in counts.items()} == {"train": 204577, "valid": 25147, "test": 25094}
    assert {t for s in counts["train"] for t in s.tags} == {
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"}
