r"""Triton kernels of the Elman RNN, :math:`h_t = \phi(xp_t + W_{hh} h_{t-1})` with
:math:`\phi` = tanh or relu: one launch per step, and the persistent variants.

Buffers: ``xp`` (T, B, H) float32 :math:`W_{hx} x_t + b`; ``w`` (H, H); ``out`` (T, B, H) in the
output dtype (backward reads :math:`h_t` from it: nothing else is saved); ``d_pre`` (T, B, H).

Backward, per step from t = T down to 1:

.. math::
    \delta h_t = \bar y_t + W_{hh}^\top \delta a_{t+1}, \qquad
    \delta a_t = \delta h_t\, \phi'(a_t), \quad
    \phi' = 1 - h_t^2 \text{ (tanh)}, \ [h_t > 0] \text{ (relu)}
"""

import triton
import triton.language as tl

from rnnkit.engine.kernels.triton.primitives import (
    backward_product,
    dot,
    gate_products,
    load_f32,
    load_operand,
    operand,
    store,
    tanh,
    tile,
)


@triton.jit
def activate(a, RELU: tl.constexpr):
    if RELU:
        h = tl.maximum(a, 0.0)
    else:
        h = tanh(a)
    return h


@triton.jit
def activation_grad(h, RELU: tl.constexpr):
    """phi'(a) from h = phi(a)."""
    if RELU:
        d = tl.where(h > 0.0, 1.0, 0.0)
    else:
        d = 1.0 - h * h
    return d


@triton.jit(do_not_specialize=["t"])
def rnn_forward_step(
    xp_ptr, w_ptr, len_ptr, h_ptr, out_ptr,
    t, B, H,
    RELU: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Step t for BLOCK_B sequences x BLOCK_H hidden units; ``h_ptr`` (2, B, H) float32
    alternates as in the LSTM's step kernel."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    t64 = t.to(tl.int64)
    h_in = h_ptr + (t % 2) * BH
    h_out = h_ptr + ((t + 1) % 2) * BH

    acc = gate_products(h_in, w_ptr, rows, row_ok, cols, col_ok, H, 1, EMULATE, BLOCK_K)

    here = rows[:, None] * H + cols[None, :]
    h = activate(acc + tl.load(xp_ptr + t64 * BH + here, mask=tile_ok, other=0.0), RELU)
    h_prev = tl.load(h_in + here, mask=tile_ok, other=0.0)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]
    tl.store(h_out + here, tl.where(valid, h, h_prev), mask=tile_ok)
    store(out_ptr + t64 * BH + here, tl.where(valid, h, 0.0), tile_ok, EMULATE)


@triton.jit(do_not_specialize=["t"])
def rnn_backward_step(
    dy_ptr, w_ptr, len_ptr, out_ptr, d_pre_ptr,
    t, B, H, K_next,
    RELU: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Backward step t: delta h_t (K_next = H, or 0 at the last step), delta a_t."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    t64 = t.to(tl.int64)

    d_next = d_pre_ptr + (t64 + 1) * BH
    acc = backward_product(d_next, H, w_ptr, rows, row_ok, cols, col_ok, K_next, H, EMULATE, BLOCK_K)

    here = rows[:, None] * H + cols[None, :]
    dh = acc + tl.load(dy_ptr + t64 * BH + here, mask=tile_ok, other=0.0)
    h = load_f32(out_ptr + t64 * BH + here, tile_ok)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]
    store(d_pre_ptr + t64 * BH + here, tl.where(valid, dh * activation_grad(h, RELU), 0.0), tile_ok, EMULATE)


@triton.jit(do_not_specialize=["T_run"])
def rnn_forward_persistent(
    xp_ptr, w_ptr, len_ptr, h_ptr, out_ptr,
    T_run, B, H,
    RELU: tl.constexpr, EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All T_run steps for BLOCK_B sequences in one program holding W_hh^T (HP x HP);
    ``h_ptr`` (B, H) float32: h_0 in, h_n out."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    w = load_operand(w_ptr + cols[None, :] * H + cols[:, None], col_ok[:, None] & col_ok[None, :], EMULATE)

    here = rows[:, None] * H + cols[None, :]
    h = tl.load(h_ptr + here, mask=tile_ok, other=0.0)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    xp_t = xp_ptr + here
    out_t = out_ptr + here
    for t in range(0, T_run):
        a = dot(operand(h, w_ptr.dtype.element_ty, EMULATE), w) + tl.load(xp_t, mask=tile_ok, other=0.0)
        h_new = activate(a, RELU)
        valid = (t < length)[:, None]
        h = tl.where(valid, h_new, h)
        store(out_t, tl.where(valid, h_new, 0.0), tile_ok, EMULATE)
        xp_t += BH
        out_t += BH
    tl.store(h_ptr + here, h, mask=tile_ok)


@triton.jit(do_not_specialize=["T_run"])
def rnn_backward_persistent(
    dy_ptr, w_ptr, len_ptr, out_ptr, d_pre_ptr, dh0_ptr,
    T_run, B, H,
    RELU: tl.constexpr, EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All backward steps for BLOCK_B sequences in one program holding W_hh (HP x HP);
    ``dh0_ptr`` (B, H) float32 receives dL/dh_0."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    w = load_operand(w_ptr + cols[:, None] * H + cols[None, :], col_ok[:, None] & col_ok[None, :], EMULATE)

    here = rows[:, None] * H + cols[None, :]
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    recurrent = tl.zeros((BLOCK_B, HP), dtype=tl.float32)
    last = T_run - 1
    offset = last.to(tl.int64) * BH + here
    dy_t = dy_ptr + offset
    out_t = out_ptr + offset
    d_pre_t = d_pre_ptr + offset
    for s in range(0, T_run):
        t = last - s
        dh = recurrent + tl.load(dy_t, mask=tile_ok, other=0.0)
        h = load_f32(out_t, tile_ok)
        valid = (t < length)[:, None]
        da = operand(tl.where(valid, dh * activation_grad(h, RELU), 0.0), w_ptr.dtype.element_ty, EMULATE)
        tl.store(d_pre_t, da.to(w_ptr.dtype.element_ty), mask=tile_ok)
        recurrent = dot(da, w)
        dy_t -= BH
        out_t -= BH
        d_pre_t -= BH
    tl.store(dh0_ptr + here, recurrent, mask=tile_ok)
