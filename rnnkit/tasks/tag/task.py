"""Part-of-speech tagging: a word's tag depends on its context.

The tagger of Plank, Søgaard & Goldberg (2016): each word is represented by its word
embedding and the final states of a character-level BiLSTM run over its letters (so unseen
words still get a representation from their spelling), a stacked (bi)LSTM reads the sentence,
and a linear layer scores the tags of each word — softmax per token, or a linear-chain CRF
(Lample et al. 2016; ``rnnkit.models.crf``).  Rare training words are replaced by ``<unk>``
with probability ``alpha / (alpha + count)`` (word dropout, Kiperwasser & Goldberg 2016), so
the ``<unk>`` embedding is trained and the character features learn to carry unseen words.
Dropout on the non-recurrent connections as in Dozat, Qi & Manning (2017).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.data.vocab import TokenVocab, pad_batch
from rnnkit.models import LAYERS
from rnnkit.models.crf import CRF
from rnnkit.settings import MAX_BATCH, MAX_LAYERS, MAX_UNITS, setting
from rnnkit.tasks.tag.treebank import COLUMNS, TaggedSentence
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice, unwrap

IGNORE = -100  # tag id of padding positions


@dataclass
class TaggingDataConfig:
    data: Optional[str] = setting(None, "UD treebank folder with *-ud-{train,dev,test}.conllu[.gz]")
    column: str = setting("upos", "upos | xpos", choices=COLUMNS)
    lower: bool = setting(True, "word embeddings of lower-cased forms (characters keep the case)")
    min_count: int = setting(1, "training words seen fewer times are <unk> for the word embedding", ge=1)
    word_dropout: float = setting(0.25, "alpha; 0: off", ge=0)
    batch_size: int = setting(32, "sentences per batch", ge=1, le=MAX_BATCH)
    limit: int = setting(0, "use only the first N training sentences (0: all)", ge=0)


@dataclass
class TaggerModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    word_embed: int = setting(128, "size of the word embeddings; 0: no word embeddings", ge=0, le=MAX_UNITS)
    char_embed: int = setting(64, "size of the character embeddings", ge=1, le=MAX_UNITS)
    char_hidden: int = setting(128, "per direction of the character BiLSTM; 0: no character features",
                               ge=0, le=MAX_UNITS)
    hidden_size: int = setting(256, "per direction", ge=1, le=MAX_UNITS)
    num_layers: int = setting(2, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    bidirectional: bool = setting(True, "read each sentence in both directions")
    dropout: float = setting(0.33, "on the word features, between layers and before the output layer", ge=0, lt=1)
    crf: bool = setting(False, "a CRF over the tag scores (Viterbi decoding) instead of a per-word softmax")


@dataclass
class TagTrainConfig(TrainConfig):
    """TrainConfig with the tagging task's defaults (the helps are TrainConfig's)."""
    epochs: int = 30
    early_stop: int = 8
    log_every: int = 50


@dataclass
class TagBatch:
    """A padded batch: ``words``/``tags``/``index`` (T, B), ``lengths`` (B,), and the batch's
    distinct word forms as characters ``chars`` (L, U) with ``char_lengths`` (U,);
    ``index[t, b]`` is the form of word t of sentence b."""

    words: Tensor
    lengths: Tensor
    chars: Tensor
    char_lengths: Tensor
    index: Tensor
    tags: Tensor

    def to(self, device) -> "TagBatch":
        return TagBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class Vocabularies:
    """Words (lower-cased when ``lower``), characters and tags of a training set."""

    def __init__(self, words: TokenVocab, chars: TokenVocab, tags: Sequence[str], lower: bool,
                 counts: Optional[dict[str, int]] = None) -> None:
        self.words, self.chars, self.tags, self.lower = words, chars, list(tags), lower
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}
        self.counts = counts or {}

    @classmethod
    def build(cls, sentences: Sequence[TaggedSentence], lower: bool = True, min_count: int = 1) -> "Vocabularies":
        norm = str.lower if lower else str
        counts = Counter(norm(w) for s in sentences for w in s.words)
        words = TokenVocab.build([[norm(w) for w in s.words] for s in sentences], min_count)
        chars = TokenVocab.build([list(w) for s in sentences for w in s.words])
        tags = sorted({t for s in sentences for t in s.tags})
        return cls(words, chars, tags, lower, dict(counts))

    def form(self, word: str) -> str:
        return word.lower() if self.lower else word

    def to_dict(self) -> dict:
        return {"words": self.words.to_dict(), "chars": self.chars.to_dict(), "tags": self.tags,
                "lower": self.lower, "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabularies":
        return cls(TokenVocab.from_dict(data["words"]), TokenVocab.from_dict(data["chars"]), data["tags"],
                   data["lower"], data.get("counts"))


def make_batch(sentences: Sequence[TaggedSentence], vocab: Vocabularies) -> TagBatch:
    """Encode sentences (tags may be empty: untagged text) into a TagBatch."""
    forms: dict[str, int] = {}
    for s in sentences:
        for w in s.words:
            forms.setdefault(w, len(forms))
    words, lengths = pad_batch([vocab.words.encode([vocab.form(w) for w in s.words]) for s in sentences],
                               TokenVocab.pad)
    index, _ = pad_batch([[forms[w] for w in s.words] for s in sentences], 0)
    chars, char_lengths = pad_batch([vocab.chars.encode(list(w)) for w in forms], TokenVocab.pad)
    tags = torch.full(words.shape, IGNORE, dtype=torch.long)
    for b, s in enumerate(sentences):
        if s.tags:
            tags[: len(s.tags), b] = torch.tensor([vocab.tag_ids.get(t, IGNORE) for t in s.tags])
    return TagBatch(words, lengths, chars, char_lengths, index, tags)


def length_batches(sentences: Sequence[TaggedSentence], batch_size: int, seed: Optional[int],
                   bucket: int = 50) -> list[list[int]]:
    """Sentence indices grouped into batches of similar length.  With ``seed``: shuffled, then
    sorted within runs of ``bucket`` batches, batches shuffled; without: by length."""
    order = list(range(len(sentences)))
    if seed is None:
        order.sort(key=lambda i: len(sentences[i]))
    else:
        rng = random.Random(seed)
        rng.shuffle(order)
        span = batch_size * bucket
        order = [i for s in range(0, len(order), span)
                 for i in sorted(order[s:s + span], key=lambda i: len(sentences[i]))]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if seed is not None:
        random.Random(seed + 1).shuffle(batches)
    return batches


class Tagger(nn.Module):
    """Word embeddings + character BiLSTM features -> stacked (bi)LSTM -> tag scores.

    Inputs: a TagBatch.  Output: emission scores (T, B, K) (padding rows are arbitrary)."""

    def __init__(self, n_words: int, n_chars: int, n_tags: int, cfg: TaggerModelConfig) -> None:
        super().__init__()
        if cfg.cell not in LAYERS:
            raise ValueError(f"cell must be one of {sorted(LAYERS)}, got {cfg.cell!r}")
        if cfg.word_embed <= 0 and cfg.char_hidden <= 0:
            raise ValueError("a tagger needs word embeddings or character features (word_embed or char_hidden > 0)")
        self.cfg = cfg
        features = 0
        self.word_embedding = None
        if cfg.word_embed > 0:
            self.word_embedding = nn.Embedding(n_words, cfg.word_embed, padding_idx=TokenVocab.pad)
            features += cfg.word_embed
        self.char_embedding = self.char_rnn = None
        if cfg.char_hidden > 0:
            self.char_embedding = nn.Embedding(n_chars, cfg.char_embed, padding_idx=TokenVocab.pad)
            self.char_rnn = rnnkit.LSTM(cfg.char_embed, cfg.char_hidden, bidirectional=True)
            features += 2 * cfg.char_hidden
        self.rnn = LAYERS[cfg.cell](features, cfg.hidden_size, num_layers=cfg.num_layers,
                                    dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
                                    bidirectional=cfg.bidirectional)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden_size * (2 if cfg.bidirectional else 1), n_tags)
        self.crf = CRF(n_tags) if cfg.crf else None

    def char_features(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        """Final forward and backward states of the character BiLSTM per form, (U, 2Hc)."""
        emb = self.char_embedding(chars)  # (L, U, Ec)
        _, (h, _) = self.char_rnn(emb, lengths=char_lengths)  # h: (2, U, Hc)
        return torch.cat([h[0], h[1]], dim=1)  # (U, 2Hc)

    def forward(self, batch: TagBatch, words: Optional[Tensor] = None) -> Tensor:
        """``words`` replaces ``batch.words`` (word dropout)."""
        parts = []
        if self.word_embedding is not None:
            parts.append(self.word_embedding(batch.words if words is None else words))  # (T, B, Ew)
        if self.char_rnn is not None:
            parts.append(self.char_features(batch.chars, batch.char_lengths)[batch.index])  # (T, B, 2Hc)
        x = self.drop(torch.cat(parts, dim=2))
        out, _ = self.rnn(x, lengths=batch.lengths)  # (T, B, H * dirs)
        return self.out(self.drop(out))  # (T, B, K)

    def loss(self, emissions: Tensor, batch: TagBatch) -> Tensor:
        """Mean negative log-likelihood per tagged word."""
        if self.crf is None:
            return F.cross_entropy(emissions.flatten(0, 1), batch.tags.flatten(), ignore_index=IGNORE)
        tags = batch.tags.clamp(min=0)
        return self.crf.nll(emissions, tags, batch.lengths).sum() / batch.lengths.sum()

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """Best tag ids per sentence from its scores (Viterbi with a CRF, else per-word argmax)."""
        if self.crf is not None:
            return self.crf.decode(emissions, lengths)
        best = emissions.argmax(2).t().tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, lengths.tolist())]

    def predict(self, batch: TagBatch) -> list[list[int]]:
        """Best tag ids per sentence of a batch."""
        return self.decode(self(batch), batch.lengths)


def build_model(vocab: Vocabularies, cfg: TaggerModelConfig) -> Tagger:
    return Tagger(len(vocab.words), len(vocab.chars), len(vocab.tags), cfg)


def ensemble_predict(members: Sequence[tuple[Tagger, "TaggingTask"]],
                     sentences: Sequence[TaggedSentence]) -> list[list[str]]:
    """Tags of an ensemble: the per-word tag probabilities of several taggers (each with its
    own vocabularies) averaged, tags matched by name, then the most probable tag per word."""
    tags = sorted({t for _, task in members for t in task.vocab.tags})
    at = {t: i for i, t in enumerate(tags)}
    total = [torch.zeros(len(s), len(tags)) for s in sentences]
    for model, task in members:
        columns = torch.tensor([at[t] for t in task.vocab.tags])
        for acc, probs in zip(total, task.probabilities(model, sentences)):
            acc.index_add_(1, columns, probs.float())
    return [[tags[int(i)] for i in acc.argmax(1)] for acc in total]


def tag_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                oov: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Token accuracy, accuracy on out-of-vocabulary words and their counts."""
    right = total = oov_right = oov_total = 0
    for g, p, o in zip(gold, predicted, oov):
        for gt, pt, unseen in zip(g, p, o):
            total += 1
            right += gt == pt
            oov_total += unseen
            oov_right += unseen and gt == pt
    return {"acc": right / max(total, 1), "oov_acc": oov_right / max(oov_total, 1),
            "tokens": total, "oov_tokens": oov_total}


