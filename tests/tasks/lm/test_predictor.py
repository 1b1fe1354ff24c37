"""LMPredictor: the Python side of a trained language model gives what the CLI prints."""

import logging

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm.predictor import LMPredictor
from rnnkit.tasks.lm.run import train_lm
from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig
from rnnkit.train.config import TrainConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    data = folder / "corpus.txt"
    data.write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 100)
    run = folder / "run"
    train_lm(LMDataConfig(data=str(data), bptt=20, batch_size=4), LMModelConfig(hidden_size=16, embed_size=8,
             num_layers=1), TrainConfig(epochs=1, progress=False), run, sample_length=0)
    return run


def test_training_logs_instead_of_printing(tmp_path, capsys, caplog):
    data = tmp_path / "corpus.txt"
    data.write_text("abc abd abe\n" * 200)
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        train_lm(LMDataConfig(data=str(data), bptt=10, batch_size=2), LMModelConfig(hidden_size=8, embed_size=4,
                 num_layers=1), TrainConfig(epochs=1, progress=False), tmp_path / "run", sample_length=5)
    assert capsys.readouterr().out == ""
    assert "validation bits/char" in caplog.text and "sample:" in caplog.text
    assert all(r.name.startswith("rnnkit.") for r in caplog.records)


def test_load_gives_the_lm_predictor(run):
    assert isinstance(rnnkit.load(run), LMPredictor)


def test_sample_is_what_the_cli_prints(run, capsys):
    assert main(["sample", str(run), "--prime", "the ", "--length", "25", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    sample = rnnkit.load(run).sample("the ", length=25, temperature=0.8, seed=4)
    assert printed == sample + "\n"


def test_evaluate_is_what_the_cli_prints(run, capsys):
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    printed = capsys.readouterr().out
    metrics = rnnkit.load(run).evaluate("valid")
    assert printed == "valid: " + ", ".join(f"{k} {v:.4f}" if k != "tokens" else f"{k} {int(v)}"
                                              for k, v in metrics.items()) + "\n"
    with pytest.raises(RnnkitError, match="split 'train' is not available"):
        rnnkit.load(run).evaluate("train")
