"""Sentence classification (many-to-one): one label per text, e.g. its sentiment.

The model reads a text's words through their embeddings (and, optionally, the tagger's
character BiLSTM over each word's letters: Plank, Søgaard & Goldberg 2016, reused from
``rnnkit.tasks.tag``), a stacked uni- or bidirectional recurrent layer (``rnnkit.LSTM``/
``GRU``/``RNN``, run with ``lengths=`` over the padded batch), pools its states into one
vector per text (``rnnkit.tasks.classify.pooling``: final states, max, mean or additive
attention), and a linear layer after dropout scores the classes; softmax cross-entropy.

Regularization: dropout on the word features (Zaremba et al. 2014 apply it to the
non-recurrent connections), between stacked layers and before the classifier (Srivastava et
al. 2014), and word dropout: during training each word is replaced by ``<unk>`` with
probability p (Iyyer et al. 2015 drop words of a text; replacing them by ``<unk>`` as in
Kiperwasser & Goldberg 2016 also trains the embedding that unseen words get).  The LSTM's
forget-gate bias starts at 1 (Jozefowicz, Zaremba & Sutskever 2015).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.data.vocab import TokenVocab, pad_batch
from rnnkit.init import forget_bias_
from rnnkit.models import LAYERS
from rnnkit.settings import MAX_BATCH, MAX_LAYERS, MAX_LENGTH, MAX_SEED, MAX_UNITS, setting
from rnnkit.tasks.classify.data import FORMATS, TOKENIZERS, Example, label_order
from rnnkit.tasks.classify.pooling import POOLINGS, AttentionPooling, pool, valid_mask
from rnnkit.tasks.tag.predictor import MAX_WORD_CHARS
from rnnkit.tasks.tag.task import Tagger, length_batches
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice

IGNORE = -100  # label id of unlabelled texts (cross_entropy's ignore_index)
BATCH_WORDS = 8192  # padded word slots (texts x longest text) per batch when predicting or evaluating


@dataclass
class ClassifyDataConfig:
    data: Optional[str] = setting(None, "folder with train.txt, dev.txt (or valid.txt) and test.txt (.tsv/.csv, "
                                  ".gz too), or one file split by --split")
    format: str = setting("auto", "auto (by the file name: .csv, .tsv, else LABEL TEXT lines) | lines | csv | tsv",
                          choices=FORMATS)
    text_column: str = setting("text", "CSV/TSV: the header name of the text column")
    label_column: str = setting("label", "CSV/TSV: the header name of the label column")
    tokenizer: str = setting("simple", "simple (punctuation and clitics split off) | space (whitespace only)",
                             choices=TOKENIZERS)
    lower: bool = setting(True, "word embeddings of lower-cased words (characters keep the case)")
    min_count: int = setting(1, "training words seen fewer times are <unk>", ge=1)
    max_words: int = setting(1000, "texts longer than this are read as their first this many words",
                             ge=1, le=MAX_LENGTH)
    word_dropout: float = setting(0.2, "probability of replacing a training word by <unk>", ge=0, lt=1)
    split: str = setting("0.8,0.1,0.1", "one file: train,valid,test fractions of a seeded shuffle")
    split_seed: int = setting(1234, "seed of that shuffle (keep it fixed across runs)", ge=0, le=MAX_SEED)
    batch_size: int = setting(32, "texts per batch", ge=1, le=MAX_BATCH)
    limit: int = setting(0, "use only the first N training texts (0: all)", ge=0)


@dataclass
class ClassifierModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    embed_size: int = setting(300, "size of the word embeddings", ge=1, le=MAX_UNITS)
    char_embed: int = setting(32, "size of the character embeddings (with --char-hidden)", ge=1, le=MAX_UNITS)
    char_hidden: int = setting(0, "per direction of the tagger's character BiLSTM over each word; 0: none",
                               ge=0, le=MAX_UNITS)
    hidden_size: int = setting(150, "hidden units per layer and direction", ge=1, le=MAX_UNITS)
    num_layers: int = setting(1, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    bidirectional: bool = setting(True, "read each text in both directions")
    pooling: str = setting("max", "final | max | mean | attention: how the states become one vector",
                           choices=POOLINGS)
    attention_size: int = setting(100, "size of the attention's hidden layer (--pooling attention)",
                                  ge=1, le=MAX_UNITS)
    embed_dropout: float = setting(0.3, "dropout on the word features", ge=0, lt=1)
    dropout: float = setting(0.5, "between stacked layers and before the classifier", ge=0, lt=1)
    adversarial: float = setting(0.0, "adversarial training: also fit each batch with its word features moved "
                                 "by this fraction of their norm, against the loss's gradient (0: off)",
                                 ge=0, le=1)
    lm_weight: float = setting(0.0, "auxiliary language modelling: add this weight times the loss of predicting "
                               "each next word from the forward states (and each previous word from the backward "
                               "states) (0: off; one layer, or unidirectional)", ge=0)
    lm_vocab: int = setting(5000, "words the auxiliary language model predicts: the most frequent this many "
                            "(the others as <unk>)", ge=5, le=MAX_UNITS)


@dataclass
class ClassifyTrainConfig(TrainConfig):
    """TrainConfig with the classification task's defaults (the helps are TrainConfig's)."""
    epochs: int = 15
    lr: float = 1e-3
    early_stop: int = 5
    log_every: int = 50


class ClassifyVocab:
    """Words (lower-cased when ``lower``), characters (as written) and labels of a training set."""

    def __init__(self, words: TokenVocab, chars: TokenVocab, labels: Sequence[str], lower: bool) -> None:
        self.words, self.chars, self.labels, self.lower = words, chars, list(labels), lower
        self.label_ids = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def build(cls, examples: Sequence[Example], lower: bool = True, min_count: int = 1) -> "ClassifyVocab":
        norm = str.lower if lower else str
        words = TokenVocab.build([[norm(w) for w in e.words] for e in examples], min_count)
        chars = TokenVocab.build([list(w) for e in examples for w in e.words])
        return cls(words, chars, label_order(e.label for e in examples if e.label is not None), lower)

    def form(self, word: str) -> str:
        return word.lower() if self.lower else word

    def to_dict(self) -> dict:
        return {"words": self.words.to_dict(), "chars": self.chars.to_dict(), "labels": self.labels,
                "lower": self.lower}

    @classmethod
    def from_dict(cls, data: dict) -> "ClassifyVocab":
        return cls(TokenVocab.from_dict(data["words"]), TokenVocab.from_dict(data["chars"]), data["labels"],
                   data["lower"])


@dataclass
class TextBatch:
    """A padded batch: ``words`` (T, B), ``lengths`` (B,), ``labels`` (B,) (IGNORE: none);
    with character features, the batch's distinct words as characters ``chars`` (L, U) with
    ``char_lengths`` (U,), and ``index`` (T, B): the distinct word at each position."""

    words: Tensor
    lengths: Tensor
    labels: Tensor
    chars: Optional[Tensor] = None
    char_lengths: Optional[Tensor] = None
    index: Optional[Tensor] = None

    def to(self, device) -> "TextBatch":
        return TextBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                            for f in fields(self)})


def make_batch(examples: Sequence[Example], vocab: ClassifyVocab, chars: bool = False) -> TextBatch:
    """Encode examples (labels may be None, or unknown to ``vocab``: IGNORE) into a TextBatch;
    ``chars``: with the characters of the batch's distinct words (a word longer than the
    tagger's ``MAX_WORD_CHARS`` (64) as its first and last 32)."""
    words, lengths = pad_batch([vocab.words.encode([vocab.form(w) for w in e.words]) for e in examples],
                               TokenVocab.pad)  # (T, B), (B,)
    labels = torch.tensor([vocab.label_ids.get(e.label, IGNORE) if e.label is not None else IGNORE
                           for e in examples], dtype=torch.long)  # (B,)
    batch = TextBatch(words, lengths, labels)
    if chars:
        distinct: dict[str, int] = {}
        for e in examples:
            for w in e.words:
                distinct.setdefault(w, len(distinct))
        batch.index, _ = pad_batch([[distinct[w] for w in e.words] for e in examples], 0)  # (T, B)
        half = MAX_WORD_CHARS // 2  # as the tagger reads words: a very long one by its two ends
        spelled = [w if len(w) <= MAX_WORD_CHARS else w[:half] + w[-half:] for w in distinct]
        batch.chars, batch.char_lengths = pad_batch([vocab.chars.encode(list(w)) for w in spelled],
                                                    TokenVocab.pad)  # (L, U), (U,)
    return batch


