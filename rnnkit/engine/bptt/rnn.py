r"""Explicit BPTT for the vanilla RNN.

Forward (Elman 1990; the lecture's recurrence), with :math:`a_t` the pre-activation:

.. math::
    a_t = W_{hx} x_t + b_h + W_{hh} h_{t-1}, \qquad h_t = f(a_t)

Backward (Werbos 1990; Williams & Zipser 1995), from t = T down to 1, with
:math:`\bar y_t = \partial L / \partial y_t` arriving from above:

.. math::
    \delta h_t = \bar y_t + W_{hh}^\top \delta a_{t+1}, \qquad
    \delta a_t = \delta h_t \odot f'(a_t)

then, as single matrix products over all steps,
:math:`\partial W_{hh} = \sum_t \delta a_t h_{t-1}^\top`,
:math:`\partial W_{hx} = \sum_t \delta a_t x_t^\top`, :math:`\partial b = \sum_t \delta a_t`,
:math:`\partial x_t = W_{hx}^\top \delta a_t`, :math:`\partial h_0 = W_{hh}^\top \delta a_1`.

:math:`f'` is read off the saved outputs: :math:`1 - h^2` (tanh), :math:`h(1-h)` (sigmoid),
:math:`[h > 0]` (relu), 1 (identity) — so nothing but the outputs is saved.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.engine.bptt.common import (
    Steps,
    first_order_only,
    hidden_weight_grad,
    inference_chunks,
    inference_finish,
    inference_output,
    input_grads,
    input_projection,
    layer_output,
    remember_grad_inputs,
    state_buffer,
    without_autocast,
)
from rnnkit.engine.bptt.recurrent_matmul import RecurrentWeight

_ACTIVATE_ = {
    "tanh": torch.tanh_,
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
    "identity": None,
}


def _derivative(h: Tensor, nonlinearity: str) -> Optional[Tensor]:
    """f'(a) as a function of h = f(a); None for the identity (f' = 1)."""
    if nonlinearity == "tanh":
        return 1 - h * h
    if nonlinearity == "sigmoid":
        return h * (1 - h)
    if nonlinearity == "relu":
        return (h > 0).to(h.dtype)
    return None


class RNNFunction(torch.autograd.Function):
    """One layer, one direction of a vanilla RNN with a hand-written backward.

    ``apply(x, h0, w_ih, w_hh, b, lengths, nonlinearity) -> (output, h_n)``

    Args:
        x: (T, B, D) input; h0: (B, H); w_ih: (H, D); w_hh: (H, H);
        b: (H,) combined bias ``b_ih + b_hh`` or None;
        lengths: None or (B,) int64 lengths; nonlinearity: tanh | relu | sigmoid | identity.
    Returns:
        output (T, B, H), zero past each sequence's end; h_n (B, H) at each last valid step.
    """

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, w_ih, w_hh, b, lengths, nonlinearity):
        T, B, _ = x.shape
        steps = Steps.build(T, lengths, x.device)
        # The pre-activations of all steps, input part, in one GEMM; the loop then adds the
        # recurrent part and activates in place, so this buffer becomes the output.
        states, hs = state_buffer(h0, steps.T_run)  # h_0..h_T; hs = h_1..h_T is the output
        input_projection(x[: steps.T_run], w_ih, b, out=hs)  # (T_run, B, H)
        _forward_loop(hs, h0, RecurrentWeight(w_hh, B), nonlinearity)
        out, h_n = layer_output(steps, hs, T)
        ctx.save_for_backward(x, w_ih, w_hh, states)
        ctx.steps = steps
        ctx.nonlinearity = nonlinearity
        ctx.has_bias = b is not None
        return out, h_n

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn):
        x, w_ih, w_hh, states = ctx.saved_tensors
        hs = states[1:]
        steps: Steps = ctx.steps
        T_run = steps.T_run
        # dL/dh_t from above (outputs and h_n); past a sequence's end it is exactly zero.
        d_pre = steps.output_grad(d_out, d_hn)  # (T_run, B, H), becomes delta a
        fprime = _derivative(hs, ctx.nonlinearity)  # (T_run, B, H)
        d_views = d_pre.unbind(0)
        fp_views = fprime.unbind(0) if fprime is not None else None
        for t in range(T_run - 1, -1, -1):
            da = d_views[t]  # holds delta h_t on entry
            if fp_views is not None:
                da.mul_(fp_views[t])  # delta a_t
            if t > 0:
                d_views[t - 1].addmm_(da, w_hh)  # delta h_{t-1} += W_hh^T delta a_t
        needs = ctx.needs_input_grad
        dh0 = d_pre[0] @ w_hh if needs[1] else None
        dw_hh = hidden_weight_grad(d_pre, states) if needs[3] else None
        dx, dw_ih, db = input_grads(
            d_pre, x[:T_run], w_ih, needs[0], needs[2], ctx.has_bias and needs[4], x.shape[0]
        )
        return dx, dh0, dw_ih, dw_hh, db, None, None


def _forward_loop(hs: Tensor, h0: Tensor, recurrent: RecurrentWeight, nonlinearity: str) -> None:
    """The time loop, in place: ``hs`` (T, B, H) enters holding the input part of each step's
    pre-activation and leaves holding h_1..h_T."""
    activate_ = _ACTIVATE_[nonlinearity]
    h = h0
    for h_t in hs.unbind(0):
        recurrent.addmm_(h_t, h)
        if activate_ is not None:
            activate_(h_t)
        h = h_t


@without_autocast
def rnn_inference(x, h0, w_ih, w_hh, b, lengths, nonlinearity):
    """:class:`RNNFunction`'s forward for when no gradient is needed: the same arguments,
    operations and outputs (bitwise), written straight into the output chunk by chunk of
    steps (:func:`~rnnkit.engine.bptt.common.inference_chunks`), without the (T+1)-step state
    buffer backward reads; the last chunk's input projection goes through a chunk buffer."""
    T, B, _ = x.shape
    steps = Steps.build(T, lengths, x.device)
    C, chunks = inference_chunks(steps.T_run, B)
    out = inference_output(h0, T, steps.T_run)  # (T, B, H)
    recurrent = RecurrentWeight(w_hh, B)
    h = h0
    for start, skip in chunks:
        hs = out[start + skip : start + C]
        if skip == 0:
            input_projection(x[start : start + C], w_ih, b, out=hs)
        else:  # the overlapping last chunk: its first ``skip`` steps are already states
            hs.copy_(input_projection(x[start : start + C], w_ih, b)[skip:])
        _forward_loop(hs, h, recurrent, nonlinearity)
        h = hs[-1]
    return out, inference_finish(steps, out)
