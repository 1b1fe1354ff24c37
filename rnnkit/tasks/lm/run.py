"""Training a language model, with plain arguments (``rnnkit train lm`` calls it)."""

from __future__ import annotations

import logging
from pathlib import Path

from rnnkit.data.corpus import load_splits, parse_fractions
from rnnkit.data.text import Vocab
from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig, LMTask, encode_splits, metrics_from_nll, sample
from rnnkit.train import TrainConfig, read_state
from rnnkit.train.run import build_trainer, open_run

logger = logging.getLogger(__name__)


def train_lm(data_cfg: LMDataConfig, model_cfg: LMModelConfig, train_cfg: TrainConfig,
             run_dir: str | Path, resume: bool = False, sample_length: int = 300,
             override: bool = False) -> dict:
    """Train a language model in ``run_dir``; print validation metrics and a sample."""
    run_dir = open_run(run_dir, resume, data_cfg, model_cfg, train_cfg, override)
    texts, source = load_splits(data_cfg.data, parse_fractions(data_cfg.split))
    # On resume: the vocabulary of the run, not one rebuilt from (possibly changed) data.
    vocab = Vocab.from_dict(read_state(run_dir)["task"]["vocab"]) if resume else None
    ids, vocab = encode_splits(texts, data_cfg.level, vocab=vocab, max_vocab=data_cfg.max_vocab)
    task = LMTask(ids, vocab, data_cfg, model_cfg, source)
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"data: {source}; {vocab.level} level, vocabulary {len(vocab)}, "
          f"{ids['train'].numel():,} training tokens; model: {model_cfg.num_layers}x{model_cfg.hidden_size} "
          f"{model_cfg.cell.upper()}, {n_params:,} parameters; device {trainer.device}")
    summary = trainer.fit()
    if not trainer.is_main:  # torchrun: rank 0 reports
        return summary
    unit = "bits/char" if vocab.level == "char" else "perplexity"
    key = "bpc" if vocab.level == "char" else "ppl"
    best = f"; best {metrics_from_nll(summary['best'], vocab.level)[key]:.4f}" if summary["best"] else ""
    if summary["status"] == "interrupted":  # a signal: no evaluation, a scheduler leaves seconds
        last = f"last validation {unit} {summary['valid'][key]:.4f}" if summary["valid"] else "no validation yet"
        logger.info(f"interrupted at step {summary['step']}: {last}{best} (checkpoints/last holds step "
                    f"{summary['step']}; continue with --resume); run folder {run_dir}")
        return summary
    valid = summary["valid"] or task.evaluate(model, "valid")
    logger.info(f"{summary['status']} at step {summary['step']}: validation {unit} {valid[key]:.4f}{best} "
                f"(checkpoints/best keeps the best); run folder {run_dir}")
    if sample_length > 0:
        text = sample(model, vocab, length=sample_length, temperature=0.8, seed=train_cfg.seed)
        logger.info("sample:\n" + text)
    summary["valid"] = valid
    return summary
