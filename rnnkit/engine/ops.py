"""rnnkit's recurrent layers as PyTorch custom operators.

Each cell kind is one operator, ``torch.ops.rnnkit.{rnn,lstm,gru}``, that runs one layer in
one direction with the explicit BPTT engine (:mod:`rnnkit.engine.bptt`), plus one operator
for its backward (``rnnkit::{rnn,lstm,gru}_backward``).  Registered with
``torch.library.custom_op`` and ``register_fake``, and differentiated by autograd Functions in
the form torch.func needs (``setup_context``; the operators' ``register_autograd`` would not
serve ``torch.func`` in PyTorch 2.13), the same call runs

- in eager mode (the Functions' own forward and backward, bit for bit),
- under ``torch.compile(fullgraph=True)``, as one opaque node per layer and direction whose
  output shapes follow the input's (a new sequence length is a new size, not a new graph
  once the length is marked dynamic),
- under ``torch.export``, ``torch.jit.trace`` and the ``torch.func`` transforms built on
  autograd (``grad``, ``vjp``, ``jacrev``),
- and in the ONNX exporters, through the translations of :mod:`rnnkit.onnx`.

Second derivatives.  The hand-derived backward is not itself differentiable, so the backward
operators' own autograd formula recomputes the layer on the reference path (the per-step
loop of :mod:`rnnkit.engine.reference`) and lets autograd differentiate its first derivative
once more (double backward by recomputation): ``create_graph=True`` (a gradient penalty,
``gradgradcheck``) gives the same numbers as torch.nn, at the reference path's speed.

What the forward saves for backward comes back as extra outputs of the operator: the
per-step gates (and cell states) the backward reads, each padded to the input's T steps so
that their shapes never depend on the lengths' values.  The states h_0..h_{T-1} the weight
gradient reads are rebuilt from h_0 and the output (the same numbers the Function saves).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from rnnkit.engine import kernels as _kernels
from rnnkit.engine.bptt.common import Steps
from rnnkit.engine.bptt.gru import GRUFunction, gru_inference
from rnnkit.engine.bptt.lstm import LSTMFunction, lstm_inference
from rnnkit.engine.bptt.rnn import RNNFunction, rnn_inference


class _Record:
    """Stands in for an autograd ``ctx`` when the Functions' forward and backward are run as
    plain functions inside the operators."""

    def __init__(self, **attrs) -> None:
        self.__dict__.update(attrs)

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors


def _kernels_for(fused: bool):
    return _kernels.fused_cpu() if fused else None


def _padded(t: Optional[Tensor], T: int, like: Tensor) -> Tensor:
    """A saved per-step buffer (T_run, ...) as an operator output of T steps (zeros past
    T_run), or an empty tensor for an absent one."""
    if t is None:
        return like.new_empty(0)
    if t.shape[0] == T:
        return t
    return torch.cat([t, t.new_zeros(T - t.shape[0], *t.shape[1:])])


def _cut(t: Tensor, steps: Steps) -> Optional[Tensor]:
    """The first T_run steps of an operator's padded buffer; None for an absent one."""
    return t[: steps.T_run] if t.numel() else None


def _states(h0: Tensor, out: Tensor, steps: Steps) -> Tensor:
    """h_0..h_{T_run} (T_run+1, B, P), as the Functions' forward keeps them."""
    return torch.cat([h0.unsqueeze(0), out[: steps.T_run]])


def _empties(like: Tensor, n: int) -> list[Tensor]:
    return [like.new_empty(0) for _ in range(n)]


def _grads_out(grads: Sequence[Optional[Tensor]], like: Tensor) -> tuple[Tensor, ...]:
    """The Function's backward results as operator outputs (an empty tensor for None)."""
    return tuple(g if g is not None else like.new_empty(0) for g in grads)


