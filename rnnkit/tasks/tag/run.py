"""The tagging commands with plain arguments: train, evaluate (accuracy, OOV accuracy,
per-tag confusion as CSV and PNG), tag (raw text or a file, to CoNLL-U or TSV)."""

from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence, TextIO

from rnnkit.tasks.tag.treebank import TaggedSentence, find_treebank, read_conllu, split_sentences, write_conllu, write_tsv
from rnnkit.errors import DataError
from rnnkit.tasks.tag.task import (
    TaggerModelConfig,
    TaggingDataConfig,
    TaggingTask,
    Vocabularies,
    build_model,
    ensemble_predict,
    tag_metrics,
)
from rnnkit.train import TrainConfig, load_weights, read_state
from rnnkit.train.run import fit_and_report, open_run, build_trainer
from rnnkit.train.checkpoint import task_checkpoint
from rnnkit.train.trainer import pick_device


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
                 run_dir: str | Path, resume: bool = False) -> dict:
    """Train a tagger in ``run_dir``; print validation accuracy."""
    run_dir = open_run(run_dir, resume, train_cfg)
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
    print(f"data: {data_cfg.data}; {len(sentences['train']):,} training sentences ({words:,} words), "
          f"{len(sentences['valid']):,} validation; {len(vocab.tags)} {data_cfg.column.upper()} tags; "
          f"vocabularies {len(vocab.words):,} words / {len(vocab.chars):,} characters; model: "
          f"{model_cfg.num_layers}x{model_cfg.hidden_size} {model_cfg.cell.upper()} "
          f"{'bidirectional' if model_cfg.bidirectional else 'unidirectional'}"
          f"{', character BiLSTM ' + str(model_cfg.char_hidden) if model_cfg.char_hidden else ''}"
          f"{', CRF' if model_cfg.crf else ''}, {n_params:,} parameters; device {trainer.device}", flush=True)
    return fit_and_report(trainer, task, run_dir)


def load_tagger(run: str | Path, checkpoint: str = "best", device: str = "auto") -> tuple:
    """(model, task without data) of a trained tagging run."""
    where, meta = task_checkpoint(run, "tag", checkpoint, "tagging")
    vocab = Vocabularies.from_dict(meta["vocab"])
    model_cfg = TaggerModelConfig(**meta["model"])
    model = build_model(vocab, model_cfg)
    dev = pick_device(device)
    load_weights(model, where, dev)
    task = TaggingTask({"train": []}, vocab, TaggingDataConfig(**meta["data"]), model_cfg, meta.get("seed", 0),
                       meta.get("source", ""))
    return model.to(dev).eval(), task


def confusion(gold, predicted, tags) -> list[list[int]]:
    """Counts [gold][predicted] over the ``tags`` order."""
    at = {t: i for i, t in enumerate(tags)}
    table = [[0] * len(tags) for _ in tags]
    for g, p in zip(gold, predicted):
        for gt, pt in zip(g, p):
            if gt in at and pt in at:
                table[at[gt]][at[pt]] += 1
    return table


