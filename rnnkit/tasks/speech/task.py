"""Spoken numbers: label each word of a sequence of fixed-size word vectors.

A "spoken number" is 3 to 10 recordings of one speaker in a row, each a spoken digit turned
into one acoustic vector (``rnnkit.tasks.speech.audio``); the model reads the (T, B, D) vectors and
labels every word with its digit.  It is a recurrent layer (``rnnkit.LSTM``/``GRU``/``RNN``,
uni- or bidirectional, Schuster & Paliwal 1997) run with ``lengths=`` over the padded batch,
then a linear layer per step (the sequence-labeling set-up of Graves 2012, *Supervised
Sequence Labelling with Recurrent Neural Networks*, ch. 3): word ``t`` is classified from
``h_t`` (unidirectional: words 1..t) or ``[h_t^fwd; h_t^bwd]`` (bidirectional: the whole
sequence).  As every word of a sequence comes from the same speaker, context can carry who
is speaking.

The loss is the cross-entropy per word, padding left out.  Metrics: word accuracy (correct
words / words) and sequence accuracy (sequences with every word correct / sequences).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import DataError
from rnnkit.models import LAYERS
from rnnkit.settings import MAX_BATCH, MAX_LAYERS, MAX_SEED, MAX_UNITS, setting
from rnnkit.tasks.speech.audio import Normalizer, Recording
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice

NUM_DIGITS = 10
IGNORE = -100  # label of padding positions (cross_entropy's ignore_index)
MAX_MFCC = 40  # the mel bands of speech.audio: librosa keeps at most that many MFCCs


@dataclass
class SpeechDataConfig:
    data: Optional[str] = setting(None, "folder of {digit}_{speaker}_{index}.wav recordings (FSDD's recordings/)")
    holdout_speaker: Optional[str] = setting(
        None, "test on all of this speaker's recordings instead of the official split")
    test_indices: str = setting("0-4", "official split: repetition indices of the test part")
    valid_indices: str = setting("5-9", "repetition indices of the training part kept for validation")
    min_words: int = setting(3, "words per spoken number, at least", ge=1, le=1000)
    max_words: int = setting(10, "and at most", ge=1, le=1000)
    train_sequences: int = setting(2000, "fresh spoken numbers drawn each epoch", ge=1, le=10_000_000)
    eval_sequences: int = setting(1000, "fixed spoken numbers of the validation and the test part",
                                  ge=1, le=10_000_000)
    split_seed: int = setting(1234, "seed of the validation and test spoken numbers", ge=0, le=MAX_SEED)
    batch_size: int = setting(32, "spoken numbers per batch", ge=1, le=MAX_BATCH)
    n_mfcc: int = setting(13, "MFCCs per frame; the word vector has 6 * n_mfcc + 1 numbers", ge=1, le=MAX_MFCC)
    feature_cache: Optional[str] = setting(None, ".npz of the recordings' vectors (default: <run>/features.npz)")


@dataclass
class SpeechModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    hidden_size: int = setting(64, "hidden units per layer and direction", ge=1, le=MAX_UNITS)
    num_layers: int = setting(1, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    bidirectional: bool = setting(True, "label each word from the whole spoken number, not only the words up to it")
    dropout: float = setting(0.2, "on the word vectors, between layers and before the output layer", ge=0, lt=1)


@dataclass
class SpeechTrainConfig(TrainConfig):
    """TrainConfig with the speech task's defaults (the helps are TrainConfig's)."""
    epochs: int = 30
    early_stop: int = 8
    lr: float = 3e-3
    log_every: int = 20
    progress: bool = False


def parse_indices(text: str) -> set[int]:
    """Repetition indices from ``"0-4"``, ``"5,7,9"`` or ``"0-4,10"``."""
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                out.update(range(low, high + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise DataError(f"repetition indices must look like '0-4' or '5,7,9', got {text!r}") from None
    return out


def split_recordings(recordings: Sequence[Recording], cfg: SpeechDataConfig) -> dict[str, list[int]]:
    """Positions in ``recordings`` of the train, valid and test parts.

    Test: repetition indices ``cfg.test_indices`` (the official FSDD split: 0-4), or with
    ``cfg.holdout_speaker`` every recording of that speaker.  Validation: the repetition
    indices ``cfg.valid_indices`` of what is left; training: the rest."""
    speakers = sorted({r.speaker for r in recordings})
    if cfg.holdout_speaker:
        if cfg.holdout_speaker not in speakers:
            raise DataError(f"holdout speaker {cfg.holdout_speaker!r} has no recordings; speakers: "
                            f"{', '.join(speakers)}")
        is_test = [r.speaker == cfg.holdout_speaker for r in recordings]
    else:
        test_idx = parse_indices(cfg.test_indices)
        is_test = [r.index in test_idx for r in recordings]
    valid_idx = parse_indices(cfg.valid_indices)
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, (rec, test) in enumerate(zip(recordings, is_test)):
        parts["test" if test else "valid" if rec.index in valid_idx else "train"].append(i)
    for name, ids in parts.items():
        if not ids:
            raise DataError(f"the {name} part is empty (test indices {cfg.test_indices!r}, valid indices "
                            f"{cfg.valid_indices!r}, holdout speaker {cfg.holdout_speaker!r})")
    return parts


def spoken_numbers(ids: Sequence[int], speakers: Sequence[str], n: int, seed: int, min_words: int = 3,
                   max_words: int = 10) -> list[list[int]]:
    """``n`` spoken numbers: lists of ``min_words``..``max_words`` ids, each of one speaker
    (``speakers[k]`` is the speaker of ``ids[k]``); seeded.

    Each sequence picks a speaker uniformly and a length uniformly, then deals the speaker's
    recordings from a shuffled deck, a new shuffled deck put under the rest when it runs out:
    every recording is used once per deck (evenly, counts differ by one at most), and none twice
    in a sequence unless the speaker has fewer recordings than words."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    if n > 0 and len(ids) == 0:
        raise ValueError("no recordings to draw spoken numbers from")
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = {}
    for i, s in zip(ids, speakers):
        by_speaker.setdefault(s, []).append(i)
    names = sorted(by_speaker)
    decks: dict[str, list[int]] = {s: [] for s in names}
    numbers = []
    for _ in range(n):
        speaker = names[rng.randrange(len(names))]
        length = rng.randint(min_words, max_words)
        deck = decks[speaker]
        while len(deck) < length:
            fresh = list(by_speaker[speaker])
            rng.shuffle(fresh)
            held = set(deck)  # the last deck's rest: dealt first, so they go last in the new deck
            deck = deck + [i for i in fresh if i not in held] + [i for i in fresh if i in held]
        numbers.append(deck[:length])
        decks[speaker] = deck[length:]
    return numbers


