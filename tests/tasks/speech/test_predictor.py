from pathlib import Path

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import DataError
from rnnkit.tasks.speech.predictor import SpeechPredictor
from rnnkit.tasks.speech.run import make_task
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig
from tests.audio_fixtures import tone_folder

pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A small labeler trained on synthetic tones (the pitch is the digit), its wavs beside it."""
    folder = tmp_path_factory.mktemp("speech")
    wavs = tone_folder(folder / "wavs", repetitions=4)
    run = folder / "run"
    assert main(["train", "speech", "--data", str(wavs), "--run", str(run), "--test-indices", "0",
                 "--valid-indices", "1", "--hidden-size", "12", "--epochs", "3", "--train-sequences", "64",
                 "--eval-sequences", "30", "--lr", "0.01"]) == 0
    return run


@pytest.mark.parametrize("split", ["valid", "test"])
def test_recognize_gives_the_labels_that_evaluate_scores(run, split):
    """The digits recognize() computes from the wav files are those evaluate() scores (which
    come from the cached, normalized vectors of the run's task), and score the same."""
    speech = rnnkit.load(run)
    assert isinstance(speech, SpeechPredictor)
    metrics = speech.evaluate(split)
    meta = speech.meta
    task = make_task(SpeechDataConfig(**meta["data"]), SpeechModelConfig(**meta["model"]), meta["seed"], run, meta)
    numbers = task.numbers[split]
    scored, _ = task.predict(speech.model, numbers)
    wavs = [[task.recordings[i].path for i in number] for number in numbers]
    recognized = speech.recognize(wavs)
    assert recognized == scored, metrics
    truth = [task.digits[number].tolist() for number in numbers]
    hits = [p == t for ps, ts in zip(recognized, truth) for p, t in zip(ps, ts)]
    assert metrics["words"] == len(hits) and metrics["word_acc"] == pytest.approx(sum(hits) / len(hits))
    # one spoken number (a list of paths, str or Path): a list of ints
    one = speech.recognize([str(p) for p in wavs[0]])
    assert one == recognized[0] and all(type(d) is int and 0 <= d <= 9 for d in one)
    assert speech.recognize(wavs[1]) == recognized[1]


def test_bad_input_says_what_was_expected_and_what_came(run, tmp_path):
    speech = SpeechPredictor.load(run)
    wav = sorted((run.parent / "wavs").glob("*.wav"))[0]
    text = tmp_path / "3_ann_0.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"3_ann_0.txt: expected a .wav recording \(16-bit PCM mono\), got a .txt file"):
        speech.recognize([wav, text])
    with pytest.raises(DataError, match=r"expected a .wav recording .*, got a file without extension"):
        speech.recognize([tmp_path / "noise"])
    fake = tmp_path / "3_ann_1.wav"
    fake.write_text("hello")
    with pytest.raises(DataError, match=r"3_ann_1.wav: not a readable WAV file"):
        speech.recognize([wav, fake])
    with pytest.raises(DataError, match=r"3_ann_2.wav: cannot read"):
        speech.recognize([tmp_path / "3_ann_2.wav"])
    with pytest.raises(TypeError, match=r"expects a list of .wav paths \(one spoken number\) or a list of such "
                                        r"lists, got str '.*.wav'"):
        speech.recognize(str(wav))
    with pytest.raises(DataError, match=r"nothing to recognize: expected a list of .wav paths .*, got an empty list"):
        speech.recognize([])
    with pytest.raises(DataError, match=r"spoken number 1 has no recordings"):
        speech.recognize([[wav], []])
    with pytest.raises(TypeError, match=r"got a list of \w*Path, list"):
        speech.recognize([wav, [wav]])
