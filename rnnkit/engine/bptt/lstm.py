r"""Explicit BPTT for the LSTM (gates i, f, g, o as torch.nn), with optional projection.

Forward (Hochreiter & Schmidhuber 1997; forget gate of Gers et al. 2000; projection of
Sak et al. 2014):

.. math::
    [i_t, f_t, g_t, o_t] = [\sigma, \sigma, \tanh, \sigma](W_{hx} x_t + b + W_{hh} h_{t-1}) \\
    c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad
    m_t = o_t \odot \tanh c_t, \qquad h_t = m_t \;(\text{or } W_{hr} m_t)

Backward, from t = T down to 1, with :math:`\bar y_t` the gradient arriving from above and
:math:`\delta a` the gradient of the gate pre-activations:

.. math::
    \delta h_t = \bar y_t + W_{hh}^\top \delta a_{t+1}, \qquad
    \delta m_t = \delta h_t \;(\text{or } W_{hr}^\top \delta h_t) \\
    \delta c_t = \delta m_t \odot o_t \odot (1 - \tanh^2 c_t) + \delta c_{t+1} \odot f_{t+1} \\
    \delta a^o_t = \delta m_t \odot \tanh c_t \odot o_t (1 - o_t), \quad
    \delta a^i_t = \delta c_t \odot g_t \odot i_t (1 - i_t) \\
    \delta a^f_t = \delta c_t \odot c_{t-1} \odot f_t (1 - f_t), \quad
    \delta a^g_t = \delta c_t \odot i_t \odot (1 - g_t^2)

The second term of :math:`\delta c_t` is the lecture's "conveyor belt": the cell state passes
gradient back scaled only by the forget gate.  Every factor that does not depend on the
recurrence (for instance :math:`g_t\, i_t (1 - i_t)`) is computed for all steps at once before
the loop, so each step of the loop is one GEMM and four pointwise products.  The weight and
input gradients then follow as single matrix products over all steps.
"""

from __future__ import annotations

import torch

from rnnkit.engine.bptt.common import (
    Steps,
    first_order_only,
    fused_bias,
    hidden_weight_grad,
    inference_chunks,
    inference_finish,
    inference_output,
    input_grads,
    input_projection,
    keep_last,
    layer_output,
    or_empty,
    recurrent_weight,
    remember_grad_inputs,
    state_buffer,
    without_autocast,
)


class LSTMFunction(torch.autograd.Function):
    """One layer, one direction of an LSTM with a hand-written backward.

    ``apply(x, h0, c0, w_ih, w_hh, b, w_hr, lengths) -> (output, h_n, c_n)``

    Args:
        x: (T, B, D); h0: (B, P); c0: (B, H); w_ih: (4H, D); w_hh: (4H, P);
        b: (4H,) combined bias or None; w_hr: (P, H) projection or None (then P = H);
        lengths: None or (B,) int64.
    Returns:
        output (T, B, P) zero past each end; h_n (B, P); c_n (B, H).
    """

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, w_hr, lengths, kernels=None):
        T, B, _ = x.shape
        H = w_hh.shape[0] // 4
        steps = Steps.build(T, lengths, x.device)
        T_run = steps.T_run
        # Input part of every step's gate pre-activations in one GEMM; the loop adds the
        # recurrent part and activates in place, so afterwards it holds i, f, g, o.
        # (The fused kernel adds the bias itself, sparing the GEMM a broadcast copy.)
        gates = input_projection(x[:T_run], w_ih, b if kernels is None else None)  # (T_run, B, 4H)
        g_act = x.new_empty(T_run, B, H)  # g_t = tanh(.), kept apart so one sigmoid covers the row
        cells = x.new_empty(T_run, B, H)  # c_t
        states, hs = state_buffer(h0, T_run)  # h_0..h_T; hs = h_1..h_T is the output
        ms = x.new_empty(T_run, B, H) if w_hr is not None else None  # o_t * tanh c_t
        recurrent = recurrent_weight(w_hh, B, kernels)
        w_hr_t = w_hr.t().contiguous() if w_hr is not None else None  # (H, P)

        if kernels is not None:
            _forward_fused(kernels, gates, fused_bias(b, gates), g_act, cells, hs, ms, h0, c0, recurrent, w_hr_t)
        else:
            _forward_torch(gates, g_act, cells, hs, ms, h0, c0, recurrent, w_hr_t)

        c_n = steps.gather_last(cells)
        out, h_n = layer_output(steps, hs, T)
        ctx.save_for_backward(x, c0, w_ih, w_hh, w_hr, gates, g_act, cells, states, ms)
        ctx.steps = steps
        ctx.has_bias = b is not None
        ctx.kernels = kernels
        return out, h_n, c_n

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn, d_cn):
        x, c0, w_ih, w_hh, w_hr, gates, g, cells, states, ms = ctx.saved_tensors
        steps: Steps = ctx.steps
        T_run, B, H4 = gates.shape
        H = H4 // 4
        dy = steps.output_grad(d_out, d_hn)  # (T_run, B, P)
        if ctx.kernels is not None:
            d_pre, dc = _backward_fused(ctx.kernels, steps, gates, g, cells, c0, dy, d_cn, w_hh, w_hr)
        else:
            d_pre, dc = _backward_torch(steps, gates, g, cells, c0, dy, d_cn, w_hh, w_hr)
        needs = ctx.needs_input_grad
        dh0 = d_pre[0] @ w_hh if needs[1] else None
        dc0 = dc if needs[2] else None
        dw_hh = hidden_weight_grad(d_pre, states) if needs[4] else None
        dw_hr = None
        if w_hr is not None and needs[6]:
            # h_t = W_hr m_t: dW_hr = sum_t delta h_t m_t^T, with delta h_t = dy_t + W_hh^T delta a_{t+1}.
            dh_all = dy.clone()
            if T_run > 1:
                dh_all[:-1].view(-1, dh_all.shape[2]).addmm_(
                    d_pre[1:].reshape(-1, H4), w_hh
                )
            dw_hr = dh_all.reshape(-1, dh_all.shape[2]).t() @ ms.reshape(-1, H)  # (P, H)
        dx, dw_ih, db = input_grads(
            d_pre, x[:T_run], w_ih, needs[0], needs[3], ctx.has_bias and needs[5], x.shape[0]
        )
        return dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, None, None