def evaluate_tagger(run: str | Path, split: str = "test", data: Optional[str] = None,
                    checkpoint: str = "best", device: str = "auto", write: bool = True,
                    ensemble: Sequence[str | Path] = ()) -> dict:
    """Accuracy, OOV accuracy and per-tag precision/recall on a split of the run's treebank
    (of ``data`` instead when given).  With ``ensemble`` (more tagging runs) the runs' per-word
    probabilities are averaged.  Writes ``<split>_confusion.csv``/``.png`` and
    ``<split>_predictions.conllu`` into the run (``<split>_ensemble...`` for an ensemble)."""
    model, task = load_tagger(run, checkpoint, device)
    members = [(model, task)] + [load_tagger(other, checkpoint, device) for other in ensemble]
    data_cfg = TaggingDataConfig(**{**asdict(task.data_cfg), "data": data or task.data_cfg.data})
    files = find_treebank(data_cfg.data)
    if split not in files:
        raise DataError(f"{data_cfg.data}: no {split} file in this treebank")
    sentences = read_conllu(files[split], data_cfg.column)
    start = time.perf_counter()
    predicted = ensemble_predict(members, sentences) if ensemble else task.predict(model, sentences)
    gold = [s.tags for s in sentences]
    metrics = tag_metrics(gold, predicted, [[task.is_oov(w) for w in s.words] for s in sentences])
    metrics["seconds"] = time.perf_counter() - start
    tags = task.vocab.tags
    table = confusion(gold, predicted, tags)
    metrics["per_tag"] = {}
    for i, tag in enumerate(tags):
        support = sum(table[i])
        guessed = sum(row[i] for row in table)
        metrics["per_tag"][tag] = {"support": support,
                                   "recall": table[i][i] / support if support else 0.0,
                                   "precision": table[i][i] / guessed if guessed else 0.0}
    metrics["models"] = len(members)
    if write:
        run = Path(run)
        split = f"{split}_ensemble" if ensemble else split
        with open(run / f"{split}_confusion.csv", "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["gold \\ predicted"] + tags)
            for tag, row in zip(tags, table):
                out.writerow([tag] + row)
        tagged = [TaggedSentence(s.words, p, s.sent_id, s.text) for s, p in zip(sentences, predicted)]
        with open(run / f"{split}_predictions.conllu", "w", encoding="utf-8") as f:
            write_conllu(tagged, f, data_cfg.column)
        try:
            metrics["plot"] = str(confusion_plot(table, tags, run / f"{split}_confusion.png",
                                                 f"{split}: accuracy {metrics['acc']:.4f}"))
        except ImportError:
            metrics["plot"] = None
    return metrics


def confusion_plot(table, tags, path: str | Path, title: str = "") -> Path:
    """Row-normalized confusion matrix (gold rows, predicted columns) as a PNG, log colour scale."""
    import numpy as np

    from rnnkit.plotting import pyplot, save

    plt = pyplot("tag")
    counts = np.asarray(table, dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(tags), 1.2 + 0.42 * len(tags)), dpi=100)
    from matplotlib.colors import LogNorm

    image = ax.imshow(np.maximum(rates, 1e-4), cmap="Blues", norm=LogNorm(1e-4, 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="fraction of the gold tag's words")
    for i in range(len(tags)):
        for j in range(len(tags)):
            if counts[i, j] and i != j and rates[i, j] >= 0.01:
                ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(tags)), tags, rotation=90)
    ax.set_yticks(range(len(tags)), tags)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title + " (off-diagonal numbers: % of the row, >= 1%)", fontsize=8)
    return save(fig, path)


def tag_text(run: str | Path, text: Optional[str] = None, file: Optional[str] = None,
             checkpoint: str = "best", device: str = "auto") -> list[TaggedSentence]:
    """Tag plain text (or a plain-text file, one or more sentences per line), tokenized simply
    (``rnnkit.tasks.tag.treebank.split_sentences``)."""
    if (text is None) == (file is None):
        raise ValueError("give text or a file to tag (one of the two)")
    if file is not None:
        from rnnkit.data.text import read_text

        text = read_text(file)
    sentences = [TaggedSentence(words, [], text=line) for line, words in split_sentences(text)]
    if not sentences:
        raise DataError("nothing to tag: the text has no words")
    model, task = load_tagger(run, checkpoint, device)
    for sentence, tags in zip(sentences, task.predict(model, sentences)):
        sentence.tags = tags
    return sentences


def write_tagged(sentences, out: TextIO, form: str = "conllu", column: str = "upos") -> None:
    if form == "conllu":
        write_conllu(sentences, out, column)
    elif form == "tsv":
        write_tsv(sentences, out)
    else:
        raise ValueError(f"format must be 'conllu' or 'tsv', got {form!r}")
