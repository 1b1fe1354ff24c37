import csv
import re
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli import main
from rnnkit.errors import DataError
from rnnkit.tasks.speech.audio import Normalizer, Recording
from rnnkit.tasks.speech.task import (
    IGNORE,
    DigitLabeler,
    SpeechDataConfig,
    SpeechModelConfig,
    SpeechTask,
    labeling_loss,
    make_batch,
    parse_indices,
    split_recordings,
    spoken_numbers,
)
from tests.audio_fixtures import FSDD_TAR, fsdd_slice, tone_folder
from tests.conftest import assert_close, fit_task


def fake_recordings(speakers=("ann", "bob", "cy"), repetitions=10):
    return [Recording(f"{d}_{s}_{i}.wav", d, s, i) for s in speakers for d in range(10) for i in range(repetitions)]


def test_parse_indices():
    assert parse_indices("0-4") == {0, 1, 2, 3, 4}
    assert parse_indices("5,7, 9") == {5, 7, 9}
    assert parse_indices("0-1,10") == {0, 1, 10}
    for bad in ("a-b", "4-0", "1;2"):
        with pytest.raises(DataError, match="repetition indices"):
            parse_indices(bad)


def test_official_and_held_out_speaker_splits():
    recs = fake_recordings()
    parts = split_recordings(recs, SpeechDataConfig(test_indices="0-1", valid_indices="2"))
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(len(recs)))
    assert {recs[i].index for i in parts["test"]} == {0, 1} and len(parts["test"]) == 60
    assert {recs[i].index for i in parts["valid"]} == {2} and len(parts["valid"]) == 30
    assert {recs[i].index for i in parts["train"]} == set(range(3, 10))
    parts = split_recordings(recs, SpeechDataConfig(holdout_speaker="bob", valid_indices="5-9"))
    assert {recs[i].speaker for i in parts["test"]} == {"bob"} and len(parts["test"]) == 100
    assert {recs[i].speaker for i in parts["train"] + parts["valid"]} == {"ann", "cy"}
    assert {recs[i].index for i in parts["valid"]} == {5, 6, 7, 8, 9} and len(parts["valid"]) == 100
    with pytest.raises(DataError, match="holdout speaker 'zed' has no recordings; speakers: ann, bob, cy"):
        split_recordings(recs, SpeechDataConfig(holdout_speaker="zed"))
    with pytest.raises(DataError, match="the valid part is empty"):
        split_recordings(recs, SpeechDataConfig(valid_indices="20-30"))


def test_spoken_numbers_are_seeded_one_speaker_and_even():
    recs = fake_recordings()
    ids = list(range(0, len(recs), 2))  # a part: every other recording, 50 per speaker
    speakers = [recs[i].speaker for i in ids]
    numbers = spoken_numbers(ids, speakers, 3000, seed=7)
    assert numbers == spoken_numbers(ids, speakers, 3000, seed=7)
    assert numbers != spoken_numbers(ids, speakers, 3000, seed=8)
    lengths = Counter(len(n) for n in numbers)
    assert set(lengths) == set(range(3, 11))  # every length 3..10 occurs, no other
    assert min(lengths.values()) > 3000 / 8 * 0.8  # about uniform
    assert all(len({recs[i].speaker for i in n}) == 1 for n in numbers)
    assert all(len(set(n)) == len(n) for n in numbers)  # no recording twice in a number
    assert set().union(*numbers) == set(ids)
    per_speaker = {}
    for n in numbers:
        per_speaker.setdefault(recs[n[0]].speaker, Counter()).update(n)
    for counts in per_speaker.values():  # dealt from decks: every recording used as often, +-1
        assert max(counts.values()) - min(counts.values()) <= 1
    few = spoken_numbers([0, 1], ["ann", "ann"], 20, seed=0, min_words=5, max_words=5)
    assert all(len(n) == 5 and set(n) == {0, 1} for n in few)  # fewer recordings than words: repeats


def test_make_batch_pads_with_zeros_and_ignored_labels():
    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    digits = np.array([3, 1, 4, 1, 5, 9])
    x, lengths, y = make_batch([[0, 1, 2], [5]], vectors, digits)
    assert x.shape == (3, 2, 2) and lengths.tolist() == [3, 1]
    assert y.tolist() == [[3, 9], [1, IGNORE], [4, IGNORE]]
    assert x[:, 0].tolist() == vectors[:3].tolist() and x[0, 1].tolist() == vectors[5].tolist()
    assert x[1:, 1].abs().sum() == 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_labeler_with_lengths_equals_each_sequence_alone(cell, bidirectional, num_layers):
    """Padded batch with lengths == every unpadded sequence run alone (batch 1); includes a
    sequence of length 1.  float64 to the suite's tolerance."""
    torch.manual_seed(0)
    model = DigitLabeler(5, 10, cell, 7, num_layers, bidirectional).double().eval()
    lengths = [4, 1, 6, 3]
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[n:, b] = 1e3  # garbage past the end must not leak in
    out = model(x, torch.tensor(lengths))  # (T, B, C)
    for b, n in enumerate(lengths):
        alone = model(x[:n, b:b + 1])  # (n, 1, C)
        assert_close(out[:n, b], alone[:, 0], torch.float64, f"sequence {b}")


