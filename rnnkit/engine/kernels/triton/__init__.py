r"""Triton kernels for rnnkit's recurrent layers (backend "triton"): one layer, one direction,
time-first, as autograd Functions with a hand-derived BPTT backward.

Importing this package loads no kernel and does not import Triton: that waits for a layer to
run or :func:`available` to be asked about a CPU or CUDA device.  (PyTorch's torch._dynamo
imports Triton by itself wherever it is installed.)  The layers are autograd Functions, not
custom operators: torch.compile and torch.export see their Python time loops.

Interface (what the engine calls; x (T, B, D), states (B, H), weights in torch.nn's layout and
gate packing, ``lengths`` None or (B,) int64 on the CPU with 1 <= length <= T; outputs past a
sequence's end are zero and the final states are those of its last valid step)::

    lstm(x, h0, c0, w_ih, w_hh, b, lengths) -> (out, h_n, c_n)     # b = b_ih + b_hh, or None
    gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths) -> (out, h_n)
    rnn(x, h0, w_ih, w_hh, b, lengths, nonlinearity) -> (out, h_n)   # "tanh" or "relu"

Each also takes a keyword ``persistent``: None (the default) picks the persistent kernel when
it fits (below), True asks for it, False for the per-step kernels.  A reverse direction is the
caller's flip of the input (``rnnkit.engine.layer.reverse_time``), as for the other backends.

How a layer runs:

- the input projection ``x_t W_ih^T + b`` of all steps: one matrix product (PyTorch), float32;
- forward, per step: ONE kernel launch that computes ``h_{t-1} W_hh^T`` (``tl.dot`` on
  tiles) for its tile of sequences x hidden units of every gate, the gate nonlinearities and
  the cell update, and writes the output, the new state and (for backward) the activated
  gates;
- backward, per step: ONE launch for ``delta h_t = ybar_t + W_hh^T delta a_{t+1}``, every
  gate's gradient and the cell-state (LSTM) or hidden-state (GRU) carry; then the weight,
  bias and input gradients as single matrix products over all steps (PyTorch);
- without gradient (``torch.no_grad()``, or nothing requires grad) nothing is saved.

The recurrences are in the docstrings of :mod:`.lstm_kernels`, :mod:`.gru_kernels` and
:mod:`.rnn_kernels`, e.g. ``dc_t = dh_t * o_t * (1 - tanh^2 c_t) + dc_{t+1} * f_{t+1}``.

Dtypes.  float32, or bfloat16 inputs and weights: every kernel computes in float32 (state
c and the carried h in float32, float32 accumulation of every product); only the operands of
the recurrent products are bfloat16 (the tensor cores' input), as are the output and the
saved gradients of the pre-activations that feed the weight-gradient products.  Outputs come
in the input's dtype, h_n and c_n in the dtype of h0 and c0 (a float32 initial state keeps a
float32 final state, for carrying across truncated-BPTT chunks).  float32 products use
``input_precision="ieee"`` (no TF32).  Other dtypes raise TypeError.

The persistent variant: one launch runs the whole time loop; each program holds the
recurrent weight and the state on chip for all steps, so there is no per-step launch and no
re-reading of W_hh.  It is chosen when B <= 16 (one ``tl.dot`` tile: M >= 16 is the smallest
Triton multiplies, so B <= 8 costs the same as B = 16) and the weight fits one program:

- budget: a Hopper SM (H100/H200) has 256 KB of registers (64K x 32 bit, at most 255 per
  thread) and 228 KB of shared memory.  The loop-invariant weight tiles stay in registers,
  or in shared memory where the matrix instruction reads its B operand from there (Hopper's
  wgmma); the step also needs the accumulators (4 x 16 x H float32 for the LSTM), the state
  and the gates.  So one program gets 128 KB of weights: half the register file (64
  registers per thread at 16 warps; fewer warps for smaller tiles), or well within the
  shared memory;
- the tiles are padded to a power of two H_pad >= 16, so the LSTM holds 4 H_pad^2 weights:
  bfloat16 H <= 128 (128 KB), float32 H <= 64 (64 KB; H_pad = 128 would be 256 KB); the
  GRU 3 H_pad^2: the same limits; the RNN H_pad^2: bfloat16 H <= 256, float32 H <= 128;
- an LSTM of H = 256 in bfloat16 is 4 x 256 x 256 x 2 B = 512 KB: more than an SM's
  registers and shared memory together, so one program cannot hold it.  Splitting H across
  P programs (each holding 4 (H/P) x H, 128 KB at P = 4) would make every step need the
  other programs' slices of h_{t-1}: a grid-wide barrier per step (a global arrival counter
  with ``tl.atomic_add`` and a spin on it, correct only if all P programs are resident at
  once, which Triton cannot request as CUDA's cooperative launch does).  That is not done:
  Triton's interpreter runs programs one after the other, so such a barrier would deadlock
  there and could not be tested without a GPU.  Those sizes run the per-step kernels;
- with B > 16, ``persistent=True`` still works (one program per 16 sequences, each holding
  its own copy of the weight), but "auto" prefers the per-step kernels, which split H over
  programs as well.

Devices.  CUDA tensors run compiled kernels.  CPU tensors run in Triton's interpreter, for
testing without a GPU: it needs ``TRITON_INTERPRET=1`` in the environment before Triton is
first imported (PyTorch's torch._dynamo imports it wherever it is installed, as soon as
anything in the process compiles), and that choice holds for the process.  The interpreter keeps bfloat16 as
raw 16-bit patterns and cannot compute on them (triton-lang/triton#11584), so interpreted
kernels emulate the bfloat16 products in float32 with the GPU's rounding (:mod:`.primitives`).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import torch
from torch import Tensor

_KERNEL_MODULE = __name__ + ".primitives"


def _loaded_interpreted() -> Optional[bool]:
    """Whether the loaded kernels run in the interpreter; None if none are loaded yet."""
    if _KERNEL_MODULE not in sys.modules:
        return None
    from rnnkit.engine.kernels.triton import common

    return common.interpreted()


def _import_triton() -> str:
    """Import Triton; "" or why it cannot be."""
    try:
        import triton  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "triton":
            return f"Triton is installed but cannot be imported: {exc}"
        return "Triton is not installed (pip install 'rnnkit[gpu]', or pip install triton)"
    except Exception as exc:  # a broken install: say what it raised
        return f"Triton is installed but cannot be imported: {type(exc).__name__}: {exc}"
    return ""


def _triton_interpreted() -> bool:
    """Whether Triton itself was imported for the interpreter: its own library functions
    (``tl.zeros`` ...) are interpreted or compiled according to TRITON_INTERPRET at that
    moment, and interpreted kernels can only call interpreted ones."""
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.zeros, InterpretedFunction)


def unavailable_reason(device) -> str:
    """Why the Triton kernels cannot run on ``device`` here; "" when they can.

    They can on a CUDA device with Triton installed, and on the CPU in Triton's interpreter,
    for which ``TRITON_INTERPRET=1`` must be set before Triton is first imported (PyTorch's
    torch._dynamo imports it where it is installed, once anything compiles: set it in the
    environment)."""
    device = torch.device(device)
    if device.type not in ("cuda", "cpu"):
        return f"Triton kernels run on CUDA devices (or on the CPU in Triton's interpreter); got {device}"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available to PyTorch here"
        return _import_triton()
    loaded = _loaded_interpreted()
    if loaded is False:
        return ("the Triton kernels were loaded compiled for the GPU (TRITON_INTERPRET was not 1 when they were "
                "first used in this process), so they cannot run on CPU tensors")
    if loaded is None:
        if os.environ.get("TRITON_INTERPRET") != "1":
            return ("on the CPU the Triton kernels run only in Triton's interpreter: set TRITON_INTERPRET=1 before "
                    "Triton is first imported (it is for testing; use backend 'fused' or 'bptt' for speed)")
        reason = _import_triton()
        if reason:
            return reason
        if not _triton_interpreted():
            return ("Triton was imported before TRITON_INTERPRET=1 was set (torch._dynamo imports it, once "
                    "anything compiles), so its interpreter cannot run the kernels: set TRITON_INTERPRET=1 "
                    "in the environment of the process")
    return ""


def available(device) -> bool:
    """Whether the Triton kernels can run on ``device`` here (see :func:`unavailable_reason`)."""
    return unavailable_reason(device) == ""


def _require(x: Tensor) -> None:
    reason = unavailable_reason(x.device)
    if reason:
        from rnnkit.engine.kernels import KernelUnavailable

        raise KernelUnavailable(f"backend 'triton' cannot run here: {reason}", reason)


def lstm(
    x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None, *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer in one direction (gates i, f, g, o), differentiable.

    Args:
        x: (T, B, D) float32 or bfloat16.
        h0, c0: (B, H) float32 or bfloat16.
        w_ih: (4H, D), w_hh: (4H, H) packed ``(W_i|W_f|W_g|W_o)``, in x's dtype.
        b: (4H,) the summed bias ``b_ih + b_hh``, or None.
        lengths: None, or (B,) int64 on the CPU with 1 <= length <= T.
        persistent: None (auto), True or False (see the module docstring).
    Returns:
        ``(out (T, B, H) in x's dtype, zero past each end; h_n (B, H) in h0's dtype;
        c_n (B, H) in c0's dtype)``.
    """
    _require(x)
    from rnnkit.engine.kernels.triton.lstm_layer import lstm as run

    return run(x, h0, c0, w_ih, w_hh, b, lengths, persistent=persistent)