def _fake_grads(inputs: Sequence[Optional[Tensor]], needs: Sequence[bool], like: Tensor) -> tuple[Tensor, ...]:
    return tuple(
        t.new_empty(t.shape) if (t is not None and need) else like.new_empty(0)
        for t, need in zip(inputs, needs)
    )


# --------------------------------------------------------------------------------- LSTM


@torch.library.custom_op("rnnkit::lstm", mutates_args=())
def lstm(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor],
    w_hr: Optional[Tensor], lengths: Optional[Tensor], fused: bool, save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One LSTM layer, one direction: ``(output, h_n, c_n, gates, g, cells, m)``; the last
    four are what backward reads (empty when ``save`` is False)."""
    kernels = _kernels_for(fused)
    if not save:
        return (*lstm_inference(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, kernels), *_empties(x, 4))
    ctx = _Record()
    out, h_n, c_n = LSTMFunction.forward(ctx, x, h0, c0, w_ih, w_hh, b, w_hr, lengths, kernels)
    _, _, _, _, _, gates, g_act, cells, _, ms = ctx.saved_tensors
    T = x.shape[0]
    return out, h_n, c_n, *(_padded(t, T, x) for t in (gates, g_act, cells, ms))


@lstm.register_fake
def _(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused, save):
    T, B, _ = x.shape
    H = w_hh.shape[0] // 4
    P = h0.shape[-1]
    out = (x.new_empty(T, B, P), h0.new_empty(B, P), c0.new_empty(B, H))
    if not save:
        return (*out, *_empties(x, 4))
    m = x.new_empty(T, B, H) if w_hr is not None else x.new_empty(0)
    return (*out, x.new_empty(T, B, 4 * H), x.new_empty(T, B, H), x.new_empty(T, B, H), m)


@torch.library.custom_op("rnnkit::lstm_backward", mutates_args=())
def lstm_backward(
    d_out: Tensor, d_hn: Tensor, d_cn: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
    w_hh: Tensor, b: Optional[Tensor], w_hr: Optional[Tensor], lengths: Optional[Tensor], out: Tensor,
    gates: Tensor, g_act: Tensor, cells: Tensor, ms: Tensor, fused: bool, needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr)`` of one LSTM layer (empty where
    ``needs`` is False) by the hand-derived BPTT of :class:`LSTMFunction`."""
    steps = Steps.build(x.shape[0], lengths, x.device)
    saved = (x, c0, w_ih, w_hh, w_hr, _cut(gates, steps), _cut(g_act, steps), _cut(cells, steps),
             _states(h0, out, steps), _cut(ms, steps) if w_hr is not None else None)
    ctx = _Record(saved_tensors=saved, steps=steps, has_bias=b is not None,
                  kernels=_kernels_for(fused), needs_input_grad=(*needs, False, False))
    grads = LSTMFunction.backward.__wrapped__(ctx, d_out, d_hn, d_cn)
    return _grads_out(grads[:7], x)


@lstm_backward.register_fake
def _(d_out, d_hn, d_cn, x, h0, c0, w_ih, w_hh, b, w_hr, lengths, out, gates, g_act, cells, ms, fused, needs):
    return _fake_grads((x, h0, c0, w_ih, w_hh, b, w_hr), needs, x)




# ---------------------------------------------------------------------------------- GRU


