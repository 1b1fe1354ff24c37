"""The classification run end to end: train tiny runs with the CLI, classify with the CLI and
in Python (the same outputs), evaluate (its accuracy is a recount of the predictor's labels),
attention weights and their heat map, rnnkit.load, and hostile checkpoints."""

import io
import json
import logging
import random
import shutil
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import CheckpointError, DataError
from rnnkit.tasks.classify.predictor import ClassifyPredictor, Prediction
from rnnkit.train.checkpoint import _seal, resolve_checkpoint

POSITIVE = "good great fine superb lovely".split()
NEGATIVE = "bad awful poor dull boring".split()
FILLER = "the a movie film was is it and of plot".split()


def sentiment_lines(n: int, seed: int) -> list[str]:
    """``LABEL TEXT`` lines: filler words and one word that decides the label (1 positive, 0 negative)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        lines.append(f"{label} {' '.join(words)}")
    return lines


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train.txt", 300, 0), ("dev.txt", 60, 1), ("test.txt", 80, 2)):
        (folder / name).write_text("\n".join(sentiment_lines(n, seed)) + "\n", encoding="utf-8")
    return folder


TINY = ["--epochs", "6", "--embed-size", "12", "--hidden-size", "12", "--lr", "0.01", "--batch-size", "16",
        "--no-progress", "--word-dropout", "0.1", "--embed-dropout", "0.1", "--dropout", "0.1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two tiny runs on the generated folder: attention pooling, and final states."""
    folder = tmp_path_factory.mktemp("classify")
    data = write_folder(folder / "sentiment")
    out = {"data": data}
    for pooling in ("attention", "final"):
        run = folder / f"run-{pooling}"
        assert main(["train", "classify", "--data", str(data), "--run", str(run), "--pooling", pooling] + TINY) == 0
        out[pooling] = run
    return out


def printed_rows(text: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split("\t")) for line in text.splitlines()]


def test_classify_prints_what_the_predictor_returns(runs, tmp_path, capsys, monkeypatch):
    run = runs["attention"]
    texts = ["the film was great", "a dull ,  boring plot", "superb"]
    capsys.readouterr()
    assert main(["classify", "--run", str(run), *texts]) == 0
    rows = printed_rows(capsys.readouterr().out)
    predictor = ClassifyPredictor.load(run)
    predictions = predictor.classify(texts)
    assert [(p.label, f"{p.probability:.4f}") for p in predictions] == [(label, prob) for label, prob, _ in rows]
    assert [text for _, _, text in rows] == ["the film was great", "a dull , boring plot", "superb"]
    assert [p.label for p in predictions] == ["1", "0", "1"]  # the tiny run learned the words
    # a file (blank lines skipped) and standard input give the same rows
    (tmp_path / "in.txt").write_text("the film was great\n\na dull ,  boring plot\nsuperb\n", encoding="utf-8")
    assert main(["classify", "--run", str(run), "--file", str(tmp_path / "in.txt")]) == 0
    assert printed_rows(capsys.readouterr().out) == rows
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    assert main(["classify", "--run", str(run), "--file", "-"]) == 0
    assert printed_rows(capsys.readouterr().out) == rows
    # --json: the words as read, every class's probability, the attention weights
    assert main(["classify", "--run", str(run), "--json", *texts]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records] == [p.label for p in predictions]
    assert records[1]["words"] == ["a", "dull", ",", "boring", "plot"]
    for r in records:
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert len(r["attention"]) == len(r["words"]) and sum(r["attention"]) == pytest.approx(1, abs=1e-5)
        assert r["probability"] == max(r["probabilities"].values())


