r"""Encoder–decoder (sequence to sequence) models with optional attention.

The lecture's model (Sutskever, Vinyals & Le 2014; Cho et al. 2014): an encoder RNN reads
the source and its final hidden state initializes a decoder RNN that alone produces the
output, one token at a time, fed the previous output token:

.. math::
    h^{enc}_s = f(h^{enc}_{s-1}, x_s), \qquad h_0 = h^{enc}_S, \qquad
    h_t = f(h_{t-1}, y_{t-1}), \qquad p(y_t | y_{<t}, x) = \mathrm{softmax}(W_o h_t + b_o)

With a bidirectional encoder, the two final states of each layer are concatenated and
bridged to the decoder's size, :math:`h_0 = \tanh(W_b [\overrightarrow{h}_S; \overleftarrow{h}_1] + b_b)`.

Attention (beyond the lecture) scores every encoder output :math:`\bar h_s` against the
decoder's top state :math:`h_t`, normalizes over the valid source positions and mixes a
context :math:`c_t = \sum_s a_{ts} \bar h_s`; the output layer then reads the attentional
state :math:`\tilde h_t = \tanh(W_c [c_t; h_t])` (Luong, Pham & Manning 2015).  Scores:

- ``"dot"``      :math:`h_t^\top \bar h_s` (Luong), needs equal sizes;
- ``"general"``  :math:`h_t^\top W_a \bar h_s` (Luong);
- ``"additive"`` :math:`v_a^\top \tanh(W_q h_t + W_k \bar h_s)` (Bahdanau, Cho & Bengio 2015),
  here computed from the current state :math:`h_t` as in Luong's placement.

Input feeding (Luong et al. 2015) concatenates :math:`\tilde h_{t-1}` to the next input.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.models.rnn import LAYERS

CELLS = {"lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell, "rnn": rnnkit.RNNCell}
ATTENTIONS = ("none", "dot", "general", "additive")


class Attention(nn.Module):
    """Scores of a query (B, Q) against memory (B, S, M), masked softmax, context.

    ``keys(memory)`` precomputes what does not depend on the query, once per source.
    Inputs of ``forward``: query (B, Q), memory (B, S, M), keys (from ``keys``), mask (B, S)
    bool (True at valid positions).  Outputs: context (B, M), weights (B, S).
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, attn_size: Optional[int] = None) -> None:
        super().__init__()
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs equal decoder and encoder-output sizes. Expected {memory_size}, "
                f"got {query_size} (use 'general' or 'additive')"
            )
        self.kind = kind
        if kind == "general":
            self.w_a = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            attn_size = attn_size or query_size
            self.w_k = nn.Linear(memory_size, attn_size, bias=False)
            self.w_q = nn.Linear(query_size, attn_size, bias=True)
            self.v_a = nn.Linear(attn_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        if self.kind == "general":
            return self.w_a(memory)  # (B, S, Q)
        if self.kind == "additive":
            return self.w_k(memory)  # (B, S, A)
        return memory  # (B, S, M)

    def forward(self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "additive":
            scores = self.v_a(torch.tanh(keys + self.w_q(query)[:, None])).squeeze(-1)  # (B, S)
        else:
            scores = torch.bmm(keys, query[:, :, None]).squeeze(-1)  # (B, S)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.bmm(weights[:, None], memory).squeeze(1)  # (B, M)
        return context, weights


class Seq2Seq(nn.Module):
    """Encoder–decoder over token ids, time first.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes.  cell: ``"lstm" | "gru" | "rnn"``.
        embed_size, hidden_size, num_layers: sizes of both sides.
        bidirectional: bidirectional encoder (final states bridged to the decoder).
        attention: ``"none" | "dot" | "general" | "additive"``.
        input_feeding: feed the previous attentional state with the next input (attention only).
        dropout: on embeddings, between decoder layers and before the output layer.
        pad: the padding id of both vocabularies.
    Inputs of ``forward``: src (S, B), src_lengths (B,), tgt_in (T, B) starting with the start
    token, teacher_forcing (probability of feeding the true previous token).
    Outputs: logits (T, B, V).  ``attention_weights`` holds (T, B, S) of the last call.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, cell: str = "gru", embed_size: int = 256,
                 hidden_size: int = 256, num_layers: int = 1, bidirectional: bool = False,
                 attention: str = "none", input_feeding: bool = False, dropout: float = 0.0,
                 pad: int = 0) -> None:
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {sorted(LAYERS)}, got {cell!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if input_feeding and attention == "none":
            raise ValueError("input_feeding needs attention; got attention 'none'")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.bidirectional, self.attention_kind, self.input_feeding = bidirectional, attention, input_feeding
        self.pad = pad
        H, dirs = hidden_size, 2 if bidirectional else 1
        self.src_embed = nn.Embedding(src_vocab, embed_size, padding_idx=pad)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_size, padding_idx=pad)
        self.encoder = LAYERS[cell](embed_size, H, num_layers=num_layers, bidirectional=bidirectional,
                                    dropout=dropout if num_layers > 1 else 0.0)
        n_states = 2 if cell == "lstm" else 1
        self.bridge = nn.ModuleList([nn.Linear(2 * H, H) for _ in range(n_states)]) if bidirectional else None
        feed = H if input_feeding else 0
        self.decoder = nn.ModuleList(
            [CELLS[cell](embed_size + feed if layer == 0 else H, H) for layer in range(num_layers)]
        )
        if attention != "none":
            self.attention = Attention(attention, H, dirs * H)
            self.combine = nn.Linear(dirs * H + H, H, bias=False)
        else:
            self.attention = None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(H, tgt_vocab)
        self.attention_weights: Optional[Tensor] = None

    # ----------------------------------------------------------------------------- encode
    def encode(self, src: Tensor, src_lengths: Tensor) -> dict:
        """Run the encoder; return the decoder's start state, batch first (dim 0 = B):
        ``{"h": per-layer states, "feed": (B, H) or None, "memory": (B, S, M), "keys", "mask": (B, S)}``."""
        if src.dim() != 2:
            raise ValueError(f"src must be (S, B) token ids, got shape {tuple(src.shape)}")
        if src_lengths.shape != (src.shape[1],):
            raise ValueError(f"src_lengths must be ({src.shape[1]},), got {tuple(src_lengths.shape)}")
        x = self.drop(self.src_embed(src))  # (S, B, E)
        memory, final = self.encoder(x, lengths=src_lengths.cpu())  # (S, B, dirs*H)
        finals = final if self.cell == "lstm" else (final,)
        layers = []  # per decoder layer: h, or (h, c)
        for layer in range(self.num_layers):
            states = []
            for i, f in enumerate(finals):  # f (L*dirs, B, H)
                if self.bidirectional:
                    both = torch.cat([f[2 * layer], f[2 * layer + 1]], dim=-1)  # (B, 2H)
                    states.append(torch.tanh(self.bridge[i](both)))  # (B, H)
                else:
                    states.append(f[layer])  # (B, H)
            layers.append(tuple(states) if self.cell == "lstm" else states[0])
        B, S = src.shape[1], src.shape[0]
        mask = torch.arange(S, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]  # (B, S)
        state = {"h": tuple(layers), "mask": mask}
        if self.attention is not None:
            memory = memory.transpose(0, 1)  # (B, S, M)
            state["memory"] = memory
            state["keys"] = self.attention.keys(memory)
        if self.input_feeding:
            state["feed"] = memory.new_zeros(B, self.hidden_size)
        return state

    # ------------------------------------------------------------------------------- step
    def decode_step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict, Optional[Tensor]]:
        """One decoder step: tokens (B,) -> logits (B, V), the new state, attention (B, S) or None."""
        x, state, weights = self.step_hidden(tokens, state)
        return self.out(self.drop(x)), state, weights  # (B, V)

    def step_hidden(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict, Optional[Tensor]]:
        """One decoder step up to the output layer: the state it reads, (B, H), the new state,
        attention (B, S) or None."""
        x = self.drop(self.tgt_embed(tokens))  # (B, E)
        if self.input_feeding:
            x = torch.cat([x, state["feed"]], dim=-1)  # (B, E + H)
        layers = []
        for layer, cell in enumerate(self.decoder):
            hx = state["h"][layer]
            new = cell(x, hx)
            layers.append(new)
            x = new[0] if self.cell == "lstm" else new  # (B, H)
            if layer < self.num_layers - 1:
                x = self.drop(x)
        new_state = dict(state)
        new_state["h"] = tuple(layers)
        weights = None
        if self.attention is not None:
            context, weights = self.attention(x, state["memory"], state["keys"], state["mask"])  # (B, M), (B, S)
            x = torch.tanh(self.combine(torch.cat([context, x], dim=-1)))  # (B, H)
            if self.input_feeding:
                new_state["feed"] = x
        return x, new_state, weights  # (B, H)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        state = self.encode(src, src_lengths)
        hidden, weights = [], []
        tokens = tgt_in[0]
        for t in range(tgt_in.shape[0]):
            if t > 0:
                tokens = tgt_in[t]
                if teacher_forcing < 1.0:  # feed the model's own previous prediction instead
                    own = self.out(hidden[-1]).argmax(-1)  # (B,)
                    use = torch.rand(tokens.shape, device=tokens.device) >= teacher_forcing
                    tokens = torch.where(use, own, tokens)
            x, state, w = self.step_hidden(tokens, state)
            hidden.append(x)
            weights.append(w)
        self.attention_weights = torch.stack(weights).detach() if weights and weights[0] is not None else None
        # the output layer once over all steps: one large matrix product instead of T small ones
        return self.out(self.drop(torch.stack(hidden)))  # (T, B, V)


def sequence_loss(logits: Tensor, targets: Tensor, pad: int = 0, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy per non-padding target token; logits (T, B, V), targets (T, B)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad,
                           label_smoothing=label_smoothing)


__all__ = ["Attention", "Seq2Seq", "sequence_loss", "ATTENTIONS"]
