"""Pieces shared by the explicit-BPTT Functions: the input projection of all steps, the
variable-length bookkeeping, and the weight and input gradients as single matrix products."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from rnnkit.engine.bptt.recurrent_matmul import RecurrentWeight

EMPTY = torch.empty(0)  # stands for an absent tensor argument of the compiled kernels


def or_empty(t: Optional[Tensor]) -> Tensor:
    return t if t is not None else EMPTY


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (False for types autocast does not know)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # older PyTorch: no argument, CUDA only
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (e.g. meta)
        return False


SECOND_ORDER = ("this autograd Function (rnnkit's bare hand-derived BPTT backward) is first-order only, so this "
                "second derivative (create_graph=True: a gradient penalty, a Hessian, gradgradcheck) cannot go "
                "through it; call the layers (rnnkit.LSTM, ...) or the operators torch.ops.rnnkit.*, whose "
                "backward differentiates twice, or use backend='reference'")


def first_order_only(backward):
    """Decorate an autograd Function's ``backward``: run it without building a graph and, when
    it runs under ``create_graph=True`` for inputs that need gradients, give its results a
    node that raises :data:`SECOND_ORDER` if anything differentiates through them.

    ``torch.autograd.function.once_differentiable`` does this only when the incoming
    gradients require grad; a gradient penalty's incoming gradient often does not (the loss is
    linear in the output), and its dependence on the weights through the saved tensors was
    then dropped without a word.  Here the test is whether the forward's inputs (weights
    included) need gradients."""
    from torch._C import _functions

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled() or not any(ctx.needs_input_grad):
            return outputs
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        err = _functions.DelayedError(SECOND_ORDER.encode(), len(outputs))
        # A zero that depends on every forward input needing a gradient: the error node then
        # lies on the path from the results to each of those inputs, so that differentiating
        # with respect to any of them (torch.autograd.grad included, which skips nodes off its
        # paths) reaches it and raises.
        anchor = sum((t.reshape(-1)[:1] * 0).sum() for t in getattr(ctx, "grad_inputs", ()))

        def marked(t):
            if t is None:
                return None
            t = t.detach()
            if isinstance(anchor, torch.Tensor):
                return t + anchor.to(t.dtype)
            return t.requires_grad_(True)

        return err(*[marked(t) for t in outputs])

    return wrapper


def remember_grad_inputs(forward):
    """Decorate an autograd Function's ``forward``: keep the tensor inputs that need gradients
    on ``ctx.grad_inputs`` (references, no copies), for :func:`first_order_only`."""

    @functools.wraps(forward)
    def wrapper(ctx, *args, **kwargs):
        ctx.grad_inputs = tuple(a for a in args if isinstance(a, torch.Tensor) and a.requires_grad)
        return forward(ctx, *args, **kwargs)

    return wrapper


def without_autocast(fn):
    """Run a Function's forward/backward with autocast off: the explicit BPTT keeps the state
    and every accumulation in the dtype of its inputs (backward may be called from inside an
    autocast region, where matrix products would otherwise come back in low precision)."""

    @functools.wraps(fn)
    def wrapper(*args):  # (ctx, *tensors) of a Function, or the tensors of an inference forward
        devices = {a.device.type for a in args if isinstance(a, torch.Tensor)}
        active = [d for d in devices if autocast_enabled(d)]
        if not active:
            return fn(*args)
        with contextlib.ExitStack() as stack:
            for device in active:
                stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*args)

    return wrapper


def recurrent_weight(w_hh: Tensor, batch: int, kernels=None) -> RecurrentWeight:
    """``w_hh`` (G, P) laid out once for the loop's T products with (batch, P) states.

    The fused CPU kernels run the whole loop in C++ with one direct BLAS call per step.  They
    take ``W_hh`` itself (a transposed view) where they pack it into MKL's GEMM layout once
    per loop themselves (float32, batches of 4 and more: ``StepGemm`` in fused_cpu.cpp) and
    for a single sequence (the product is then a matrix-vector product that reads W_hh's rows
    as they lie); otherwise a contiguous ``W_hh^T`` made by their tiled transpose (2-3x
    faster than a strided copy on large weights)."""
    if kernels is None:
        return RecurrentWeight(w_hh, batch)
    packs = w_hh.dtype == torch.float32 and batch >= 4 and kernels.packing_available()
    if batch == 1 or packs:
        return RecurrentWeight(w_hh, batch, force="view")
    return RecurrentWeight(w_hh, batch, force="transposed", transpose=kernels.transpose_contiguous)


def fused_bias(b: Optional[Tensor], gates: Tensor) -> Tensor:
    """The input-side bias (G,) as the fused step kernels take it: they add it to the gates
    (T, B, G) themselves, which spares the input projection a broadcast copy.  Zeros when
    the layer has none."""
    return b.contiguous() if b is not None else gates.new_zeros(gates.shape[2])


def input_projection(
    x: Tensor, w_ih: Tensor, b: Optional[Tensor], out: Optional[Tensor] = None
) -> Tensor:
    """``x_t W_ih^T + b`` for every step at once: one GEMM over (T*B) rows.

    Args: x (T, B, D), w_ih (G, D), b (G,) or None, out: optional contiguous (T, B, G).
    Returns a contiguous (T, B, G) (``out`` when given).
    """
    T, B, D = x.shape
    x2 = x.reshape(T * B, D)
    G = w_ih.shape[0]
    y = None if out is None else out.view(T * B, G)
    if b is None:
        y = torch.mm(x2, w_ih.t(), out=y)
    else:
        y = torch.addmm(b, x2, w_ih.t(), out=y)  # (T*B, G)
    return y.view(T, B, G)


@dataclass
class Steps:
    """Which steps a layer runs and where each sequence ends.

    ``T_run`` is the longest valid length (steps past it are all padding and are skipped);
    ``mask`` (T_run, B, 1) is True on valid steps; ``last`` (B,) is each sequence's last valid
    step.  ``mask`` and ``last`` are None when every sequence has the full length.
    """

    T_run: int
    mask: Optional[Tensor]
    last: Optional[Tensor]
    batch_index: Optional[Tensor]
    lengths: Optional[Tensor] = None  # (B,) int64 on the CPU, as given

    @classmethod
    def build(cls, T: int, lengths: Optional[Tensor], device: torch.device) -> "Steps":
        if lengths is None:
            return cls(T, None, None, None)
        cpu_lengths = lengths.to("cpu", torch.int64).contiguous()
        low, T_run = int(cpu_lengths.min()), int(cpu_lengths.max())
        if low < 1 or T_run > T:
            raise ValueError(f"lengths must lie in [1, {T}] (the input has {T} steps), got min {low} and max {T_run}")
        lengths = lengths.to(device)
        mask = (torch.arange(T_run, device=device).unsqueeze(1) < lengths).unsqueeze(2)
        batch_index = torch.arange(lengths.numel(), device=device)
        return cls(T_run, mask, lengths - 1, batch_index, cpu_lengths)

    @property
    def varlen(self) -> bool:
        return self.mask is not None

    @property
    def kernel_lengths(self) -> Tensor:
        """The CPU lengths for the compiled kernels; an empty tensor means "all full"."""
        return self.lengths if self.lengths is not None else _NO_LENGTHS

    def gather_last(self, seq: Tensor) -> Tensor:
        """(T_run, B, K) -> (B, K): each sequence's value at its last valid step."""
        if self.last is None:
            return seq[self.T_run - 1].clone()
        return seq[self.last, self.batch_index]

    def output_grad(self, d_out: Tensor, d_hn: Optional[Tensor]) -> Tensor:
        """The gradient reaching each step's hidden state from outside the recurrence:
        dL/dy_t on valid steps (zero past the end, where the output is a constant zero), plus
        dL/dh_n at each sequence's last valid step when ``d_hn`` is given."""
        d = d_out[: self.T_run].clone(memory_format=torch.contiguous_format)
        if self.mask is not None:
            d.masked_fill_(~self.mask, 0)
        if d_hn is not None:
            if self.last is None:
                d[self.T_run - 1] += d_hn
            else:
                d.index_put_((self.last, self.batch_index), d_hn, accumulate=True)
        return d

    def zero_past_end(self, seq: Tensor, fill: float = 0.0) -> Tensor:
        """In place: set ``seq`` (T_run, B, K) to ``fill`` at steps past each sequence's end."""
        if self.mask is not None:
            seq.masked_fill_(~self.mask, fill)
        return seq