def gru(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None, lengths: Optional[Tensor] = None, *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """One GRU layer in one direction (gates r, z, n as torch.nn), differentiable.

    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h = (1 - z) * n + z * h_prev``.

    Args:
        x: (T, B, D); h0: (B, H); w_ih: (3H, D), w_hh: (3H, H) packed ``(W_r|W_z|W_n)``;
        b_ih, b_hh: (3H,) or None (kept apart: b_hn sits inside r's product);
        lengths, persistent: as for :func:`lstm`.
    Returns:
        ``(out (T, B, H) in x's dtype, h_n (B, H) in h0's dtype)``.
    """
    _require(x)
    from rnnkit.engine.kernels.triton.gru_layer import gru as run

    return run(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, persistent=persistent)


def rnn(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None, nonlinearity: str = "tanh", *, persistent: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer in one direction, ``h_t = phi(W_ih x_t + W_hh h_{t-1} + b)``,
    differentiable.

    Args:
        x: (T, B, D); h0: (B, H); w_ih: (H, D); w_hh: (H, H); b: (H,) summed bias or None;
        nonlinearity: "tanh" or "relu"; lengths, persistent: as for :func:`lstm`.
    Returns:
        ``(out (T, B, H) in x's dtype, h_n (B, H) in h0's dtype)``.
    """
    _require(x)
    from rnnkit.engine.kernels.triton.rnn_layer import rnn as run

    return run(x, h0, w_ih, w_hh, b, lengths, nonlinearity, persistent=persistent)


__all__ = ["available", "unavailable_reason", "lstm", "gru", "rnn"]
