"""Spoken words as fixed-size vectors: a folder of WAV recordings named like the Free Spoken
Digit Dataset (``{digit}_{speaker}_{index}.wav``, 16-bit PCM mono), one acoustic vector per
recording, a feature cache, and a normalizer fitted on the training part only.

The acoustic vector of a recording summarizes its frames: per coefficient, the mean and the
standard deviation over time of 13 mel-frequency cepstral coefficients (MFCCs; Davis &
Mermelstein 1980, "Comparison of parametric representations for monosyllabic word recognition
in continuously spoken sentences"), of their first differences ("deltas") and second
differences, each a local least-squares slope over a window of frames (Furui 1986,
"Speaker-independent isolated word recognition using dynamic features of speech spectrum"),
plus the log duration in seconds: ``6 * n_mfcc + 1`` numbers (79 by default).  The MFCCs come
from librosa (an optional dependency: ``pip install 'rnnkit[speech]'``), framed for 8 kHz
speech: 32 ms windows (256 samples), 10 ms hop, 40 mel bands.
"""

from __future__ import annotations

import hashlib
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rnnkit.errors import DataError

NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$", re.IGNORECASE)
FEATURE_VERSION = 1  # bump when the feature computation changes: old caches are then recomputed


@dataclass(frozen=True)
class Recording:
    """One recording: its file, the spoken digit (the label), the speaker, the repetition index."""

    path: Path
    digit: int
    speaker: str
    index: int


def parse_name(path: str | Path) -> Recording:
    """Digit, speaker and repetition index from a name ``{digit}_{speaker}_{index}.wav``."""
    path = Path(path)
    match = NAME.match(path.name)
    if match is None:
        raise DataError(f"{path}: file name must be {{digit}}_{{speaker}}_{{index}}.wav "
                        f"(e.g. 3_theo_12.wav), got {path.name!r}")
    return Recording(path, int(match.group(1)), match.group(2), int(match.group(3)))


