"""Translation: an encoder–decoder (``rnnkit.models.seq2seq``) trained on sentence pairs.

Batches hold pairs of similar source length (bucketed after a seeded shuffle, so padding is
small and every epoch differs); the loss is the cross-entropy per target token, padding
left out, optionally label-smoothed (Szegedy et al. 2016).  Validation reports the plain
per-token loss, perplexity and the corpus BLEU (sacreBLEU) of greedy translations of a
subset.  Outputs are scored against the references as written, after the same lower-casing
the tokenizer applies (sacreBLEU's ``lowercase``), with its default 13a tokenization.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from rnnkit.data.vocab import TokenVocab, pad_batch
from rnnkit.errors import RnnkitError
from rnnkit.models.decoding import beam_search, greedy_search, sample_search
from rnnkit.models.seq2seq import ATTENTIONS, CELLS, Seq2Seq, sequence_loss
from rnnkit.settings import MAX_BATCH, MAX_LAYERS, MAX_LENGTH, MAX_SEED, MAX_UNITS, MAX_VOCAB, setting
from rnnkit.train.config import TrainConfig
from rnnkit.train.distributed import check_global_batch, shard_slice

TOKENIZERS = ("word", "subword")
MAX_BEAM = 1000


@dataclass
class TranslationDataConfig:
    data: Optional[str] = setting(None, "TSV file of source<TAB>target pairs (.gz too)")
    reverse: bool = setting(False, "translate the second column into the first")
    tokenizer: str = setting("word", "word | subword (sentencepiece)", choices=TOKENIZERS)
    lower: bool = setting(True, "lower-case both sides")
    # sentencepiece's <unk>, <s>, </s> and one piece: 4; the specials <pad> <unk> <s> </s> and one token: 5
    subword_vocab: int = setting(8000, "sentencepiece pieces per side", ge=4, le=MAX_VOCAB)
    min_count: int = setting(2, "word level: rarer words become <unk>", ge=1)
    max_vocab: int = setting(15000, "per side, specials included", ge=5, le=MAX_VOCAB)
    max_length: int = setting(20, "training pairs with a side longer than this (tokens) are left out",
                              ge=1, le=MAX_LENGTH)
    valid: str = setting("3000", "validation pairs: count or fraction")
    test: str = setting("6000", "test pairs: count or fraction")
    split_seed: int = setting(1234, "seed of the grouped split (keep it fixed across runs)", ge=0, le=MAX_SEED)
    batch_size: int = setting(64, "sentence pairs per batch", ge=1, le=MAX_BATCH)
    eval_bleu: int = setting(1000, "validation pairs translated (greedy) for BLEU each epoch (0: none)", ge=0)
    beam: int = setting(5, "beam width of `rnnkit evaluate` / `rnnkit translate`", ge=1, le=MAX_BEAM)
    length_penalty: float = setting(0.6, "alpha of Wu et al. (2016)", ge=0)
    coverage: float = setting(0.0, "beta of the coverage penalty of Wu et al. (2016) in beam search", ge=0)


@dataclass
class TranslationModelConfig:
    cell: str = setting("gru", "lstm | gru | rnn", choices=tuple(CELLS))
    embed_size: int = setting(256, "size of the source and target embeddings", ge=1, le=MAX_UNITS)
    hidden_size: int = setting(256, "hidden units per layer (per direction in the encoder)", ge=1, le=MAX_UNITS)
    num_layers: int = setting(1, "stacked layers of the encoder and of the decoder", ge=1, le=MAX_LAYERS)
    bidirectional: bool = setting(True, "bidirectional encoder (its final states bridged to the decoder)")
    attention: str = setting("general", "none | dot | general | additive", choices=ATTENTIONS)
    input_feeding: bool = setting(True, "feed the previous attentional state with the next input (needs attention)")
    dropout: float = setting(0.2, "on the embeddings, between layers and before the output layer", ge=0, lt=1)
    teacher_forcing: float = setting(1.0, "probability of feeding the true previous token", ge=0, le=1)
    label_smoothing: float = setting(0.1, "of the training cross-entropy (0: none)", ge=0, lt=1)


@dataclass
class TranslateTrainConfig(TrainConfig):
    """TrainConfig with the translation task's defaults (the helps are TrainConfig's)."""
    lr: float = 1e-3
    log_every: int = 50


def build_model(src_vocab: int, tgt_vocab: int, cfg: TranslationModelConfig) -> Seq2Seq:
    return Seq2Seq(src_vocab, tgt_vocab, cfg.cell, cfg.embed_size, cfg.hidden_size, cfg.num_layers,
                   cfg.bidirectional, cfg.attention, cfg.input_feeding and cfg.attention != "none",
                   cfg.dropout, pad=TokenVocab.pad)


def make_batches(pairs: Sequence[tuple[list[int], list[int]]], batch_size: int, seed: Optional[int],
                 bucket: int = 50) -> list[tuple[torch.Tensor, ...]]:
    """Padded batches (src (S, B), src_lengths (B,), tgt_in (T, B), tgt_out (T, B)).

    With ``seed``: shuffle, sort runs of ``bucket`` batches by source length, cut, shuffle
    the batches.  Without: in order of source length (evaluation)."""
    order = list(range(len(pairs)))
    if seed is not None:
        rng = random.Random(seed)
        rng.shuffle(order)
        span = batch_size * bucket
        order = [i for s in range(0, len(order), span)
                 for i in sorted(order[s:s + span], key=lambda i: len(pairs[i][0]))]
    else:
        order.sort(key=lambda i: len(pairs[i][0]))
    batches = []
    for s in range(0, len(order), batch_size):
        chunk = [pairs[i] for i in order[s:s + batch_size]]
        src, src_len = pad_batch([p[0] for p in chunk], TokenVocab.pad)
        tgt_in, _ = pad_batch([[TokenVocab.bos] + p[1] for p in chunk], TokenVocab.pad)
        tgt_out, _ = pad_batch([p[1] + [TokenVocab.eos] for p in chunk], TokenVocab.pad)
        batches.append((src, src_len, tgt_in, tgt_out))
    if seed is not None:
        random.Random(seed + 1).shuffle(batches)
    return batches


def max_output_length(src_len: int) -> int:
    """Decoding stops here at the latest: twice the source plus 10 tokens."""
    return 2 * src_len + 10


@torch.no_grad()
def translate_ids(model: Seq2Seq, sources: Sequence[list[int]], decoder: str = "greedy", beam: int = 5,
                  alpha: float = 0.6, n_best: int = 1, temperature: float = 1.0, top_k=None, top_p=None,
                  generator=None, batch_size: int = 64, with_attention: bool = False,
                  coverage: float = 0.0) -> list[list]:
    """Translate id sequences; per source, a list of ``n_best`` Hypotheses (one unless beam).

    ``decoder``: ``"greedy" | "beam" | "sample"``.  Sources are batched by length; the result
    is in input order.  With ``with_attention`` each Hypothesis carries its (T, S) weights.
    ``coverage``: beta of the coverage penalty of beam search (:func:`coverage_penalty`)."""
    if coverage < 0:
        raise ValueError(f"coverage must be >= 0, got {coverage}")
    if coverage > 0 and decoder != "beam":
        raise ValueError(f"the coverage penalty ranks beam search outputs; decoder {decoder!r} has none")
    if coverage > 0 and model.attention is None:
        raise RnnkitError("the coverage penalty needs attention weights; this model has no attention")
    with_attention = with_attention or coverage > 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list = [None] * len(sources)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        src, src_len = pad_batch([sources[i] for i in idx], TokenVocab.pad)
        state = model.encode(src.to(device), src_len)
        max_len = max_output_length(int(src_len.max()))
        B = len(idx)

        def step(tokens, st):
            logits, st, weights = model.decode_step(tokens, st)
            return logits, st, weights if with_attention else None

        if decoder == "beam":
            lengths = src_len.tolist()
            rescore = (lambda b, weights: coverage_penalty(weights[:, : lengths[b]], coverage)) if coverage else None
            out = beam_search(step, state, B, TokenVocab.bos, TokenVocab.eos, max_len, beam, alpha, n_best, device,
                              rescore)
        elif decoder in ("greedy", "sample"):
            if decoder == "greedy":
                hyps = greedy_search(step, state, B, TokenVocab.bos, TokenVocab.eos, max_len, device)
            else:
                hyps = sample_search(step, state, B, TokenVocab.bos, TokenVocab.eos, max_len, temperature,
                                     top_k, top_p, generator, device)
            out = [[h] for h in hyps]
        else:
            raise ValueError(f"decoder must be 'greedy', 'beam' or 'sample', got {decoder!r}")
        for i, hyps in zip(idx, out):
            for h in hyps:
                if h.extras is not None:
                    h.extras = h.extras[:, : len(sources[i])]  # (T, S) without padding
            results[i] = hyps
    model.train(was_training)
    return results


def coverage_penalty(attention, beta: float) -> float:
    """``beta * sum_i log(min(sum_t a_ti, 1))``, the coverage penalty of Wu et al. (2016,
    GNMT, eq. 14): a translation whose attention has left source words out scores lower.
    ``attention``: (T, S) weights; a source word with (almost) no attention counts as 1e-10."""
    covered = attention.double().sum(0).clamp(min=1e-10, max=1.0)
    return beta * float(covered.log().sum())


UNK_MODES = ("none", "copy", "lexicon")


def check_unk_mode(unk: str, attention: str) -> None:
    """Refuse an unknown ``unk`` mode, or replacement for a model without attention."""
    if unk not in UNK_MODES:
        raise ValueError(f"unk must be one of {', '.join(UNK_MODES)}, got {unk!r}")
    if unk != "none" and attention == "none":
        raise RnnkitError("replacing unknown words needs the attention weights; this model has no attention "
                          "(trained with --attention none): use --unk none")


def replace_unknowns(ids: Sequence[int], attention, source: Sequence[str], vocab: TokenVocab,
                     lexicon: Optional[dict[str, str]] = None) -> list[str]:
    """The output tokens of ``ids`` (as :meth:`TokenVocab.decode`) with each ``<unk>``
    replaced by the source word its attention weighs most (Luong et al. 2015, "Addressing
    the Rare Word Problem in NMT"; Jean et al. 2015): that word's ``lexicon`` translation
    when it has one, else the word itself (names, numbers).

    ``attention``: (T, S) weights, row t for output ``ids[t]``; ``source``: the S source tokens."""
    out = []
    for t, i in enumerate(int(i) for i in ids):
        if i == vocab.eos:
            break
        if i == vocab.unk and source:
            aligned = source[min(int(attention[t].argmax()), len(source) - 1)]
            out.append(lexicon.get(aligned, aligned) if lexicon else aligned)
        elif i not in (vocab.pad, vocab.bos):
            out.append(vocab.itos[i])
    return out


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool) -> dict[str, float]:
    """Corpus sacreBLEU and chrF of detokenized outputs against one reference each."""
    try:
        import sacrebleu
    except ImportError:
        raise ImportError("BLEU and chrF need sacrebleu: pip install 'rnnkit[translate]'") from None
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], lowercase=lowercase)
    refs = [r.lower() for r in references] if lowercase else list(references)
    hyps = [h.lower() for h in hypotheses] if lowercase else list(hypotheses)
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


class TranslationTask:
    """Translation as the Trainer sees it.

    ``pairs``: {"train"/"valid"/"test": [(source text, target text)]}; the tokenizers and
    vocabularies are built by the caller (``translation_run``)."""

    def __init__(self, pairs: dict, src_tok, tgt_tok, src_vocab: TokenVocab, tgt_vocab: TokenVocab,
                 data_cfg: TranslationDataConfig, model_cfg: TranslationModelConfig, seed: int = 0,
                 source: str = "") -> None:
        self.pairs, self.src_tok, self.tgt_tok = pairs, src_tok, tgt_tok
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.data_cfg, self.model_cfg, self.seed, self.source = data_cfg, model_cfg, seed, source
        self.ids = {split: self.encode_pairs(p) for split, p in pairs.items()}
        limit = data_cfg.max_length
        self.train_ids = [p for p in self.ids["train"] if 0 < len(p[0]) <= limit and len(p[1]) <= limit]
        self._eval_batches: dict = {}
        self._lexicon: Optional[dict[str, str]] = None

    def encode_pairs(self, pairs):
        return [(self.src_vocab.encode(self.src_tok.tokenize(s)), self.tgt_vocab.encode(self.tgt_tok.tokenize(t)))
                for s, t in pairs]

    def build_model(self) -> Seq2Seq:
        return build_model(len(self.src_vocab), len(self.tgt_vocab), self.model_cfg)

    def train_batches(self, epoch: int):
        return make_batches(self.train_ids, self.data_cfg.batch_size, seed=self.seed * 1000 + epoch)

    def shard(self, batch, rank: int, world: int):
        """Rank's block of a batch's pairs (torchrun), its padding cut to its own longest
        sentences; None when a short batch has none left."""
        check_global_batch(self.data_cfg.batch_size, world, "sentence pairs")
        src, src_len, tgt_in, tgt_out = batch
        cols = shard_slice(src.shape[1], rank, world)
        if cols.start == cols.stop:
            return None
        src, src_len, tgt_in, tgt_out = src[:, cols], src_len[cols], tgt_in[:, cols], tgt_out[:, cols]
        n_src = int(src_len.max())
        n_tgt = int((tgt_out != TokenVocab.pad).sum(0).max())
        return src[:n_src], src_len, tgt_in[:n_tgt], tgt_out[:n_tgt]  # (S', B_r), (B_r,), (T', B_r) x2

    def train_step(self, model: Seq2Seq, batch, state):
        device = next(model.parameters()).device
        src, src_len, tgt_in, tgt_out = (t.to(device) for t in batch)
        logits = model(src, src_len, tgt_in, self.model_cfg.teacher_forcing)  # (T, B, V)
        loss = sequence_loss(logits, tgt_out, TokenVocab.pad, self.model_cfg.label_smoothing)
        return loss, int((tgt_out != TokenVocab.pad).sum()), None

    @torch.no_grad()
    def loss(self, model: Seq2Seq, split: str) -> float:
        """Plain (unsmoothed) cross-entropy per target token, teacher forced."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        if split not in self._eval_batches:
            kept = [p for p in self.ids[split] if len(p[0]) > 0]
            self._eval_batches[split] = make_batches(kept, 128, seed=None)
        total, count = 0.0, 0
        for batch in self._eval_batches[split]:
            src, src_len, tgt_in, tgt_out = (t.to(device) for t in batch)
            logits = model(src, src_len, tgt_in)
            n = int((tgt_out != TokenVocab.pad).sum())
            total += float(sequence_loss(logits, tgt_out, TokenVocab.pad)) * n
            count += n
        model.train(was_training)
        return total / max(count, 1)

    def lexicon(self, iterations: int = 5) -> dict[str, str]:
        """Source word -> its most probable target word under IBM Model 1 fitted on the
        training pairs (built once per task; a few seconds per 100k pairs)."""
        if self._lexicon is None:
            from rnnkit.tasks.translate.lexicon import IBMModel1

            tokenized = ((self.src_tok.tokenize(s), self.tgt_tok.tokenize(t)) for s, t in self.pairs["train"])
            self._lexicon = IBMModel1.fit(tokenized, iterations).best_translations()
        return self._lexicon

    def translate(self, model: Seq2Seq, texts: Sequence[str], unk: str = "none",
                  lexicon: Optional[dict[str, str]] = None, **kwargs) -> list[str]:
        """Best translation of each text, detokenized.  ``unk``: leave ``<unk>`` outputs
        (``"none"``), or replace them (:func:`replace_unknowns`) by the attended source word
        (``"copy"``) or its translation in ``lexicon`` (``"lexicon"``, default: this task's
        :meth:`lexicon`)."""
        check_unk_mode(unk, self.model_cfg.attention)
        tokenized = [self.src_tok.tokenize(t) for t in texts]
        sources = [self.src_vocab.encode(t) or [TokenVocab.unk] for t in tokenized]
        if unk != "none":
            kwargs["with_attention"] = True
            if unk == "lexicon" and lexicon is None:
                lexicon = self.lexicon()
        hyps = translate_ids(model, sources, **kwargs)
        return [self.output_text(best, source, unk, lexicon) for (best, *_), source in zip(hyps, tokenized)]

    def output_text(self, hyp, source: Sequence[str], unk: str = "none",
                    lexicon: Optional[dict[str, str]] = None) -> str:
        """A Hypothesis as detokenized text, its ``<unk>`` left (``unk`` "none") or replaced by
        :func:`replace_unknowns` (``source``: the source tokens; ``lexicon`` used for "lexicon")."""
        if unk == "none":
            return self.tgt_tok.detokenize(self.tgt_vocab.decode(hyp.tokens))
        table = lexicon if unk == "lexicon" else None
        return self.tgt_tok.detokenize(replace_unknowns(hyp.tokens, hyp.extras, source, self.tgt_vocab, table))

    def scores(self, model: Seq2Seq, split: str, limit: Optional[int] = None, **kwargs) -> tuple[dict, list[str]]:
        pairs = self.pairs[split][:limit] if limit else self.pairs[split]
        outputs = self.translate(model, [s for s, _ in pairs], **kwargs)
        return corpus_scores(outputs, [t for _, t in pairs], self.data_cfg.lower), outputs

    def evaluate(self, model: Seq2Seq, split: str) -> dict[str, float]:
        import math

        nll = self.loss(model, split)
        metrics = {"loss": nll, "ppl": math.exp(min(nll, 700))}
        if self.data_cfg.eval_bleu > 0:
            scores, _ = self.scores(model, split, limit=self.data_cfg.eval_bleu, decoder="greedy")
            metrics.update(scores)
        return metrics

    def meta(self) -> dict:
        return {"task": "translate", "src_vocab": self.src_vocab.to_dict(), "tgt_vocab": self.tgt_vocab.to_dict(),
                "src_tokenizer": self.src_tok.to_dict(), "tgt_tokenizer": self.tgt_tok.to_dict(),
                "model": asdict(self.model_cfg), "data": asdict(self.data_cfg), "seed": self.seed,
                "source": self.source}
