"""WAV files for the speech tests: synthetic tones written with the stdlib ``wave`` module, and
a slice of the Free Spoken Digit Dataset (when ../shared/data/fsdd is present)."""

from __future__ import annotations

import tarfile
import wave
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from tests.files import SHARED_DATA

FSDD_TAR = SHARED_DATA / "fsdd" / "recordings.tar.gz"


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, width: int = 2, channels: int = 1) -> Path:
    """Write int samples (N,) or (N, channels) as a PCM WAV file."""
    dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(np.asarray(samples).astype(dtype).tobytes())
    return path


def tone(freq: float, seconds: float = 0.25, rate: int = 8000, amplitude: float = 0.4,
         harmonic: float = 0.0) -> np.ndarray:
    """16-bit samples of a sine tone with a fade in and out (and an optional second harmonic)."""
    t = np.arange(int(seconds * rate)) / rate
    wave_ = np.sin(2 * np.pi * freq * t) + harmonic * np.sin(4 * np.pi * freq * t)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return np.round(amplitude * 32767 * wave_ * fade / (1 + harmonic)).astype(np.int16)


def tone_folder(folder: Path, speakers: Iterable[str] = ("ann", "bob"), repetitions: int = 6,
                seconds: float = 0.15) -> Path:
    """A folder of ``{digit}_{speaker}_{index}.wav`` tones: the digit sets the pitch, the speaker
    the timbre (a second harmonic) and the repetition a slight detuning."""
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in range(repetitions):
                freq = 250 * 1.25 ** digit * (1 + 0.01 * index)
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", tone(freq, seconds, harmonic=0.5 * s))
    return folder


def fsdd_slice(folder: Path, speakers: Optional[set[str]] = None, max_index: int = 50) -> Path:
    """Extract the FSDD recordings of ``speakers`` (all when None) with index < ``max_index``."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(FSDD_TAR, "r:gz") as tar:
        for member in tar:
            name = Path(member.name).name
            if not member.isfile() or not name.endswith(".wav"):
                continue
            _, speaker, index = name[:-4].split("_")
            if (speakers is None or speaker in speakers) and int(index) < max_index:
                (folder / name).write_bytes(tar.extractfile(member).read())
    return folder
