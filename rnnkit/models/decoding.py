"""Choosing the next token from a model's scores, shared by every task that generates."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def filter_logits(logits: Tensor, top_k: Optional[int] = None, top_p: Optional[float] = None) -> Tensor:
    """Mask (to -inf) all but the ``top_k`` highest scores and, of those, all outside the
    smallest set whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020).

    Args: logits (..., V).  Returns a new tensor of the same shape.
    """
    logits = logits.clone()
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
        logits[logits < kth] = float("-inf")
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """One token id per row of ``logits`` (B, V): greedy when ``temperature == 0``, else drawn
    from softmax(logits / temperature) restricted by ``top_k`` / ``top_p``.  Returns (B,)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    scores = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ------------------------------------------------------------------ sequence search
# A generating model is seen through one function, ``step(tokens, state) -> (logits, state,
# extra)``: the scores (N, V) of the next token after ``tokens`` (N,), the new state, and an
# optional per-step tensor (N, ...) to record along each output (attention weights, for a
# plot), or None.  ``state`` is a tensor or a nested tuple/list/dict of tensors whose dim 0
# is the row (N); the searches reorder and repeat it with ``select_rows``.


def select_rows(state, index: Tensor):
    """``state`` with every tensor's rows (dim 0) taken at ``index``; None stays None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, dict):
        return {k: select_rows(v, index) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(v, index) for v in state)
    raise TypeError(f"decoder state must hold tensors, tuples, lists or dicts, got {type(state).__name__}")


class Hypothesis:
    """One output of a search: token ids (without the start token, with the end token when
    it was produced), their summed log-probability, the ranking score and the recorded
    per-step extras stacked (T, ...) or None."""

    def __init__(self, tokens: list[int], log_prob: float, score: float, extras: Optional[Tensor]) -> None:
        self.tokens, self.log_prob, self.score, self.extras = tokens, log_prob, score, extras

    def __repr__(self) -> str:
        return f"Hypothesis(tokens={self.tokens}, log_prob={self.log_prob:.4f}, score={self.score:.4f})"


def length_penalty(length: int, alpha: float) -> float:
    """``((5 + |Y|) / 6) ** alpha``, the length normalization of Wu et al. (2016, GNMT);
    alpha = 0 ranks by the plain log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def _stack(extras: list) -> Optional[Tensor]:
    return torch.stack(extras) if extras and extras[0] is not None else None


@torch.no_grad()
def greedy_search(step, state, batch_size: int, bos: int, eos: int, max_len: int,
                  device=None) -> list[Hypothesis]:
    """The most probable next token at every step, until ``eos`` or ``max_len`` tokens."""
    return sample_search(step, state, batch_size, bos, eos, max_len, temperature=0.0, device=device)


