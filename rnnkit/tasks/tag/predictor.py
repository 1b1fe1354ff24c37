"""A trained tagger in Python: ``rnnkit.load(run).tag("The old man the boat.")``."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from rnnkit.errors import DataError
from rnnkit.tasks.tag.task import (
    Tagger,
    TaggerModelConfig,
    TaggingDataConfig,
    TaggingTask,
    Vocabularies,
    build_model,
    ensemble_predict,
    tag_metrics,
)
from rnnkit.tasks.tag.treebank import TaggedSentence, find_treebank, read_conllu, split_sentences, write_conllu
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.trainer import pick_device

logger = logging.getLogger(__name__)

MAX_SENTENCE_WORDS = 1000
"""The longest sentence the tagger reads at once.  The tagger reads each sentence whole (in
both directions), so a longer "sentence" of plain text (a line without sentence ends: a 10 MB
line would otherwise be one sequence of millions of steps) is cut into consecutive pieces of
at most this many words, each tagged, and returned, as a sentence of its own, with a logged
warning.  Words near a cut lose the context beyond it."""

MAX_WORD_CHARS = 64
"""The longest word the character BiLSTM reads whole: a longer one is read as its first and
last ``MAX_WORD_CHARS // 2`` characters (a warning says how many), so that one very long
"word" does not pad every word of its batch to its length."""

BATCH_WORDS = 8192
"""Padded word slots (sentences x longest sentence) per batch: sentences are batched by
length, 256 at most, and fewer when they are long, so that memory stays bounded."""


class TagPredictor:
    """A tagger with its vocabularies, its tag set and the settings it was trained with.

    ``model`` is the :class:`~rnnkit.tasks.tag.task.Tagger` (in eval mode), ``task`` the
    :class:`~rnnkit.tasks.tag.task.TaggingTask` without data (vocabularies, configs, batching),
    ``run`` the run folder (where :meth:`evaluate` writes its files) and ``checkpoint`` the
    checkpoint name it was loaded with (the other runs of an ensemble load the same one).
    """

    def __init__(self, model: Tagger, task: TaggingTask, run: str | Path, checkpoint: str = "best") -> None:
        self.model, self.task, self.run, self.checkpoint = model, task, Path(run), checkpoint

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "TagPredictor":
        """The tagger of a trained run (also of runs written when the task was called
        "tagging"); ``checkpoint`` as in :func:`~rnnkit.train.checkpoint.task_checkpoint`."""
        where, meta = task_checkpoint(run, "tag", checkpoint, "tagging", model=TaggerModelConfig,
                                      data=TaggingDataConfig)
        vocab = Vocabularies.from_dict(meta["vocab"])
        model_cfg = TaggerModelConfig(**meta["model"])
        model = build_checked(where, meta, lambda cfg: build_model(vocab, TaggerModelConfig(**cfg)))
        dev = pick_device(device)
        load_weights(model, where, dev)
        task = TaggingTask({"train": []}, vocab, TaggingDataConfig(**meta["data"]), model_cfg, meta.get("seed", 0),
                           meta.get("source", ""))
        return cls(model.to(dev).eval(), task, run, checkpoint)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def tag(self, text: str | Sequence[str]) -> list[list[tuple[str, str]]]:
        """The (word, tag) pairs of each sentence of plain text; a list of strings is several
        texts, their sentences in order.  Sentences and words are split simply
        (:func:`~rnnkit.tasks.tag.treebank.split_sentences`), as ``rnnkit tag`` does; a
        sentence longer than :data:`MAX_SENTENCE_WORDS` words comes back as consecutive
        sentences of at most that many words."""
        return [list(zip(s.words, s.tags)) for s in self.tag_sentences(text)]

    def tag_sentences(self, text: Optional[str | Sequence[str]] = None,
                      file: Optional[str | Path] = None) -> list[TaggedSentence]:
        """Tagged sentences (words, tags and the sentence's text) of plain text (a string or a
        list of strings) or of a plain-text file (one or more sentences per line).

        Any length of text is tagged in bounded memory: a sentence longer than
        :data:`MAX_SENTENCE_WORDS` words is tagged as consecutive sentences of at most that
        many words (they are returned so, their ``text`` the words joined by spaces), the
        character features of a word longer than :data:`MAX_WORD_CHARS` characters are read
        from its first and last ``MAX_WORD_CHARS // 2`` characters, and batches hold at most
        :data:`BATCH_WORDS` padded words; each limit that applies is logged as a warning."""
        if (text is None) == (file is None):
            raise ValueError("give text or a file to tag (one of the two)")
        if file is not None:
            from rnnkit.data.text import read_text

            texts, source = [read_text(file)], f"{file}: "
        elif isinstance(text, str):
            texts, source = [text], ""
        elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            texts, source = list(text), ""
        else:
            raise TypeError(f"text to tag must be a string or a list of strings, got {_describe(text)}")
        sentences = [TaggedSentence(words, [], text=line) for t in texts for line, words in split_sentences(t)]
        if not sentences:
            got = "a file with none" if file is not None else _shorten(text)
            raise DataError(f"{source}nothing to tag: expected text with at least one word, got {got}")
        sentences = split_long_sentences(sentences, MAX_SENTENCE_WORDS)
        for sentence, tags in zip(sentences, self._predict(sentences)):
            sentence.tags = tags
        return sentences

    def _predict(self, sentences: list[TaggedSentence]) -> list[list[str]]:
        """The tags of each sentence, in batches of similar length of at most 256 sentences
        and :data:`BATCH_WORDS` padded words (the batches of ``task.predict`` when the
        sentences are short), each word's characters capped (:data:`MAX_WORD_CHARS`)."""
        seen = [_capped(s) for s in sentences]
        capped = sum(len(w) > MAX_WORD_CHARS for s in sentences for w in s.words)
        if capped:
            half = MAX_WORD_CHARS // 2
            logger.warning(f"{capped} words are longer than {MAX_WORD_CHARS} characters; the tagger's character "
                           f"features read only their first and last {half} characters")
        order = sorted(range(len(seen)), key=lambda i: len(seen[i]))
        tags: list = [None] * len(seen)
        for start in range(0, len(order), 256):
            block = order[start:start + 256]  # ascending length: each batch's longest is its last
            while block:
                n = 1
                while n < len(block) and (n + 1) * len(seen[block[n]]) <= BATCH_WORDS:
                    n += 1
                batch, block = block[:n], block[n:]
                for i, predicted in zip(batch, self.task.predict(self.model, [seen[i] for i in batch])):
                    tags[i] = predicted
        return tags

    def evaluate(self, split: str = "test", data: Optional[str] = None,
                 ensemble: Sequence["str | Path | TagPredictor"] = (), write: bool = True) -> dict:
        """Accuracy, OOV accuracy and per-tag precision/recall on a split of the run's treebank
        (of the treebank folder ``data`` instead when given).  With ``ensemble`` (more tagging
        runs, or their predictors) the runs' per-word probabilities are averaged.  With ``write``:
        ``<split>_confusion.csv``/``.png`` and ``<split>_predictions.conllu`` into the run
        (``<split>_ensemble...`` for an ensemble); the PNG's path is ``metrics["plot"]``."""
        task = self.task
        others = [other if isinstance(other, TagPredictor)
                  else TagPredictor.load(other, self.checkpoint, str(self.device)) for other in ensemble]
        members = [(self.model, task)] + [(other.model, other.task) for other in others]
        data_cfg = TaggingDataConfig(**{**asdict(task.data_cfg), "data": data or task.data_cfg.data})
        files = find_treebank(data_cfg.data)
        if split not in files:
            raise DataError(f"{data_cfg.data}: no {split} file in this treebank")
        sentences = read_conllu(files[split], data_cfg.column)
        start = time.perf_counter()
        predicted = ensemble_predict(members, sentences) if ensemble else task.predict(self.model, sentences)
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
            run = self.run
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


