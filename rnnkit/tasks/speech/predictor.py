"""A trained spoken-number labeler in Python: ``rnnkit.load(run).recognize(["3_ann_0.wav", ...])``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from rnnkit.errors import CheckpointError, DataError
from rnnkit.tasks.speech.audio import Normalizer, wav_features
from rnnkit.tasks.speech.run import make_task
from rnnkit.tasks.speech.task import DigitLabeler, SpeechDataConfig, SpeechModelConfig, build_model, make_batch
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.trainer import pick_device

WavPath = str | os.PathLike  # a .wav file


class SpeechPredictor:
    """A spoken-number labeler with the normalization of its acoustic vectors.

    ``model`` is the :class:`~rnnkit.tasks.speech.task.DigitLabeler` (in eval mode),
    ``normalizer`` the run's :class:`~rnnkit.tasks.speech.audio.Normalizer` (statistics of its
    training part), ``meta`` the checkpoint's task metadata and ``run`` the run folder (whose
    ``features.npz`` caches the vectors of the recordings :meth:`evaluate` reads).
    """

    def __init__(self, model: DigitLabeler, meta: dict, run: str | Path) -> None:
        self.model, self.meta, self.run = model, meta, Path(run)
        self.normalizer = Normalizer.from_dict(meta["normalizer"])
        self.n_mfcc = int(meta["data"]["n_mfcc"])

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "SpeechPredictor":
        """The labeler of a trained run; ``checkpoint`` as in :func:`~rnnkit.train.checkpoint.task_checkpoint`."""
        where, meta = task_checkpoint(run, "speech", checkpoint, "spoken-number", model=SpeechModelConfig,
                                      data=SpeechDataConfig)
        model = build_checked(where, meta, lambda cfg: build_model(meta["input_size"], SpeechModelConfig(**cfg)))
        dev = pick_device(device)
        load_weights(model, where, dev)
        return cls(model.to(dev).eval(), meta, run)

    def recognize(self, wavs: Sequence[WavPath] | Sequence[Sequence[WavPath]]) -> list[int] | list[list[int]]:
        """The digit the model labels each recording of a spoken number with.

        ``wavs``: the recordings of one spoken number, in order (16-bit PCM mono ``.wav`` files,
        one word each, all at one sample rate) -> a list of ints; or a list of such lists ->
        a list of lists.  Each recording becomes an acoustic vector as in training
        (:func:`~rnnkit.tasks.speech.audio.wav_features`, the run's ``n_mfcc``), normalized
        with the run's statistics."""
        expected = "a list of .wav paths (one spoken number) or a list of such lists"
        if isinstance(wavs, (str, os.PathLike)) or not isinstance(wavs, Sequence):
            raise TypeError(f"recognize expects {expected}, got {type(wavs).__name__} {wavs!r:.80}")
        if len(wavs) == 0:
            raise DataError(f"nothing to recognize: expected {expected}, got an empty {type(wavs).__name__}")
        if all(isinstance(w, (str, os.PathLike)) for w in wavs):
            return self._label([list(wavs)])[0]
        if all(isinstance(w, Sequence) and not isinstance(w, str) for w in wavs):
            return self._label([list(number) for number in wavs])
        kinds = ", ".join(sorted({type(w).__name__ for w in wavs}))
        raise TypeError(f"recognize expects {expected}, got a {type(wavs).__name__} of {kinds}")

    def _label(self, numbers: list[list[WavPath]]) -> list[list[int]]:
        """The predicted digits of each spoken number (lists of paths)."""
        for k, number in enumerate(numbers):
            if not number:
                raise DataError(f"spoken number {k} has no recordings (expected at least one .wav path)")
            for path in number:
                if not isinstance(path, (str, os.PathLike)):
                    raise TypeError(f"expected a .wav path, got {type(path).__name__} {path!r:.80}")
                suffix = Path(path).suffix
                if suffix.lower() != ".wav":
                    got = f"a {suffix} file" if suffix else "a file without extension"
                    raise DataError(f"{path}: expected a .wav recording (16-bit PCM mono), got {got}")
        # as for training: every recording at the rate of the first
        features = wav_features([Path(p) for number in numbers for p in number], self.n_mfcc)  # (N, D)
        if features.shape[1] != len(self.normalizer.mean):
            raise CheckpointError(f"the run's word vectors have {len(self.normalizer.mean)} numbers, these "
                                  f"recordings give {features.shape[1]}")
        vectors = self.normalizer(features)  # (N, D)
        ids, start = [], 0  # the rows of each spoken number
        for number in numbers:
            ids.append(list(range(start, start + len(number))))
            start += len(number)
        device = next(self.model.parameters()).device
        out = []
        with torch.no_grad():
            for s in range(0, len(ids), 256):
                chunk = ids[s:s + 256]
                x, lengths, _ = make_batch(chunk, vectors, np.zeros(len(vectors), np.int64))
                best = self.model(x.to(device), lengths).argmax(-1).cpu()  # (T, B)
                out += [best[: len(seq), b].tolist() for b, seq in enumerate(chunk)]
        return out

    def evaluate(self, split: str = "test", data: Optional[str] = None) -> dict:
        """Loss, word and sequence accuracy (also of first and later words) and counts on the
        fixed spoken numbers of a part of the run's split, with the run's normalization; the
        recordings of the folder ``data`` instead of the run's when given."""
        data_cfg = SpeechDataConfig(**self.meta["data"])
        if data is not None:
            data_cfg.data = data
        task = make_task(data_cfg, SpeechModelConfig(**self.meta["model"]), self.meta.get("seed", 0), self.run,
                         self.meta)
        return task.scores(self.model, split)
