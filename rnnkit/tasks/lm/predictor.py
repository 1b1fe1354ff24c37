"""A trained language model in Python: ``rnnkit.load(run).sample("The ")``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rnnkit.data.corpus import load_splits, parse_fractions
from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm.task import LanguageModel, LMDataConfig, LMModelConfig, LMTask, encode_splits, sample
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.trainer import pick_device


class LMPredictor:
    """A language model with its vocabulary and the settings it was trained with.

    ``model`` is the :class:`~rnnkit.tasks.lm.task.LanguageModel` (in eval mode), ``vocab``
    its :class:`~rnnkit.data.text.Vocab`, ``meta`` the checkpoint's task metadata.
    """

    def __init__(self, model: LanguageModel, vocab: Vocab, meta: dict) -> None:
        self.model, self.vocab, self.meta = model, vocab, meta

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "LMPredictor":
        """The model of a trained run; ``checkpoint`` as in :func:`~rnnkit.train.checkpoint.task_checkpoint`."""
        where, meta = task_checkpoint(run, "lm", checkpoint, "language-model", model=LMModelConfig, data=LMDataConfig)
        vocab = Vocab.from_dict(meta["vocab"])
        model = build_checked(where, meta, lambda cfg: LanguageModel(len(vocab), LMModelConfig(**cfg)))
        dev = pick_device(device)
        load_weights(model, where, dev)
        return cls(model.to(dev).eval(), vocab, meta)

    def sample(self, prime: str = "", length: int = 300, temperature: float = 1.0, top_k: Optional[int] = None,
               top_p: Optional[float] = None, seed: Optional[int] = None) -> str:
        """``prime`` followed by ``length`` generated characters or words (see :func:`~rnnkit.tasks.lm.task.sample`)."""
        return sample(self.model, self.vocab, prime, length, temperature, top_k, top_p, seed)

    def evaluate(self, split: str = "test", data: Optional[str] = None) -> dict:
        """Loss, bits per character or perplexity, and the token count of a split of the run's
        data (or of ``data``: a text file or a folder with train/valid/test files)."""
        data_cfg = LMDataConfig(**self.meta["data"])
        if data is not None:
            data_cfg.data = data
        texts, source = load_splits(data_cfg.data, parse_fractions(data_cfg.split))
        ids, _ = encode_splits(texts, self.vocab.level, vocab=self.vocab)
        task = LMTask(ids, self.vocab, data_cfg, LMModelConfig(**self.meta["model"]), source)
        if split not in task.eval_streams:
            raise RnnkitError(f"split {split!r} is not available; this data has {', '.join(task.eval_streams)}")
        metrics = task.evaluate(self.model, split)
        metrics["tokens"] = float(ids[split].numel())
        return metrics
