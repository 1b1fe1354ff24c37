r"""Pooling: one vector per sentence from the recurrent states of its valid steps.

The encoder's output is ``H`` (T, B, P) with ``P = dirs * H_units``; sentence ``b`` has
``lengths[b]`` valid steps and padding after them.  Every pooling below reads the valid steps
only (an explicit mask, never the zeros a recurrent layer writes past a sentence's end: a max
over zeros would win whenever every valid value is negative).

- ``final``: the forward direction's state after the last word and, bidirectional, the
  backward direction's state after reading back to the first word, ``[h_fwd_n; h_bwd_1]`` —
  the sentence encoders of Schuster & Paliwal (1997) and Tai, Socher & Manning (2015).
- ``max``: the element-wise maximum over the valid steps (Collobert et al. 2011; Conneau et
  al. 2017 found max pooling over a BiLSTM the best sentence encoder of their comparison).
- ``mean``: the average of the valid steps.
- ``attention``: additive attention with a learned context vector (Yang et al. 2016,
  "Hierarchical Attention Networks for Document Classification"; Lin et al. 2017, "A
  Structured Self-attentive Sentence Embedding", with one attention hop):

  .. math::
      u_t = \tanh(W h_t + b), \quad
      \alpha_t = \frac{\exp(u_t^\top u_w)}{\sum_{s \le n} \exp(u_s^\top u_w)}, \quad
      s = \sum_{t \le n} \alpha_t h_t

  with the softmax over the ``n`` valid steps only (padding scores are -inf, so their weights
  are exactly zero).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

POOLINGS = ("final", "max", "mean", "attention")


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """(T, B) booleans: True at the valid steps ``t < lengths[b]``."""
    return torch.arange(steps, device=lengths.device)[:, None] < lengths[None, :]  # (T, B)


def final_states(h_n: Tensor, bidirectional: bool) -> Tensor:
    """The last layer's final states ``h_n`` (L*dirs, B, H) of a recurrent layer run with
    ``lengths=``: forward (after each sentence's last word) and, bidirectional, backward
    (after reading back to its first word), concatenated, (B, dirs*H)."""
    if not bidirectional:
        return h_n[-1]  # (B, H)
    return torch.cat([h_n[-2], h_n[-1]], dim=1)  # (B, 2H)


def max_pool(out: Tensor, mask: Tensor) -> Tensor:
    """Element-wise maximum of ``out`` (T, B, P) over the valid steps of ``mask`` (T, B) -> (B, P)."""
    return out.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=0)  # (B, P)


def mean_pool(out: Tensor, mask: Tensor) -> Tensor:
    """Average of ``out`` (T, B, P) over the valid steps of ``mask`` (T, B) -> (B, P)."""
    # where(), not a product with the mask: NaN or inf in the padding would survive "times 0"
    total = out.masked_fill(~mask[:, :, None], 0.0).sum(dim=0)  # (B, P)
    return total / mask.sum(dim=0).clamp(min=1).to(out.dtype)[:, None]  # (B, P)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax of ``scores`` (T, B) over the time axis within ``mask`` (T, B); exactly 0 elsewhere."""
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=0)  # (T, B)


class AttentionPooling(nn.Module):
    """Additive attention pooling with a learned context vector ``u_w`` (Yang et al. 2016).

    Args:
        input_size: P, the size of each step's state.
        attention_size: A, the size of ``u_t`` (Yang et al.: 100; Lin et al.'s ``d_a``: 350).
    Inputs: ``out`` (T, B, P), ``mask`` (T, B) valid steps.
    Outputs: the pooled ``s`` (B, P) and the weights ``alpha`` (T, B), summing to 1 over each
    sentence's valid steps and 0 on its padding.
    """

    def __init__(self, input_size: int, attention_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_size, attention_size)  # W, b
        self.context = nn.Linear(attention_size, 1, bias=False)  # u_w

    def forward(self, out: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.tanh(self.proj(out))  # (T, B, A)
        alpha = masked_softmax(self.context(u).squeeze(2), mask)  # (T, B)
        pooled = (alpha[:, :, None] * out.masked_fill(~mask[:, :, None], 0.0)).sum(dim=0)  # (B, P)
        return pooled, alpha


def pool(kind: str, out: Tensor, h_n: Tensor, lengths: Tensor, bidirectional: bool,
         attention: Optional[AttentionPooling] = None) -> tuple[Tensor, Optional[Tensor]]:
    """The sentence vectors (B, P) by pooling ``kind`` over ``out`` (T, B, P) and, for
    "final", the final states ``h_n`` (L*dirs, B, H); and the attention weights (T, B) for
    "attention" (else None)."""
    if kind == "final":
        return final_states(h_n, bidirectional), None
    mask = valid_mask(lengths.to(out.device), out.shape[0])  # (T, B)
    if kind == "max":
        return max_pool(out, mask), None
    if kind == "mean":
        return mean_pool(out, mask), None
    if kind == "attention":
        if attention is None:
            raise ValueError("attention pooling needs its AttentionPooling module")
        return attention(out, mask)
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {kind!r}")
