r"""Triton kernels of the LSTM (gates i, f, g, o): one launch per step, and the persistent
variants that run the whole time loop in one launch.

Notation (time-first buffers, row-major; B batch, H hidden, G = 4H):

- ``xp`` (T, B, G) float32: :math:`W_{hx} x_t + b` of every step (one GEMM before the loop);
- ``w`` (G, H): :math:`W_{hh}`, in the weight dtype (float32 or bfloat16);
- ``lengths`` (B,) int32: steps at or past a sequence's length hold its state and output 0;
- ``gates`` (T, B, G) float32: the activated i, f, g, o (saved for backward);
- ``cells`` (T + 1, B, H) float32: :math:`c_0, c_1, \dots, c_T`;
- ``d_pre`` (T, B, G) weight dtype: :math:`\delta a_t`, the gradient of the pre-activations.

Forward, per step: :math:`a_t = xp_t + W_{hh} h_{t-1}`, :math:`c_t = f_t c_{t-1} + i_t g_t`,
:math:`h_t = o_t \tanh c_t`.

Backward, per step from t = T down to 1 (:math:`\bar y_t`: the gradient from outside):

.. math::
    \delta h_t = \bar y_t + W_{hh}^\top \delta a_{t+1} \\
    \delta c_t = \delta h_t\, o_t (1 - \tanh^2 c_t) + \delta c_{t+1} f_{t+1} \\
    \delta a^i_t = \delta c_t\, g_t\, i_t (1 - i_t), \quad
    \delta a^f_t = \delta c_t\, c_{t-1} f_t (1 - f_t) \\
    \delta a^g_t = \delta c_t\, i_t (1 - g_t^2), \quad
    \delta a^o_t = \delta h_t \tanh c_t\, o_t (1 - o_t)

The kernel carries :math:`\delta c_t f_t` (just :math:`\delta c_t` past a sequence's end,
where :math:`\delta a_t = 0`), so after step 1 the carry is :math:`\partial L / \partial c_0`.
"""

import triton
import triton.language as tl

from rnnkit.engine.kernels.triton.primitives import (
    backward_product,
    dot,
    gate_products,
    load_operand,
    operand,
    sigmoid,
    store,
    tanh,
    tile,
)