def clip_words(examples: Sequence[Example], max_words: int) -> tuple[list[Example], int]:
    """The examples with each text cut to its first ``max_words`` words, and how many were cut."""
    out, cut = [], 0
    for e in examples:
        if len(e.words) > max_words:
            e, cut = Example(e.words[:max_words], e.label, e.line), cut + 1
        out.append(e)
    return out, cut


class TextClassifier(nn.Module):
    """Embeddings (+ character features) -> stacked (bi)directional RNN -> pooling -> dropout -> linear.

    Inputs: a TextBatch (and optionally ``words`` (T, B) replacing its word ids: word dropout).
    Output: class scores (B, K); :meth:`scores` also returns the attention weights (T, B).
    """

    # the tagger's character features: final states of a BiLSTM over each distinct word's letters
    char_features = Tagger.char_features

    def __init__(self, n_words: int, n_chars: int, n_labels: int, cfg: ClassifierModelConfig) -> None:
        super().__init__()
        if cfg.cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cfg.cell!r}")
        if cfg.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {cfg.pooling!r}")
        self.cfg = cfg
        self.word_embedding = nn.Embedding(n_words, cfg.embed_size, padding_idx=TokenVocab.pad)
        features = cfg.embed_size
        self.char_embedding = self.char_rnn = None
        if cfg.char_hidden > 0:
            self.char_embedding = nn.Embedding(n_chars, cfg.char_embed, padding_idx=TokenVocab.pad)
            self.char_rnn = rnnkit.LSTM(cfg.char_embed, cfg.char_hidden, bidirectional=True)
            features += 2 * cfg.char_hidden
        self.rnn = LAYERS[cfg.cell](features, cfg.hidden_size, num_layers=cfg.num_layers,
                                    dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
                                    bidirectional=cfg.bidirectional)
        if cfg.cell == "lstm":
            forget_bias_(self.rnn, 1.0)
        size = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        self.attention = AttentionPooling(size, cfg.attention_size) if cfg.pooling == "attention" else None
        self.embed_drop = nn.Dropout(cfg.embed_dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(size, n_labels)
        self.lm_heads = None
        if cfg.lm_weight > 0:
            if cfg.bidirectional and cfg.num_layers > 1:
                raise ValueError(f"lm_weight needs one layer or a unidirectional RNN: above the first layer of a "
                                 f"bidirectional stack ({cfg.num_layers} layers) every state has read the whole "
                                 f"text, the words it would predict included")
            vocab = min(cfg.lm_vocab, n_words)
            self.lm_heads = nn.ModuleList(nn.Linear(cfg.hidden_size, vocab)
                                          for _ in range(2 if cfg.bidirectional else 1))

    def features(self, batch: TextBatch, words: Optional[Tensor] = None) -> Tensor:
        """The word features (T, B, F): embeddings (and character features) of each position."""
        x = self.word_embedding(batch.words if words is None else words)  # (T, B, E)
        if self.char_rnn is not None:
            chars = self.char_features(batch.chars, batch.char_lengths)  # (U, 2Hc)
            x = torch.cat([x, chars[batch.index]], dim=2)  # (T, B, E + 2Hc)
        return x

    def read(self, batch: TextBatch, x: Tensor) -> tuple[Tensor, Optional[Tensor], Tensor]:
        """Class scores (B, K), attention weights (T, B) or None, and the top layer's states
        (T, B, P), from word features (T, B, F)."""
        out, state = self.rnn(self.embed_drop(x), lengths=batch.lengths)  # out (T, B, P)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*dirs, B, H)
        pooled, weights = pool(self.cfg.pooling, out, h_n, batch.lengths, self.cfg.bidirectional,
                               self.attention)  # (B, P), (T, B) or None
        return self.out(self.drop(pooled)), weights, out  # (B, K)

    def scores(self, batch: TextBatch, words: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """Class scores (B, K), and the attention weights (T, B) (None for other poolings)."""
        return self.read(batch, self.features(batch, words))[:2]

    def forward(self, batch: TextBatch, words: Optional[Tensor] = None, objective: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        """Class scores (B, K); with ``objective``, the training loss (a scalar) and the scores.

        The loss is the mean cross-entropy of the batch's labels, plus, with ``adversarial`` > 0,
        that of the batch with its features moved by :meth:`perturbation`, plus, with
        ``lm_weight`` > 0, ``lm_weight`` times :meth:`lm_loss`.  ``words`` (T, B) replace the
        batch's word ids as input (word dropout); the language model predicts the batch's own."""
        x = self.features(batch, words)  # (T, B, F)
        logits, _, out = self.read(batch, x)
        if not objective:
            return logits
        loss = F.cross_entropy(logits, batch.labels, ignore_index=IGNORE)
        if self.cfg.adversarial > 0:
            moved = self.read(batch, x + self.perturbation(batch, x, logits))[0]
            loss = loss + F.cross_entropy(moved, batch.labels, ignore_index=IGNORE)
        if self.lm_heads is not None:
            loss = loss + self.cfg.lm_weight * self.lm_loss(batch, out)
        return loss, logits

    def perturbation(self, batch: TextBatch, x: Tensor, logits: Tensor) -> Tensor:
        """The adversarial perturbation r (T, B, F) of word features x (T, B, F) that gave
        ``logits``: per text, norm eps * ||x|| (over its valid words and features) along the
        gradient of the cross-entropy with respect to x; a constant (no gradient through it).

        The adversarial training of Miyato, Dai & Goodfellow (2017), "Adversarial Training
        Methods for Semi-Supervised Text Classification": the fast gradient method of Goodfellow,
        Shlens & Szegedy (2015) applied to embeddings.  They normalize the embeddings so that
        eps has a fixed scale; here eps is relative to each text's feature norm instead, which
        the model cannot escape by growing its embeddings."""
        loss = F.cross_entropy(logits, batch.labels, ignore_index=IGNORE, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, retain_graph=True)  # (T, B, F); zero at padding
        valid = valid_mask(batch.lengths, x.shape[0])[:, :, None]  # (T, B, 1)
        size = (x.detach() * valid).norm(dim=(0, 2), keepdim=True)  # (1, B, 1): the valid words' norm
        direction = grad / grad.norm(dim=(0, 2), keepdim=True).clamp_min(1e-12)  # (T, B, F)
        return self.cfg.adversarial * size * direction

    def lm_loss(self, batch: TextBatch, out: Tensor) -> Tensor:
        """The auxiliary language model's loss from the top layer's states ``out`` (T, B, P):
        the cross-entropy of the next word (``</s>`` after the last) from the forward
        direction's state, plus, bidirectional, of the previous word (``<s>`` before the first)
        from the backward direction's (Rei 2017, "Semi-supervised Multitask Learning for
        Sequence Labeling"; Dai & Le 2015 pretrain a classifier's LSTM as a language model);
        averaged over each text's words, then over the texts, as the classification loss is (so
        that data-parallel ranks weighted by their texts give the whole batch's value).  Words
        outside the ``lm_vocab`` most frequent are predicted as ``<unk>``."""
        steps, size = batch.words.shape[0], self.cfg.hidden_size
        target = batch.words.masked_fill(batch.words >= self.lm_heads[0].out_features, TokenVocab.unk)  # (T, B)
        valid = valid_mask(batch.lengths, steps)  # (T, B)
        columns = torch.arange(target.shape[1], device=target.device)
        after = torch.cat([target[1:], target[:1]])  # (T, B): the next word (row T-1 is replaced below)
        after[batch.lengths - 1, columns] = TokenVocab.eos
        before = torch.cat([target[:1], target[:-1]])  # (T, B): the previous word
        before[0] = TokenVocab.bos
        loss = 0.0
        for head, states, wanted in zip(self.lm_heads, out.split(size, dim=2), (after, before)):
            scores = head(self.drop(states))  # (T, B, V)
            each = F.cross_entropy(scores.flatten(0, 1), wanted.flatten(), reduction="none").view(wanted.shape)
            loss = loss + ((each * valid).sum(0) / batch.lengths.to(each.dtype)).mean()  # per text, then texts
        return loss


def build_model(vocab: ClassifyVocab, cfg: ClassifierModelConfig) -> TextClassifier:
    return TextClassifier(len(vocab.words), len(vocab.chars), len(vocab.labels), cfg)


def budget_batches(lengths: Sequence[int], max_texts: int = 256, max_words: int = BATCH_WORDS) -> Iterator[list[int]]:
    """Positions of texts grouped into batches of similar length (sorted), each at most
    ``max_texts`` texts and ``max_words`` padded word slots (at least one text)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:  # ascending: the text added is the batch's longest
        if batch and (len(batch) == max_texts or (len(batch) + 1) * lengths[i] > max_words):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class ClassifyTask:
    """Classification as the Trainer sees it.  ``examples``: {"train", "valid"[, "test"]} lists
    of Example (cut to ``data_cfg.max_words`` words); the best checkpoint is the one with the
    highest validation accuracy."""

    monitor = ("acc", "max")

    def __init__(self, examples: dict[str, list[Example]], vocab: ClassifyVocab, data_cfg: ClassifyDataConfig,
                 model_cfg: ClassifierModelConfig, seed: int = 0, source: str = "") -> None:
        self.examples = {split: clip_words(e, data_cfg.max_words)[0] for split, e in examples.items()}
        self.vocab, self.data_cfg, self.model_cfg, self.seed, self.source = vocab, data_cfg, model_cfg, seed, source

    @property
    def chars(self) -> bool:
        return self.model_cfg.char_hidden > 0

    def build_model(self) -> TextClassifier:
        return build_model(self.vocab, self.model_cfg)

    def train_batches(self, epoch: int) -> list[list[int]]:
        return length_batches(self.examples["train"], self.data_cfg.batch_size, seed=self.seed * 1000 + epoch)

    def shard(self, batch_ids: list[int], rank: int, world: int) -> Optional[list[int]]:
        """Rank's block of a batch's texts (torchrun); None when a short batch has none left."""
        check_global_batch(self.data_cfg.batch_size, world, "texts")
        return batch_ids[shard_slice(len(batch_ids), rank, world)] or None

    def train_step(self, model: TextClassifier, batch_ids: list[int], state):
        device = next(model.parameters()).device
        batch = make_batch([self.examples["train"][i] for i in batch_ids], self.vocab, self.chars).to(device)
        words = batch.words
        p = self.data_cfg.word_dropout
        if p > 0:
            drop = (torch.rand(words.shape) < p).to(device) & (words != TokenVocab.pad)  # (T, B)
            words = words.masked_fill(drop, TokenVocab.unk)
        loss, _ = model(batch, words, objective=True)  # model may be DDP-wrapped: forward through it
        return loss, len(batch_ids), None

    @torch.no_grad()
    def run(self, model: TextClassifier, examples: Sequence[Example],
            each: Callable[[list[int], TextBatch, Tensor, Optional[Tensor]], None]) -> None:
        """``each(positions, batch, scores (B, K) float on the CPU, weights (T, B) or None)``
        over ``examples`` in batches of :func:`budget_batches` (model in eval mode meanwhile)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            for ids in budget_batches([len(e) for e in examples]):
                batch = make_batch([examples[i] for i in ids], self.vocab, self.chars)
                logits, weights = model.scores(batch.to(device))
                each(ids, batch, logits.float().cpu(), None if weights is None else weights.float().cpu())
        finally:
            model.train(was_training)

    def probabilities(self, model: TextClassifier, examples: Sequence[Example]
                      ) -> tuple[Tensor, Optional[list[Tensor]]]:
        """Class probabilities (N, K) in the order of ``vocab.labels``, and for attention
        pooling each text's weights over its words (else None)."""
        probs = torch.zeros(len(examples), len(self.vocab.labels))
        weights: list = [None] * len(examples)

        def each(ids, batch, logits, alpha):
            probs[ids] = logits.softmax(dim=1)
            if alpha is not None:
                for b, i in enumerate(ids):
                    weights[i] = alpha[: len(examples[i]), b]

        self.run(model, examples, each)
        return probs, (weights if model.cfg.pooling == "attention" else None)

    def evaluate(self, model: TextClassifier, split: str) -> dict[str, float]:
        """Mean loss per text, accuracy and macro-F1 of a split, from one pass over it."""
        from rnnkit.tasks.classify.metrics import classification_metrics

        examples = self.examples[split]
        total = 0.0
        predicted = [0] * len(examples)

        def each(ids, batch, logits, alpha):
            nonlocal total
            total += float(F.cross_entropy(logits, batch.labels, ignore_index=IGNORE, reduction="sum"))
            for i, k in zip(ids, logits.argmax(dim=1).tolist()):
                predicted[i] = k

        self.run(model, examples, each)
        labels = self.vocab.labels
        metrics = classification_metrics([e.label for e in examples], [labels[k] for k in predicted], labels)
        return {"loss": total / max(len(examples), 1), "acc": metrics["acc"], "macro_f1": metrics["macro_f1"]}

    def meta(self) -> dict:
        return {"task": "classify", "vocab": self.vocab.to_dict(), "model": asdict(self.model_cfg),
                "data": asdict(self.data_cfg), "seed": self.seed, "source": self.source}