@torch.no_grad()
def sample_search(step, state, batch_size: int, bos: int, eos: int, max_len: int,
                  temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                  generator: Optional[torch.Generator] = None, device=None) -> list[Hypothesis]:
    """One output per row, each token drawn by :func:`sample_next` (greedy at temperature 0),
    until ``eos`` or ``max_len`` tokens.  Rows that ended are kept feeding ``eos``."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    tokens = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    log_prob = torch.zeros(batch_size, dtype=torch.float64, device=device)
    history, extras = [], []
    for _ in range(max_len):
        logits, state, extra = step(tokens, state)  # (N, V)
        nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (N,)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        lp = torch.log_softmax(logits.double(), -1).gather(1, nxt[:, None]).squeeze(1)  # (N,)
        log_prob += torch.where(done, torch.zeros_like(lp), lp)
        history.append(nxt)
        extras.append(extra)
        done = done | (nxt == eos)
        tokens = nxt
        if bool(done.all()):
            break
    ids = torch.stack(history, 1).tolist()  # (N, T)
    out = []
    for b in range(batch_size):
        seq = ids[b]
        n = seq.index(eos) + 1 if eos in seq else len(seq)
        rows = _stack([e[b] for e in extras[:n]]) if extras[0] is not None else None
        out.append(Hypothesis(seq[:n], float(log_prob[b]), float(log_prob[b]), rows))
    return out


@torch.no_grad()
def beam_search(step, state, batch_size: int, bos: int, eos: int, max_len: int, beam: int = 5,
                alpha: float = 0.0, n_best: int = 1, device=None,
                rescore: Optional[Callable[[int, Optional[Tensor]], float]] = None) -> list[list[Hypothesis]]:
    """Beam search (as in Sutskever et al. 2014; Wu et al. 2016 for the length penalty).

    Each of the ``batch_size`` inputs keeps ``beam`` partial outputs; each step extends them
    by every token and keeps the ``beam`` best by summed log-probability.  An extension by
    ``eos`` ranked within the best ``beam`` becomes a finished output, scored
    ``log_prob / length_penalty(len, alpha)``; an input is done when ``beam`` outputs have
    finished (or at ``max_len``, when the unfinished ones count as finished).
    ``rescore(b, extras)``, when given, is added to the score of each finished output of
    input ``b`` (e.g. the coverage penalty of Wu et al. 2016 from the attention weights).
    ``state`` holds one row per input; it is repeated ``beam`` times here.
    Returns, per input, its ``n_best`` finished outputs, best first.
    """
    if beam < 1 or n_best < 1 or n_best > beam:
        raise ValueError(f"need 1 <= n_best <= beam, got beam {beam} and n_best {n_best}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    B, K = batch_size, beam
    state = select_rows(state, torch.arange(B, device=device).repeat_interleave(K))  # rows b*K + k
    tokens = torch.full((B * K,), bos, dtype=torch.long, device=device)
    # only the first copy of each input is live at the start, so the beam starts distinct
    scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=device)
    scores[:, 0] = 0.0
    seqs: list[list[list[int]]] = [[[] for _ in range(K)] for _ in range(B)]
    extras: list[list[list]] = [[[] for _ in range(K)] for _ in range(B)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_len):
        logits, state, extra = step(tokens, state)  # (B*K, V)
        logp = torch.log_softmax(logits.double(), -1)  # (B*K, V)
        V = logp.shape[-1]
        total = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V)
        top_scores, top_index = total.topk(min(2 * K, K * V), dim=1)  # (B, 2K)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        new_rows, new_tokens = [], []
        new_scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=device)
        new_seqs = [[[] for _ in range(K)] for _ in range(B)]
        new_extras = [[[] for _ in range(K)] for _ in range(B)]
        for b in range(B):
            kept = 0
            if not done[b]:
                for rank, (score, flat) in enumerate(zip(top_scores[b], top_index[b])):
                    if score == float("-inf") or kept == K:
                        break
                    k, token = divmod(flat, V)
                    seq = seqs[b][k] + [token]
                    rec = extras[b][k] + ([extra[b * K + k]] if extra is not None else [])
                    if token == eos:
                        if rank < K:
                            finished[b].append(_finished(b, seq, score, _stack(rec), alpha, rescore))
                        continue
                    new_rows.append(b * K + k)
                    new_tokens.append(token)
                    new_scores[b, kept] = score
                    new_seqs[b][kept], new_extras[b][kept] = seq, rec
                    kept += 1
                if len(finished[b]) >= K or kept == 0:
                    done[b] = True
            for _ in range(kept, K):  # dead rows: any valid row index, score -inf
                new_rows.append(b * K)
                new_tokens.append(eos)
        if all(done):
            break
        index = torch.tensor(new_rows, dtype=torch.long, device=device)
        state = select_rows(state, index)
        tokens = torch.tensor(new_tokens, dtype=torch.long, device=device)
        scores, seqs, extras = new_scores, new_seqs, new_extras
        if t == max_len - 1:
            for b in range(B):
                if done[b]:
                    continue
                for k in range(K):
                    if scores[b, k] > float("-inf"):
                        finished[b].append(_finished(b, seqs[b][k], float(scores[b, k]), _stack(extras[b][k]),
                                                     alpha, rescore))
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _finished(b: int, seq: list[int], log_prob: float, extras: Optional[Tensor], alpha: float,
              rescore: Optional[Callable]) -> Hypothesis:
    score = log_prob / length_penalty(len(seq), alpha)
    if rescore is not None:
        score += rescore(b, extras)
    return Hypothesis(seq, log_prob, score, extras)
