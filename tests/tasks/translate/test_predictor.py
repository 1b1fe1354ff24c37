"""TranslatePredictor: the Python side of a trained translation run gives what the CLI prints."""

import hashlib
import json
import logging
import shutil

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import DataError, RnnkitError
from rnnkit.tasks.translate.predictor import TranslatePredictor
from rnnkit.tasks.translate.run import train_translation
from rnnkit.tasks.translate.task import TranslateTrainConfig, TranslationDataConfig, TranslationModelConfig
from tests.tasks.translate.test_task import PAIRS

SENTENCES = ["Tom is cold.", "I like Tom.", "Where is Tom?"]


def _train(folder, epochs=3):
    data = folder / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS * 2), encoding="utf-8")
    run = folder / "run"
    train_translation(TranslationDataConfig(data=str(data), valid="2", test="2", min_count=1, batch_size=4),
                      TranslationModelConfig(hidden_size=16, embed_size=8, attention="additive"),
                      TranslateTrainConfig(epochs=epochs, progress=False), run)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("translate"))


def test_training_logs_instead_of_printing(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        _train(tmp_path, epochs=1)
    assert capsys.readouterr().out == ""
    assert "lexicon: IBM Model 1 on" in caplog.text and "attention additive" in caplog.text
    assert "example: " in caplog.text
    assert all(r.name.startswith("rnnkit.") for r in caplog.records)


def test_load_gives_the_translate_predictor(run):
    predictor = rnnkit.load(run)
    assert isinstance(predictor, TranslatePredictor)
    assert predictor.task.src_vocab.itos == TranslatePredictor.load(run, "last", "cpu").task.src_vocab.itos


@pytest.mark.parametrize("options, kwargs", [
    (["--beam", "3"], dict(beam=3)),
    (["--beam", "0"], dict(beam=0)),
    (["--beam", "2", "--length-penalty", "1.5", "--coverage", "0.2"], dict(beam=2, length_penalty=1.5, coverage=0.2)),
    (["--temperature", "1.0", "--seed", "3", "--top-k", "5"], dict(temperature=1.0, seed=3, top_k=5)),
    (["--unk", "copy"], dict(unk="copy")),
    (["--unk", "lexicon", "--beam", "2"], dict(unk="lexicon", beam=2)),
])
def test_translate_is_what_the_cli_prints(run, capsys, options, kwargs):
    assert main(["translate", *SENTENCES, "--run", str(run), *options]) == 0
    printed = capsys.readouterr().out
    outputs = rnnkit.load(run).translate(SENTENCES, **kwargs)
    assert printed == "".join(f"{text}\n" for text in outputs)


def test_n_best_is_what_the_cli_prints(run, capsys):
    assert main(["translate", *SENTENCES, "--run", str(run), "--beam", "3", "--n-best", "3"]) == 0
    printed = capsys.readouterr().out
    outputs = rnnkit.load(run).translate(SENTENCES, beam=3, n_best=3)
    assert [len(o) for o in outputs] == [3, 3, 3]
    assert printed == "".join(f"{rank}\t{log_prob:.3f}\t{text}\n"
                              for per_sentence in outputs for rank, (text, log_prob) in enumerate(per_sentence, 1))
    alone = rnnkit.load(run).translate(SENTENCES[0], beam=3, n_best=3)  # batched alone: float-level differences
    assert [t for t, _ in alone] == [t for t, _ in outputs[0]]
    assert [lp for _, lp in alone] == pytest.approx([lp for _, lp in outputs[0]], rel=1e-6)
    assert all(isinstance(lp, float) for _, lp in alone)


def test_a_string_gives_a_string_and_a_list_a_list(run):
    predictor = rnnkit.load(run)
    one = predictor.translate(SENTENCES[0], beam=2)
    assert isinstance(one, str)
    many = predictor.translate(SENTENCES, beam=2)
    assert isinstance(many, list) and len(many) == len(SENTENCES) and many[0] == one
    assert predictor.translate(tuple(SENTENCES), beam=2) == many
    assert predictor.translate([], beam=2) == []


def test_attention_png_is_what_the_cli_draws(run, tmp_path, capsys):
    cli_png, png = tmp_path / "cli.png", tmp_path / "predictor.png"
    assert main(["translate", *SENTENCES[:2], "--run", str(run), "--beam", "3", "--attention-png", str(cli_png)]) == 0
    printed = capsys.readouterr().out
    outputs = rnnkit.load(run).translate(SENTENCES[:2], beam=3, attention_png=png)
    assert printed == "".join(f"{text}\n" for text in outputs) + f"attention: {cli_png}\n"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size == cli_png.stat().st_size


def test_evaluate_is_what_the_cli_prints(run, capsys):
    assert main(["evaluate", str(run), "--split", "valid", "--beam", "2", "--unk", "copy"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    results = rnnkit.load(run).evaluate("valid", beam=2, unk="copy")
    assert rows[0] == ["decoder", "sacreBLEU", "chrF", "pairs", "seconds"]
    assert [r[:4] for r in rows[1:]] == [[name, f"{r['bleu']:.2f}", f"{r['chrf']:.2f}", str(r["pairs"])]
                                         for name, r in results.items()]
    assert list(results) == ["greedy_unk-copy", "beam2_unk-copy"] and (run / "valid_beam2_unk-copy.txt").is_file()
    with pytest.raises(RnnkitError, match="split 'dev' is not available; this data has test, valid, train"):
        rnnkit.load(run).evaluate("dev")


def _as_old_run(run, old):
    """A copy of ``run`` as runs were written before the task was renamed: its checkpoints
    say task "translation" (their checksums rewritten to match)."""
    shutil.copytree(run, old)
    for folder in (old / "checkpoints").iterdir():
        if not (folder / "state.json").is_file():
            continue
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        state["state"]["task"]["task"] = "translation"
        (folder / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        sums = (folder / "checksums.sha256").read_text(encoding="ascii").splitlines()
        digest = hashlib.sha256((folder / "state.json").read_bytes()).hexdigest()
        (folder / "checksums.sha256").write_text(
            "".join(f"{digest}  state.json\n" if line.endswith("  state.json") else f"{line}\n" for line in sums),
            encoding="ascii")
    return old


def test_an_old_translation_run_loads(run, tmp_path, capsys):
    old = _as_old_run(run, tmp_path / "old")
    predictor = rnnkit.load(old)
    assert isinstance(predictor, TranslatePredictor) and predictor.meta["task"] == "translation"
    assert predictor.translate(SENTENCES, beam=3) == rnnkit.load(run).translate(SENTENCES, beam=3)
    assert main(["translate", *SENTENCES, "--run", str(old), "--beam", "3"]) == 0
    assert capsys.readouterr().out == "".join(f"{text}\n" for text in predictor.translate(SENTENCES, beam=3))


def test_bad_input_says_what_was_expected_and_received(run):
    predictor = rnnkit.load(run)
    with pytest.raises(DataError, match=r"nothing to translate: expected a sentence of at least one word, got '   '"):
        predictor.translate(["Tom is cold.", "   "])
    with pytest.raises(DataError, match="got ''"):
        predictor.translate("")
    with pytest.raises(ValueError, match=r"beam must be >= 0 \(0: greedy\), got -1"):
        predictor.translate("Tom is cold.", beam=-1)
    with pytest.raises(ValueError, match="n_best must be >= 1, got 0"):
        predictor.translate("Tom is cold.", n_best=0)
    with pytest.raises(ValueError, match="need 1 <= n_best <= beam, got beam 2 and n_best 3"):
        predictor.translate("Tom is cold.", beam=2, n_best=3)
    with pytest.raises(TypeError, match="text must be a string or a list of strings, got int 3"):
        predictor.translate(3)
    with pytest.raises(TypeError, match="got NoneType None"):
        predictor.translate(["Tom is cold.", None])
    with pytest.raises(ValueError, match="unk must be one of none, copy, lexicon, got 'guess'"):
        predictor.translate("Tom is cold.", unk="guess")
    with pytest.raises(ValueError, match="beam must be >= 0"):
        predictor.evaluate("valid", beam=-2)


def test_a_missing_lexicon_is_refused_by_translate_and_fitted_by_evaluate(run, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "lexicon.json.gz").unlink()
    predictor = rnnkit.load(copy)
    with pytest.raises(RnnkitError, match="lexicon.json.gz is missing"):
        predictor.translate("Tom is cold.", unk="lexicon")
    with caplog.at_level(logging.INFO, logger="rnnkit"):
        predictor.evaluate("valid", limit=1, unk="lexicon")
    assert "lexicon: IBM Model 1 on" in caplog.text and (copy / "lexicon.json.gz").is_file()
    assert isinstance(predictor.translate("Tom is cold.", unk="lexicon"), str)