def split_long_sentences(sentences: Sequence[TaggedSentence], limit: int = MAX_SENTENCE_WORDS) -> list[TaggedSentence]:
    """The sentences, each one longer than ``limit`` words replaced by consecutive sentences of
    at most ``limit`` words (their text: the words joined by spaces), with a logged warning."""
    long = [len(s) for s in sentences if len(s) > limit]
    if not long:
        return list(sentences)
    logger.warning(f"{len(long)} sentence{'s' if len(long) > 1 else ''} longer than {limit} words (the longest "
                   f"{max(long)}): tagged as consecutive sentences of at most {limit} words; words near the cuts "
                   f"lose the context beyond them")
    out = []
    for s in sentences:
        if len(s) <= limit:
            out.append(s)
            continue
        for start in range(0, len(s), limit):
            words = s.words[start:start + limit]
            out.append(TaggedSentence(words, [], text=" ".join(words)))
    return out


def _capped(sentence: TaggedSentence) -> TaggedSentence:
    """The sentence as the model reads it: words longer than MAX_WORD_CHARS as their first and
    last MAX_WORD_CHARS // 2 characters (the sentence itself when it has none)."""
    if all(len(w) <= MAX_WORD_CHARS for w in sentence.words):
        return sentence
    half = MAX_WORD_CHARS // 2
    return TaggedSentence([w if len(w) <= MAX_WORD_CHARS else w[:half] + w[-half:] for w in sentence.words], [])


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value if not isinstance(v, str)})
        return f"a {type(value).__name__} holding {', '.join(kinds)}"
    return f"{type(value).__name__} {_shorten(value)}"


def _shorten(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def confusion(gold, predicted, tags) -> list[list[int]]:
    """Counts [gold][predicted] over the ``tags`` order."""
    at = {t: i for i, t in enumerate(tags)}
    table = [[0] * len(tags) for _ in tags]
    for g, p in zip(gold, predicted):
        for gt, pt in zip(g, p):
            if gt in at and pt in at:
                table[at[gt]][at[pt]] += 1
    return table


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
