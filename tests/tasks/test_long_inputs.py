"""Huge inputs to the predictors and their commands: tagging a 50,000-word line in bounded
memory, translation refusing an over-long sentence at once, ``rnnkit tag --file -``,
``rnnkit recognize`` and ``rnnkit sample --run``."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.errors import DataError
from rnnkit.tasks.tag.predictor import MAX_SENTENCE_WORDS, MAX_WORD_CHARS, TagPredictor
from rnnkit.tasks.translate.predictor import MAX_SOURCE_TOKENS, TranslatePredictor
from tests.tasks.tag.test_predictor import TEXT, train_tiny_tagger, tsv_sentences


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory) -> Path:
    return train_tiny_tagger(tmp_path_factory.mktemp("tagger"))


# ---------------------------------------------------------------------------------- tagging

_TAG_LINE = textwrap.dedent("""
    import json, logging, random, resource, sys
    from rnnkit.tasks.tag.predictor import TagPredictor
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    tagger = TagPredictor.load(sys.argv[1])
    rng = random.Random(0)
    vocab = ["the", "a", "x", "y", "b", "c", "d", "zq", "42", ",", "B"]  # no sentence end
    line = " ".join(rng.choice(vocab) for _ in range(int(sys.argv[2])))
    tagger.tag("the x")  # warm up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sentences = tagger.tag_sentences(line)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"grew_mb": grew / 1024, "sentences": len(sentences), "longest": max(map(len, sentences)),
                      "words": sum(map(len, sentences)), "tagged": all(len(s.tags) == len(s) for s in sentences)}))