def test_evaluate_s_accuracy_is_a_recount_of_the_predictor_s_labels(runs, capsys):
    run, data = runs["final"], runs["data"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    predictor = rnnkit.load(run)
    assert isinstance(predictor, ClassifyPredictor)
    metrics = predictor.evaluate("test")
    assert f"test: accuracy {metrics['acc']:.4f}, macro-F1 {metrics['macro_f1']:.4f} (80 texts)" in out
    assert "class\tsupport\tprecision\trecall\tF1" in out and f"confusion matrix: {run / 'test_confusion.png'}" in out
    gold, texts = zip(*(line.split(" ", 1) for line in (data / "test.txt").read_text().splitlines()))
    labels = [p.label for p in predictor.classify(list(texts))]
    assert metrics["acc"] == pytest.approx(sum(g == p for g, p in zip(gold, labels)) / len(gold))
    assert metrics["examples"] == 80 and sum(map(sum, metrics["confusion"])) == 80
    for name in ("test_confusion.csv", "test_confusion.png", "test_predictions.tsv"):
        assert (run / name).is_file()
    rows = (run / "test_predictions.tsv").read_text().splitlines()
    assert rows[0] == "gold\tpredicted\tprobability\ttext" and [r.split("\t")[1] for r in rows[1:]] == labels
    # another file, all of it; the validation split
    assert predictor.evaluate("test", data=str(data / "dev.txt"), write=False)["examples"] == 60
    assert predictor.evaluate("valid", write=False)["examples"] == 60


def test_the_predictor_in_python(runs, caplog):
    predictor = rnnkit.load(runs["attention"])
    one = predictor.classify("the plot was awful")
    assert isinstance(one, Prediction) and one.label == "0" and 0.5 < one.probability <= 1
    label, probability = one
    assert predictor.classify(["the plot was awful"]) == [one]
    assert predictor.labels == ["0", "1"]
    assert predictor.probabilities("the plot was awful") == pytest.approx({"0": probability, "1": 1 - probability}, abs=1e-6)
    weights = predictor.attention("It was AWFUL!")
    assert [w for w, _ in weights] == ["it", "was", "awful", "!"] or [w for w, _ in weights] == ["It", "was",
                                                                                                 "AWFUL", "!"]
    assert sum(a for _, a in weights) == pytest.approx(1, abs=1e-5)
    assert max(weights, key=lambda pair: pair[1])[0].lower() == "awful"
    assert len(predictor.attention(["a", "b c"])) == 2
    long = " ".join(["dull"] * 1500)
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        assert predictor.classify(long).label == "0"
    assert "1 text is longer than 1000 words: read as the first 1000 (the run's max_words)" in caplog.text
    assert len(predictor.attention(long)) == 1000
    with pytest.raises(DataError, match="text 1: nothing to classify: expected text with at least one word, got ' '"):
        predictor.classify(["fine", " "])
    with pytest.raises(TypeError, match="text 0: expected a string, got int"):
        predictor.classify([3])
    with pytest.raises(ValueError, match="attention weights need a run trained with --pooling attention; this run "
                                         "pools with 'final'"):
        rnnkit.load(runs["final"]).attention("fine")


def test_the_attention_heat_map(runs, tmp_path, capsys):
    png = tmp_path / "attention.png"
    texts = [f"the film number {i} was great" for i in range(10)]
    capsys.readouterr()
    assert main(["classify", "--run", str(runs["attention"]), "--attention-png", str(png), *texts]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 10 and f"attention weights of the first 8 texts: {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["classify", "--run", str(runs["final"]), "--attention-png", str(png), "fine"]) == 2
    assert "--attention-png needs a run trained with --pooling attention" in capsys.readouterr().err


def test_bad_requests_are_one_line_errors(runs, tmp_path, capsys):
    run = str(runs["final"])
    assert main(["classify", "--run", run]) == 2
    assert "give the texts to classify as arguments or --file FILE" in capsys.readouterr().err
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    assert main(["classify", "--run", run, "--file", str(tmp_path / "blank.txt")]) == 2
    assert "blank.txt: nothing to classify (no text lines)" in capsys.readouterr().err
    # a dev label the training data lacks, named with its file and line
    data = write_folder(tmp_path / "odd")
    with open(data / "dev.txt", "a", encoding="utf-8") as f:
        f.write("2 a third class\n")
    assert main(["train", "classify", "--data", str(data), "--run", str(tmp_path / "r")] + TINY) == 2
    assert f"{data / 'dev.txt'}:61: label '2' is not one of the training labels (0, 1)" in capsys.readouterr().err
    (data / "train.txt").write_text("1 a\n1 b\n", encoding="utf-8")
    assert main(["train", "classify", "--data", str(data), "--run", str(tmp_path / "r2")] + TINY) == 2
    assert "a classifier needs at least two classes" in capsys.readouterr().err


def test_a_csv_file_split_in_the_run_and_in_evaluate_alike(tmp_path, capsys):
    rows = ["id,review,stars"] + [f'{i},"{line.split(" ", 1)[1]}",{"pos" if line[0] == "1" else "neg"}'
                                  for i, line in enumerate(sentiment_lines(200, 5))]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", "classify", "--data", str(tmp_path / "reviews.csv"), "--text-column", "review",
            "--label-column", "stars", "--run", str(run), "--split", "0.7,0.15,0.15"]
    assert main(args + TINY + ["--epochs", "2"]) == 0
    predictor = ClassifyPredictor.load(run)
    assert predictor.labels == ["neg", "pos"]
    metrics = predictor.evaluate("test", write=False)
    assert metrics["examples"] == 30 and set(metrics["per_class"]) == {"neg", "pos"}
    # --resume continues with the run's own settings and vocabulary
    assert main(args + TINY + ["--epochs", "3", "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out


def forge(run: Path, tmp_path: Path, change) -> Path:
    """A copy of ``run`` whose best checkpoint's task metadata went through ``change``, its
    checksums rewritten to match (what a forger would do)."""
    copy = tmp_path / f"forged-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(run, copy)
    for where in {resolve_checkpoint(copy), copy / "checkpoints" / "best"}:
        state = json.loads((where / "state.json").read_text(encoding="utf-8"))
        change(state["state"]["task"])
        (where / "state.json").write_text(json.dumps(state), encoding="utf-8")
        _seal(where)
    return copy


@pytest.mark.parametrize("change,field", [
    (lambda meta: meta.pop("vocab"), "task.vocab: missing"),
    (lambda meta: meta["vocab"].pop("labels"), "task.vocab.labels: missing"),
    (lambda meta: meta["vocab"].update(labels=["1"]), "task.vocab.labels: expected a list of at least 2 distinct"),
    (lambda meta: meta["vocab"].update(labels=["1", "1"]), "task.vocab.labels: expected a list of at least 2"),
    (lambda meta: meta["vocab"]["words"].update(itos=["a", "b"]), "task.vocab.words.itos"),
    (lambda meta: meta["model"].update(pooling="median"), "task.model.pooling"),
    (lambda meta: meta["model"].update(hidden_size=13), "task.model"),
    (lambda meta: meta["vocab"].update(labels=["0", "1", "2"]), "task.vocab.labels: declares a model whose out.weight"),
    (lambda meta: meta["data"].update(max_words=0), "task.data.max_words"),
])
def test_a_hostile_checkpoint_is_a_checkpoint_error(runs, tmp_path, change, field):
    forged = forge(runs["final"], tmp_path, change)
    for load in (ClassifyPredictor.load, rnnkit.load):
        with pytest.raises(CheckpointError, match="state.json: " + field) as info:
            load(forged)
        assert "\n" not in str(info.value)


def test_the_task_is_registered(runs, capsys):
    from rnnkit.tasks.base import TASK_NAMES, get_task

    assert "classify" in TASK_NAMES and get_task("classify").NAME == "classify"
    assert main(["evaluate", str(runs["final"]), "--help"]) == 0
    out = capsys.readouterr().out
    assert "Evaluate this classify run" in out and "--data" in out and "--split" in out
    import rnnkit.tasks.classify as package

    assert package.ClassifyPredictor is ClassifyPredictor and package.Prediction is Prediction


def test_an_ensemble_classifies_by_its_members_mean_probabilities(runs, tmp_path, capsys):
    from rnnkit.tasks.classify.predictor import ClassifyEnsemble

    first, second = ClassifyPredictor.load(runs["attention"]), ClassifyPredictor.load(runs["final"])
    texts = ["the film was great", "a dull plot", "superb and awful", "it was"]
    # the second member with its classes in the other order (its output rows swapped): the same classifier
    swapped = ClassifyPredictor.load(runs["final"])
    swapped.task.vocab.labels = swapped.task.vocab.labels[::-1]
    with torch.no_grad():
        swapped.model.out.weight.copy_(swapped.model.out.weight.flip(0))
        swapped.model.out.bias.copy_(swapped.model.out.bias.flip(0))
    assert swapped.probabilities(texts) == [pytest.approx(p, abs=1e-6) for p in second.probabilities(texts)]
    for ensemble in (ClassifyEnsemble([first, swapped]), ClassifyEnsemble.load([runs["attention"], runs["final"]])):
        assert ensemble.labels == ["0", "1"]
        mean = [{label: (a[label] + b[label]) / 2 for label in a}
                for a, b in zip(first.probabilities(texts), second.probabilities(texts))]
        assert ensemble.probabilities(texts) == [pytest.approx(m, abs=1e-6) for m in mean]
        assert [p.label for p in ensemble.classify(texts)] == [max(m, key=m.get) for m in mean]
    # evaluate: a recount of the ensemble's labels, written into the first run as test_ensemble_*
    capsys.readouterr()
    assert main(["evaluate", str(runs["attention"]), "--split", "test", "--ensemble", str(runs["final"])]) == 0
    out = capsys.readouterr().out
    assert f"ensemble of 2 runs (mean probabilities): {runs['attention']}, {runs['final']}" in out
    gold, lines = zip(*(line.split(" ", 1) for line in (runs["data"] / "test.txt").read_text().splitlines()))
    labels = [p.label for p in ensemble.classify(list(lines))]
    acc = sum(g == p for g, p in zip(gold, labels)) / len(gold)
    assert f"test: accuracy {acc:.4f}" in out
    rows = (runs["attention"] / "test_ensemble_predictions.tsv").read_text().splitlines()
    assert [r.split("\t")[1] for r in rows[1:]] == labels
    assert (runs["attention"] / "test_ensemble_confusion.png").is_file()
    # rnnkit classify --ensemble prints the ensemble's labels
    assert main(["classify", "--run", str(runs["attention"]), "--ensemble", str(runs["final"]), *texts]) == 0
    assert [row[:2] for row in printed_rows(capsys.readouterr().out)] == [
        (p.label, f"{p.probability:.4f}") for p in ensemble.classify(texts)]
    # what an ensemble cannot be
    with pytest.raises(ValueError, match="an ensemble needs at least two classifiers, got 1"):
        ClassifyEnsemble([first])
    with pytest.raises(TypeError, match="expected a list of run folders, got one"):
        ClassifyEnsemble.load(str(runs["final"]))
    with pytest.raises(ValueError, match="an ensemble has no attention weights of its own"):
        ensemble.attention("fine")
    other = ClassifyPredictor.load(runs["final"])
    other.task.vocab.labels = ["neg", "pos"]
    with pytest.raises(ValueError, match=r"its labels \(neg, pos\) differ from those of .* \(0, 1\)"):
        ClassifyEnsemble([first, other])
    other = ClassifyPredictor.load(runs["final"])
    other.task.data_cfg.tokenizer = "space"
    with pytest.raises(ValueError, match="tokenizer 'space' differs from 'simple' of"):
        ClassifyEnsemble([first, other])
    assert main(["classify", "--run", str(runs["attention"]), "--ensemble", str(runs["final"]), "--attention-png",
                 str(tmp_path / "a.png"), "fine"]) == 2
    assert "an ensemble has none of its own" in capsys.readouterr().err