@torch.library.custom_op("rnnkit::gru", mutates_args=())
def gru(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
    lengths: Optional[Tensor], fused: bool, save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One GRU layer, one direction: ``(output, h_n, gates, u_n)``; the last two are what
    backward reads (empty when ``save`` is False)."""
    kernels = _kernels_for(fused)
    if not save:
        return (*gru_inference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, kernels), *_empties(x, 2))
    ctx = _Record()
    out, h_n = GRUFunction.forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, kernels)
    _, _, _, gates, u_n, _ = ctx.saved_tensors
    T = x.shape[0]
    return out, h_n, _padded(gates, T, x), _padded(u_n, T, x)


@gru.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused, save):
    T, B, _ = x.shape
    H = w_hh.shape[0] // 3
    out = (x.new_empty(T, B, H), h0.new_empty(B, H))
    if not save:
        return (*out, *_empties(x, 2))
    return (*out, x.new_empty(T, B, 3 * H), x.new_empty(T, B, H))


@torch.library.custom_op("rnnkit::gru_backward", mutates_args=())
def gru_backward(
    d_out: Tensor, d_hn: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
    b_ih: Optional[Tensor], b_hh: Optional[Tensor], lengths: Optional[Tensor], out: Tensor,
    gates: Tensor, u_n: Tensor, fused: bool, needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` of one GRU layer (empty where
    ``needs`` is False) by the hand-derived BPTT of :class:`GRUFunction`."""
    steps = Steps.build(x.shape[0], lengths, x.device)
    saved = (x, w_ih, w_hh, _cut(gates, steps), _cut(u_n, steps), _states(h0, out, steps))
    ctx = _Record(saved_tensors=saved, steps=steps, has_bias=(b_ih is not None, b_hh is not None),
                  kernels=_kernels_for(fused), needs_input_grad=(*needs, False, False))
    grads = GRUFunction.backward.__wrapped__(ctx, d_out, d_hn)
    return _grads_out(grads[:6], x)


@gru_backward.register_fake
def _(d_out, d_hn, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, out, gates, u_n, fused, needs):
    return _fake_grads((x, h0, w_ih, w_hh, b_ih, b_hh), needs, x)




# ---------------------------------------------------------------------------------- RNN


@torch.library.custom_op("rnnkit::rnn", mutates_args=())
def rnn(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor], lengths: Optional[Tensor],
    nonlinearity: str, save: bool,
) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer, one direction: ``(output, h_n)`` (backward reads the output)."""
    if not save:
        return rnn_inference(x, h0, w_ih, w_hh, b, lengths, nonlinearity)
    out, h_n = RNNFunction.forward(_Record(), x, h0, w_ih, w_hh, b, lengths, nonlinearity)
    return out, h_n


@rnn.register_fake
def _(x, h0, w_ih, w_hh, b, lengths, nonlinearity, save):
    T, B, _ = x.shape
    H = w_hh.shape[0]
    return x.new_empty(T, B, H), h0.new_empty(B, H)


@torch.library.custom_op("rnnkit::rnn_backward", mutates_args=())
def rnn_backward(
    d_out: Tensor, d_hn: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor],
    lengths: Optional[Tensor], out: Tensor, nonlinearity: str, needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients ``(dx, dh0, dw_ih, dw_hh, db)`` of one RNN layer (empty where ``needs`` is
    False) by the hand-derived BPTT of :class:`RNNFunction`."""
    steps = Steps.build(x.shape[0], lengths, x.device)
    ctx = _Record(saved_tensors=(x, w_ih, w_hh, _states(h0, out, steps)), steps=steps,
                  nonlinearity=nonlinearity, has_bias=b is not None, needs_input_grad=(*needs, False, False))
    grads = RNNFunction.backward.__wrapped__(ctx, d_out, d_hn)
    return _grads_out(grads[:5], x)


@rnn_backward.register_fake
def _(d_out, d_hn, x, h0, w_ih, w_hh, b, lengths, out, nonlinearity, needs):
    return _fake_grads((x, h0, w_ih, w_hh, b), needs, x)




# -------------------------------------------------------------- second derivatives