def state_buffer(h0: Tensor, T: int) -> tuple[Tensor, Tensor]:
    """A (T+1, B, P) buffer holding h_0 in slot 0, and its view ``hs`` = slots 1..T.

    The loop writes h_1..h_T into ``hs`` (which becomes the output), so afterwards
    ``buffer[:-1]`` is h_0..h_{T-1} contiguous, ready for the weight-gradient GEMM.
    """
    buffer = h0.new_empty(T + 1, *h0.shape)
    buffer[0].copy_(h0)
    return buffer, buffer[1:]


def layer_output(steps: Steps, hs: Tensor, T: int) -> tuple[Tensor, Tensor]:
    """The layer's ``(output (T, B, P), h_n (B, P))`` from the states ``hs`` (T_run, B, P)
    that the time loop wrote.

    h_n is each sequence's state at its last valid step.  ``hs`` is then zeroed past each end
    in place (it is also what backward reads as h_1..h_T; backward masks those steps anyway),
    and the steps past the longest sequence, which the loop skipped, are padded with zeros.
    """
    h_n = steps.gather_last(hs)
    steps.zero_past_end(hs)
    if steps.T_run == T:
        return hs, h_n
    return torch.cat([hs, hs.new_zeros(T - steps.T_run, *hs.shape[1:])]), h_n