@without_autocast
def lstm_inference(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, kernels=None):
    """:class:`LSTMFunction`'s forward for when no gradient is needed: the same arguments,
    operations and outputs (bitwise), but the gates and cell states of only one chunk of
    steps are held at a time (:func:`~rnnkit.engine.bptt.common.inference_chunks`), so memory
    is the output (T, B, P) plus O(B * 4H) per chunk step, not the ~7H per step that backward
    would need."""
    T, B, _ = x.shape
    H = w_hh.shape[0] // 4
    steps = Steps.build(T, lengths, x.device)
    C, chunks = inference_chunks(steps.T_run, B)
    out = inference_output(h0, T, steps.T_run)  # (T, B, P)
    gates = x.new_empty(C, B, 4 * H)  # one chunk's pre-activations, then i, f, g, o
    g_act = x.new_empty(C, B, H)
    cells = x.new_empty(C, B, H)
    ms = x.new_empty(C, B, H) if w_hr is not None else None
    recurrent = recurrent_weight(w_hh, B, kernels)
    w_hr_t = w_hr.t().contiguous() if w_hr is not None else None  # (H, P)
    bias = fused_bias(b, gates) if kernels is not None else None
    c_n = c0.new_empty(B, H)
    h, c = h0, c0
    for start, skip in chunks:
        input_projection(x[start : start + C], w_ih, b if kernels is None else None, out=gates)
        run = slice(skip, C)  # the steps this chunk has not run yet
        hs = out[start + skip : start + C]
        m_run = ms[run] if ms is not None else None
        if kernels is not None:
            _forward_fused(kernels, gates[run], bias, g_act[run], cells[run], hs, m_run, h, c, recurrent, w_hr_t)
        else:
            _forward_torch(gates[run], g_act[run], cells[run], hs, m_run, h, c, recurrent, w_hr_t)
        keep_last(steps, cells[run], start + skip, start + C, c_n)
        h, c = hs[-1], cells[-1].clone()  # (the next chunk overwrites ``cells``)
    return out, inference_finish(steps, out), c_n


def _forward_torch(gates, g_act, cells, hs, ms, h0, c0, recurrent, w_hr_t):
    """The time loop in PyTorch operations (any device, any floating dtype)."""
    T_run, B, H4 = gates.shape
    H = H4 // 4
    tanh_c = gates.new_empty(B, H)  # reused every step; backward recomputes tanh(c) at once
    # Per-step views, made once: unbind is the cheapest way to get T views.
    g4 = gates.view(T_run, B, 4, H)
    i_v, f_v, pre_g_v, o_v = (g4[:, :, k].unbind(0) for k in range(4))
    per_step = zip(
        gates.unbind(0), pre_g_v, g_act.unbind(0), i_v, f_v, o_v, cells.unbind(0),
        hs.unbind(0), ms.unbind(0) if ms is not None else [None] * T_run,
    )
    h, c = h0, c0
    for a, pre_g, g, i, f, o, c_t, h_t, m_t in per_step:
        recurrent.addmm_(a, h)  # (B, 4H) pre-activations
        torch.tanh(pre_g, out=g)
        a.sigmoid_()  # i, f, o (the g slot is not used again)
        c = torch.mul(f, c, out=c_t)
        c.addcmul_(i, g)  # c_t = f c_{t-1} + i g
        torch.tanh(c, out=tanh_c)
        if m_t is None:
            h = torch.mul(o, tanh_c, out=h_t)  # (B, H)
        else:
            torch.mul(o, tanh_c, out=m_t)
            h = torch.mm(m_t, w_hr_t, out=h_t)  # (B, P)


