"""The LSTM layer (one layer, one direction) on the Triton kernels of :mod:`.lstm_kernels`.

Forward: the input projection of all steps as one matrix product (PyTorch), then either one
kernel launch per step (the recurrent product fused with the gates and the cell update) or,
for small sizes, one persistent launch for the whole loop.  Backward: the BPTT recurrence of
:mod:`.lstm_kernels` (one launch per step, or one persistent launch), then the weight and
input gradients as single matrix products over all steps.
"""

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
from rnnkit.engine.kernels.triton.lstm_kernels import (
    lstm_backward_persistent,
    lstm_backward_step,
    lstm_forward_persistent,
    lstm_forward_step,
)

GATES = 4


def lstm_forward(x, h0, c0, w_ih, w_hh, b, steps: Steps, lengths_dev: Tensor, persistent: bool, save: bool):
    """Run the forward; returns ``(out, h_n, c_n, gates, cells)`` with h_n, c_n float32 and
    gates (T_run, B, 4H), cells (T_run + 1, B, H) float32 when ``save`` (else None)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    T_run = steps.T_run
    xp = common.input_projection(x[:T_run], w_ih, b)  # (T_run, B, 4H) float32
    out = x.new_empty(T, B, H)
    out[T_run:].zero_()
    f32 = dict(dtype=torch.float32, device=x.device)
    gates = torch.empty(T_run, B, GATES * H, **f32) if save else None
    cells = None
    if save:
        cells = torch.empty(T_run + 1, B, H, **f32)  # c_0..c_T
        cells[0].copy_(c0)

    if persistent:
        h = h0.to(torch.float32, copy=True).contiguous()  # h_0 in, h_n out
        c = c0.to(torch.float32, copy=True).contiguous()
        grid, meta = common.persistent_launch(B, H, GATES, w_hh.dtype)
        lstm_forward_persistent[grid](
            xp, w_hh, lengths_dev, h, c, out, gates if save else xp, cells if save else c, T_run, B, H,
            SAVE=save, **meta,
        )
        return out, h, c, gates, cells

    hbuf = torch.empty(2, B, H, **f32)  # h_{t-1} and h_t, alternating
    hbuf[0].copy_(h0)
    if save:
        c_state, c_step = cells, B * H
    else:
        c_state, c_step = c0.to(torch.float32, copy=True).contiguous(), 0
    grid, meta = common.step_launch(B, H)
    for t in range(T_run):
        lstm_forward_step[grid](
            xp, w_hh, lengths_dev, hbuf, c_state, out, gates if save else xp, t, B, H, c_step, SAVE=save, **meta,
        )
    c_n = cells[T_run] if save else c_state
    return out, hbuf[T_run % 2], c_n, gates, cells


def lstm_backward(dy, d_cn, w_hh, gates, cells, lengths_dev, persistent: bool):
    """The BPTT recurrence: ``(d_pre (T_run, B, 4H) weight dtype, dh0, dc0)`` (float32 states).

    Args: dy (T_run, B, H) float32 (:func:`common.step_output_grad`); d_cn (B, H) float32.
    """
    T_run, B, G = gates.shape
    H = G // GATES
    d_pre = w_hh.new_empty(T_run, B, G)
    dc = d_cn.to(torch.float32, copy=True).contiguous()  # dL/dc_n in, dL/dc_0 out
    if persistent:
        dh0 = torch.empty(B, H, dtype=torch.float32, device=dy.device)
        grid, meta = common.persistent_launch(B, H, GATES, w_hh.dtype)
        lstm_backward_persistent[grid](dy, w_hh, lengths_dev, gates, cells, dc, d_pre, dh0, T_run, B, H, **meta)
        return d_pre, dh0, dc
    grid, meta = common.step_launch(B, H)
    for t in range(T_run - 1, -1, -1):
        lstm_backward_step[grid](
            dy, w_hh, lengths_dev, gates, cells, dc, d_pre, t, B, H, G if t + 1 < T_run else 0, **meta,
        )
    dh0 = d_pre[0].float() @ w_hh.float()  # (B, H): every sequence runs step 1
    return d_pre, dh0, dc


class LSTMTriton(torch.autograd.Function):
    """``apply(x, h0, c0, w_ih, w_hh, b, lengths, persistent) -> (out, h_n, c_n)``.

    Saves x, h0, the weights, the output, the activated gates (T, B, 4H) and the cell states
    (T + 1, B, H), both float32: what the backward recurrence and the weight gradients read
    (h_0..h_{T-1} are the output shifted by one step).
    """

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, lengths, persistent):
        steps, lengths_dev = common.layer_steps(x, lengths)
        out, h_n, c_n, gates, cells = lstm_forward(x, h0, c0, w_ih, w_hh, b, steps, lengths_dev, persistent, True)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b, out, gates, cells)
        ctx.steps, ctx.lengths_dev, ctx.persistent = steps, lengths_dev, persistent
        return out, h_n.to(h0.dtype, copy=True), c_n.to(c0.dtype, copy=True)

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn, d_cn):
        x, h0, c0, w_ih, w_hh, b, out, gates, cells = ctx.saved_tensors
        steps: Steps = ctx.steps
        T_run = steps.T_run
        dy = common.step_output_grad(steps, d_out, d_hn, x)  # (T_run, B, H) float32
        if d_cn is None:
            d_cn = torch.zeros_like(c0, dtype=torch.float32)
        d_pre, dh0, dc0 = lstm_backward(dy, d_cn, w_hh, gates, cells, ctx.lengths_dev, ctx.persistent)
        needs = ctx.needs_input_grad
        dx, dw_ih, db = input_grads(d_pre, x[:T_run], w_ih, needs[0], needs[3], b is not None and needs[5], x.shape[0])
        dw_hh = hidden_weight_grad(d_pre, common.shifted_states(h0, out, T_run)) if needs[4] else None
        return (
            dx, common.grad_as(dh0, h0) if needs[1] else None, common.grad_as(dc0, c0) if needs[2] else None,
            dw_ih, dw_hh, common.grad_as(db, b), None, None,
        )


def lstm(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None, *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """See :func:`rnnkit.engine.kernels.triton.lstm`."""
    H = common.check_shapes(x, h0, w_ih, w_hh, GATES)
    if c0.shape != h0.shape:
        raise ValueError(f"c0 must be ({x.shape[1]}, {H}); got shape {tuple(c0.shape)}")
    if b is not None and b.shape != (GATES * H,):
        raise ValueError(f"b must be ({GATES * H},); got shape {tuple(b.shape)}")
    common.check_dtypes(x, (("w_ih", w_ih), ("w_hh", w_hh), ("b", b)), (("h0", h0), ("c0", c0)))
    persistent = common.use_persistent(persistent, x.shape[1], H, GATES, x.dtype)
    return common.dispatch(LSTMTriton, _inference, (x, h0, c0, w_ih, w_hh.contiguous(), b), lengths, persistent)


@without_autocast
def _inference(x, h0, c0, w_ih, w_hh, b, lengths, persistent):
    """The forward without anything saved for a backward (no gradient needed)."""
    steps, lengths_dev = common.layer_steps(x, lengths)
    out, h_n, c_n, _, _ = lstm_forward(x, h0, c0, w_ih, w_hh, b, steps, lengths_dev, persistent, False)
    return out, h_n.to(h0.dtype, copy=True), c_n.to(c0.dtype, copy=True)