_NO_LENGTHS = torch.empty(0, dtype=torch.int64)


# ------------------------------------------------------------------ forward without gradient

INFERENCE_ROWS = 4096
"""Rows (steps x batch) of each input-projection GEMM of a forward without gradient."""
INFERENCE_MIN_STEPS = 16


def inference_chunks(T_run: int, B: int) -> tuple[int, list[tuple[int, int]]]:
    """How a forward without gradient walks the time axis: ``(C, [(start, skip), ...])``.

    When no gradient is needed (``*_inference`` of each cell kind), nothing has to be kept
    for a backward, so the input projection and the per-step gate buffers cover only a chunk
    of C steps at a time, reused from chunk to chunk: memory is the output (T, B, P) plus
    O(C * B * G), whatever T is.  Chunk k covers steps ``[start, start + C)``, of which the
    first ``skip`` were already run by the previous chunk.

    Every chunk's projection is one GEMM of the same C * B rows (the last chunk overlaps the
    one before it rather than being shorter), with C * B >= ``INFERENCE_ROWS``: BLAS
    libraries switch algorithms (and summation order) for small or odd row counts, and
    above that size each row of the product comes out bitwise equal to the same row of the
    all-steps GEMM of the gradient path.  Sequences of at most C steps run as one chunk: the
    very operations of the gradient path.
    """
    C = max(INFERENCE_MIN_STEPS, -(-INFERENCE_ROWS // B))
    if T_run <= C:
        return T_run, [(0, 0)]
    chunks = [(start, 0) for start in range(0, T_run - C + 1, C)]
    done = chunks[-1][0] + C
    if done < T_run:
        chunks.append((T_run - C, done - (T_run - C)))
    return C, chunks


def inference_output(h0: Tensor, T: int, T_run: int) -> Tensor:
    """The (T, B, P) output a forward without gradient writes its states into, step by step;
    the steps past the longest sequence (never run) are zero."""
    out = h0.new_empty(T, *h0.shape)
    out[T_run:].zero_()
    return out


def inference_finish(steps: Steps, out: Tensor) -> Tensor:
    """h_n (B, P) from the output (T, B, P) a forward without gradient wrote; then the output
    is zeroed past each sequence's end in place (as :func:`layer_output` does)."""
    h_n = steps.gather_last(out)
    steps.zero_past_end(out[: steps.T_run])
    return h_n


def keep_last(steps: Steps, seq: Tensor, start: int, stop: int, into: Tensor) -> None:
    """Copy into ``into`` (B, K), for each sequence whose last valid step lies in
    ``[start, stop)``, its value there, read from ``seq`` (stop - start, B, K) holding those
    steps (the cell state of a chunk: :func:`inference_chunks`)."""
    if steps.last is None:
        if stop == steps.T_run:
            into.copy_(seq[-1])
        return
    rows = ((steps.last >= start) & (steps.last < stop)).nonzero().squeeze(1)
    if rows.numel():
        into[rows] = seq[steps.last[rows] - start, rows]


def hidden_weight_grad(d_pre: Tensor, states: Tensor) -> Tensor:
    """``dW_hh = sum_t dpre_t^T h_{t-1}`` as one GEMM over all steps.

    Args: d_pre (T, B, G); states (T+1, B, P) from :func:`state_buffer`.  Returns (G, P).
    """
    T, B, G = d_pre.shape
    return d_pre.reshape(T * B, G).t() @ states[:T].reshape(T * B, -1)


def input_grads(
    d_pre: Tensor, x: Tensor, w_ih: Tensor, needs_x: bool, needs_w: bool, needs_b: bool, T_full: int
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Gradients of ``pre_t = W_ih x_t + b`` over all steps as single products.

    Args: d_pre (T_run, B, G), x (T_run, B, D).  ``dx`` is zero-padded back to T_full steps.
    Returns ``(dx (T_full, B, D), dW_ih (G, D), db (G,))``, each None when not needed.
    """
    T, B, G = d_pre.shape
    D = x.shape[2]
    d2 = d_pre.reshape(T * B, G)
    dx = dw = db = None
    if needs_x:
        dx = (d2 @ w_ih).view(T, B, D)
        if T_full > T:
            dx = torch.cat([dx, dx.new_zeros(T_full - T, B, D)])
    if needs_w:
        dw = d2.t() @ x.reshape(T * B, D)  # (G, D)
    if needs_b:
        db = d2.sum(0)
    return dx, dw, db
