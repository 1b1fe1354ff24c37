"""PyTorch's own fused recurrent operators behind rnnkit's layers (backend "native").

``torch.nn.LSTM``, ``GRU`` and ``RNN`` call one operator for the whole stack of layers and
directions: ``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh`` and ``torch.rnn_relu`` (cuDNN on
CUDA; on the CPU PyTorch's native kernels and oneDNN's fused primitive).  This module calls the
same operators with an rnnkit layer's parameters, so that where they are faster than rnnkit's
own engine, "auto" can use them (the rule is :func:`rnnkit.engine.layer.choose_stack`), and a
user who asks for ``backend="native"`` gets exactly torch.nn's arithmetic.

What they cannot run is refused here with a clear error (and skipped by "auto"): the RNN's
``sigmoid`` and ``identity`` nonlinearities.  Dropout between layers is the operators' own
(``torch.nn.functional.dropout`` on each layer's output but the last, in the same order as
rnnkit's engine, so with the same seed both drop the same units).

Lengths.  The operators take a packed batch (data and batch sizes, sorted by length): a
padded batch with ``lengths`` is packed (sorting a copy), run, and padded back to its T steps
in the original order; h_n and c_n come back in the original order too.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

NONLINEARITIES = ("tanh", "relu")
"""The RNN nonlinearities PyTorch's operators have."""


def unsupported(mode: str, nonlinearity: str) -> Optional[str]:
    """Why the native operators cannot run this configuration, or None when they can."""
    if mode == "RNN" and nonlinearity not in NONLINEARITIES:
        return (f"PyTorch's recurrent operators have the RNN nonlinearities {list(NONLINEARITIES)}, "
                f"not {nonlinearity!r}")
    return None


def require(mode: str, nonlinearity: str) -> None:
    """Raise ValueError, naming what to use instead, for what the native operators lack."""
    reason = unsupported(mode, nonlinearity)
    if reason is not None:
        raise ValueError(f"backend='native': {reason}. Use backend 'auto', 'fused' or 'bptt'")


def _operator(mode: str, nonlinearity: str):
    if mode == "LSTM":
        return torch.lstm
    if mode == "GRU":
        return torch.gru
    return torch.rnn_tanh if nonlinearity == "tanh" else torch.rnn_relu


def run_stack(
    mode: str,
    x: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    weights: Sequence[Tensor],
    lengths: Optional[Tensor],
    *,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    nonlinearity: str = "tanh",
    packed: Optional[PackedSequence] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """All layers and directions in one call of PyTorch's operator.

    Args:
        mode: "RNN", "LSTM" or "GRU".
        x: (T, B, D) time-first padded input (ignored when ``packed`` is given).
        h0: (L*dirs, B, P); c0: (L*dirs, B, H) for the LSTM, else None.
        weights: the parameters in torch.nn's flat order (``RNNBase._flat_weights``).
        lengths: None (all length T) or (B,) int64 on the CPU, 1 <= length <= T.
        packed: the caller's own PackedSequence input, run as it is (no re-packing).
    Returns:
        ``(output, h_n, c_n)``: output (T, B, dirs*P) zero past each end, or, with ``packed``,
        the packed output's data (N, dirs*P); c_n None except for the LSTM.
    """
    require(mode, nonlinearity)
    op = _operator(mode, nonlinearity)
    flags = (bias, num_layers, float(dropout), training, bidirectional)
    T = x.shape[0]
    if packed is None and lengths is not None and int(lengths.min()) == T:
        lengths = None  # every sequence is full: the padded call is the same and cheaper
    if packed is None and lengths is None:
        hx = (h0, c0) if mode == "LSTM" else h0
        result = op(x, hx, list(weights), *flags, False)
        out, h_n = result[0], result[1]
        return out, h_n, (result[2] if mode == "LSTM" else None)

    if packed is None:
        seq = pack_padded_sequence(x, lengths, enforce_sorted=False)
    else:
        seq = packed
    order, unorder = seq.sorted_indices, seq.unsorted_indices
    if order is not None:
        h0 = h0.index_select(1, order)
        c0 = c0.index_select(1, order) if c0 is not None else None
    hx = (h0, c0) if mode == "LSTM" else h0
    result = op(seq.data, seq.batch_sizes, hx, list(weights), *flags)
    data, h_n = result[0], result[1]
    c_n = result[2] if mode == "LSTM" else None
    if unorder is not None:
        h_n = h_n.index_select(1, unorder)
        c_n = c_n.index_select(1, unorder) if c_n is not None else None
    if packed is not None:
        return data, h_n, c_n
    out, _ = pad_packed_sequence(
        PackedSequence(data, seq.batch_sizes, order, unorder), total_length=T
    )  # (T, B, dirs*P), original order
    return out, h_n, c_n