def list_recordings(folder: str | Path) -> list[Recording]:
    """Every ``*.wav`` file of ``folder`` (not its subfolders), sorted by name; other files are
    left alone.  Raises DataError for a missing or empty folder and for a badly named file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected a folder of .wav recordings, e.g. the "
                        "recordings/ folder of the Free Spoken Digit Dataset)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .wav files in this folder")
    return [parse_name(p) for p in files]


def read_wav(path: str | Path, sample_rate: Optional[int] = None) -> tuple[np.ndarray, int]:
    """The samples of a 16-bit PCM mono WAV file as float32 in [-1, 1) (N,), and its rate.

    With ``sample_rate``, a file at another rate is an error (the features assume one rate)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            declared = handle.getnframes() * channels * width  # bytes the header's data chunk announces
            frames = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError, RuntimeError) as exc:  # RuntimeError: wave on a broken chunk layout
        raise DataError(f"{path}: not a readable WAV file ({exc or 'broken RIFF chunk layout'})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if width != 2:
        raise DataError(f"{path}: expected 16-bit samples (sample width 2 bytes), got {8 * width}-bit")
    if channels != 1:
        raise DataError(f"{path}: expected a mono recording, got {channels} channels")
    if sample_rate is not None and rate != sample_rate:
        raise DataError(f"{path}: expected a sample rate of {sample_rate} Hz, got {rate} Hz")
    if len(frames) % 2:
        raise DataError(f"{path}: the recording ends inside a sample (a truncated file?)")
    if len(frames) < declared:  # wave reads what is there: a file cut short loads silently otherwise
        raise DataError(f"{path}: truncated: the header announces {declared} bytes of samples, the file holds "
                        f"{len(frames)}")
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0  # (N,)
    if samples.size == 0:
        raise DataError(f"{path}: the recording holds no samples")
    return samples, rate


def _librosa():
    try:
        import librosa
    except ImportError:
        raise ImportError("acoustic features need librosa: pip install 'rnnkit[speech]'") from None
    return librosa


def feature_size(n_mfcc: int = 13) -> int:
    """Length of the acoustic vector: mean and std of MFCCs, deltas, delta-deltas; log duration."""
    return 6 * n_mfcc + 1


def acoustic_vector(samples: np.ndarray, rate: int, n_mfcc: int = 13) -> np.ndarray:
    """The fixed-size acoustic vector of one recording (``feature_size(n_mfcc)``,) float32.

    Window 32 ms, hop 10 ms, 40 mel bands; deltas over 9 frames (fewer in recordings shorter
    than 9 frames; a recording shorter than one window is padded with silence to one window,
    which gives 4 centred frames)."""
    librosa = _librosa()
    n_fft = int(round(0.032 * rate))
    hop = int(round(0.010 * rate))
    signal = samples.astype(np.float32)
    if signal.size < n_fft:  # pad very short recordings to one full window
        signal = np.pad(signal, (0, n_fft - signal.size))
    mfcc = librosa.feature.mfcc(y=signal, sr=rate, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop,
                                n_mels=40, fmax=rate / 2)  # (n_mfcc, F)
    frames = mfcc.shape[1]
    width = min(9, frames if frames % 2 else frames - 1)  # odd, 3..9, at most the number of frames
    delta = librosa.feature.delta(mfcc, width=width, order=1, mode="interp")  # (n_mfcc, F)
    delta2 = librosa.feature.delta(mfcc, width=width, order=2, mode="interp")  # (n_mfcc, F)
    parts = [m for x in (mfcc, delta, delta2) for m in (x.mean(axis=1), x.std(axis=1))]
    parts.append(np.array([np.log(samples.size / rate)]))
    return np.concatenate(parts).astype(np.float32)  # (6 n_mfcc + 1,)


def wav_features(paths: Sequence[str | Path], n_mfcc: int = 13, sample_rate: Optional[int] = None) -> np.ndarray:
    """Acoustic vectors of WAV files (N, feature_size(n_mfcc)) float32, in their order, without
    a cache.  ``sample_rate`` None: every file must have the rate of the first."""
    rate = sample_rate
    rows = []
    for path in paths:
        samples, rate = read_wav(path, rate)
        rows.append(acoustic_vector(samples, rate, n_mfcc))
    return np.stack(rows) if rows else np.zeros((0, feature_size(n_mfcc)), np.float32)  # (N, D)


def _fingerprint(recordings: Sequence[Recording], n_mfcc: int) -> str:
    """SHA-1 over the settings and every file's name and bytes: a cache is valid for exactly
    these recordings, whatever their timestamps."""
    digest = hashlib.sha1(f"v{FEATURE_VERSION} n_mfcc={n_mfcc}".encode())
    for rec in recordings:
        digest.update(rec.path.name.encode())
        digest.update(rec.path.read_bytes())
    return digest.hexdigest()


def load_features(recordings: Sequence[Recording], n_mfcc: int = 13, cache: Optional[str | Path] = None,
                  sample_rate: Optional[int] = None) -> np.ndarray:
    """Acoustic vectors of ``recordings`` (N, feature_size(n_mfcc)) float32, in their order.

    With ``cache`` (an ``.npz`` path): read from it when it was written for the same files and
    settings, else computed and written there.  ``sample_rate`` None: every file must have the
    rate of the first."""
    fingerprint = _fingerprint(recordings, n_mfcc) if cache is not None else ""
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["fingerprint"]) == fingerprint:
                    return stored["features"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign cache: recompute and replace it
    features = wav_features([rec.path for rec in recordings], n_mfcc, sample_rate)  # (N, D)
    if cache is not None:
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, features=features, fingerprint=np.array(fingerprint),
                 names=np.array([r.path.name for r in recordings]))
        tmp.replace(cache)
    return features


@dataclass
class Normalizer:
    """Per-feature standardization ``(x - mean) / std`` with statistics of the training part."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, eps: float = 1e-6) -> "Normalizer":
        """Statistics in float64; a (nearly) constant feature is only centred (std taken as 1)."""
        if len(features) == 0:
            raise DataError("cannot fit the feature normalization on an empty training part")
        x = np.asarray(features, dtype=np.float64)
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > eps, std, 1.0))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))