@pytest.mark.parametrize("bidirectional", [True, False])
def test_context_direction(bidirectional):
    """A unidirectional labeler's word t sees words 1..t only; a bidirectional one all words."""
    model = DigitLabeler(3, 10, "lstm", 8, 1, bidirectional).double().eval()
    x = torch.randn(5, 1, 3, dtype=torch.float64)
    changed = x.clone()
    changed[3] += 1.0
    a, b = model(x), model(changed)
    assert torch.equal(a[:3], b[:3]) != bidirectional
    assert not torch.allclose(a[3:], b[3:])


def test_loss_is_the_mean_over_words_without_padding():
    torch.manual_seed(1)
    logits = torch.randn(4, 3, 10, dtype=torch.float64)
    y = torch.tensor([[1, 2, 3], [4, IGNORE, 5], [6, IGNORE, IGNORE], [7, IGNORE, IGNORE]])
    words = [(t, b) for t in range(4) for b in range(3) if y[t, b] != IGNORE]
    expected = sum(-torch.log_softmax(logits[t, b], -1)[y[t, b]] for t, b in words) / len(words)
    assert float(labeling_loss(logits, y)) == pytest.approx(float(expected), rel=1e-12)
    garbage = logits.clone()
    garbage[2:, 1:] = 99.0
    assert float(labeling_loss(garbage, y)) == pytest.approx(float(expected), rel=1e-12)


