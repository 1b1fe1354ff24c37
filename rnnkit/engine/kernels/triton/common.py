"""Host-side pieces shared by the Triton layers: argument checks, block sizes, the input
projection of all steps, and the per-step tensors the kernels read."""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Optional

import torch
from torch import Tensor

from rnnkit.engine.bptt.common import Steps

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)

MIN_BLOCK = 16
"""``tl.dot`` needs every tile dimension to be at least 16; smaller batches and hidden sizes
are padded (masked) up to it."""

PERSISTENT_MAX_B = 16
"""Batch rows one persistent program runs: one ``tl.dot`` tile of M = 16 rows, the smallest
there is, so any batch up to 16 costs the same as a batch of 8."""

PERSISTENT_WEIGHT_BYTES = 128 * 1024
"""Weight bytes one persistent program holds for the whole time loop (4 tiles H x H for the
LSTM): half the 256 KB register file of an SM on Hopper (H100/H200: 64K 32-bit registers),
i.e. 64 registers per thread at 16 warps, leaving as many again for the accumulators, the
state and the gate values.  See the package docstring for what this admits and why larger
sizes are not split across programs."""


def check_dtypes(x: Tensor, weights: tuple, states: tuple) -> None:
    """Raise TypeError unless ``x`` is float32 or bfloat16, every weight has x's dtype and
    every state is float32 or bfloat16; ValueError for tensors on another device."""
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"the triton backend supports float32 and bfloat16 inputs; got {x.dtype}. "
            "Use backend 'bptt' for other dtypes"
        )
    for name, t in weights:
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name} must have the input's dtype {x.dtype}; got {t.dtype}")
    for name, t in states:
        if t.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{name} must be float32 or bfloat16; got {t.dtype}")
    for name, t in (*weights, *states):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but the input is on {x.device}")


def check_shapes(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, gates: int) -> int:
    """Check the shapes of one layer's input, state and weights; return the hidden size H."""
    if x.dim() != 3:
        raise ValueError(f"x must be (T, B, D); got shape {tuple(x.shape)}")
    T, B, D = x.shape
    G = w_hh.shape[0]
    H = G // gates
    if G != gates * H or w_hh.shape != (G, H):
        rows = f"{gates}H" if gates > 1 else "H"
        raise ValueError(f"w_hh must be ({rows}, H) for hidden size H; got shape {tuple(w_hh.shape)}")
    if w_ih.shape != (G, D):
        raise ValueError(f"w_ih must be ({G}, {D}) for input size {D}; got shape {tuple(w_ih.shape)}")
    if h0.shape != (B, H):
        raise ValueError(f"h0 must be ({B}, {H}); got shape {tuple(h0.shape)}")
    if T == 0 or B == 0:
        raise ValueError(f"x must have at least one step and one sequence; got shape {tuple(x.shape)}")
    return H


@functools.lru_cache(maxsize=None)
def interpreted() -> bool:
    """Whether the kernels of this package run in Triton's interpreter (decided when they
    were defined, by ``TRITON_INTERPRET`` at that moment; the same for the whole process)."""
    from triton.runtime.interpreter import InterpretedFunction

    from rnnkit.engine.kernels.triton import primitives

    return isinstance(primitives.sigmoid, InterpretedFunction)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def step_blocks(B: int, H: int) -> tuple[int, int, int]:
    """Tile sizes ``(BLOCK_B, BLOCK_H, BLOCK_K)`` of the one-launch-per-step kernels: each
    program computes BLOCK_B sequences x BLOCK_H hidden units (of every gate), summing the
    recurrent product over BLOCK_K inputs at a time.  Small hidden tiles give many programs
    (the step's only parallelism besides the batch)."""
    block_b = min(64, max(MIN_BLOCK, _pow2(B)))
    block_h = 32 if H > 16 else MIN_BLOCK
    return block_b, block_h, 32


