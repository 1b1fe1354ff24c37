import json
import re
import shutil
from pathlib import Path

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import DataError
from rnnkit.tasks.tag.predictor import TagPredictor
from rnnkit.tasks.tag.treebank import read_conllu
from rnnkit.train.checkpoint import _seal, read_state
from tests.tasks.tag.test_task import write_treebank

TEXT = "the y a x a. B x c\nd the y  b\n\nx a"


def train_tiny_tagger(folder: Path) -> Path:
    """A tiny tagger trained on the toy treebank (two epochs) in ``folder/run``, its treebank beside it."""
    data = write_treebank(folder / "toy")
    run = folder / "run"
    assert main(["train", "tag", "--data", str(data), "--run", str(run), "--epochs", "2", "--hidden-size", "16",
                 "--num-layers", "1", "--word-embed", "8", "--char-hidden", "8", "--char-embed", "8",
                 "--lr", "0.01", "--batch-size", "16", "--no-progress", "--dropout", "0"]) == 0
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_tagger(tmp_path_factory.mktemp("tagger"))


def tsv_sentences(text: str) -> list[list[tuple[str, str]]]:
    """(word, tag) pairs per sentence of ``rnnkit tag --format tsv`` output."""
    return [[tuple(line.split("\t")) for line in block.splitlines()] for block in text.split("\n\n") if block]


def test_tag_returns_what_the_cli_prints(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["tag", "--run", str(run), "--format", "tsv", TEXT]) == 0
    printed = tsv_sentences(capsys.readouterr().out)
    tagger = TagPredictor.load(run)
    tagged = tagger.tag(TEXT)
    assert tagged == printed
    assert [[w for w, _ in s] for s in tagged] == [["the", "y", "a", "x", "a", "."], ["B", "x", "c"],
                                                   ["d", "the", "y", "b"], ["x", "a"]]
    assert all(tag in tagger.task.vocab.tags for s in tagged for _, tag in s)
    # a list of texts: their sentences in order, as `rnnkit tag --file` tags a file's lines
    texts = ["the y a x a. B x c", "a b d", "x the y"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["tag", "--run", str(run), "--format", "tsv", "--file", str(tmp_path / "in.txt")]) == 0
    assert tagger.tag(texts) == tsv_sentences(capsys.readouterr().out)
    sentences = tagger.tag_sentences(file=tmp_path / "in.txt")
    assert [list(zip(s.words, s.tags)) for s in sentences] == tagger.tag(texts)
    assert [s.text for s in sentences] == ["the y a x a.", "B x c", "a b d", "x the y"]


def test_tag_agrees_with_the_predictions_that_evaluate_scores(run):
    """Tagging the test sentences as plain text gives the tags evaluate wrote and scored."""
    tagger = rnnkit.load(run)
    assert isinstance(tagger, TagPredictor)
    metrics = tagger.evaluate("test")
    predicted = read_conllu(run / "test_predictions.conllu")
    gold = read_conllu(next((run.parent / "toy").glob("*-ud-test.conllu")))
    tagged = tagger.tag([" ".join(s.words) for s in gold])
    assert [[t for _, t in s] for s in tagged] == [s.tags for s in predicted]
    right = sum(p == g for s, t in zip(tagged, gold) for (_, p), g in zip(s, t.tags))
    assert metrics["acc"] == pytest.approx(right / metrics["tokens"])
    assert set(metrics["per_tag"]) == set(tagger.task.vocab.tags) and metrics["models"] == 1
    assert (run / "test_confusion.csv").is_file()
    # an ensemble of the run with itself (a loaded predictor or the run folder) tags alike
    for other in (tagger, run):
        ensemble = tagger.evaluate("test", ensemble=[other], write=False)
        assert ensemble["models"] == 2 and ensemble["acc"] == metrics["acc"]


def test_a_run_of_the_old_task_name_still_loads(run, tmp_path):
    """Runs written when the task was called "tagging" load with rnnkit.load and tag alike."""
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    renamed = 0
    for state in (old / "checkpoints").glob("*/state.json"):
        record = json.loads(state.read_text(encoding="utf-8"))
        record["state"]["task"]["task"] = "tagging"
        state.write_text(json.dumps(record), encoding="utf-8")
        _seal(state.parent)  # checksums of the changed state, as the old rnnkit wrote them
        renamed += 1
    assert renamed >= 1 and read_state(old)["task"]["task"] == "tagging"
    tagger = rnnkit.load(old)
    assert isinstance(tagger, TagPredictor)
    assert tagger.tag(TEXT) == TagPredictor.load(run).tag(TEXT)


def test_bad_input_says_what_was_expected_and_what_came(run, tmp_path, capsys):
    tagger = TagPredictor.load(run)
    for empty in ("", "  \n\t ", []):
        with pytest.raises(DataError, match=re.escape(f"nothing to tag: expected text with at least one word, "
                                                      f"got {empty!r}")):
            tagger.tag(empty)
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank.txt: nothing to tag: .* got a file with none"):
        tagger.tag_sentences(file=tmp_path / "blank.txt")
    with pytest.raises(TypeError, match=r"a string or a list of strings, got int 3"):
        tagger.tag(3)
    with pytest.raises(TypeError, match=r"a string or a list of strings, got a list holding bytes"):
        tagger.tag(["a b", b"c d"])
    with pytest.raises(ValueError, match="one of the two"):
        tagger.tag_sentences("a b", file=tmp_path / "blank.txt")
    assert main(["tag", "--run", str(run), " "]) == 2
    assert "nothing to tag: expected text with at least one word, got ' '" in capsys.readouterr().err
