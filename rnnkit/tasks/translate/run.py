"""Training a translation model, with plain arguments (``rnnkit train translate`` calls it),
and what training and evaluation share: the grouped split, the tokenizers and the run's lexicon."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from rnnkit.data.vocab import TokenVocab
from rnnkit.errors import DataError, RnnkitError
from rnnkit.extras import require
from rnnkit.tasks.translate.lexicon import load_lexicon, save_lexicon
from rnnkit.tasks.translate.pairs import (
    SubwordTokenizer,
    WordTokenizer,
    grouped_split,
    read_pairs,
    tokenizer_from_dict,
)
from rnnkit.tasks.translate.task import TranslationDataConfig, TranslationModelConfig, TranslationTask
from rnnkit.train import TrainConfig, read_state
from rnnkit.train.run import build_trainer, fit_and_report, open_run

logger = logging.getLogger(__name__)

LEXICON = "lexicon.json.gz"  # in a run folder: source word -> target word (IBM Model 1 on the training pairs)


def run_lexicon(run_dir: str | Path, task: Optional[TranslationTask] = None) -> dict[str, str]:
    """The run's lexicon for unknown-word replacement: read from the run folder, else fitted
    on the task's training pairs and kept there (refused without a task to fit it on)."""
    path = Path(run_dir, LEXICON)
    if path.exists():
        return load_lexicon(path)
    if task is None:
        raise RnnkitError(f"{path} is missing: `rnnkit train translate` writes it, and so does "
                          f"`rnnkit evaluate {run_dir} --unk lexicon` for older runs; or use --unk copy")
    start = time.perf_counter()
    lexicon = task.lexicon()
    save_lexicon(lexicon, path)
    logger.info(f"lexicon: IBM Model 1 on {len(task.pairs['train']):,} training pairs, {len(lexicon):,} "
                f"source words, {time.perf_counter() - start:.0f} s; kept in {path}")
    return lexicon


def load_split(cfg: TranslationDataConfig) -> dict:
    if cfg.data is None:
        raise DataError("translation needs --data FILE (a TSV of source<TAB>target pairs, .gz too)")
    pairs = read_pairs(cfg.data, cfg.reverse)
    return grouped_split(pairs, cfg.valid, cfg.test, cfg.split_seed)


def build_tokenizers(cfg: TranslationDataConfig, train_pairs):
    if cfg.tokenizer == "word":
        return WordTokenizer(cfg.lower), WordTokenizer(cfg.lower)
    if cfg.tokenizer == "subword":
        return (SubwordTokenizer.train((s for s, _ in train_pairs), cfg.subword_vocab, cfg.lower),
                SubwordTokenizer.train((t for _, t in train_pairs), cfg.subword_vocab, cfg.lower))
    raise DataError(f"tokenizer must be 'word' or 'subword', got {cfg.tokenizer!r}")


def make_task(data_cfg, model_cfg, seed: int, meta: Optional[dict] = None) -> TranslationTask:
    """The task over the grouped split; tokenizers and vocabularies from ``meta`` (a run's
    checkpoint) when given, else built from the training part."""
    parts = load_split(data_cfg)
    if meta is not None:
        src_tok, tgt_tok = tokenizer_from_dict(meta["src_tokenizer"]), tokenizer_from_dict(meta["tgt_tokenizer"])
        src_vocab, tgt_vocab = TokenVocab.from_dict(meta["src_vocab"]), TokenVocab.from_dict(meta["tgt_vocab"])
    else:
        src_tok, tgt_tok = build_tokenizers(data_cfg, parts["train"])
        min_count = data_cfg.min_count if data_cfg.tokenizer == "word" else 1
        src_vocab = TokenVocab.build((src_tok.tokenize(s) for s, _ in parts["train"]), min_count, data_cfg.max_vocab)
        tgt_vocab = TokenVocab.build((tgt_tok.tokenize(t) for _, t in parts["train"]), min_count, data_cfg.max_vocab)
    return TranslationTask(parts, src_tok, tgt_tok, src_vocab, tgt_vocab, data_cfg, model_cfg, seed, str(data_cfg.data))


def train_translation(data_cfg: TranslationDataConfig, model_cfg: TranslationModelConfig, train_cfg: TrainConfig,
                      run_dir: str | Path, resume: bool = False, override: bool = False) -> dict:
    """Train a translation model in ``run_dir``; print validation metrics and an example."""
    require(["sacrebleu"] + (["sentencepiece"] if data_cfg.tokenizer == "subword" else []), "translate",
            "rnnkit train translate")  # BLEU at the first validation; the subword tokenizer
    run_dir = open_run(run_dir, resume, data_cfg, model_cfg, train_cfg, override)
    meta = read_state(run_dir)["task"] if resume else None
    task = make_task(data_cfg, model_cfg, train_cfg.seed, meta)
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    if trainer.is_main and task.pairs["train"] and data_cfg.tokenizer == "word":
        run_lexicon(run_dir, task)  # for --unk lexicon of evaluate and translate (subword models rarely write <unk>)
    n_params = sum(p.numel() for p in model.parameters())
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in task.pairs.items())
    logger.info(f"data: {task.source}; pairs {sizes} (grouped by source, seed {data_cfg.split_seed}); "
                f"{len(task.train_ids):,} training pairs of <= {data_cfg.max_length} tokens; vocabularies "
                f"{len(task.src_vocab):,} / {len(task.tgt_vocab):,} ({data_cfg.tokenizer}); model: "
                f"{model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()}"
                f"{' bidirectional encoder' if model_cfg.bidirectional else ''}, attention {model_cfg.attention}, "
                f"{n_params:,} parameters; device {trainer.device}")
    summary = fit_and_report(trainer, task, run_dir)
    if not trainer.is_main:
        return summary
    if summary["status"] != "interrupted" and task.pairs["valid"]:
        text = task.pairs["valid"][0][0]
        logger.info(f"example: {text} -> {task.translate(model, [text])[0]}")
    return summary
