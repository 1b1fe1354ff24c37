"""The GRU layer (one layer, one direction) on the Triton kernels of :mod:`.gru_kernels`:
the input projection of all steps as one matrix product, the time loop as one launch per
step (or one persistent launch), the weight and input gradients as single matrix products."""

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
from rnnkit.engine.kernels.triton.gru_kernels import (
    gru_backward_persistent,
    gru_backward_step,
    gru_forward_persistent,
    gru_forward_step,
)

GATES = 3


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, steps: Steps, lengths_dev: Tensor, persistent: bool, save: bool):
    """Run the forward; returns ``(out, h_n float32, saved)``, saved (T_run, B, 4H) float32
    (r, z, n, n-hat) when ``save``, else None."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    T_run = steps.T_run
    xp = common.input_projection(x[:T_run], w_ih, b_ih)  # (T_run, B, 3H) float32
    bias = b_hh.float().contiguous() if b_hh is not None else xp.new_zeros(GATES * H)
    out = x.new_empty(T, B, H)
    out[T_run:].zero_()
    saved = torch.empty(T_run, B, 4 * H, dtype=torch.float32, device=x.device) if save else None
    if persistent:
        h = h0.to(torch.float32, copy=True).contiguous()
        grid, meta = common.persistent_launch(B, H, GATES, w_hh.dtype)
        gru_forward_persistent[grid](
            xp, w_hh, bias, lengths_dev, h, out, saved if save else xp, T_run, B, H, SAVE=save, **meta,
        )
        return out, h, saved
    hbuf = torch.empty(2, B, H, dtype=torch.float32, device=x.device)
    hbuf[0].copy_(h0)
    grid, meta = common.step_launch(B, H)
    for t in range(T_run):
        gru_forward_step[grid](
            xp, w_hh, bias, lengths_dev, hbuf, out, saved if save else xp, t, B, H, SAVE=save, **meta,
        )
    return out, hbuf[T_run % 2], saved


def gru_backward(dy, w_hh, saved, states, lengths_dev, persistent: bool):
    """The BPTT recurrence: ``(d_in, d_hid, dh0)``: the gradients of the input-side and the
    recurrent pre-activations, each (T_run, B, 3H) in the weight dtype, and dL/dh_0 float32."""
    T_run, B, H4 = saved.shape
    H = H4 // 4
    d_in = w_hh.new_empty(T_run, B, GATES * H)
    d_hid = w_hh.new_empty(T_run, B, GATES * H)
    carry = torch.zeros(B, H, dtype=torch.float32, device=dy.device)  # z_{t+1} delta h_{t+1}
    if persistent:
        grid, meta = common.persistent_launch(B, H, GATES, w_hh.dtype)
        gru_backward_persistent[grid](dy, w_hh, lengths_dev, saved, states, carry, d_hid, d_in, T_run, B, H, **meta)
        return d_in, d_hid, carry
    grid, meta = common.step_launch(B, H)
    for t in range(T_run - 1, -1, -1):
        gru_backward_step[grid](
            dy, w_hh, lengths_dev, saved, states, carry, d_hid, d_in, t, B, H, GATES * H if t + 1 < T_run else 0,
            **meta,
        )
    return d_in, d_hid, carry + d_hid[0].float() @ w_hh.float()


class GRUTriton(torch.autograd.Function):
    """``apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, persistent) -> (out, h_n)``.

    Saves x, h0, the weights, the output and r, z, n, n-hat of every step (T, B, 4H) float32.
    """

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, persistent):
        steps, lengths_dev = common.layer_steps(x, lengths)
        out, h_n, saved = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, steps, lengths_dev, persistent, True)
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out, saved)
        ctx.steps, ctx.lengths_dev, ctx.persistent = steps, lengths_dev, persistent
        return out, h_n.to(h0.dtype, copy=True)

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out, saved = ctx.saved_tensors
        steps: Steps = ctx.steps
        T_run = steps.T_run
        dy = common.step_output_grad(steps, d_out, d_hn, x)
        states = common.shifted_states(h0, out, T_run)  # h_0..h_{T-1}
        d_in, d_hid, dh0 = gru_backward(dy, w_hh, saved, states, ctx.lengths_dev, ctx.persistent)
        needs = ctx.needs_input_grad
        dx, dw_ih, db_ih = input_grads(d_in, x[:T_run], w_ih, needs[0], needs[2], b_ih is not None and needs[4],
                                       x.shape[0])
        dw_hh = hidden_weight_grad(d_hid, states) if needs[3] else None
        db_hh = d_hid.sum((0, 1)) if b_hh is not None and needs[5] else None
        return (dx, common.grad_as(dh0, h0) if needs[1] else None, dw_ih, dw_hh,
                common.grad_as(db_ih, b_ih), common.grad_as(db_hh, b_hh), None, None)


def gru(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None, lengths: Optional[Tensor] = None, *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """See :func:`rnnkit.engine.kernels.triton.gru`."""
    H = common.check_shapes(x, h0, w_ih, w_hh, GATES)
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None and bias.shape != (GATES * H,):
            raise ValueError(f"{name} must be ({GATES * H},); got shape {tuple(bias.shape)}")
    common.check_dtypes(x, (("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)), (("h0", h0),))
    persistent = common.use_persistent(persistent, x.shape[1], H, GATES, x.dtype)
    return common.dispatch(GRUTriton, _inference, (x, h0, w_ih, w_hh.contiguous(), b_ih, b_hh), lengths, persistent)


@without_autocast
def _inference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, persistent):
    steps, lengths_dev = common.layer_steps(x, lengths)
    out, h_n, _ = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, steps, lengths_dev, persistent, False)
    return out, h_n.to(h0.dtype, copy=True)
