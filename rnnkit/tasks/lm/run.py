"""The language-modeling commands: train, evaluate and sample, with plain arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


from rnnkit.data.corpus import load_splits, parse_fractions
from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm.task import (
    LanguageModel,
    LMDataConfig,
    LMModelConfig,
    LMTask,
    encode_splits,
    metrics_from_nll,
    sample,
)
from rnnkit.train import TrainConfig, load_weights, read_state
from rnnkit.train.run import open_run, build_trainer
from rnnkit.train.checkpoint import task_checkpoint
from rnnkit.train.trainer import pick_device


def train_lm(data_cfg: LMDataConfig, model_cfg: LMModelConfig, train_cfg: TrainConfig,
             run_dir: str | Path, resume: bool = False, sample_length: int = 300) -> dict:
    """Train a language model in ``run_dir``; print validation metrics and a sample."""
    run_dir = open_run(run_dir, resume, train_cfg)
    texts, source = load_splits(data_cfg.data, parse_fractions(data_cfg.split))
    # On resume: the vocabulary of the run, not one rebuilt from (possibly changed) data.
    vocab = Vocab.from_dict(read_state(run_dir)["task"]["vocab"]) if resume else None
    ids, vocab = encode_splits(texts, data_cfg.level, vocab=vocab, max_vocab=data_cfg.max_vocab)
    task = LMTask(ids, vocab, data_cfg, model_cfg, source)
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data: {source}; {vocab.level} level, vocabulary {len(vocab)}, "
          f"{ids['train'].numel():,} training tokens; model: {model_cfg.num_layers}x{model_cfg.hidden_size} "
          f"{model_cfg.cell.upper()}, {n_params:,} parameters; device {trainer.device}", flush=True)
    summary = trainer.fit()
    if not trainer.is_main:  # torchrun: rank 0 reports
        return summary
    valid = summary["valid"] or task.evaluate(model, "valid")
    unit = "bits/char" if vocab.level == "char" else "perplexity"
    key = "bpc" if vocab.level == "char" else "ppl"
    best = f"; best {metrics_from_nll(summary['best'], vocab.level)[key]:.4f}" if summary["best"] else ""
    print(f"{summary['status']} at step {summary['step']}: validation {unit} {valid[key]:.4f}{best} "
          f"(checkpoints/best keeps the best); run folder {run_dir}", flush=True)
    if sample_length > 0 and summary["status"] != "interrupted":
        text = sample(model, vocab, length=sample_length, temperature=0.8, seed=train_cfg.seed)
        print("sample:\n" + text, flush=True)
    summary["valid"] = valid
    return summary


def load_lm(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    """(model, vocab, meta) of a trained language model; ``checkpoint`` as in :func:`task_checkpoint`."""
    where, meta = task_checkpoint(run, "lm", checkpoint, "language-model")
    vocab = Vocab.from_dict(meta["vocab"])
    model = LanguageModel(len(vocab), LMModelConfig(**meta["model"]))
    dev = pick_device(device)
    load_weights(model, where, dev)
    return model.to(dev).eval(), vocab, meta


def evaluate_lm(run: str | Path, split: str = "test", data: Optional[str] = None,
                checkpoint: str = "best", device: str = "auto") -> dict:
    """Metrics of a trained model on a split of its data (or of ``data``)."""
    model, vocab, meta = load_lm(run, checkpoint, device)
    data_cfg = LMDataConfig(**meta["data"])
    if data is not None:
        data_cfg.data = data
    texts, source = load_splits(data_cfg.data, parse_fractions(data_cfg.split))
    ids, _ = encode_splits(texts, vocab.level, vocab=vocab)
    task = LMTask(ids, vocab, data_cfg, LMModelConfig(**meta["model"]), source)
    if split not in task.eval_streams:
        raise RnnkitError(f"split {split!r} is not available; this data has {', '.join(task.eval_streams)}")
    metrics = task.evaluate(model, split)
    metrics["tokens"] = float(ids[split].numel())
    return metrics


def sample_lm(run: str | Path, prime: str = "", length: int = 300, temperature: float = 1.0,
              top_k: Optional[int] = None, top_p: Optional[float] = None, seed: Optional[int] = None,
              checkpoint: str = "best", device: str = "auto") -> str:
    model, vocab, _ = load_lm(run, checkpoint, device)
    return sample(model, vocab, prime, length, temperature, top_k, top_p, seed)
