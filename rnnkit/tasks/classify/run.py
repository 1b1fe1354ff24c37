"""Training a sentence classifier, with plain arguments (``rnnkit train classify`` calls it)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from rnnkit.errors import DataError
from rnnkit.tasks.classify.data import Example, Splits, load_splits
from rnnkit.tasks.classify.task import (
    ClassifierModelConfig,
    ClassifyDataConfig,
    ClassifyTask,
    ClassifyVocab,
    clip_words,
)
from rnnkit.train import TrainConfig, read_state
from rnnkit.train.run import build_trainer, fit_and_report, open_run

logger = logging.getLogger(__name__)


def load_data(cfg: ClassifyDataConfig, splits: Sequence[str] = ("train", "valid", "test"),
              data: str | None = None) -> Splits:
    """The ``splits`` of the data of ``cfg`` (of ``data`` instead, when given), as the run reads them."""
    return load_splits(data or cfg.data, splits, cfg.format, cfg.text_column, cfg.label_column, cfg.tokenizer,
                       cfg.split, cfg.split_seed)


def check_labels(examples: Sequence[Example], labels: Sequence[str], file: Path | str) -> None:
    """DataError naming the file and line of the first example whose label is not among ``labels``."""
    known = set(labels)
    for e in examples:
        if e.label not in known:
            shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
            raise DataError(f"{file}:{e.line}: label {e.label!r} is not one of the training labels ({shown})")


def train_classifier(data_cfg: ClassifyDataConfig, model_cfg: ClassifierModelConfig, train_cfg: TrainConfig,
                     run_dir: str | Path, resume: bool = False, override: bool = False) -> dict:
    """Train a classifier in ``run_dir``; log the validation accuracy."""
    run_dir = open_run(run_dir, resume, data_cfg, model_cfg, train_cfg, override)
    data = load_data(data_cfg, ("train", "valid"))
    examples = data.examples
    if data_cfg.limit > 0:
        examples["train"] = examples["train"][: data_cfg.limit]
    for split in ("train", "valid"):
        if not examples.get(split):
            raise DataError(f"{data.source}: no {split} examples (too few texts for the split {data_cfg.split!r}?)")
    if resume:
        vocab = ClassifyVocab.from_dict(read_state(run_dir)["task"]["vocab"])
    else:
        vocab = ClassifyVocab.build(examples["train"], data_cfg.lower, data_cfg.min_count)
        if len(vocab.labels) < 2:
            raise DataError(f"{data.files['train']}: every training text has the label {vocab.labels[0]!r}; "
                            "a classifier needs at least two classes")
    for split in ("train", "valid"):
        check_labels(examples[split], vocab.labels, data.files[split])
    cut = sum(clip_words(examples[split], data_cfg.max_words)[1] for split in ("train", "valid"))
    if cut:
        logger.warning(f"{cut} texts are longer than {data_cfg.max_words} words: read as their first "
                       f"{data_cfg.max_words} (--max-words)")
    task = ClassifyTask(examples, vocab, data_cfg, model_cfg, train_cfg.seed, data.source)
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    counts = Counter(e.label for e in examples["train"])
    classes = ", ".join(f"{label} {counts[label]:,}" for label in vocab.labels[:10])
    classes += ", ..." if len(vocab.labels) > 10 else ""
    words = sum(len(e) for e in examples["train"])
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"data: {data.source}; {len(examples['train']):,} training texts ({words:,} words), "
                f"{len(examples['valid']):,} validation; {len(vocab.labels)} classes ({classes}); vocabulary "
                f"{len(vocab.words):,} words; model: {model_cfg.num_layers}x{model_cfg.hidden_size} "
                f"{model_cfg.cell.upper()} {'bidirectional' if model_cfg.bidirectional else 'unidirectional'}, "
                f"{model_cfg.pooling} pooling"
                f"{', character BiLSTM ' + str(model_cfg.char_hidden) if model_cfg.char_hidden else ''}, "
                f"{n_params:,} parameters; device {trainer.device}")
    return fit_and_report(trainer, task, run_dir)