def _reference_outputs(mode: str, nonlinearity: str, prims: Sequence[Optional[Tensor]], lengths) -> tuple:
    """The layer's outputs on the reference path, from the primals in the backward
    operators' gradient order."""
    from rnnkit.engine.reference import reference_layer

    if mode == "LSTM":
        x, h0, c0, w_ih, w_hh, b, w_hr = prims
        weights = (w_ih, w_hh, b, None, w_hr)
    elif mode == "GRU":
        (x, h0, w_ih, w_hh, b_ih, b_hh), c0 = prims, None
        weights = (w_ih, w_hh, b_ih, b_hh, None)
    else:
        (x, h0, w_ih, w_hh, b), c0 = prims, None
        weights = (w_ih, w_hh, b, None, None)
    out, h_n, c_n = reference_layer(mode, x, h0, c0, weights, lengths, False, nonlinearity)
    return (out, h_n, c_n) if mode == "LSTM" else (out, h_n)


def _double_backward(mode, nonlinearity, prims, lengths, cotangents, grad_grads):
    """The backward of a backward operator, by recomputation on the reference path.

    The backward operator maps the cotangents (dL/doutputs) and the primals (input, state,
    weights) to the first derivative ``J^T cotangents``; its own vector-Jacobian product with
    ``grad_grads`` is taken by autograd through the reference loop's first derivative.
    Returns ``(grads of the cotangents, grads of the primals)``, None where none flows.
    """
    with torch.enable_grad():
        p = [t.detach().requires_grad_() if t is not None else None for t in prims]
        c = [t.detach().requires_grad_() for t in cotangents]
        live = [t for t in p if t is not None]
        first_live = iter(torch.autograd.grad(
            _reference_outputs(mode, nonlinearity, p, lengths), live, c, create_graph=True, allow_unused=True
        ))
        first = [next(first_live) if t is not None else None for t in p]
        pairs = [
            (f, g) for f, g in zip(first, grad_grads)
            if f is not None and f.requires_grad and g is not None and g.numel()
        ]
        if not pairs:
            return [None] * len(c), [None] * len(p)
        second = torch.autograd.grad(
            [f for f, _ in pairs], c + live, [g for _, g in pairs], allow_unused=True
        )
    second_live = iter(second[len(c):])
    return list(second[: len(c)]), [next(second_live) if t is not None else None for t in p]


def _vmap_by_loop(fn):
    """A ``vmap`` rule for an autograd Function whose forward is ``fn``: one call per
    element of the mapped dimension, results stacked along dimension 0 (what
    ``torch.func.jacrev`` and ``vmap`` need; as fast as a Python loop)."""

    def rule(info, in_dims, *args):
        outputs = []
        for i in range(info.batch_size):
            sliced = [
                a.select(d, i) if d is not None and isinstance(a, Tensor) else a
                for a, d in zip(args, in_dims)
            ]
            outputs.append(fn(*sliced))
        stacked = tuple(torch.stack(parts) for parts in zip(*outputs))
        return stacked, (0,) * len(stacked)

    return rule


