r"""Explicit BPTT for the GRU (Cho et al. 2014) with torch.nn's equations, gates r, z, n.

Forward, with :math:`u_t = W_{hh} h_{t-1} + b_{hh}` (its n-part :math:`u^n_t` is saved):

.. math::
    r_t = \sigma(W_{ir} x_t + b_{ir} + u^r_t), \quad
    z_t = \sigma(W_{iz} x_t + b_{iz} + u^z_t) \\
    n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot u^n_t), \quad
    h_t = n_t + z_t \odot (h_{t-1} - n_t)

Backward, from t = T down to 1.  Every gate gradient is :math:`\delta h_t` times a factor known
after the forward pass:

.. math::
    \delta a^z_t = \delta h_t \odot (h_{t-1} - n_t) \odot z_t (1 - z_t), \quad
    \delta a^n_t = \delta h_t \odot (1 - z_t) \odot (1 - n_t^2) \\
    \delta a^r_t = \delta a^n_t \odot u^n_t \odot r_t (1 - r_t), \quad
    \delta u_t = [\delta a^r_t,\ \delta a^z_t,\ \delta a^n_t \odot r_t] \\
    \delta h_{t-1} = \bar y_{t-1} + \delta h_t \odot z_t + W_{hh}^\top \delta u_t

so the loop is one broadcast product, one fused multiply-add and one GEMM per step.  The
input-side pre-activation gradient is :math:`[\delta a^r, \delta a^z, \delta a^n]`; the
weight gradients follow as single matrix products over all steps.
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
    layer_output,
    or_empty,
    recurrent_weight,
    remember_grad_inputs,
    state_buffer,
    without_autocast,
)


class GRUFunction(torch.autograd.Function):
    """One layer, one direction of a GRU with a hand-written backward.

    ``apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths) -> (output, h_n)``

    Args:
        x: (T, B, D); h0: (B, H); w_ih: (3H, D); w_hh: (3H, H); b_ih, b_hh: (3H,) or None;
        lengths: None or (B,) int64.
    Returns:
        output (T, B, H) zero past each end; h_n (B, H).
    """

    @staticmethod
    @without_autocast
    @remember_grad_inputs
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, kernels=None):
        T, B, _ = x.shape
        H = w_hh.shape[0] // 3
        steps = Steps.build(T, lengths, x.device)
        T_run = steps.T_run
        # (The fused kernel adds b_ih itself, sparing the GEMM a broadcast copy.)
        gates = input_projection(x[:T_run], w_ih, b_ih if kernels is None else None)  # (T_run, B, 3H)
        u_n = x.new_empty(T_run, B, H)  # W_hn h_{t-1} + b_hn
        states, hs = state_buffer(h0, T_run)  # h_0..h_T; hs = h_1..h_T is the output
        u = x.new_empty(B, 3 * H)  # recurrent part W_hh h_{t-1} + b_hh, reused every step
        recurrent = recurrent_weight(w_hh, B, kernels)

        if kernels is not None:
            _forward_fused(kernels, gates, fused_bias(b_ih, gates), u, u_n, hs, h0, recurrent, b_hh)
        else:
            _forward_torch(gates, u, u_n, hs, h0, recurrent, b_hh)

        out, h_n = layer_output(steps, hs, T)
        ctx.save_for_backward(x, w_ih, w_hh, gates, u_n, states)
        ctx.steps = steps
        ctx.has_bias = (b_ih is not None, b_hh is not None)
        ctx.kernels = kernels
        return out, h_n

    @staticmethod
    @first_order_only
    @without_autocast
    def backward(ctx, d_out, d_hn):
        x, w_ih, w_hh, gates, u_n, states = ctx.saved_tensors
        steps: Steps = ctx.steps
        T_run = gates.shape[0]
        dy = steps.output_grad(d_out, None)  # (T_run, B, H)
        if ctx.kernels is not None:
            d_u, d_pre, dh0 = _backward_fused(ctx.kernels, steps, gates, u_n, states, dy, d_hn, w_hh)
        else:
            d_u, d_pre, dh0 = _backward_torch(steps, gates, u_n, states, dy, d_hn, w_hh)
        needs = ctx.needs_input_grad
        dh0 = dh0 if needs[1] else None
        dw_hh = hidden_weight_grad(d_u, states) if needs[3] else None
        db_hh = d_u.sum((0, 1)) if ctx.has_bias[1] and needs[5] else None
        dx, dw_ih, db_ih = input_grads(
            d_pre, x[:T_run], w_ih, needs[0], needs[2], ctx.has_bias[0] and needs[4], x.shape[0]
        )
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None


@without_autocast
def gru_inference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, kernels=None):
    """:class:`GRUFunction`'s forward for when no gradient is needed: the same arguments,
    operations and outputs (bitwise), but the gates of only one chunk of steps are held at a
    time (:func:`~rnnkit.engine.bptt.common.inference_chunks`), so memory is the output
    (T, B, H) plus O(B * 4H) per chunk step, not the gates and states backward would need."""
    T, B, _ = x.shape
    H = w_hh.shape[0] // 3
    steps = Steps.build(T, lengths, x.device)
    C, chunks = inference_chunks(steps.T_run, B)
    out = inference_output(h0, T, steps.T_run)  # (T, B, H)
    gates = x.new_empty(C, B, 3 * H)  # one chunk's input projections, then r, z, n
    u_n = x.new_empty(C, B, H)
    u = x.new_empty(B, 3 * H)
    recurrent = recurrent_weight(w_hh, B, kernels)
    bias = fused_bias(b_ih, gates) if kernels is not None else None
    h = h0
    for start, skip in chunks:
        input_projection(x[start : start + C], w_ih, b_ih if kernels is None else None, out=gates)
        hs = out[start + skip : start + C]
        if kernels is not None:
            _forward_fused(kernels, gates[skip:], bias, u, u_n[skip:], hs, h, recurrent, b_hh)
        else:
            _forward_torch(gates[skip:], u, u_n[skip:], hs, h, recurrent, b_hh)
        h = hs[-1]
    return out, inference_finish(steps, out)


def _forward_torch(gates, u, u_n, hs, h0, recurrent, b_hh):
    """The time loop in PyTorch operations (any device, any floating dtype)."""
    T_run, B, H3 = gates.shape
    H = H3 // 3
    diff = gates.new_empty(B, H)
    per_step = zip(
        gates[:, :, : 2 * H].unbind(0), gates[:, :, :H].unbind(0),
        gates[:, :, H : 2 * H].unbind(0), gates[:, :, 2 * H :].unbind(0),
        u_n.unbind(0), hs.unbind(0),
    )
    u_rz, u_nn = u[:, : 2 * H], u[:, 2 * H :]
    h = h0
    for rz, r, z, n, un_t, h_t in per_step:
        recurrent.mm(h, u, b_hh)  # (B, 3H) = W_hh h + b_hh
        rz.add_(u_rz).sigmoid_()
        n.addcmul_(r, u_nn).tanh_()
        un_t.copy_(u_nn)
        torch.sub(h, n, out=diff)
        h = torch.addcmul(n, z, diff, out=h_t)  # n + z (h - n)


def _forward_fused(kernels, gates, bias, u, u_n, hs, h0, recurrent, b_hh):
    """The time loop with the pointwise part of each step in one fused CPU kernel call; the
    input-side bias b_ih (3H,) is added there, not in ``gates``."""
    h0c = h0.contiguous()  # the kernel reads h_0 as raw memory
    if recurrent.kind != "packed":  # the whole loop in C++ (w_t: a contiguous copy or a view)
        kernels.gru_forward_loop(gates, bias, u, u_n, hs, h0c, recurrent.w_t, or_empty(b_hh))
        return
    # A packed (MKL) weight has no C++ loop: the loop stays here, one kernel call per step.
    h_v = hs.unbind(0)
    h = h0
    for t in range(gates.shape[0]):
        recurrent.mm(h, u, b_hh)  # (B, 3H) = W_hh h + b_hh
        kernels.gru_forward_step(gates, bias, u, u_n, hs, h0c, t)
        h = h_v[t]


def _backward_torch(steps, gates, u_n, states, dy, d_hn, w_hh):
    """BPTT loop in PyTorch operations.

    Returns (recurrent-side delta u (T_run, B, 3H), input-side delta a (T_run, B, 3H), delta h_0).
    """
    T_run, B, H3 = gates.shape
    H = H3 // 3
    r, z, n = gates.view(T_run, B, 3, H).unbind(2)
    h_prev = states[:-1]  # (T_run, B, H), h_0..h_{T-1}

    q_n = (1 - z) * (1 - n * n)  # delta a^n / delta h
    q_u = gates.new_empty(T_run, B, 3, H)  # delta u / delta h
    torch.mul(q_n * u_n, r * (1 - r), out=q_u[:, :, 0])
    torch.mul(h_prev - n, z * (1 - z), out=q_u[:, :, 1])
    torch.mul(q_n, r, out=q_u[:, :, 2])
    carry = z
    if steps.varlen:
        # Past a sequence's end its state is frozen: no gate gradient, and delta h passes
        # through unchanged (factor 1) so dL/dh_n reaches the last valid step.
        q_u.masked_fill_(~steps.mask.unsqueeze(3), 0)
        q_n = steps.zero_past_end(q_n.clone())
        carry = z.masked_fill(~steps.mask, 1)

    d_h = gates.new_empty(T_run, B, H)  # delta h_t for every step
    d_u = gates.new_empty(T_run, B, 3, H)
    dh_v, du_v = d_h.unbind(0), d_u.unbind(0)
    du_flat = d_u.view(T_run, B, H3).unbind(0)
    qu_v, carry_v, dy_v = q_u.unbind(0), carry.unbind(0), dy.unbind(0)

    dh = torch.add(dy_v[T_run - 1], d_hn, out=dh_v[T_run - 1])
    for t in range(T_run - 1, -1, -1):
        torch.mul(qu_v[t], dh.unsqueeze(1), out=du_v[t])  # (B, 3, H)
        if t > 0:
            nxt = torch.addcmul(dy_v[t - 1], dh, carry_v[t])
            dh = torch.addmm(nxt, du_flat[t], w_hh, out=dh_v[t - 1])

    d_uf = d_u.view(T_run, B, H3)
    dh0 = torch.addmm(d_h[0] * carry[0], d_uf[0], w_hh)
    d_pre = d_u.clone()  # input side: r and z parts equal the recurrent side
    torch.mul(d_h, q_n, out=d_pre[:, :, 2])
    return d_uf, d_pre.view(T_run, B, H3), dh0


def _backward_fused(kernels, steps, gates, u_n, states, dy, d_hn, w_hh):
    """BPTT loop (in C++) with the pointwise part of each step in one fused kernel call."""
    T_run, B, H3 = gates.shape
    d_u = torch.empty_like(gates)
    d_x = torch.empty_like(gates)
    carry = gates.new_empty(B, H3 // 3)
    dh_T = dy[T_run - 1] + d_hn  # delta h_T
    dh0 = kernels.gru_backward_loop(
        gates, u_n, states[1:], states[0], dh_T, dy, d_u, d_x, carry, steps.kernel_lengths, w_hh
    )
    return d_u, d_x, dh0