def persistent_block(H: int) -> int:
    """The padded hidden size of a persistent program: its tiles are H_pad x H_pad."""
    return max(MIN_BLOCK, _pow2(H))


def persistent_fits(H: int, gates: int, dtype: torch.dtype) -> bool:
    """Whether one program can hold the recurrent weight (``gates`` tiles H_pad x H_pad)
    for the whole loop, within PERSISTENT_WEIGHT_BYTES: bfloat16 H <= 128 for the LSTM and
    the GRU, H <= 256 for the RNN; float32 H <= 64, and H <= 128 for the RNN."""
    hp = persistent_block(H)
    return gates * hp * hp * (torch.finfo(dtype).bits // 8) <= PERSISTENT_WEIGHT_BYTES


def persistent_warps(gates: int, hp: int, dtype: torch.dtype) -> int:
    """Warps of a persistent program: enough threads that its weight tiles take at most 64
    registers per thread (4 warps up to 32 KB, 8 up to 64 KB, 16 up to 128 KB)."""
    weight_bytes = gates * hp * hp * (torch.finfo(dtype).bits // 8)
    return 4 if weight_bytes <= 32 * 1024 else 8 if weight_bytes <= 64 * 1024 else 16


def _cdiv(n: int, d: int) -> int:
    return (n + d - 1) // d


def step_launch(B: int, H: int) -> tuple[tuple[int, int], dict]:
    """``(grid, meta)`` of a per-step kernel: programs over sequences x hidden units, and its
    constexprs EMULATE (:func:`interpreted`) and the blocks of :func:`step_blocks`."""
    block_b, block_h, block_k = step_blocks(B, H)
    meta = dict(EMULATE=interpreted(), BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=block_k)
    return (_cdiv(B, block_b), _cdiv(H, block_h)), meta


def persistent_launch(B: int, H: int, gates: int, dtype: torch.dtype) -> tuple[tuple[int], dict]:
    """``(grid, meta)`` of a persistent kernel: one program per PERSISTENT_MAX_B sequences,
    its constexprs EMULATE, BLOCK_B and HP (:func:`persistent_block`) and its warps."""
    hp = persistent_block(H)
    meta = dict(EMULATE=interpreted(), BLOCK_B=PERSISTENT_MAX_B, HP=hp, num_warps=persistent_warps(gates, hp, dtype))
    return (_cdiv(B, PERSISTENT_MAX_B),), meta


def use_persistent(persistent: Optional[bool], B: int, H: int, gates: int, dtype: torch.dtype) -> bool:
    """Resolve the ``persistent`` argument.  None: the persistent kernel when the weight fits
    and B <= PERSISTENT_MAX_B (one program; larger batches get more parallelism from the
    per-step kernels, whose programs also split H).  True: the persistent kernel, one
    program per PERSISTENT_MAX_B sequences (ValueError if the weight does not fit).
    False: the per-step kernels."""
    fits = persistent_fits(H, gates, dtype)
    if persistent and not fits:
        raise ValueError(
            f"the persistent kernel holds {gates} weight tiles of H x H (H padded to a power of 2) in one "
            f"program, at most {PERSISTENT_WEIGHT_BYTES // 1024} KB; got H={H} in {dtype}. Use persistent=False"
        )
    if persistent is None:
        return fits and B <= PERSISTENT_MAX_B
    return bool(persistent)


@functools.lru_cache(maxsize=None)
def _cuda_mm_out_dtype() -> bool:
    """Whether PyTorch has ``mm(a, b, out_dtype=...)`` on CUDA: the ``aten::mm.dtype``
    overload (PyTorch 2.8 and later) with a CUDA kernel registered.  Read from the
    dispatcher rather than probed with a call: a failed probe cannot tell a missing overload
    from a real CUDA error, which must not be swallowed; and the overload may exist without a
    kernel for a device (PyTorch 2.13 has none for the CPU)."""
    return hasattr(torch.ops.aten.mm, "dtype") and torch._C._dispatch_has_kernel_for_dispatch_key(
        "aten::mm.dtype", "CUDA"
    )


def _mm_float32(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of bfloat16 matrices with a float32 result.  On CUDA, PyTorch's
    ``mm(..., out_dtype=float32)`` keeps the product's float32 accumulator unrounded; where
    that is missing (:func:`_cuda_mm_out_dtype`) and on other devices the operands are
    converted to float32, which gives the same numbers more slowly."""
    if a.is_cuda and _cuda_mm_out_dtype():
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()


def input_projection(x: Tensor, w_ih: Tensor, b: Optional[Tensor]) -> Tensor:
    """``x_t W_ih^T + b`` for every step as one matrix product, in float32.

    Args: x (T, B, D), w_ih (G, D), b (G,) or None.  Returns a contiguous (T, B, G) float32.
    """
    T, B, D = x.shape
    x2 = x.reshape(T * B, D)
    if x.dtype == torch.float32:
        y = x2 @ w_ih.t() if b is None else torch.addmm(b.float(), x2, w_ih.t())  # (T*B, G)
    else:
        y = _mm_float32(x2, w_ih.t())  # (T*B, G)
        if b is not None:
            y += b.float()
    return y.view(T, B, -1)


def kernel_lengths(steps: Steps, B: int, device: torch.device) -> Tensor:
    """(B,) int32 on the device: each sequence's length (T_run for all when none given)."""
    if steps.lengths is None:
        return torch.full((B,), steps.T_run, dtype=torch.int32, device=device)
    return steps.lengths.to(device=device, dtype=torch.int32)


def layer_steps(x: Tensor, lengths: Optional[Tensor]) -> tuple[Steps, Tensor]:
    """The steps a layer runs on ``x`` (T, B, D) and their :func:`kernel_lengths`."""
    steps = Steps.build(x.shape[0], lengths, x.device)
    return steps, kernel_lengths(steps, x.shape[1], x.device)


def step_output_grad(steps: Steps, d_out: Optional[Tensor], d_hn: Optional[Tensor], like: Tensor) -> Tensor:
    """dL/dh_t from outside the recurrence (T_run, B, H) in float32: the output's gradient
    on valid steps plus dL/dh_n at each sequence's last valid step."""
    if d_out is None:
        d_out = like.new_zeros(steps.T_run, *like.shape[1:], dtype=torch.float32)
    return steps.output_grad(d_out.float(), None if d_hn is None else d_hn.float())


def shifted_states(h0: Tensor, out: Tensor, T_run: int) -> Tensor:
    """h_0..h_{T_run-1} (T_run, B, H) in the output's dtype: the left operand of every
    step's recurrent product (the kernels round the float32 state to the weight dtype for it),
    for the weight gradient and the GRU's backward.  Zero past a sequence's end, where the
    gradient of the pre-activations is zero."""
    return torch.cat([h0.to(out.dtype).unsqueeze(0), out[: T_run - 1]])


def grad_as(g: Optional[Tensor], t: Optional[Tensor]) -> Optional[Tensor]:
    """A gradient in its input's dtype (None stays None)."""
    if g is None or t is None:
        return g
    return g.to(t.dtype)


def needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd will record a call on these tensors (else nothing is saved)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def on_device(device: torch.device):
    """Make ``device`` current while a layer runs: Triton launches on the current CUDA device,
    whatever device the tensors are on.  (Backward runs on autograd's thread for the
    device, which sets it.)"""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def dispatch(function: type[torch.autograd.Function], inference: Callable, tensors: tuple, *options):
    """Run a layer on ``tensors`` (the input, states and weights, None for an absent bias)
    and ``options``: ``function.apply`` when autograd will record the call
    (:func:`needs_grad`), else ``inference``, which saves nothing for a backward; either with
    the input's device current (:func:`on_device`)."""
    with on_device(tensors[0].device):
        if needs_grad(*tensors):
            return function.apply(*tensors, *options)
        return inference(*tensors, *options)
