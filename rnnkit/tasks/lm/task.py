"""Language modeling: predict the next token, character or word level.

The model is embedding -> stacked rnnkit RNN/LSTM/GRU -> linear -> softmax, with dropout on
the non-recurrent connections (Zaremba, Sutskever & Vinyals 2014) and optional weight tying
(Press & Wolf 2017; Inan et al. 2017).  Training streams the corpus as B parallel streams cut
into windows of ``bptt`` steps, carrying the hidden state across windows (truncated BPTT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import init as rnn_init
from rnnkit.data.corpus import parse_fractions, split_origin
from rnnkit.data.text import LEVELS, Vocab, batchify, tokenize, windows
from rnnkit.models import LAYERS
from rnnkit.models.decoding import sample_next
from rnnkit.settings import MAX_BATCH, MAX_LAYERS, MAX_LENGTH, MAX_UNITS, MAX_VOCAB, setting
from rnnkit.train.distributed import check_global_batch, shard_slice


@dataclass
class LMModelConfig:
    cell: str = setting("lstm", "lstm | gru | rnn", choices=tuple(LAYERS))
    embed_size: int = setting(128, "size of the token embeddings", ge=1, le=MAX_UNITS)
    hidden_size: int = setting(256, "hidden units per layer", ge=1, le=MAX_UNITS)
    num_layers: int = setting(2, "stacked recurrent layers", ge=1, le=MAX_LAYERS)
    dropout: float = setting(0.0, "on the embeddings, between layers and before the decoder", ge=0, lt=1)
    tie_weights: bool = setting(False, "share the embedding and decoder weights (needs embed_size == hidden_size)")
    init_range: Optional[float] = setting(None, "uniform(-a, a) for every weight (Zaremba: 0.1)", gt=0)
    init: str = setting(
        "default", "recurrent weights: default | normal:S | orthogonal | identity | uniform:A (rnnkit.init)")
    forget_bias: Optional[float] = setting(None, "LSTM forget-gate bias (e.g. 1.0)", ge=-100, le=100)


class LanguageModel(nn.Module):
    """Embedding -> stacked recurrent layers -> linear decoder over the vocabulary.

    Inputs: ids (T, B) int64, state (the recurrent layer's hx) or None.
    Outputs: logits (T, B, V) and the final state.
    """

    def __init__(self, vocab_size: int, cfg: LMModelConfig) -> None:
        super().__init__()
        if cfg.cell not in LAYERS:
            raise ValueError(f"cell must be one of {sorted(LAYERS)}, got {cfg.cell!r}")
        if cfg.tie_weights and cfg.embed_size != cfg.hidden_size:
            raise ValueError(
                "tie_weights needs embed_size == hidden_size, got "
                f"{cfg.embed_size} and {cfg.hidden_size}"
            )
        self.cfg = cfg
        self.embedding = nn.Embedding(vocab_size, cfg.embed_size)
        self.rnn = LAYERS[cfg.cell](
            cfg.embed_size, cfg.hidden_size, num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.decoder = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        if cfg.init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        rnn_init.apply_init(self.rnn, cfg.init)
        if cfg.forget_bias is not None:
            rnn_init.forget_bias_(self.rnn, cfg.forget_bias)

    def forward(self, ids: Tensor, state=None):
        x = self.drop(self.embedding(ids))  # (T, B, E)
        out, state = self.rnn(x, state)  # (T, B, H)
        return self.decoder(self.drop(out)), state  # (T, B, V)


def detach_state(state):
    """Cut the graph at a window boundary (truncated BPTT) but keep the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def window_loss(model: LanguageModel, inputs: Tensor, targets: Tensor, state):
    """Mean cross-entropy (nats per token) of one window and the carried state."""
    logits, state = model(inputs, state)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return loss, state


@torch.no_grad()
def evaluate_stream(model: LanguageModel, stream: Tensor, bptt: int) -> float:
    """Mean negative log-likelihood in nats per token over a (T, B) stream, state carried."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    for inputs, targets in windows(stream, bptt):
        loss, state = window_loss(model, inputs, targets, state)
        total += loss.item() * targets.numel()
        count += targets.numel()
    model.train(was_training)
    return total / max(count, 1)


def metrics_from_nll(nll: float, level: str) -> dict[str, float]:
    """Loss in nats/token plus perplexity (words) or bits per character (characters)."""
    out = {"loss": nll}
    if level == "char":
        out["bpc"] = nll / math.log(2)
    else:
        out["ppl"] = math.exp(min(nll, 700))
    return out


def encode_splits(texts: dict[str, str], level: str, vocab: Optional[Vocab] = None, max_vocab=None):
    """Tokenize every split and build (or reuse) the vocabulary from the training split."""
    tokens = {split: tokenize(text, level) for split, text in texts.items()}
    if vocab is None:
        vocab = Vocab.build(tokens["train"], level, max_vocab)
    return {split: vocab.encode(toks) for split, toks in tokens.items()}, vocab


@torch.no_grad()
def sample(
    model: LanguageModel,
    vocab: Vocab,
    prime: str = "",
    length: int = 200,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    seed: Optional[int] = None,
) -> str:
    """Generate ``length`` tokens after ``prime`` by feeding each prediction back in."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    prime_ids = vocab.encode(tokenize(prime, vocab.level)) if prime else torch.empty(0, dtype=torch.long)
    if vocab.level == "word" and prime and not prime.endswith("\n") and prime_ids.numel() > 0:
        prime_ids = prime_ids[:-1]  # tokenize() ended the prime's line; the sample continues it
    state = None
    if prime_ids.numel() == 0:
        start = vocab.stoi.get("\n", vocab.stoi.get("<eos>", 0))
        prime_ids = torch.tensor([start])
    logits, state = model(prime_ids.view(-1, 1).to(device), state)
    out = []
    for _ in range(length):
        nxt = sample_next(logits[-1], temperature, top_k, top_p, generator)  # (1,)
        out.append(int(nxt))
        logits, state = model(nxt.view(1, 1), state)
    model.train(was_training)
    separator = " " if prime and vocab.level == "word" else ""
    return prime + separator + vocab.decode(out)


@dataclass
class LMDataConfig:
    data: Optional[str] = setting(None, "a text file, a folder with train/valid/test, or None (embedded)")
    level: str = setting("char", "char | word", choices=LEVELS)
    bptt: int = setting(100, "steps per truncated-BPTT window", ge=1, le=MAX_LENGTH)
    batch_size: int = setting(32, "parallel streams", ge=1, le=MAX_BATCH)
    eval_batch_size: int = setting(10, "parallel streams of the validation and test text", ge=1, le=MAX_BATCH)
    # at least <unk> (and <eos> at word level) and one token: 3
    max_vocab: Optional[int] = setting(None, "keep the most frequent tokens, specials included (default: all)",
                                       ge=3, le=MAX_VOCAB)
    split: str = setting("0.9,0.05,0.05", "train,valid,test fractions of a single text file")


class LMTask:
    """Language modeling as the Trainer sees it: windows of B parallel streams, state carried
    (and detached) from window to window; validation in nats/token plus bpc or perplexity."""

    def __init__(self, ids: dict[str, Tensor], vocab: Vocab, data_cfg: LMDataConfig,
                 model_cfg: LMModelConfig, source: str = "") -> None:
        self.vocab, self.data_cfg, self.model_cfg, self.source = vocab, data_cfg, model_cfg, source
        fractions = parse_fractions(data_cfg.split)
        self.train_stream = batchify(ids["train"], data_cfg.batch_size,
                                     split_origin(data_cfg.data, "train", fractions))
        self.eval_streams = {  # a short split gets fewer streams, down to one
            split: batchify(ids[split], min(data_cfg.eval_batch_size, max(1, ids[split].numel() // 2)),
                            split_origin(data_cfg.data, split, fractions))
            for split in ("valid", "test") if split in ids
        }
        self._windows = windows(self.train_stream, data_cfg.bptt)

    def build_model(self) -> LanguageModel:
        return LanguageModel(len(self.vocab), self.model_cfg)

    def train_batches(self, epoch: int):
        return self._windows

    def shard(self, batch, rank: int, world: int):
        """Rank's block of the B stream columns of a window (torchrun); its carried state is
        the same block of the state's columns (``distributed.split_state``)."""
        inputs, targets = batch  # (T, B) each
        check_global_batch(inputs.shape[1], world, "streams")
        cols = shard_slice(inputs.shape[1], rank, world)
        return inputs[:, cols], targets[:, cols]  # (T, B_rank) each

    def train_step(self, model: LanguageModel, batch, state):
        device = next(model.parameters()).device
        inputs, targets = (t.to(device) for t in batch)
        loss, state = window_loss(model, inputs, targets, state)
        return loss, targets.numel(), detach_state(state)

    def evaluate(self, model: LanguageModel, split: str) -> dict[str, float]:
        device = next(model.parameters()).device
        nll = evaluate_stream(model, self.eval_streams[split].to(device), self.data_cfg.bptt)
        return metrics_from_nll(nll, self.vocab.level)

    def meta(self) -> dict:
        from dataclasses import asdict

        return {"task": "lm", "vocab": self.vocab.to_dict(), "model": asdict(self.model_cfg),
                "data": asdict(self.data_cfg), "source": self.source}