def make_batch(numbers: Sequence[Sequence[int]], vectors: np.ndarray, digits: np.ndarray
               ) -> tuple[Tensor, Tensor, Tensor]:
    """(x (T, B, D) float32, lengths (B,) int64, y (T, B) int64 with IGNORE past each end)."""
    T, B, D = max(len(s) for s in numbers), len(numbers), vectors.shape[1]
    x = np.zeros((T, B, D), np.float32)
    y = np.full((T, B), IGNORE, np.int64)
    for b, seq in enumerate(numbers):
        x[: len(seq), b] = vectors[seq]  # (len, D)
        y[: len(seq), b] = digits[seq]
    lengths = torch.tensor([len(s) for s in numbers], dtype=torch.int64)
    return torch.from_numpy(x), lengths, torch.from_numpy(y)


class DigitLabeler(nn.Module):
    """A recurrent labeler: dropout, ``L`` recurrent layers, dropout, a linear layer per step.

    Inputs: ``x`` (T, B, D) padded word vectors and ``lengths`` (B,); outputs logits
    (T, B, C).  Output past a sequence's end is the output layer's bias (the recurrent output
    there is zero) and must be masked by the caller, as ``labeling_loss`` does."""

    def __init__(self, input_size: int, num_classes: int = NUM_DIGITS, cell: str = "lstm",
                 hidden_size: int = 64, num_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
        self.rnn = LAYERS[cell](input_size, hidden_size, num_layers, bidirectional=bidirectional,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        h, _ = self.rnn(self.drop(x), lengths=lengths)  # (T, B, dirs * H)
        return self.out(self.drop(h))  # (T, B, C)


def build_model(input_size: int, cfg: SpeechModelConfig) -> DigitLabeler:
    return DigitLabeler(input_size, NUM_DIGITS, cfg.cell, cfg.hidden_size, cfg.num_layers, cfg.bidirectional,
                        cfg.dropout)


def labeling_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the words, padding (``y == IGNORE``) left out."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


class SpeechTask:
    """Spoken-number labeling as the Trainer sees it.

    ``recordings`` and their raw acoustic vectors (N, D); ``parts`` the positions of each
    part (``split_recordings``); ``normalizer`` fitted on the training part by the caller."""

    def __init__(self, recordings: Sequence[Recording], features: np.ndarray, parts: dict[str, list[int]],
                 normalizer: Normalizer, data_cfg: SpeechDataConfig, model_cfg: SpeechModelConfig,
                 seed: int = 0, source: str = "") -> None:
        self.recordings, self.parts, self.normalizer = list(recordings), parts, normalizer
        self.data_cfg, self.model_cfg, self.seed, self.source = data_cfg, model_cfg, seed, source
        self.vectors = normalizer(features)  # (N, D)
        self.digits = np.array([r.digit for r in self.recordings], np.int64)
        self.speakers = [r.speaker for r in self.recordings]
        cfg = data_cfg
        self.numbers = {split: self.draw_numbers(split, cfg.eval_sequences, cfg.split_seed + offset)
                        for split, offset in (("valid", 1), ("test", 2)) if split in parts}

    @property
    def input_size(self) -> int:
        return int(self.vectors.shape[1])

    def build_model(self) -> DigitLabeler:
        return build_model(self.input_size, self.model_cfg)

    def draw_numbers(self, split: str, n: int, seed: int) -> list[list[int]]:
        """``n`` spoken numbers of one part's recordings (positions in ``recordings``)."""
        ids = self.parts[split]
        return spoken_numbers(ids, [self.speakers[i] for i in ids], n, seed, self.data_cfg.min_words,
                              self.data_cfg.max_words)

    def train_batches(self, epoch: int) -> list:
        """Fresh spoken numbers each epoch (seeded by the run's seed and the epoch)."""
        cfg = self.data_cfg
        numbers = self.draw_numbers("train", cfg.train_sequences, self.seed * 1000 + epoch)
        return [make_batch(numbers[s:s + cfg.batch_size], self.vectors, self.digits)
                for s in range(0, len(numbers), cfg.batch_size)]

    def shard(self, batch, rank: int, world: int):
        """Rank's block of a batch's spoken numbers (torchrun), cut to its own longest; None when
        a short batch has none left."""
        check_global_batch(self.data_cfg.batch_size, world, "spoken numbers")
        x, lengths, y = batch
        cols = shard_slice(len(lengths), rank, world)
        if cols.start == cols.stop:
            return None
        T = int(lengths[cols].max())
        return x[:T, cols], lengths[cols], y[:T, cols]  # (T', B_r, D), (B_r,), (T', B_r)

    def train_step(self, model: DigitLabeler, batch, state):
        device = next(model.parameters()).device
        x, lengths, y = batch
        logits = model(x.to(device), lengths)  # (T, B, C)
        return labeling_loss(logits, y.to(device)), int(lengths.sum()), None

    @torch.no_grad()
    def predict(self, model: DigitLabeler, numbers: Sequence[Sequence[int]], batch_size: int = 256
                ) -> tuple[list[list[int]], float]:
        """Predicted digits of each spoken number, and the summed cross-entropy of its words."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        predictions, total = [], 0.0
        for s in range(0, len(numbers), batch_size):
            chunk = numbers[s:s + batch_size]
            x, lengths, y = make_batch(chunk, self.vectors, self.digits)
            logits = model(x.to(device), lengths).float().cpu()  # (T, B, C)
            total += float(labeling_loss(logits, y)) * int(lengths.sum())
            best = logits.argmax(-1)  # (T, B)
            predictions += [best[: len(seq), b].tolist() for b, seq in enumerate(chunk)]
        model.train(was_training)
        return predictions, total

    def scores(self, model: DigitLabeler, split: str) -> dict[str, float]:
        """Loss, word and sequence accuracy on a part's fixed spoken numbers, and the word
        accuracy of the first word of each number (no context for a unidirectional model)
        against the others."""
        numbers = self.numbers[split]
        predictions, total = self.predict(model, numbers)
        truth = [self.digits[seq].tolist() for seq in numbers]
        hits = [[p == t for p, t in zip(ps, ts)] for ps, ts in zip(predictions, truth)]
        words = sum(len(h) for h in hits)
        later = sum(len(h) - 1 for h in hits)
        return {
            "loss": total / words,
            "word_acc": sum(map(sum, hits)) / words,
            "seq_acc": sum(all(h) for h in hits) / len(hits),
            "first_word_acc": sum(h[0] for h in hits) / len(hits),
            "later_word_acc": sum(sum(h[1:]) for h in hits) / max(later, 1),
            "words": float(words),
            "sequences": float(len(hits)),
        }

    def evaluate(self, model: DigitLabeler, split: str) -> dict[str, float]:
        s = self.scores(model, split)
        return {"loss": s["loss"], "word_acc": s["word_acc"], "seq_acc": s["seq_acc"]}

    def meta(self) -> dict:
        return {"task": "speech", "input_size": self.input_size, "normalizer": self.normalizer.to_dict(),
                "model": asdict(self.model_cfg), "data": asdict(self.data_cfg), "seed": self.seed,
                "source": self.source}