def _forward_fused(kernels, gates, bias, g_act, cells, hs, ms, h0, c0, recurrent, w_hr_t):
    """The time loop with the pointwise part of each step in one fused CPU kernel call; the
    bias (4H,) is added there, not in ``gates``."""
    c0 = c0.contiguous()  # the kernel reads c_0 as raw memory
    if recurrent.kind != "packed":  # the whole loop in C++ (w_t: a contiguous copy or a view)
        kernels.lstm_forward_loop(
            gates, bias, g_act, cells, hs, or_empty(ms), h0.contiguous(), c0, recurrent.w_t, or_empty(w_hr_t)
        )
        return
    # A packed (MKL) weight has no C++ loop: the loop stays here, one kernel call per step.
    out = hs if ms is None else ms
    a_v, h_v = gates.unbind(0), hs.unbind(0)
    m_v = ms.unbind(0) if ms is not None else None
    h = h0
    for t in range(gates.shape[0]):
        recurrent.addmm_(a_v[t], h)  # (B, 4H) pre-activations
        kernels.lstm_forward_step(gates, bias, g_act, cells, out, c0, t)
        h = h_v[t] if m_v is None else torch.mm(m_v[t], w_hr_t, out=h_v[t])


def _backward_torch(steps, gates, g, cells, c0, dy, d_cn, w_hh, w_hr):
    """BPTT loop in PyTorch operations; returns (delta a (T_run, B, 4H), delta c_0)."""
    T_run, B, H4 = gates.shape
    H = H4 // 4
    i, f, _, o = gates.view(T_run, B, 4, H).unbind(2)  # each (T_run, B, H)
    tanh_c = torch.tanh(cells)
    c_prev = torch.cat([c0.unsqueeze(0), cells[:-1]])  # (T_run, B, H)

    # Recurrence-free factors for all steps at once.
    k_c = o * (1 - tanh_c * tanh_c)  # d c_t / d m_t along the cell
    factors = gates.new_empty(T_run, B, 4, H)  # multiply delta c (i, f, g) or delta m (o)
    torch.mul(g, i * (1 - i), out=factors[:, :, 0])
    torch.mul(c_prev, f * (1 - f), out=factors[:, :, 1])
    torch.mul(i, 1 - g * g, out=factors[:, :, 2])
    torch.mul(tanh_c, o * (1 - o), out=factors[:, :, 3])
    carry = f
    if steps.varlen:
        # Past a sequence's end nothing depends on its steps: zero their factors and let
        # dL/dc_n pass through unchanged (forget factor 1) to the last valid step.
        k_c = steps.zero_past_end(k_c)
        factors.masked_fill_(~steps.mask.unsqueeze(3), 0)
        carry = f.masked_fill(~steps.mask, 1)

    d_gates = gates.new_empty(T_run, B, 4, H)
    d_flat = d_gates.view(T_run, B, H4)
    per_step = zip(
        reversed(dy.unbind(0)), reversed(k_c.unbind(0)), reversed(carry.unbind(0)),
        reversed(factors[:, :, :3].unbind(0)), reversed(factors[:, :, 3].unbind(0)),
        reversed(d_gates[:, :, :3].unbind(0)), reversed(d_gates[:, :, 3].unbind(0)),
        reversed(d_flat.unbind(0)),
    )
    dc = d_cn
    d_next = None  # delta a_{t+1}, (B, 4H)
    for dy_t, kc_t, carry_t, f_ifg, f_o, d_ifg, d_o, d_t in per_step:
        dh = dy_t if d_next is None else torch.addmm(dy_t, d_next, w_hh)  # (B, P)
        dm = dh if w_hr is None else dh @ w_hr  # (B, H)
        dc = torch.addcmul(dc, dm, kc_t)  # delta c_t
        torch.mul(f_ifg, dc.unsqueeze(1), out=d_ifg)  # (B, 3, H)
        torch.mul(f_o, dm, out=d_o)
        dc = dc * carry_t  # delta c_{t-1} along the cell
        d_next = d_t

    return d_flat, dc


def _backward_fused(kernels, steps, gates, g, cells, c0, dy, d_cn, w_hh, w_hr):
    """BPTT loop (in C++) with the pointwise part of each step in one fused kernel call."""
    d_gates = torch.empty_like(gates)
    dc = d_cn.contiguous().clone()  # dL/dc_n in, dL/dc_0 out (updated in place)
    kernels.lstm_backward_loop(
        gates, g, cells, c0.contiguous(), dy, dc, d_gates, steps.kernel_lengths, w_hh, or_empty(w_hr)
    )
    return d_gates, dc

