"""The reference path: the lecture's BPTT pseudocode, run.

A plain loop over time that calls the cell math of ``rnnkit.engine.steps`` at every step and
lets autograd differentiate it: zero (or given) initial state, one cell call per step, the
same weights shared by all steps, gradients flowing from step T back to step 1.  It is slow
and obviously right, which is what an oracle should be.

Variable lengths: at steps at or past a sequence's end the state is held (``torch.where``)
and the output is zero, so the final state is the state at the last valid step.

``on_step`` lets an observer see every step's states as autograd tensors, so that the
lecture's measurements (``rnnkit.models.probes``) are taken on this very loop.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from rnnkit.engine.steps import gru_cell, lstm_cell, rnn_cell

StepHook = Callable[[int, Tensor, Optional[Tensor], Tensor, Optional[Tensor]], None]
"""``on_step(t, h_prev, c_prev, h_t, c_t)``, called after step t with the state the cell read
and the state it produced (before a finished sequence's state is held); c is None but for
the LSTM."""


def reference_layer(
    mode: str,
    x: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    weights: tuple,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
    on_step: Optional[StepHook] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Run one layer in one direction, step by step, under autograd.

    Args:
        mode: "RNN", "LSTM" or "GRU".
        x: (T, B, D) input, time first.
        h0: (B, P) initial hidden state; c0: (B, H) initial cell state (LSTM only).
        weights: ``(w_ih, w_hh, b_ih, b_hh, w_hr)``; biases and ``w_hr`` may be None.
        lengths: optional (B,) int64 valid lengths, 1 <= length <= T.
        reverse: run from each sequence's last valid step back to its first.
        on_step: optional :data:`StepHook`, called once per step in the order of the loop.
    Returns:
        ``(output (T, B, P), h_n (B, P), c_n (B, H) or None)``.
    """
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    T = x.shape[0]
    h, c = h0, c0
    outputs: list[Optional[Tensor]] = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        if mode == "LSTM":
            h_new, c_new = lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr)
        elif mode == "GRU":
            h_new, c_new = gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh), None
        else:
            h_new, c_new = rnn_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity), None
        if on_step is not None:
            on_step(t, h, c, h_new, c_new)
        if lengths is None:
            h, c = h_new, c_new
            outputs[t] = h_new
        else:
            valid = (lengths > t).to(x.device).unsqueeze(1)  # (B, 1)
            h = torch.where(valid, h_new, h)
            if c_new is not None:
                c = torch.where(valid, c_new, c)
            outputs[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
    return torch.stack(outputs), h, c