class TaggingTask:
    """Tagging as the Trainer sees it.  ``sentences``: {"train", "valid"[, "test"]} lists of
    TaggedSentence; the best checkpoint is the one with the highest validation accuracy."""

    monitor = ("acc", "max")

    def __init__(self, sentences: dict[str, list[TaggedSentence]], vocab: Vocabularies,
                 data_cfg: TaggingDataConfig, model_cfg: TaggerModelConfig, seed: int = 0,
                 source: str = "") -> None:
        self.sentences, self.vocab = sentences, vocab
        self.data_cfg, self.model_cfg, self.seed, self.source = data_cfg, model_cfg, seed, source
        alpha = data_cfg.word_dropout
        counts = torch.tensor([vocab.counts.get(w, 0) for w in vocab.words.itos], dtype=torch.float)
        # probability of replacing each word id by <unk> during training (0 for specials)
        self.unk_prob = torch.where(counts > 0, alpha / (alpha + counts), torch.zeros(())) if alpha > 0 else None

    def build_model(self) -> Tagger:
        return build_model(self.vocab, self.model_cfg)

    def train_batches(self, epoch: int) -> list[list[int]]:
        return length_batches(self.sentences["train"], self.data_cfg.batch_size, seed=self.seed * 1000 + epoch)

    def shard(self, batch_ids: list[int], rank: int, world: int) -> Optional[list[int]]:
        """Rank's block of a batch's sentences (torchrun); None when a short batch has none left."""
        check_global_batch(self.data_cfg.batch_size, world, "sentences")
        return batch_ids[shard_slice(len(batch_ids), rank, world)] or None

    def train_step(self, model: Tagger, batch_ids: list[int], state):
        device = next(model.parameters()).device
        batch = make_batch([self.sentences["train"][i] for i in batch_ids], self.vocab).to(device)
        words = batch.words
        if self.unk_prob is not None:
            drop = torch.rand(words.shape) < self.unk_prob[words.cpu()]
            words = words.masked_fill(drop.to(device), TokenVocab.unk)
        loss = unwrap(model).loss(model(batch, words), batch)  # model may be DDP-wrapped: forward through it
        return loss, int(batch.lengths.sum()), None

    def is_oov(self, word: str) -> bool:
        """Not among the training set's word forms (after lower-casing when the model does)."""
        return self.vocab.form(word) not in self.vocab.counts

    def _per_sentence(self, model: Tagger, sentences: Sequence[TaggedSentence], fn, batch_size: int = 256) -> list:
        """``fn(model, batch)`` -> one result per sentence of the batch, over all sentences
        in length-sorted batches, returned in input order (model in eval mode meanwhile)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out: list = [None] * len(sentences)
        with torch.no_grad():
            for ids in length_batches(sentences, batch_size, seed=None):
                batch = make_batch([sentences[i] for i in ids], self.vocab).to(device)
                for i, result in zip(ids, fn(model, batch)):
                    out[i] = result
        model.train(was_training)
        return out

    def predict(self, model: Tagger, sentences: Sequence[TaggedSentence]) -> list[list[str]]:
        """Best tags per sentence."""
        tag_ids = self._per_sentence(model, sentences, lambda m, b: m.predict(b))
        return [[self.vocab.tags[t] for t in tags] for tags in tag_ids]

    def probabilities(self, model: Tagger, sentences: Sequence[TaggedSentence]) -> list[Tensor]:
        """Per sentence, (n, K) per-word tag probabilities (softmax of the scores) in the order
        of ``self.vocab.tags``.  A CRF scores whole sequences, so its runs have none."""
        if model.crf is not None:
            raise ValueError("per-word probabilities (e.g. for an ensemble) need a softmax tagger; this run uses a CRF")

        def softmax(m, batch):
            probs = m(batch).softmax(-1).transpose(0, 1).cpu()  # (B, T, K)
            return [p[:n] for p, n in zip(probs, batch.lengths.tolist())]

        return self._per_sentence(model, sentences, softmax)

    def evaluate(self, model: Tagger, split: str) -> dict[str, float]:
        """Mean loss per tagged word, accuracy and OOV accuracy, from one pass over the split."""
        sentences = self.sentences[split]
        total = count = 0.0

        def score(m: Tagger, batch: TagBatch) -> list[list[int]]:
            nonlocal total, count
            emissions = m(batch)
            n = int((batch.tags != IGNORE).sum())
            total += float(m.loss(emissions, batch)) * n
            count += n
            return m.decode(emissions, batch.lengths)

        tag_ids = self._per_sentence(model, sentences, score)
        predicted = [[self.vocab.tags[t] for t in tags] for tags in tag_ids]
        metrics = tag_metrics([s.tags for s in sentences], predicted,
                              [[self.is_oov(w) for w in s.words] for s in sentences])
        return {"loss": total / max(count, 1), "acc": metrics["acc"], "oov_acc": metrics["oov_acc"]}

    def meta(self) -> dict:
        return {"task": "tag", "vocab": self.vocab.to_dict(), "model": asdict(self.model_cfg),
                "data": asdict(self.data_cfg), "seed": self.seed, "source": self.source}
