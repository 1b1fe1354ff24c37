import math
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.errors import DataError
from rnnkit.tasks.speech.audio import (
    Normalizer,
    acoustic_vector,
    feature_size,
    list_recordings,
    load_features,
    parse_name,
    read_wav,
)
from tests.audio_fixtures import FSDD_TAR, fsdd_slice, tone, tone_folder, write_wav

librosa = pytest.importorskip("librosa")


def test_parse_name_and_listing(tmp_path):
    rec = parse_name(tmp_path / "7_jackson_32.wav")
    assert (rec.digit, rec.speaker, rec.index) == (7, "jackson", 32)
    folder = tone_folder(tmp_path / "wavs", speakers=["ann"], repetitions=2)
    (folder / "README.txt").write_text("not a recording")  # other files are left alone
    recs = list_recordings(folder)
    assert [r.path.name for r in recs][:3] == ["0_ann_0.wav", "0_ann_1.wav", "1_ann_0.wav"]
    assert len(recs) == 20 and {r.digit for r in recs} == set(range(10))


@pytest.mark.parametrize("name", ["seven_theo_1.wav", "7-theo-1.wav", "12_theo_1.wav", "7_theo.wav", "7__1.wav"])
def test_bad_file_name_is_a_data_error_naming_the_file(tmp_path, name):
    write_wav(tmp_path / "0_ann_0.wav", tone(300))
    write_wav(tmp_path / name, tone(300))
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        list_recordings(tmp_path)


