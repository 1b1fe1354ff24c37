r"""Triton kernels of the GRU (gates r, z, n as torch.nn): one launch per step, and the
persistent variants that run the whole time loop in one launch.

Buffers (time-first, row-major; G = 3H): ``xp`` (T, B, G) float32 :math:`W_{ix} x_t + b_{ih}`;
``w`` (G, H) :math:`W_{hh}`; ``b_hh`` (G,) float32 (zeros when the layer has none);
``saved`` (T, B, 4H) float32: :math:`r_t, z_t, n_t` and :math:`\hat n_t = W_{hn} h_{t-1} + b_{hn}`;
``states`` (T, B, H) :math:`h_0..h_{T-1}` in the output dtype.

Forward, per step:

.. math::
    r_t = \sigma(xp^r_t + W_{hr} h_{t-1} + b_{hr}), \quad
    z_t = \sigma(xp^z_t + W_{hz} h_{t-1} + b_{hz}) \\
    n_t = \tanh(xp^n_t + r_t \hat n_t), \quad h_t = (1 - z_t) n_t + z_t h_{t-1}

Backward, per step from t = T down to 1, with :math:`\delta\hat a_t` the gradient of the
recurrent pre-activations :math:`W_{hh} h_{t-1} + b_{hh}` and :math:`\delta a_t` that of the
input side :math:`xp_t`:

.. math::
    \delta h_t = \bar y_t + z_{t+1} \delta h_{t+1} + W_{hh}^\top \delta\hat a_{t+1} \\
    \delta a^n_t = \delta h_t (1 - z_t)(1 - n_t^2), \quad
    \delta a^z_t = \delta h_t (h_{t-1} - n_t)\, z_t (1 - z_t), \quad
    \delta a^r_t = \delta a^n_t\, \hat n_t\, r_t (1 - r_t) \\
    \delta a_t = (\delta a^r_t, \delta a^z_t, \delta a^n_t), \qquad
    \delta\hat a_t = (\delta a^r_t, \delta a^z_t, r_t\, \delta a^n_t)

The kernel carries :math:`z_t \delta h_t` (just :math:`\delta h_t` past a sequence's end);
after step 1, :math:`\partial L/\partial h_0` is that carry plus :math:`W_{hh}^\top \delta\hat a_1`.
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
    sigmoid,
    store,
    tanh,
    tile,
)


@triton.jit(do_not_specialize=["t"])
def gru_forward_step(
    xp_ptr, w_ptr, b_ptr, len_ptr, h_ptr, out_ptr, saved_ptr,
    t, B, H,
    SAVE: tl.constexpr, EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Step t for BLOCK_B sequences x BLOCK_H hidden units; ``h_ptr`` (2, B, H) float32
    alternates as in the LSTM's step kernel; ``saved`` row t written if SAVE."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    G = 3 * H
    t64 = t.to(tl.int64)
    h_in = h_ptr + (t % 2) * BH
    h_out = h_ptr + ((t + 1) % 2) * BH

    acc_r, acc_z, acc_n = gate_products(h_in, w_ptr, rows, row_ok, cols, col_ok, H, 3, EMULATE, BLOCK_K)

    xp = xp_ptr + t64 * (B * G) + rows[:, None] * G + cols[None, :]
    bias = b_ptr + cols[None, :]
    r = sigmoid(acc_r + tl.load(bias, mask=col_ok[None, :], other=0.0) + tl.load(xp, mask=tile_ok, other=0.0))
    z = sigmoid(acc_z + tl.load(bias + H, mask=col_ok[None, :], other=0.0)
                + tl.load(xp + H, mask=tile_ok, other=0.0))
    n_hat = acc_n + tl.load(bias + 2 * H, mask=col_ok[None, :], other=0.0)
    n = tanh(tl.load(xp + 2 * H, mask=tile_ok, other=0.0) + r * n_hat)

    here = rows[:, None] * H + cols[None, :]
    h_prev = tl.load(h_in + here, mask=tile_ok, other=0.0)
    h = (1.0 - z) * n + z * h_prev
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]
    tl.store(h_out + here, tl.where(valid, h, h_prev), mask=tile_ok)
    store(out_ptr + t64 * BH + here, tl.where(valid, h, 0.0), tile_ok, EMULATE)
    if SAVE:
        sp = saved_ptr + t64 * (4 * BH) + rows[:, None] * (4 * H) + cols[None, :]
        tl.store(sp, r, mask=tile_ok)
        tl.store(sp + H, z, mask=tile_ok)
        tl.store(sp + 2 * H, n, mask=tile_ok)
        tl.store(sp + 3 * H, n_hat, mask=tile_ok)


@triton.jit(do_not_specialize=["t"])
def gru_backward_step(
    dy_ptr, w_ptr, len_ptr, saved_ptr, states_ptr, carry_ptr, d_hid_ptr, d_in_ptr,
    t, B, H, K_next,
    EMULATE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Backward step t: delta h_t (the recurrent product over the K_next = 3H entries of
    delta a-hat_{t+1}, 0 at the last step), then delta a_t (``d_in`` row t) and
    delta a-hat_t (``d_hid`` row t), and the carry (B, H) float32 in place."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, tl.program_id(1), BLOCK_B, BLOCK_H)
    BH = B * H
    G = 3 * H
    t64 = t.to(tl.int64)

    d_next = d_hid_ptr + (t64 + 1) * (B * G)
    acc = backward_product(d_next, G, w_ptr, rows, row_ok, cols, col_ok, K_next, H, EMULATE, BLOCK_K)

    here = rows[:, None] * H + cols[None, :]
    dh = acc + tl.load(dy_ptr + t64 * BH + here, mask=tile_ok, other=0.0) + tl.load(carry_ptr + here, mask=tile_ok,
                                                                                   other=0.0)
    sp = saved_ptr + t64 * (4 * BH) + rows[:, None] * (4 * H) + cols[None, :]
    r = tl.load(sp, mask=tile_ok, other=0.0)
    z = tl.load(sp + H, mask=tile_ok, other=0.0)
    n = tl.load(sp + 2 * H, mask=tile_ok, other=0.0)
    n_hat = tl.load(sp + 3 * H, mask=tile_ok, other=0.0)
    h_prev = load_f32(states_ptr + t64 * BH + here, tile_ok)
    da_n = dh * (1.0 - z) * (1.0 - n * n)
    da_z = dh * (h_prev - n) * z * (1.0 - z)
    da_r = da_n * n_hat * r * (1.0 - r)

    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    valid = (t < length)[:, None]
    da_r = tl.where(valid, da_r, 0.0)
    da_z = tl.where(valid, da_z, 0.0)
    da_n = tl.where(valid, da_n, 0.0)
    row = t64 * (B * G) + rows[:, None] * G + cols[None, :]
    store(d_in_ptr + row, da_r, tile_ok, EMULATE)
    store(d_in_ptr + row + H, da_z, tile_ok, EMULATE)
    store(d_in_ptr + row + 2 * H, da_n, tile_ok, EMULATE)
    store(d_hid_ptr + row, da_r, tile_ok, EMULATE)
    store(d_hid_ptr + row + H, da_z, tile_ok, EMULATE)
    store(d_hid_ptr + row + 2 * H, r * da_n, tile_ok, EMULATE)
    tl.store(carry_ptr + here, tl.where(valid, z * dh, dh), mask=tile_ok)


@triton.jit(do_not_specialize=["T_run"])
def gru_forward_persistent(
    xp_ptr, w_ptr, b_ptr, len_ptr, h_ptr, out_ptr, saved_ptr,
    T_run, B, H,
    SAVE: tl.constexpr, EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All T_run steps for BLOCK_B sequences in one program holding W_hh^T (three HP x HP
    tiles) and the state; ``h_ptr`` (B, H) float32: h_0 in, h_n out.  Padded units stay 0
    (r = z = 1/2, n = 0)."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    G = 3 * H

    w_tile = w_ptr + cols[None, :] * H + cols[:, None]
    w_ok = col_ok[:, None] & col_ok[None, :]
    w_r = load_operand(w_tile, w_ok, EMULATE)
    w_z = load_operand(w_tile + H * H, w_ok, EMULATE)
    w_n = load_operand(w_tile + 2 * H * H, w_ok, EMULATE)
    b_r = tl.load(b_ptr + cols, mask=col_ok, other=0.0)[None, :]
    b_z = tl.load(b_ptr + H + cols, mask=col_ok, other=0.0)[None, :]
    b_n = tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0)[None, :]

    here = rows[:, None] * H + cols[None, :]
    here3 = rows[:, None] * G + cols[None, :]
    h = tl.load(h_ptr + here, mask=tile_ok, other=0.0)
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    xp_t = xp_ptr + here3
    out_t = out_ptr + here
    saved_t = saved_ptr + rows[:, None] * (4 * H) + cols[None, :]
    for t in range(0, T_run):
        hb = operand(h, w_ptr.dtype.element_ty, EMULATE)
        r = sigmoid(dot(hb, w_r) + b_r + tl.load(xp_t, mask=tile_ok, other=0.0))
        z = sigmoid(dot(hb, w_z) + b_z + tl.load(xp_t + H, mask=tile_ok, other=0.0))
        n_hat = dot(hb, w_n) + b_n
        n = tanh(tl.load(xp_t + 2 * H, mask=tile_ok, other=0.0) + r * n_hat)
        h_new = (1.0 - z) * n + z * h
        valid = (t < length)[:, None]
        h = tl.where(valid, h_new, h)
        store(out_t, tl.where(valid, h_new, 0.0), tile_ok, EMULATE)
        if SAVE:
            tl.store(saved_t, r, mask=tile_ok)
            tl.store(saved_t + H, z, mask=tile_ok)
            tl.store(saved_t + 2 * H, n, mask=tile_ok)
            tl.store(saved_t + 3 * H, n_hat, mask=tile_ok)
        xp_t += B * G
        out_t += BH
        saved_t += 4 * BH
    tl.store(h_ptr + here, h, mask=tile_ok)


@triton.jit(do_not_specialize=["T_run"])
def gru_backward_persistent(
    dy_ptr, w_ptr, len_ptr, saved_ptr, states_ptr, carry_ptr, d_hid_ptr, d_in_ptr,
    T_run, B, H,
    EMULATE: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr,
):
    """All backward steps for BLOCK_B sequences in one program holding W_hh (three HP x HP
    tiles).  ``carry_ptr`` (B, H) float32: 0 in, dL/dh_0 out."""
    rows, cols, row_ok, col_ok, tile_ok = tile(B, H, 0, BLOCK_B, HP)
    BH = B * H
    G = 3 * H

    w_tile = w_ptr + cols[:, None] * H + cols[None, :]  # W_hh[k, j] at (k, j)
    w_ok = col_ok[:, None] & col_ok[None, :]
    w_r = load_operand(w_tile, w_ok, EMULATE)
    w_z = load_operand(w_tile + H * H, w_ok, EMULATE)
    w_n = load_operand(w_tile + 2 * H * H, w_ok, EMULATE)

    here = rows[:, None] * H + cols[None, :]
    here3 = rows[:, None] * G + cols[None, :]
    carry = tl.load(carry_ptr + here, mask=tile_ok, other=0.0)  # z_{t+1} delta h_{t+1}
    length = tl.load(len_ptr + rows, mask=row_ok, other=0)
    recurrent = tl.zeros((BLOCK_B, HP), dtype=tl.float32)  # delta a-hat_{t+1} W_hh
    last = T_run - 1
    dy_t = dy_ptr + last.to(tl.int64) * BH + here
    states_t = states_ptr + last.to(tl.int64) * BH + here
    saved_t = saved_ptr + last.to(tl.int64) * (4 * BH) + rows[:, None] * (4 * H) + cols[None, :]
    row_t = last.to(tl.int64) * (B * G) + here3
    for s in range(0, T_run):
        t = last - s
        dh = recurrent + carry + tl.load(dy_t, mask=tile_ok, other=0.0)
        r = tl.load(saved_t, mask=tile_ok, other=0.0)
        z = tl.load(saved_t + H, mask=tile_ok, other=0.0)
        n = tl.load(saved_t + 2 * H, mask=tile_ok, other=0.0)
        n_hat = tl.load(saved_t + 3 * H, mask=tile_ok, other=0.0)
        h_prev = load_f32(states_t, tile_ok)
        valid = (t < length)[:, None]
        da_n = tl.where(valid, dh * (1.0 - z) * (1.0 - n * n), 0.0)
        da_z = operand(tl.where(valid, dh * (h_prev - n) * z * (1.0 - z), 0.0), w_ptr.dtype.element_ty, EMULATE)
        da_r = operand(da_n * n_hat * r * (1.0 - r), w_ptr.dtype.element_ty, EMULATE)
        dh_n = operand(r * da_n, w_ptr.dtype.element_ty, EMULATE)
        store(d_in_ptr + row_t, da_r.to(tl.float32), tile_ok, EMULATE)
        store(d_in_ptr + row_t + H, da_z.to(tl.float32), tile_ok, EMULATE)
        store(d_in_ptr + row_t + 2 * H, da_n, tile_ok, EMULATE)
        tl.store(d_hid_ptr + row_t, da_r.to(w_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(d_hid_ptr + row_t + H, da_z.to(w_ptr.dtype.element_ty), mask=tile_ok)
        tl.store(d_hid_ptr + row_t + 2 * H, dh_n.to(w_ptr.dtype.element_ty), mask=tile_ok)
        carry = tl.where(valid, z * dh, dh)
        recurrent = dot(da_r, w_r) + dot(da_z, w_z) + dot(dh_n, w_n)
        dy_t -= BH
        states_t -= BH
        saved_t -= 4 * BH
        row_t -= B * G
    tl.store(carry_ptr + here, carry + recurrent, mask=tile_ok)