""")


def _tag_line(run: Path, words: int) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", _TAG_LINE, str(run), str(words)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_50000_word_line_is_tagged_in_bounded_memory(tag_run):
    """One line without sentence ends: 50 sentences of 1,000 words, and memory that does not
    grow with the line but for its words' Python objects (~40 bytes a word).  Before, the line
    was one sequence of 50,000 steps, and tagging it took ~0.8 KB a word more with this tiny
    tagger (the gates and states a backward would need, and their per-step views; ~5 KB a
    word with the default sizes): 42 MB for 50,000 words against 5 MB for 5,000; now 6 and 4."""
    if sys.platform != "linux":
        pytest.skip("ru_maxrss in KiB on Linux")
    short, _ = _tag_line(tag_run, 5000)
    result, log = _tag_line(tag_run, 50000)
    assert result["words"] == 50000 and result["tagged"]
    assert result["sentences"] == 50000 // MAX_SENTENCE_WORDS and result["longest"] == MAX_SENTENCE_WORDS
    assert f"longer than {MAX_SENTENCE_WORDS} words (the longest 50000)" in log
    assert result["grew_mb"] - short["grew_mb"] < 15, (short, result)


def test_long_sentences_come_back_as_pieces_tagged_as_sentences(tag_run, caplog):
    tagger = TagPredictor.load(tag_run)
    words = ("the y a x a b " * 400).split()  # 2,400 words
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        tagged = tagger.tag_sentences(["x a", " ".join(words)])
    assert [len(s) for s in tagged] == [2, 1000, 1000, 400]
    assert [w for s in tagged[1:] for w in s.words] == words
    assert tagged[2].text == " ".join(words[1000:2000])
    # each piece is tagged as the sentence it is
    assert [s.tags for s in tagged[1:]] == [s.tags for s in tagger.tag_sentences([s.text for s in tagged[1:]])]
    assert "1 sentence longer than 1000 words (the longest 2400)" in caplog.text


def test_a_very_long_word_is_read_by_its_ends(tag_run, caplog):
    tagger = TagPredictor.load(tag_run)
    long_word = "x" * 20 + "y" * 100_000 + "a" * 20
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        tagged = tagger.tag(f"the {long_word} a")
    assert [w for w, _ in tagged[0]] == ["the", long_word, "a"]
    half = MAX_WORD_CHARS // 2
    same = tagger.tag(f"the {long_word[:half] + long_word[-half:]} a")
    assert [t for _, t in tagged[0]] == [t for _, t in same[0]]
    assert f"1 words are longer than {MAX_WORD_CHARS} characters" in caplog.text


def test_short_text_is_tagged_as_before(tag_run):
    """Batching by padded words splits only long batches: the toy sentences are tagged in
    one batch, as ``task.predict`` does."""
    tagger = TagPredictor.load(tag_run)
    sentences = tagger.tag_sentences(TEXT)
    assert [s.tags for s in sentences] == tagger.task.predict(tagger.model, sentences)


def test_tag_file_dash_reads_standard_input(tag_run, monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(TEXT + "\n"))
    assert main(["tag", "--run", str(tag_run), "--format", "tsv", "--file", "-"]) == 0
    assert tsv_sentences(capsys.readouterr().out) == TagPredictor.load(tag_run).tag(TEXT)
    monkeypatch.setattr(sys, "stdin", io.StringIO(" \n"))
    assert main(["tag", "--run", str(tag_run), "--file", "-"]) == 2
    assert "nothing to tag" in capsys.readouterr().err


def test_tag_cli_on_stdin_end_to_end(tag_run):
    """The installed command reads a pipe (a line of 3,000 words: three sentences out)."""
    line = " ".join(["the", "y", "a"] * 1000)
    done = subprocess.run([sys.executable, "-m", "rnnkit", "tag", "--run", str(tag_run), "--format", "tsv",
                           "--file", "-"], input=line + "\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [len(s) for s in tsv_sentences(done.stdout)] == [1000, 1000, 1000]
    assert "tagged as consecutive sentences of at most 1000 words" in done.stderr


# ------------------------------------------------------------------------------ translation

@pytest.fixture(scope="module")
def translate_run(tmp_path_factory) -> Path:
    from tests.tasks.translate.test_predictor import _train

    return _train(tmp_path_factory.mktemp("translate"), epochs=1)


def test_an_over_long_sentence_is_refused_at_once(translate_run, capsys):
    translator = TranslatePredictor.load(translate_run)
    limit = translator.max_source_tokens
    assert limit == min(MAX_SOURCE_TOKENS, 10 * translator.task.data_cfg.max_length)
    words = " ".join(["tom"] * 5000)
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"the sentence has 5000 tokens; this run translates at most {limit} tokens"):
        translator.translate(words)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(DataError, match=r"sentence 2 has 5000 tokens"):
        translator.translate(["tom is cold .", words])
    capsys.readouterr()
    start = time.perf_counter()
    assert main(["translate", "--run", str(translate_run), words]) == 2
    assert time.perf_counter() - start < 1.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"at most {limit} tokens per sentence" in err and "5000 tokens" in err
    # at the limit it translates, and the output is bounded by twice the source plus 10
    out = translator.translate(" ".join(["tom"] * limit), beam=0)
    assert len(out.split()) <= 2 * limit + 10


# ----------------------------------------------------------------------------------- speech

def test_recognize_prints_what_the_predictor_recognizes(tmp_path, capsys):
    pytest.importorskip("librosa")
    from rnnkit.tasks.speech.predictor import SpeechPredictor
    from tests.audio_fixtures import tone, tone_folder, write_wav

    wavs = tone_folder(tmp_path / "wavs", repetitions=3)
    run = tmp_path / "run"
    assert main(["train", "speech", "--data", str(wavs), "--run", str(run), "--test-indices", "0",
                 "--valid-indices", "1", "--hidden-size", "12", "--epochs", "2", "--train-sequences", "32",
                 "--eval-sequences", "10", "--lr", "0.01"]) == 0
    # new recordings: tones the run has not seen (other detuning)
    new = [write_wav(tmp_path / f"new_{k}.wav", tone(250 * 1.25 ** d * 1.005, 0.15)) for k, d in enumerate([3, 1, 4])]
    expected = SpeechPredictor.load(run).recognize(new)
    capsys.readouterr()
    assert main(["recognize", "--run", str(run), *map(str, new)]) == 0
    assert capsys.readouterr().out == "".join(map(str, expected)) + "\n"
    assert main(["recognize", "--run", str(run), str(tmp_path / "missing.txt")]) == 2
    assert "expected a .wav recording" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- sample

def test_sample_takes_the_run_as_flag_or_positional(tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text("the cat sat on the mat.\n" * 100)
    run = tmp_path / "run"
    assert main(["train", "lm", "--data", str(data), "--run", str(run), "--epochs", "1", "--bptt", "20",
                 "--batch-size", "4", "--no-progress", "--sample-length", "5", "--hidden-size", "16",
                 "--embed-size", "8", "--num-layers", "1"]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prime", "the ", "--length", "20", "--seed", "3"]) == 0
    flag = capsys.readouterr().out
    assert main(["sample", str(run), "--prime", "the ", "--length", "20", "--seed", "3"]) == 0
    assert capsys.readouterr().out == flag and flag.startswith("the ")
    assert main(["sample", str(run), "--run", str(tmp_path / "other")]) == 2
    assert "give the run once" in capsys.readouterr().err