def test_empty_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no .wav files"):
        list_recordings(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no .wav files"):
        list_recordings(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        list_recordings(tmp_path / "absent")


def test_read_wav_scales_16_bit_samples(tmp_path):
    raw = np.array([0, 1, -1, 16384, -32768, 32767], np.int16)
    samples, rate = read_wav(write_wav(tmp_path / "0_a_0.wav", raw, rate=16000))
    assert rate == 16000 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, raw.astype(np.float64) / 32768)


@pytest.mark.parametrize("case, message", [
    ("text", "not a readable WAV file"),
    ("empty_file", "not a readable WAV file"),
    ("8bit", "expected 16-bit samples"),
    ("32bit", "expected 16-bit samples"),
    ("stereo", "expected a mono recording"),
    ("no_samples", "holds no samples"),
    ("rate", "expected a sample rate of 8000 Hz, got 16000 Hz"),
])
def test_bad_wav_is_a_data_error_naming_the_file(tmp_path, case, message):
    path = tmp_path / "3_ann_0.wav"
    if case == "text":
        path.write_text("this is not audio\n")
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "8bit":
        write_wav(path, np.full(800, 128), width=1)
    elif case == "32bit":
        write_wav(path, np.zeros(800), width=4)
    elif case == "stereo":
        write_wav(path, np.zeros((800, 2)), channels=2)
    elif case == "no_samples":
        write_wav(path, np.zeros(0))
    else:
        write_wav(path, tone(300, rate=16000), rate=16000)
    with pytest.raises(DataError, match=message) as exc:
        read_wav(path, sample_rate=8000)
    assert "3_ann_0.wav" in str(exc.value)
    with pytest.raises(DataError, match="3_ann_0.wav"):  # the same through the feature loader
        load_features(list_recordings(tmp_path), sample_rate=8000)


def test_mixed_sample_rates_are_refused(tmp_path):
    write_wav(tmp_path / "0_a_0.wav", tone(300))
    write_wav(tmp_path / "0_a_1.wav", tone(300, rate=16000), rate=16000)
    with pytest.raises(DataError, match="0_a_1.wav: expected a sample rate of 8000 Hz"):
        load_features(list_recordings(tmp_path))


def test_acoustic_vector_layout_against_librosa(tmp_path):
    """Means and stds of MFCCs, deltas and delta-deltas (librosa's, 32 ms / 10 ms frames),
    then the log duration."""
    samples, rate = read_wav(write_wav(tmp_path / "0_a_0.wav", tone(440, seconds=0.3, harmonic=0.3)))
    v = acoustic_vector(samples, rate)
    assert v.shape == (feature_size(13),) == (79,) and v.dtype == np.float32
    mfcc = librosa.feature.mfcc(y=samples, sr=8000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40)
    assert mfcc.shape[1] == 31  # 2400 samples / 80 + 1 centred frames
    d1 = librosa.feature.delta(mfcc, width=9, order=1, mode="interp")
    d2 = librosa.feature.delta(mfcc, width=9, order=2, mode="interp")
    expected = np.concatenate([mfcc.mean(1), mfcc.std(1), d1.mean(1), d1.std(1), d2.mean(1), d2.std(1)])
    np.testing.assert_allclose(v[:78], expected, rtol=1e-5, atol=1e-4)
    assert v[78] == pytest.approx(math.log(0.3), abs=1e-6)
    assert abs(v[0] - acoustic_vector(read_wav(write_wav(tmp_path / "0_a_1.wav", tone(880)))[0], 8000)[0]) > 1e-3


def test_very_short_recording_is_padded_to_one_window(tmp_path):
    """80 samples (10 ms) < one 256-sample window: padded with silence, 4 frames, deltas over 3."""
    samples, rate = read_wav(write_wav(tmp_path / "0_a_0.wav", tone(440, seconds=0.01)))
    v = acoustic_vector(samples, rate, n_mfcc=5)
    assert v.shape == (31,) and np.isfinite(v).all()
    padded = np.pad(samples, (0, 256 - 80))
    mfcc = librosa.feature.mfcc(y=padded, sr=8000, n_mfcc=5, n_fft=256, hop_length=80, n_mels=40)
    assert mfcc.shape == (5, 4)
    d1 = librosa.feature.delta(mfcc, width=3, order=1, mode="interp")
    np.testing.assert_allclose(v[10:15], d1.mean(1), rtol=1e-5, atol=1e-4)
    assert v[30] == pytest.approx(math.log(0.01), abs=1e-6)


def test_features_are_deterministic_and_cached(tmp_path, monkeypatch):
    folder = tone_folder(tmp_path / "wavs", speakers=["ann"], repetitions=1)
    recs = list_recordings(folder)
    cache = tmp_path / "run" / "features.npz"
    first = load_features(recs, cache=cache)
    assert first.shape == (10, 79) and cache.is_file()
    np.testing.assert_array_equal(first, load_features(recs))  # recomputed: bit for bit the same

    import rnnkit.tasks.speech.audio as audio

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache is valid")

    monkeypatch.setattr(audio, "acoustic_vector", fail)
    np.testing.assert_array_equal(load_features(recs, cache=cache), first)
    write_wav(recs[0].path, tone(1000, 0.15))  # a changed file invalidates the cache
    with pytest.raises(AssertionError, match="recomputed"):
        load_features(recs, cache=cache)
    with pytest.raises(AssertionError, match="recomputed"):  # so do other settings
        load_features(recs, n_mfcc=12, cache=cache)


def test_normalizer_uses_the_given_statistics_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(3.0, 2.0, (50, 4)), rng.normal(-1.0, 5.0, (20, 4))
    norm = Normalizer.fit(train)
    np.testing.assert_allclose(norm(train).mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(norm(train).std(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(norm(test), (test - train.mean(0)) / train.std(0), rtol=1e-5)
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again(test), norm(test))
    with pytest.raises(DataError):
        Normalizer.fit(np.zeros((0, 4)))
    constant = Normalizer.fit(np.full((10, 2), 0.1, np.float32))  # float32 0.1: no blow-up
    np.testing.assert_allclose(constant(np.array([[0.1, 1.1]], np.float32)), [[0.0, 1.0]], atol=1e-6)


def test_import_stays_light_and_missing_librosa_is_explained(monkeypatch):
    code = ("import sys, rnnkit, rnnkit.cli, rnnkit.tasks.speech.run; "
            "print('librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    monkeypatch.setitem(sys.modules, "librosa", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'rnnkit\[speech\]'"):
        acoustic_vector(np.zeros(800, np.float32), 8000)


@pytest.mark.skipif(not FSDD_TAR.is_file(), reason="../shared/data/fsdd is absent")
def test_real_fsdd_recordings(tmp_path):
    folder = fsdd_slice(tmp_path / "recordings", speakers={"theo"}, max_index=2)
    recs = list_recordings(folder)
    assert len(recs) == 20 and {r.speaker for r in recs} == {"theo"}
    samples, rate = read_wav(recs[0].path, sample_rate=8000)
    assert rate == 8000 and 0.1 < samples.size / rate < 2.5 and 0 < np.abs(samples).max() <= 1
    features = load_features(recs, sample_rate=8000)
    assert features.shape == (20, 79) and np.isfinite(features).all()
