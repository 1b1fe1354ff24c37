"""A trained sentence classifier in Python: ``rnnkit.load(run).classify("a gripping , funny film")``."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import torch

from rnnkit.errors import DataError
from rnnkit.tasks.classify.data import Example, read_examples, tokenize
from rnnkit.tasks.classify.metrics import classification_metrics
from rnnkit.tasks.classify.run import check_labels, load_data
from rnnkit.tasks.classify.task import (
    ClassifierModelConfig,
    ClassifyDataConfig,
    ClassifyTask,
    ClassifyVocab,
    TextClassifier,
    build_model,
    clip_words,
)
from rnnkit.train import load_weights
from rnnkit.train.checkpoint import build_checked, task_checkpoint
from rnnkit.train.trainer import pick_device

logger = logging.getLogger(__name__)

MAX_PLOT_TEXTS = 8  # texts drawn in one attention heat map


class Prediction(NamedTuple):
    """The most probable label of a text and its probability (unpacks as a pair)."""

    label: str
    probability: float


class ClassifyPredictor:
    """A sentence classifier with its vocabulary, its labels and the settings it was trained with.

    ``model`` is the :class:`~rnnkit.tasks.classify.task.TextClassifier` (in eval mode),
    ``task`` the :class:`~rnnkit.tasks.classify.task.ClassifyTask` without data (vocabulary,
    configs, batching), ``labels`` the classes in the order of the model's outputs and ``run``
    the run folder (where :meth:`evaluate` writes its files).

    Texts are tokenized as in training (the run's ``tokenizer``; lower-cased by the vocabulary
    when the run is) and read as their first ``max_words`` words (a warning says when one is cut).
    """

    file_tag = ""  # evaluate's files: <split><file_tag>_confusion.csv, ...

    def __init__(self, model: TextClassifier, task: ClassifyTask, run: str | Path) -> None:
        self.model, self.task, self.run = model, task, Path(run)

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best", device: str = "auto") -> "ClassifyPredictor":
        """The classifier of a trained run; ``checkpoint`` as in :func:`~rnnkit.train.checkpoint.task_checkpoint`."""
        where, meta = task_checkpoint(run, "classify", checkpoint, "classification", model=ClassifierModelConfig,
                                      data=ClassifyDataConfig)
        vocab = ClassifyVocab.from_dict(meta["vocab"])
        model = build_checked(where, meta, lambda cfg: build_model(vocab, ClassifierModelConfig(**cfg)))
        dev = pick_device(device)
        load_weights(model, where, dev)
        task = ClassifyTask({}, vocab, ClassifyDataConfig(**meta["data"]), ClassifierModelConfig(**meta["model"]),
                            meta.get("seed", 0), meta.get("source", ""))
        return cls(model.to(dev).eval(), task, run)

    @property
    def labels(self) -> list[str]:
        return list(self.task.vocab.labels)

    @property
    def pooling(self) -> str:
        return self.task.model_cfg.pooling

    def scores(self, examples: Sequence[Example]) -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]:
        """Class probabilities (N, K) in the order of :attr:`labels`, and for attention pooling
        each text's weights over its words (else None)."""
        return self.task.probabilities(self.model, examples)

    # ------------------------------------------------------------------------------ text in
    def examples(self, texts: Sequence[str]) -> list[Example]:
        """The texts as the model reads them: tokenized, cut to ``max_words`` words."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"expected a list of strings, got {type(texts).__name__}")
        examples = []
        for k, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {k}: expected a string, got {type(text).__name__}")
            words = tokenize(text, self.task.data_cfg.tokenizer)
            if not words:
                raise DataError(f"text {k}: nothing to classify: expected text with at least one word, "
                                f"got {_shorten(text)}")
            examples.append(Example(words))
        limit = self.task.data_cfg.max_words
        examples, cut = clip_words(examples, limit)
        if cut:
            logger.warning(f"{cut} text{'s are' if cut > 1 else ' is'} longer than {limit} words: read as "
                           f"the first {limit} (the run's max_words)")
        return examples

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """Everything about each text: ``text``, ``words`` (as read), ``label``,
        ``probability``, ``probabilities`` {label: p} and, for attention pooling,
        ``attention`` (one weight per word, summing to 1); what ``rnnkit classify --json``
        prints."""
        examples = self.examples(texts)
        probs, weights = self.scores(examples)
        out = []
        labels = self.labels
        for i, (text, example) in enumerate(zip(texts, examples)):
            best = int(probs[i].argmax())
            record = {"text": text, "words": example.words, "label": labels[best],
                      "probability": float(probs[i, best]),
                      "probabilities": {label: float(p) for label, p in zip(labels, probs[i])}}
            if weights is not None:
                record["attention"] = [float(w) for w in weights[i]]
            out.append(record)
        return out

    def classify(self, texts: str | Sequence[str]) -> Prediction | list[Prediction]:
        """The most probable label and its probability: one :class:`Prediction` for a string, a
        list of them for a list of strings."""
        one = isinstance(texts, str)
        out = [Prediction(r["label"], r["probability"]) for r in self.predict([texts] if one else texts)]
        return out[0] if one else out

    def probabilities(self, texts: str | Sequence[str]) -> dict[str, float] | list[dict[str, float]]:
        """{label: probability} of a text (a list of them for a list of texts)."""
        one = isinstance(texts, str)
        out = [r["probabilities"] for r in self.predict([texts] if one else texts)]
        return out[0] if one else out

    def attention(self, texts: str | Sequence[str]) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """(word, attention weight) of each word a text was read as (the weights sum to 1), for
        a run with ``--pooling attention``; a list of them for a list of texts."""
        if self.pooling != "attention":
            raise ValueError(f"attention weights need a run trained with --pooling attention; this run pools "
                             f"with {self.pooling!r}")
        one = isinstance(texts, str)
        out = [list(zip(r["words"], r["attention"])) for r in self.predict([texts] if one else texts)]
        return out[0] if one else out

    def attention_plot(self, texts: str | Sequence[str], path: str | Path) -> Path:
        """A PNG heat map of the attention weights of the first :data:`MAX_PLOT_TEXTS` texts,
        captioned with the predicted label and its probability; the path written."""
        from rnnkit.tasks.classify.plots import attention_png

        if self.pooling != "attention":
            raise ValueError(f"an attention heat map needs a run trained with --pooling attention; this run pools "
                             f"with {self.pooling!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)[:MAX_PLOT_TEXTS]
        rows = [(r["words"], r["attention"], f"{r['label']} ({r['probability']:.2f})") for r in self.predict(texts)]
        return attention_png(rows, path)

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test", data: Optional[str] = None, write: bool = True) -> dict:
        """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix on a split
        of the run's data (the run's split: the same seeded cut of a single file), or of
        ``data`` instead: a folder (its split file) or a file (all of it).  With ``write``:
        ``<split>_confusion.csv``/``.png`` and ``<split>_predictions.tsv`` (gold, predicted,
        probability, text) into the run (an ensemble's: ``<split>_ensemble_*`` into its first
        member's run); the PNG's path is ``metrics["plot"]``."""
        cfg = self.task.data_cfg
        if data is not None and Path(data).is_file():
            file = Path(data)
            examples = read_examples(file, cfg.format, cfg.text_column, cfg.label_column, cfg.tokenizer)
        else:
            loaded = load_data(cfg, (split,), data)
            if split not in loaded.examples:
                raise DataError(f"{loaded.source}: no {split} part in this data (a folder needs a "
                                f"{'test' if split == 'test' else 'dev'} file)")
            examples, file = loaded.examples[split], loaded.files[split]
        labels = self.labels
        check_labels(examples, labels, file)
        examples, _ = clip_words(examples, cfg.max_words)
        start = time.perf_counter()
        probs, _ = self.scores(examples)
        best = probs.argmax(dim=1).tolist()
        predicted = [labels[k] for k in best]
        gold = [e.label for e in examples]
        metrics = classification_metrics(gold, predicted, labels)
        gold_ids = torch.tensor([labels.index(g) for g in gold], dtype=torch.long)  # (N,)
        picked = probs.gather(1, gold_ids[:, None]).clamp(min=1e-30)  # (N, 1)
        metrics["loss"] = float(-picked.log().mean()) if len(gold) else 0.0
        metrics["seconds"] = time.perf_counter() - start
        metrics["labels"] = labels
        metrics["plot"] = None
        if write:
            name = f"{split}{self.file_tag}"
            with open(self.run / f"{name}_confusion.csv", "w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow(["gold \\ predicted"] + labels)
                for label, row in zip(labels, metrics["confusion"]):
                    out.writerow([label] + row)
            with open(self.run / f"{name}_predictions.tsv", "w", encoding="utf-8") as f:
                f.write("gold\tpredicted\tprobability\ttext\n")
                for i, (e, k) in enumerate(zip(examples, best)):
                    f.write(f"{e.label}\t{labels[k]}\t{float(probs[i, k]):.4f}\t{' '.join(e.words)}\n")
            try:
                from rnnkit.tasks.classify.plots import confusion_png

                metrics["plot"] = str(confusion_png(metrics["confusion"], labels, self.run / f"{name}_confusion.png",
                                                    f"{split}: accuracy {metrics['acc']:.4f}, macro-F1 "
                                                    f"{metrics['macro_f1']:.4f}"))
            except ImportError:
                logger.warning("no confusion-matrix PNG: plots need matplotlib (pip install 'rnnkit[lab]')")
        return metrics


class ClassifyEnsemble(ClassifyPredictor):
    """Several trained classifiers as one: a text's class probabilities are the mean of the
    members' probabilities, and its label the most probable class of that mean.

    Averaging the outputs of networks trained independently (here: other seeds or settings)
    cancels part of each one's errors: Hansen & Salamon (1990), "Neural Network Ensembles";
    Lakshminarayanan, Pritzel & Blundell (2017) average the predicted distributions as here.

    The members must have the same labels (in any order), tokenizer and ``max_words``, so that
    they read the same words; each maps them to its own vocabulary.  Texts, data and settings
    are the first member's (``task``, ``run``: :meth:`evaluate` writes ``<split>_ensemble_*``
    into its folder).  An ensemble has no attention weights of its own: ask a member
    (``members[k].attention(...)``).
    """

    file_tag = "_ensemble"

    def __init__(self, members: Sequence[ClassifyPredictor]) -> None:
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two classifiers, got {len(members)}")
        first = members[0]
        for m in members[1:]:
            if sorted(m.labels) != sorted(first.labels):
                raise ValueError(f"{m.run}: its labels ({', '.join(m.labels)}) differ from those of {first.run} "
                                 f"({', '.join(first.labels)}); an ensemble's members must have the same classes")
            for key in ("tokenizer", "max_words"):
                mine, theirs = getattr(m.task.data_cfg, key), getattr(first.task.data_cfg, key)
                if mine != theirs:
                    raise ValueError(f"{m.run}: {key} {mine!r} differs from {theirs!r} of {first.run}; an "
                                     f"ensemble's members must read the same words")
        super().__init__(first.model, first.task, first.run)
        self.members = members

    @classmethod
    def load(cls, runs: Sequence[str | Path], checkpoint: str = "best", device: str = "auto"
             ) -> "ClassifyEnsemble":
        """The ensemble of the classifiers of ``runs`` (each at ``checkpoint``)."""
        if isinstance(runs, (str, Path)):
            raise TypeError(f"expected a list of run folders, got one: {str(runs)!r}")
        return cls([ClassifyPredictor.load(run, checkpoint, device) for run in runs])

    def scores(self, examples: Sequence[Example]) -> tuple[torch.Tensor, None]:
        """The mean of the members' class probabilities (N, K), in the order of :attr:`labels`; None."""
        total = torch.zeros(len(examples), len(self.labels))
        for member in self.members:
            probs, _ = member.task.probabilities(member.model, examples)  # (N, K) in the member's order
            total += probs[:, [member.labels.index(label) for label in self.labels]]
        return total / len(self.members), None

    def attention(self, texts):
        raise ValueError("an ensemble has no attention weights of its own; ask one of its members "
                         "(ensemble.members[k].attention(...))")

    def attention_plot(self, texts, path):
        self.attention(texts)


def _shorten(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
