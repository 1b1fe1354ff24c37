"""The Elman RNN layer (one layer, one direction; tanh or relu) on the Triton kernels of
:mod:`.rnn_kernels`.  Backward reads h_t from the output: nothing else is saved."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnkit.engine.bptt.common import (
    Steps,
    first_order_only,
    hidden_weight_grad,
    input_grads,
    remember_grad_inputs,
    without_autocast,
)
from rnnkit.engine.kernels.triton import common
from rnnkit.engine.kernels.triton.rnn_kernels import (
    rnn_backward_persistent,
    rnn_backward_step,
    rnn_forward_persistent,
    rnn_forward_step,
)

NONLINEARITIES = ("tanh", "relu")


def rnn_forward(x, h0, w_ih, w_hh, b, steps: Steps, lengths_dev: Tensor, relu: bool, persistent: bool):
    """Run the forward; returns ``(out, h_n float32)``."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    T_run = steps.T_run
    xp = common.input_projection(x[:T_run], w_ih, b)  # (T_run, B, H) float32
    out = x.new_empty(T, B, H)
    out[T_run:].zero_()
    if persistent:
        h = h0.to(torch.float32, copy=True).contiguous()
        grid, meta = common.persistent_launch(B, H, 1, w_hh.dtype)
        rnn_forward_persistent[grid](xp, w_hh, lengths_dev, h, out, T_run, B, H, RELU=relu, **meta)
        return out, h
    hbuf = torch.empty(2, B, H, dtype=torch.float32, device=x.device)
    hbuf[0].copy_(h0)
    grid, meta = common.step_launch(B, H)
    for t in range(T_run):
        rnn_forward_step[grid](xp, w_hh, lengths_dev, hbuf, out, t, B, H, RELU=relu, **meta)
    return out, hbuf[T_run % 2]


def rnn_backward(dy, w_hh, out, lengths_dev, relu: bool, persistent: bool):
    """The BPTT recurrence: ``(d_pre (T_run, B, H) weight dtype, dL/dh_0 float32)``."""
    T_run, B, H = dy.shape
    d_pre = w_hh.new_empty(T_run, B, H)
    if persistent:
        dh0 = torch.empty(B, H, dtype=torch.float32, device=dy.device)
        grid, meta = common.persistent_launch(B, H, 1, w_hh.dtype)
        rnn_backward_persistent[grid](dy, w_hh, lengths_dev, out, d_pre, dh0, T_run, B, H, RELU=relu, **meta)
        return d_pre, dh0
    grid, meta = common.step_launch(B, H)
    for t in range(T_run - 1, -1, -1):
        rnn_backward_step[grid](
            dy, w_hh, lengths_dev, out, d_pre, t, B, H, H if t + 1 < T_run else 0, RELU=relu, **meta,
        )
    return d_pre, d_pre[0].float() @ w_hh.float()


class RNNTriton(torch.autograd.Function):
    """``apply(x, h0, w_ih, w_hh, b, lengths, relu, persistent) -> (out, h_n)``; saves x,
    h0, the weights and the output."""

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, w_ih, w_hh, b, lengths, relu, persistent):
        steps, lengths_dev = common.layer_steps(x, lengths)
        out, h_n = rnn_forward(x, h0, w_ih, w_hh, b, steps, lengths_dev, relu, persistent)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b, out)
        ctx.steps, ctx.lengths_dev, ctx.relu, ctx.persistent = steps, lengths_dev, relu, persistent
        return out, h_n.to(h0.dtype, copy=True)

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn):
        x, h0, w_ih, w_hh, b, out = ctx.saved_tensors
        steps: Steps = ctx.steps
        T_run = steps.T_run
        dy = common.step_output_grad(steps, d_out, d_hn, x)
        d_pre, dh0 = rnn_backward(dy, w_hh, out, ctx.lengths_dev, ctx.relu, ctx.persistent)
        needs = ctx.needs_input_grad
        dx, dw_ih, db = input_grads(d_pre, x[:T_run], w_ih, needs[0], needs[2], b is not None and needs[4], x.shape[0])
        dw_hh = hidden_weight_grad(d_pre, common.shifted_states(h0, out, T_run)) if needs[3] else None
        return (dx, common.grad_as(dh0, h0) if needs[1] else None, dw_ih, dw_hh, common.grad_as(db, b),
                None, None, None)


def rnn(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None, nonlinearity: str = "tanh", *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """See :func:`rnnkit.engine.kernels.triton.rnn`."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"the triton backend's RNN supports nonlinearity {list(NONLINEARITIES)}; got {nonlinearity!r}")
    H = common.check_shapes(x, h0, w_ih, w_hh, 1)
    if b is not None and b.shape != (H,):
        raise ValueError(f"b must be ({H},); got shape {tuple(b.shape)}")
    common.check_dtypes(x, (("w_ih", w_ih), ("w_hh", w_hh), ("b", b)), (("h0", h0),))
    persistent = common.use_persistent(persistent, x.shape[1], H, 1, x.dtype)
    relu = nonlinearity == "relu"
    return common.dispatch(RNNTriton, _inference, (x, h0, w_ih, w_hh.contiguous(), b), lengths, relu, persistent)


@without_autocast
def _inference(x, h0, w_ih, w_hh, b, lengths, relu, persistent):
    steps, lengths_dev = common.layer_steps(x, lengths)
    out, h_n = rnn_forward(x, h0, w_ih, w_hh, b, steps, lengths_dev, relu, persistent)
    return out, h_n.to(h0.dtype, copy=True)