def _autograd(mode: str, forward_op, backward_op, n_cot: int, n_prims: int):
    """The autograd Function of one operator pair, in the form torch.func transforms need
    (``forward`` without ctx, then ``setup_context``).

    ``forward_op(*primals, lengths, option, save)`` returns ``n_cot`` differentiable outputs,
    then the buffers backward reads; ``backward_op(*cotangents, *primals, lengths, output,
    *buffers, option, needs)`` returns one gradient per primal.  ``option`` is ``fused``
    (LSTM, GRU) or the nonlinearity (RNN).  The backward's own backward is
    :func:`_double_backward`.
    """

    class Backward(torch.autograd.Function):
        @staticmethod
        def forward(*args):
            return backward_op(*args)

        vmap = staticmethod(_vmap_by_loop(backward_op))

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs[: n_cot + n_prims + 1])
            option = inputs[-2]
            ctx.nonlinearity = option if isinstance(option, str) else "tanh"
            ctx.n_inputs = len(inputs)

        @staticmethod
        def backward(ctx, *grad_grads):
            saved = ctx.saved_tensors
            cot, prims, lengths = saved[:n_cot], saved[n_cot:-1], saved[-1]
            d_cot, d_prims = _double_backward(mode, ctx.nonlinearity, prims, lengths, cot, grad_grads)
            return (*d_cot, *d_prims, *([None] * (ctx.n_inputs - n_cot - n_prims)))

    class Forward(torch.autograd.Function):
        @staticmethod
        def forward(*args):
            return forward_op(*args, True)

        vmap = staticmethod(_vmap_by_loop(lambda *args: forward_op(*args, True)))

        @staticmethod
        def setup_context(ctx, inputs, output):
            buffers = output[n_cot:]
            if buffers:
                ctx.mark_non_differentiable(*buffers)
            ctx.save_for_backward(*inputs[:n_prims], inputs[n_prims], output[0], *buffers)
            ctx.option = inputs[n_prims + 1]

        @staticmethod
        def backward(ctx, *grads):
            saved = ctx.saved_tensors
            prims, rest = saved[:n_prims], saved[n_prims:]
            needs = tuple(bool(n) for n in ctx.needs_input_grad[:n_prims])
            args = (*grads[:n_cot], *prims, *rest, ctx.option, needs)
            # torch.compile traces the backward operator itself (Dynamo cannot trace an
            # autograd Function applied inside a backward): no second derivative there.
            result = backward_op(*args) if torch.compiler.is_compiling() else Backward.apply(*args)
            return (*(g if need else None for g, need in zip(result, needs)), None, None)

    Forward.__name__ = Forward.__qualname__ = f"{mode}Op"
    Backward.__name__ = Backward.__qualname__ = f"{mode}OpBackward"
    return Forward


# (the operators by their torch.ops handles, which torch.compile traces as graph nodes)
_LSTM = _autograd("LSTM", torch.ops.rnnkit.lstm, torch.ops.rnnkit.lstm_backward, 3, 7)
_GRU = _autograd("GRU", torch.ops.rnnkit.gru, torch.ops.rnnkit.gru_backward, 2, 6)
_RNN = _autograd("RNN", torch.ops.rnnkit.rnn, torch.ops.rnnkit.rnn_backward, 2, 5)


def _plain_eager(x: Tensor) -> bool:
    """Whether a call on ``x`` is plain eager PyTorch: no compiler, tracer, exporter,
    torch.func transform or dispatch mode (FakeTensor, FLOP counters, ...) is watching.
    Then a forward without gradient calls the operator's implementation directly, sparing
    the dispatcher's few tens of microseconds per layer (the same function, the same
    result); anything that watches sees the operator."""
    return (
        type(x) is Tensor
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch._C._are_functorch_transforms_active()
        and torch._C._len_torch_dispatch_stack() == 0
    )


def lstm_layer(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused: bool, grad: bool):
    """``(output, h_n, c_n)`` of one LSTM layer in one direction (see :func:`lstm`);
    ``grad``: whether autograd records it (else nothing is kept for backward)."""
    if grad:
        return _LSTM.apply(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused)[:3]
    if _plain_eager(x):
        return lstm_inference(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, _kernels_for(fused))
    return torch.ops.rnnkit.lstm(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused, False)[:3]


def gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused: bool, grad: bool):
    """``(output, h_n)`` of one GRU layer in one direction (see :func:`gru`)."""
    if grad:
        return _GRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused)[:2]
    if _plain_eager(x):
        return gru_inference(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, _kernels_for(fused))
    return torch.ops.rnnkit.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused, False)[:2]


def rnn_layer(x, h0, w_ih, w_hh, b, lengths, nonlinearity: str, grad: bool):
    """``(output, h_n)`` of one RNN layer in one direction (see :func:`rnn`)."""
    if grad:
        return _RNN.apply(x, h0, w_ih, w_hh, b, lengths, nonlinearity)
    if _plain_eager(x):
        return rnn_inference(x, h0, w_ih, w_hh, b, lengths, nonlinearity)
    return torch.ops.rnnkit.rnn(x, h0, w_ih, w_hh, b, lengths, nonlinearity, False)