@triton.jit(do_not_specialize=["t"])
def lstm_forward_step(
    xp_ptr, w_ptr, len_ptr, h_ptr, c_ptr, out_ptr, gates_ptr,
    t, B, H, c_step,
    SAVE: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Step t for BLOCK_B sequences x BLOCK_H hidden units (all four gates of them).

    ``h_ptr`` (2, B, H) float32 alternates: h_{t-1} is read from slot t % 2, h_t written to
    the other (every program reads whole rows of h_{t-1}).  ``c_ptr + t * c_step`` holds
    c_{t-1} and c_t is written ``c_step`` further: ``cells`` when saving (c_step = B*H), a
    single (B, H) updated in place otherwise (c_step = 0; each program reads and writes only
    its own tile).  ``out_ptr`` (T, B, H) in the output dtype; ``gates_ptr`` written if SAVE.
    """
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    G = 4 * H
    t64 = t.to(tl.int64)
    h_in = h_ptr + (t % 2) * BH
    h_out = h_ptr + ((t + 1) % 2) * BH
    c_in = c_ptr + t64 * c_step
    c_out = c_in + c_step

    # The recurrent product h_{t-1} W_hh^T, for this tile's columns of each gate.
    acc_i, acc_f, acc_g, acc_o = gate_products(h_in, w_ptr, rows, row_ok, cols, col_ok, H, 4, EMULATE, BLOCK_K)

    xp = xp_ptr + t64 * (B * G) + rows[:, None] * G + cols[None, :]
    i = sigmoid(acc_i + tl.load(xp, mask=tile_ok, other=0.0))
    f = sigmoid(acc_f + tl.load(xp + H, mask=tile_ok, other=0.0))
    g = tanh(acc_g + tl.load(xp + 2 * H, mask=tile_ok, other=0.0))
    o = sigmoid(acc_o + tl.load(xp + 3 * H, mask=tile_ok, other=0.0))

    here = rows[:, None] * H + cols[None, :]  # (BB, BH) offsets in a (B, H) state
    c_prev = tl.load(c_in + here, mask=tile_ok, other=0.0)
    h_prev = tl.load(h_in + here, mask=tile_ok, other=0.0)
    c = f * c_prev + i * g
    h = o * tanh(c)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]  # (BB, 1): past its end a sequence holds its state
    tl.store(c_out + here, tl.where(valid, c, c_prev), mask=tile_ok)
    tl.store(h_out + here, tl.where(valid, h, h_prev), mask=tile_ok)
    store(out_ptr + t64 * BH + here, tl.where(valid, h, 0.0), tile_ok, EMULATE)
    if SAVE:
        gp = gates_ptr + t64 * (B * G) + rows[:, None] * G + cols[None, :]
        tl.store(gp, i, mask=tile_ok)
        tl.store(gp + H, f, mask=tile_ok)
        tl.store(gp + 2 * H, g, mask=tile_ok)
        tl.store(gp + 3 * H, o, mask=tile_ok)


@triton.jit(do_not_specialize=["t"])
def lstm_backward_step(
    dy_ptr, w_ptr, len_ptr, gates_ptr, cells_ptr, dc_ptr, d_pre_ptr,
    t, B, H, K_next,
    EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Backward step t for BLOCK_B sequences x BLOCK_H hidden units: delta h_t (the
    recurrent product over all K_next = 4H entries of delta a_{t+1}; K_next = 0 at the last
    step), delta c_t, the four gates' delta a_t (written to ``d_pre`` row t) and the carry
    ``dc`` (B, H) float32, updated in place.  ``dy_ptr`` (T, B, H) float32."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    G = 4 * H
    t64 = t.to(tl.int64)

    # delta a_{t+1} W_hh, for this tile's columns.
    d_next = d_pre_ptr + (t64 + 1) * (B * G)
    acc = backward_product(d_next, G, w_ptr, rows, row_ok, cols, col_ok, K_next, H, EMULATE, BLOCK_K)

    here = rows[:, None] * H + cols[None, :]
    dh = acc + tl.load(dy_ptr + t64 * BH + here, mask=tile_ok, other=0.0)
    gp = gates_ptr + t64 * (B * G) + rows[:, None] * G + cols[None, :]
    i = tl.load(gp, mask=tile_ok, other=0.0)
    f = tl.load(gp + H, mask=tile_ok, other=0.0)
    g = tl.load(gp + 2 * H, mask=tile_ok, other=0.0)
    o = tl.load(gp + 3 * H, mask=tile_ok, other=0.0)
    c_prev = tl.load(cells_ptr + t64 * BH + here, mask=tile_ok, other=0.0)
    tanh_c = tanh(tl.load(cells_ptr + (t64 + 1) * BH + here, mask=tile_ok, other=0.0))
    dc = tl.load(dc_ptr + here, mask=tile_ok, other=0.0) + dh * o * (1.0 - tanh_c * tanh_c)

    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]
    dp = d_pre_ptr + t64 * (B * G) + rows[:, None] * G + cols[None, :]
    store(dp, tl.where(valid, dc * g * i * (1.0 - i), 0.0), tile_ok, EMULATE)
    store(dp + H, tl.where(valid, dc * c_prev * f * (1.0 - f), 0.0), tile_ok, EMULATE)
    store(dp + 2 * H, tl.where(valid, dc * i * (1.0 - g * g), 0.0), tile_ok, EMULATE)
    store(dp + 3 * H, tl.where(valid, dh * tanh_c * o * (1.0 - o), 0.0), tile_ok, EMULATE)
    tl.store(dc_ptr + here, tl.where(valid, dc * f, dc), mask=tile_ok)


@triton.jit(do_not_specialize=["T_run"])
def lstm_forward_persistent(
    xp_ptr, w_ptr, len_ptr, h_ptr, c_ptr, out_ptr, gates_ptr, cells_ptr,
    T_run, B, H,
    SAVE: tl.constexpr, EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All T_run steps for BLOCK_B sequences in one program, which holds W_hh^T (four
    HP x HP tiles, HP >= H) and the state in registers for the whole loop.

    ``h_ptr``, ``c_ptr`` (B, H) float32: h_0, c_0 in, h_n, c_n out.  If SAVE, the gates and
    c_1..c_T (``cells`` rows 1..T; the caller wrote c_0 to row 0) are written for backward.
    Padded hidden units (H <= j < HP) stay exactly 0: their weights load as 0, so their
    gates are i = f = o = 1/2, g = 0.
    """
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    G = 4 * H

    w_tile = w_ptr + cols[None, :] * H + cols[:, None]  # W_hh[j, k] at (k, j): (HP, HP)
    w_ok = col_ok[:, None] & col_ok[None, :]
    w_i = load_operand(w_tile, w_ok, EMULATE)
    w_f = load_operand(w_tile + H * H, w_ok, EMULATE)
    w_g = load_operand(w_tile + 2 * H * H, w_ok, EMULATE)
    w_o = load_operand(w_tile + 3 * H * H, w_ok, EMULATE)

    here = rows[:, None] * H + cols[None, :]  # (BB, HP)
    here4 = rows[:, None] * G + cols[None, :]
    h = tl.load(h_ptr + here, mask=tile_ok, other=0.0)
    c = tl.load(c_ptr + here, mask=tile_ok, other=0.0)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    xp_t = xp_ptr + here4
    out_t = out_ptr + here
    gates_t = gates_ptr + here4
    cells_t = cells_ptr + BH + here
    for t in range(0, T_run):
        hb = operand(h, w_ptr.dtype.element_ty, EMULATE)
        i = sigmoid(dot(hb, w_i) + tl.load(xp_t, mask=tile_ok, other=0.0))
        f = sigmoid(dot(hb, w_f) + tl.load(xp_t + H, mask=tile_ok, other=0.0))
        g = tanh(dot(hb, w_g) + tl.load(xp_t + 2 * H, mask=tile_ok, other=0.0))
        o = sigmoid(dot(hb, w_o) + tl.load(xp_t + 3 * H, mask=tile_ok, other=0.0))
        c_new = f * c + i * g
        h_new = o * tanh(c_new)
        valid = (t < length)[:, None]
        c = tl.where(valid, c_new, c)
        h = tl.where(valid, h_new, h)
        store(out_t, tl.where(valid, h_new, 0.0), tile_ok, EMULATE)
        if SAVE:
            tl.store(gates_t, i, mask=tile_ok)
            tl.store(gates_t + H, f, mask=tile_ok)
            tl.store(gates_t + 2 * H, g, mask=tile_ok)
            tl.store(gates_t + 3 * H, o, mask=tile_ok)
            tl.store(cells_t, c, mask=tile_ok)
        # (pointer increments: 64-bit addresses, however long the sequence)
        xp_t += B * G
        out_t += BH
        gates_t += B * G
        cells_t += BH
    tl.store(h_ptr + here, h, mask=tile_ok)
    tl.store(c_ptr + here, c, mask=tile_ok)


@triton.jit(do_not_specialize=["T_run"])
def lstm_backward_persistent(
    dy_ptr, w_ptr, len_ptr, gates_ptr, cells_ptr, dc_ptr, d_pre_ptr, dh0_ptr,
    T_run, B, H,
    EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All backward steps, t = T_run - 1 down to 0, for BLOCK_B sequences in one program
    holding W_hh (four HP x HP tiles, untransposed) and the carries delta c and
    delta a_{t+1} in registers.  ``dc_ptr`` (B, H) float32: dL/dc_n in, dL/dc_0 out;
    ``dh0_ptr`` (B, H) float32 receives delta a_1 W_hh = dL/dh_0."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    G = 4 * H

    w_tile = w_ptr + cols[:, None] * H + cols[None, :]  # W_hh[k, j] at (k, j) of gate block 0
    w_ok = col_ok[:, None] & col_ok[None, :]
    w_i = load_operand(w_tile, w_ok, EMULATE)
    w_f = load_operand(w_tile + H * H, w_ok, EMULATE)
    w_g = load_operand(w_tile + 2 * H * H, w_ok, EMULATE)
    w_o = load_operand(w_tile + 3 * H * H, w_ok, EMULATE)

    here = rows[:, None] * H + cols[None, :]
    here4 = rows[:, None] * G + cols[None, :]
    dc = tl.load(dc_ptr + here, mask=tile_ok, other=0.0)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    recurrent = tl.zeros((BLOCK_B, HP), dtype=tl.float32)  # delta a_{t+1} W_hh
    last = T_run - 1
    dy_t = dy_ptr + last.to(tl.int64) * BH + here
    gates_t = gates_ptr + last.to(tl.int64) * (B * G) + here4
    cells_t = cells_ptr + last.to(tl.int64) * BH + here  # c_{t-1}; c_t is one row on
    d_pre_t = d_pre_ptr + last.to(tl.int64) * (B * G) + here4
    for s in range(0, T_run):
        t = last - s
        dh = recurrent + tl.load(dy_t, mask=tile_ok, other=0.0)
        i = tl.load(gates_t, mask=tile_ok, other=0.0)
        f = tl.load(gates_t + H, mask=tile_ok, other=0.0)
        g = tl.load(gates_t + 2 * H, mask=tile_ok, other=0.0)
        o = tl.load(gates_t + 3 * H, mask=tile_ok, other=0.0)
        c_prev = tl.load(cells_t, mask=tile_ok, other=0.0)
        tanh_c = tanh(tl.load(cells_t + BH, mask=tile_ok, other=0.0))
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        valid = (t < length)[:, None]
        d_i = operand(tl.where(valid, dc * g * i * (1.0 - i), 0.0), w_ptr.dtype.element_ty, EMULATE)
        d_f = operand(tl.where(valid, dc * c_prev * f * (1.0 - f), 0.0), w_ptr.dtype.element_ty, EMULATE)
        d_g = operand(tl.where(valid, dc * i * (1.0 - g * g), 0.0), w_ptr.dtype.element_ty, EMULATE)
        d_o = operand(tl.where(valid, dh * tanh_c * o * (1.0 - o), 0.0), w_ptr.dtype.element_ty, EMULATE)
        tl.store(d_pre_t, d_i.to(w_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(d_pre_t + H, d_f.to(w_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(d_pre_t + 2 * H, d_g.to(w_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(d_pre_t + 3 * H, d_o.to(w_ptr.dtype.element_ty), mask=tile_ok)
        dc = tl.where(valid, dc * f, dc)
        recurrent = dot(d_i, w_i) + dot(d_f, w_f) + dot(d_g, w_g) + dot(d_o, w_o)
        dy_t -= BH
        gates_t -= B * G
        cells_t -= BH
        d_pre_t -= B * G
    tl.store(dc_ptr + here, dc, mask=tile_ok)
    tl.store(dh0_ptr + here, recurrent, mask=tile_ok)
