"""Training a tagger, with plain arguments (``rnnkit train tag`` calls it)."""

from __future__ import annotations

import logging
from pathlib import Path

from rnnkit.errors import DataError
from rnnkit.extras import require
from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig, TaggingTask, Vocabularies
from rnnkit.tasks.tag.treebank import TaggedSentence, find_treebank, read_conllu
from rnnkit.train import TrainConfig, read_state
from rnnkit.train.run import build_trainer, fit_and_report, open_run

logger = logging.getLogger(__name__)


def load_treebank(cfg: TaggingDataConfig, splits=("train", "valid", "test")) -> dict[str, list[TaggedSentence]]:
    if cfg.data is None:
        raise DataError("tagging needs --data DIR (a UD treebank folder with *-ud-train.conllu and "
                        "*-ud-dev.conllu, .gz too)")
    files = find_treebank(cfg.data)
    out = {}
    for split in splits:
        if split in files:
            limit = cfg.limit if split == "train" and cfg.limit > 0 else None
            out[split] = read_conllu(files[split], cfg.column, limit)
    return out


def train_tagger(data_cfg: TaggingDataConfig, model_cfg: TaggerModelConfig, train_cfg: TrainConfig,
                 run_dir: str | Path, resume: bool = False, override: bool = False) -> dict:
    """Train a tagger in ``run_dir``; log validation accuracy."""
    require("conllu", "tag", "rnnkit train tag")
    run_dir = open_run(run_dir, resume, data_cfg, model_cfg, train_cfg, override)
    sentences = load_treebank(data_cfg, ("train", "valid"))
    if resume:
        vocab = Vocabularies.from_dict(read_state(run_dir)["task"]["vocab"])
    else:
        vocab = Vocabularies.build(sentences["train"], data_cfg.lower, data_cfg.min_count)
    task = TaggingTask(sentences, vocab, data_cfg, model_cfg, train_cfg.seed, str(data_cfg.data))
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    n_params = sum(p.numel() for p in model.parameters())
    words = sum(len(s) for s in sentences["train"])
    logger.info(f"data: {data_cfg.data}; {len(sentences['train']):,} training sentences ({words:,} words), "
          f"{len(sentences['valid']):,} validation; {len(vocab.tags)} {data_cfg.column.upper()} tags; "
          f"vocabularies {len(vocab.words):,} words / {len(vocab.chars):,} characters; model: "
          f"{model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()} "
          f"{'bidirectional' if model_cfg.bidirectional else 'unidirectional'}"
          f"{', character BiLSTM ' + str(model_cfg.char_hidden) if model_cfg.char_hidden else ''}"
          f"{', CRF' if model_cfg.crf else ''}, {n_params:,} parameters; device {trainer.device}")
    return fit_and_report(trainer, task, run_dir)