class LookupModel(torch.nn.Module):
    """Predicts the digit written in feature 0 of each word vector."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, lengths=None):
        return F.one_hot(x[..., 0].long().clamp(0, 9), 10).float() * 10 + 0 * self.dummy


def toy_task(features, recs, data_cfg=None, normalizer=None):
    cfg = data_cfg or SpeechDataConfig(test_indices="0-1", valid_indices="2", eval_sequences=50)
    parts = split_recordings(recs, cfg)
    norm = normalizer or Normalizer(np.zeros(features.shape[1]), np.ones(features.shape[1]))
    return SpeechTask(recs, features, parts, norm, cfg, SpeechModelConfig(hidden_size=8))


def test_scores_count_words_and_whole_sequences():
    recs = fake_recordings()
    features = np.array([[r.digit, 0.0] for r in recs], np.float32)
    wrong = {i for i, r in enumerate(recs) if r.speaker == "ann" and r.digit == 3}  # mislabeled on purpose
    for i in wrong:
        features[i, 0] = 4
    task = toy_task(features, recs)
    scores = task.scores(LookupModel(), "test")
    numbers = task.numbers["test"]
    words = sum(map(len, numbers))
    bad_words = sum(i in wrong for n in numbers for i in n)
    assert scores["words"] == words and scores["sequences"] == 50
    assert scores["word_acc"] == pytest.approx(1 - bad_words / words)
    assert scores["seq_acc"] == pytest.approx(sum(not wrong & set(n) for n in numbers) / 50)
    assert scores["first_word_acc"] == pytest.approx(sum(n[0] not in wrong for n in numbers) / 50)
    assert 0 < bad_words and scores["word_acc"] < 1
    assert task.numbers["test"] == toy_task(features, recs).numbers["test"]  # fixed across runs
    assert all(recs[i].index in (0, 1) for n in numbers for i in n)
    assert all(recs[i].index == 2 for n in task.numbers["valid"] for i in n)


def test_training_learns_synthetic_tones(tmp_path):
    """Tones whose pitch is the digit: a few epochs reach near-perfect validation labeling."""
    pytest.importorskip("librosa")
    from rnnkit.tasks.speech.run import make_task

    folder = tone_folder(tmp_path / "wavs", repetitions=5)
    cfg = SpeechDataConfig(data=str(folder), test_indices="0", valid_indices="1", train_sequences=200,
                           eval_sequences=50, batch_size=16)
    task = make_task(cfg, SpeechModelConfig(hidden_size=16, dropout=0.0), seed=0, run_dir=tmp_path / "run")
    train = task.vectors[task.parts["train"]]
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)  # normalized with training statistics
    assert abs(task.vectors[task.parts["test"]].mean()) > 1e-3
    torch.manual_seed(0)
    model = task.build_model()
    before = task.evaluate(model, "valid")["word_acc"]
    fit_task(task, model, 1e-2, epochs=6)
    after = task.evaluate(model, "valid")
    assert before < 0.3 and after["word_acc"] > 0.95, (before, after)


def test_normalizer_comes_from_the_run_not_the_data(tmp_path):
    pytest.importorskip("librosa")
    from rnnkit.tasks.speech.run import make_task

    folder = tone_folder(tmp_path / "wavs", speakers=["ann"], repetitions=3)
    cfg = SpeechDataConfig(data=str(folder), test_indices="0", valid_indices="1")
    meta = {"normalizer": {"mean": [0.0] * 79, "std": [2.0] * 79}}
    task = make_task(cfg, SpeechModelConfig(), 0, tmp_path / "run", meta)
    raw = np.load(tmp_path / "run" / "features.npz")["features"]
    np.testing.assert_allclose(task.vectors, raw / 2, rtol=1e-6)


def _metrics(run):
    with open(run / "metrics.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["kind"] == "eval"]


def test_cli_train_evaluate_round_trip(tmp_path, capsys):
    """The evaluation of the best checkpoint on the validation part reproduces the numbers
    that training logged for it (same model, normalization and spoken numbers)."""
    pytest.importorskip("librosa")
    folder = tone_folder(tmp_path / "wavs", repetitions=4)
    run = tmp_path / "run"
    args = ["train", "speech", "--data", str(folder), "--run", str(run), "--test-indices", "0",
            "--valid-indices", "1", "--hidden-size", "12", "--epochs", "3", "--train-sequences", "64",
            "--eval-sequences", "40", "--no-bidirectional", "--cell", "gru", "--lr", "0.01"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1x12 GRU" in out and "recordings train 40, valid 20, test 20" in out and "example (" in out
    assert main(args) == 2  # the run exists: refuse unless --resume
    assert "pass --resume" in capsys.readouterr().err
    rows = _metrics(run)
    losses = [float(r["value"]) for r in rows if r["metric"] == "loss"]
    best_epoch = str(1 + int(np.argmin(losses)))
    logged = {r["metric"]: float(r["value"]) for r in rows if r["epoch"] == best_epoch}
    assert main(["evaluate", str(run), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    found = re.match(r"valid: word accuracy ([\d.]+), sequence accuracy ([\d.]+) .* loss ([\d.]+); "
                     r"40 spoken numbers, (\d+) words", out)
    assert found, out
    assert float(found.group(1)) == pytest.approx(logged["word_acc"], abs=1e-4)
    assert float(found.group(2)) == pytest.approx(logged["seq_acc"], abs=1e-4)
    assert float(found.group(3)) == pytest.approx(logged["loss"], abs=1e-4)
    assert main(["evaluate", str(run)]) == 0
    assert capsys.readouterr().out.startswith("test: word accuracy ")
    assert main(["train", "speech", "--data", str(folder), "--run", str(run), "--resume", "--epochs", "4",
                 "--test-indices", "0", "--valid-indices", "1", "--hidden-size", "12", "--train-sequences", "64",
                 "--eval-sequences", "40", "--no-bidirectional", "--cell", "gru"]) == 0
    assert "resuming from" in capsys.readouterr().out and len(_metrics(run)) == 4 * 3


def test_cli_bad_data_is_one_line(tmp_path, capsys):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "1_ann_0.wav").write_text("hello")
    assert main(["train", "speech", "--data", str(tmp_path / "wavs"), "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and "1_ann_0.wav: not a readable WAV file" in err
    assert main(["train", "speech", "--run", str(tmp_path / "r")]) == 2
    assert "speech needs --data DIR" in capsys.readouterr().err


@pytest.mark.skipif(not FSDD_TAR.is_file(), reason="../shared/data/fsdd is absent")
def test_short_training_on_real_fsdd_is_well_above_chance(tmp_path):
    """Two speakers, 15 repetitions: a few seconds of training labels most validation words."""
    pytest.importorskip("librosa")
    from rnnkit.tasks.speech.run import make_task

    folder = fsdd_slice(tmp_path / "recordings", speakers={"jackson", "nicolas"}, max_index=15)
    cfg = SpeechDataConfig(data=str(folder), test_indices="0-2", valid_indices="3-5", train_sequences=300,
                           eval_sequences=100)
    task = make_task(cfg, SpeechModelConfig(hidden_size=32, dropout=0.1), seed=0, run_dir=tmp_path / "run")
    assert {k: len(v) for k, v in task.parts.items()} == {"train": 180, "valid": 60, "test": 60}
    torch.manual_seed(0)
    model = task.build_model()
    fit_task(task, model, 5e-3, epochs=8)
    scores = task.scores(model, "valid")
    assert scores["word_acc"] > 0.7, scores  # chance: 0.1
