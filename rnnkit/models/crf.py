"""A linear-chain conditional random field over per-token scores.

Lafferty, McCallum & Pereira (2001); on top of a BiLSTM as in Huang, Xu & Yu (2015) and
Lample et al. (2016).  With emission scores ``E[t, y]`` from the network and learned
transition scores ``A[y, y']`` (plus start and end scores), a tag sequence scores

.. math::
    s(y) = \\text{start}_{y_1} + \\sum_{t=1}^{n} E_{t, y_t} + \\sum_{t=2}^{n} A_{y_{t-1}, y_t}
           + \\text{end}_{y_n},

and ``p(y | x) = exp s(y) / Z`` with ``log Z`` from the forward algorithm
``alpha_t(y) = E_{t,y} + logsumexp_{y'} (alpha_{t-1}(y') + A_{y', y})``.  The most likely
sequence comes from the same recursion with max in place of logsumexp (Viterbi).
Sequences are padded time-first; ``lengths`` says where each ends.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mask(lengths: Tensor, T: int) -> Tensor:
    return torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]  # (T, B)


class CRF(nn.Module):
    """Transition, start and end scores of ``num_tags`` tags.

    Inputs: ``emissions`` (T, B, K), ``lengths`` (B,) with 1 <= length <= T, and for the
    loss ``tags`` (T, B) (padding positions ignored)."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def _check(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be (T, B, {self.num_tags}), got {tuple(emissions.shape)}")
        lengths = torch.as_tensor(lengths, device=emissions.device)
        T, B = emissions.shape[:2]
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"lengths must be (B,) = ({B},) values in 1..{T}, got {lengths.tolist()}")
        return lengths

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """s(y) of the given tag sequences, (B,)."""
        lengths = self._check(emissions, lengths)
        T, B = tags.shape
        mask = _mask(lengths, T).to(emissions.dtype)  # (T, B)
        tags = tags.masked_fill(mask == 0, 0)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (T, B)
        total = self.start[tags[0]] + (emitted * mask).sum(0)  # (B,)
        moves = self.transitions[tags[:-1], tags[1:]]  # (T-1, B)
        total = total + (moves * mask[1:]).sum(0)
        last = tags.gather(0, (lengths - 1).unsqueeze(0)).squeeze(0)  # (B,)
        return total + self.end[last]

    def log_partition(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """log Z by the forward algorithm, (B,)."""
        lengths = self._check(emissions, lengths)
        mask = _mask(lengths, emissions.shape[0])
        alpha = self.start + emissions[0]  # (B, K)
        for t in range(1, emissions.shape[0]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[t]  # (B, K)
            alpha = torch.where(mask[t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """-log p(tags | x) per sequence, (B,)."""
        return self.log_partition(emissions, lengths) - self.score(emissions, tags, lengths)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """The highest-scoring tag sequence of each item (Viterbi), unpadded."""
        lengths = self._check(emissions, lengths)
        mask = _mask(lengths, emissions.shape[0])
        best = self.start + emissions[0]  # (B, K)
        pointers = []
        for t in range(1, emissions.shape[0]):
            scores, argmax = (best.unsqueeze(2) + self.transitions).max(dim=1)  # (B, K) each
            pointers.append(argmax)
            best = torch.where(mask[t].unsqueeze(1), scores + emissions[t], best)
        best = best + self.end
        out = []
        for b, n in enumerate(lengths.tolist()):
            tag = int(best[b].argmax())
            path = [tag]
            for t in range(n - 1, 0, -1):
                tag = int(pointers[t - 1][b, tag])
                path.append(tag)
            out.append(path[::-1])
        return out
