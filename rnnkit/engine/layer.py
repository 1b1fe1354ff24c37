"""Run one recurrent layer in one direction on the chosen backend.

This is the seam between the modules (``rnnkit.models``) and the engine: the modules hand
over a time-first padded batch, the initial state, the weights and the lengths; the backend
does the time loop.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import torch
from torch import Tensor

from rnnkit.engine import kernels as _kernels
from rnnkit.engine import native as _native
from rnnkit.engine import ops as _ops
from rnnkit.engine.bptt.common import autocast_enabled
from rnnkit.engine.reference import reference_layer

BACKENDS = ("auto", "reference", "bptt", "fused", "native", "triton")
"""
- ``reference``: the per-step loop of the cell math under autograd (the oracle);
- ``bptt``: explicit BPTT Functions, each step in PyTorch operations (any device and dtype);
- ``fused``: the same Functions with each step's pointwise work in one compiled CPU kernel
  (LSTM and GRU, float32/float64 on the CPU; the RNN step is already one operation);
- ``native``: PyTorch's own fused operator for the whole stack, the one torch.nn calls (cuDNN
  on CUDA, oneDNN or PyTorch's kernels on the CPU; :mod:`rnnkit.engine.native`);
- ``triton``: rnnkit's engine as Triton kernels on CUDA (:mod:`rnnkit.engine.kernels.triton`;
  float32 and bfloat16, no ``proj_size``); asked for explicitly only (not yet measured on a
  GPU, so "auto" does not choose it);
- ``auto``: per call, the rule of :func:`choose_stack` (measured in docs/benchmarks.md):
  ``native`` or rnnkit's own engine, which is ``fused`` where it applies and builds, else
  ``bptt``.  Set ``RNNKIT_FUSED=0`` to keep "auto" from compiling the CPU kernels, and
  ``RNNKIT_NATIVE=0`` (at start-up) to keep it on rnnkit's own engine.
"""
MODES = ("RNN", "LSTM", "GRU")
_FUSED_DTYPES = (torch.float32, torch.float64)


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is known, else raise ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}. Expected one of {list(BACKENDS)}")
    return backend


def resolve_backend(backend: str, mode: str, x: Tensor) -> tuple[str, object]:
    """The backend of rnnkit's engine that runs one step at a time (a Stream) and, for
    "fused", the kernel module: "native" and "triton", which run whole sequences, step as
    "auto" would."""
    backend = _resolve("auto" if backend in ("native", "triton") else backend, mode, x)
    return backend, (_kernels.fused_cpu() if backend == "fused" else None)


def _resolve(backend: str, mode: str, x: Tensor, fused: Optional[bool] = None) -> str:
    """The backend that will run: "reference", "bptt", "fused" or "triton" (raises for a
    "fused" or "triton" that cannot run here).  ``fused``: whether the fused CPU kernels can
    run, if known (else "auto" asks, and builds them on first use)."""
    check_backend(backend)
    if backend == "reference" and torch.jit.is_tracing():
        # The reference loop would be unrolled for the example's length, and the traced graph
        # (or the ONNX model made from it) silently wrong for any other: trace the operator
        # of the same math instead.
        return "bptt"
    if backend in ("reference", "bptt"):
        return backend
    if backend == "triton":
        reason = _triton().unavailable_reason(x.device)
        if reason:
            raise _kernels.KernelUnavailable(
                f"backend='triton' cannot run here: {reason}. Use 'auto' (cuDNN on CUDA) or 'bptt'", reason)
        return backend
    if backend == "native":
        # The whole stack runs on PyTorch's operator (choose_stack); a layer that still comes
        # here (a Stream stepping the layer) runs on rnnkit's own engine as "auto" would.
        backend = "auto"
    fits = x.device.type == "cpu" and x.dtype in _FUSED_DTYPES
    if backend == "fused":
        if x.device.type != "cpu":
            raise ValueError(f"backend='fused' runs on the CPU; got input on {x.device}. Use 'auto' or 'bptt'")
        if x.dtype not in _FUSED_DTYPES:
            raise TypeError(f"backend='fused' supports float32 and float64; got {x.dtype}. Use 'auto' or 'bptt'")
        return "bptt" if mode == "RNN" else ("fused" if _fused_ready(True) else "bptt")
    # auto
    return "fused" if mode != "RNN" and fits and (_fused_ready(False) if fused is None else fused) else "bptt"


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result(fn)`` without importing torch._dynamo when it
    is not loaded yet (that import takes about 1.5 s, as long as PyTorch's own, and imports
    Triton where installed): the same mark, the attribute PyTorch's decorator sets, which
    TorchDynamo reads when it traces a call of ``fn`` (tests/engine/test_layer_import.py
    checks that the two agree)."""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result
def _fused_ready(explicit: bool) -> bool:
    """Whether the fused CPU kernels are built and loadable (building them on first call);
    for an explicit ``backend='fused'`` their absence raises KernelUnavailable.  A constant
    to torch.compile, which then traces the operators without entering the build code."""
    if explicit:
        _kernels.fused_cpu()
        return True
    if os.environ.get("RNNKIT_FUSED", "1") == "0":
        return False
    return _kernels.fused_cpu_loaded() or _kernels.fused_cpu_available()


def traced() -> bool:
    """Whether a compiler, tracer or exporter is recording this call: torch.compile and
    torch.export (and so the dynamo ONNX exporter) or torch.jit.trace (and so the TorchScript
    ONNX exporter)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def choose_stack(backend: str, mode: str, nonlinearity: str, x: Tensor, batch: int, hidden: int,
                 grad: bool, fused: Optional[bool] = None, varlen: bool = False) -> bool:
    """Whether a whole layer stack runs on PyTorch's operator (backend "native") rather than
    layer by layer on rnnkit's engine.

    "native" asked for: True, or ValueError for what the operator lacks (the RNN's sigmoid and
    identity).  "auto", by the rule measured in docs/benchmarks.md ("Backend 'auto'"):

    - never while a compiler, tracer or exporter records the call (:func:`traced`): rnnkit's
      custom operators are one node per layer whose shapes follow the input's, where PyTorch's
      operator is decomposed into one node per time step (a new graph per sequence length);
    - never for what the operator lacks (sigmoid and identity RNNs; float16 autocast on the
      CPU, where PyTorch's LSTM has no kernel), nor with
      ``RNNKIT_NATIVE=0`` (read at import; :data:`NATIVE` at run time);
    - off the CPU (CUDA: cuDNN) and for other dtypes than float32/float64: always; for the
      LSTM and GRU also wherever the fused CPU kernels are not built;
    - on the CPU in float32/float64, rnnkit's engine where it was measured faster than
      PyTorch's operator: the GRU always (the fused kernels take 0.24-0.90 of torch.nn's time);
      the RNN (one PyTorch operation per step either way) always in training, and forward
      only except at ``batch == 1`` with ``hidden >= 512``; the LSTM in training at
      ``hidden >= 256``, forward only at ``hidden >= 1024`` or at ``hidden >= 512`` with
      ``batch <= 8``; and the LSTM for a batch of several lengths (``varlen``: ``lengths=`` or
      a PackedSequence, ``batch > 1``) in training and forward only up to ``batch <= 32``:
      PyTorch's CPU operator runs a packed batch without oneDNN (1.5-2.7 times the fused
      kernels' time in training).  PyTorch's operator elsewhere.

    ``fused``: whether the fused CPU kernels can run, if known (else they are asked, and
    built on first use).
    """
    if backend != "auto":
        if backend != "native":
            return False
        _native.require(mode, nonlinearity)
        return True
    # (ordered so that the common cases ask little: this runs on every call)
    if not NATIVE["enabled"] or traced() or (mode == "RNN" and _native.unsupported(mode, nonlinearity)):
        return False
    if x.is_cpu and autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") != torch.bfloat16:
        return False  # PyTorch's CPU LSTM has no float16 kernel; rnnkit's engine has
    if not x.is_cpu or x.dtype not in _FUSED_DTYPES:
        return True
    if mode == "RNN":
        return not grad and batch == 1 and hidden >= 512
    if mode == "GRU" or (varlen and batch > 1 and (grad or batch <= 32)):
        engine = True
    elif grad:
        engine = hidden >= 256
    else:
        engine = hidden >= 1024 or (hidden >= 512 and batch <= 8)
    return not (engine and (_fused_ready(False) if fused is None else fused))


NATIVE = {"enabled": os.environ.get("RNNKIT_NATIVE", "1") != "0"}
"""Whether "auto" may choose PyTorch's operator: RNNKIT_NATIVE=0 at start-up, or
``rnnkit.engine.layer.NATIVE["enabled"] = False``, keeps it on rnnkit's engine."""


def auto_table(fused: bool, dtype: torch.dtype = torch.float32, sizes: tuple = (128, 256, 512, 1024),
               batches: tuple = (1, 64)) -> list[str]:
    """What "auto" runs on the CPU here, by :func:`choose_stack`, given whether the fused CPU
    kernels can run (``fused``; nothing is built): one line per layer kind and phase (training,
    forward only), the backend at each hidden size for a small and a large batch (``rnnkit
    info`` prints it)."""
    x = torch.empty(0, dtype=dtype)
    lines = [f"backend 'auto' on the CPU here ({str(dtype).replace('torch.', '')}; "
             f"per batch size B, at hidden size H = {' / '.join(map(str, sizes))}):"]
    for mode in MODES:
        engine = _resolve("auto", mode, x, fused)
        for grad, phase in ((True, "training"), (False, "forward ")):
            cells = []
            for B in batches:
                picks = ["native" if choose_stack("auto", mode, "tanh", x, B, H, grad, fused) else engine
                         for H in sizes]
                cells.append(f"B={B}: {' '.join(f'{p:<6}' for p in picks)}")
            lines.append(f"  {mode:<4} {phase}  " + "   ".join(cells).rstrip())
    lines.append("  (batches of one length; with several lengths, lengths= or a PackedSequence, the LSTM runs "
                 "rnnkit's engine in training and forward up to B = 32)")
    return lines


def reverse_index(lengths: Optional[Tensor], T: int, device: torch.device) -> Optional[Tensor]:
    """Index (T, B) that reverses each sequence within its own length and leaves padding in
    place; None when all sequences have length T (then a plain flip does)."""
    if lengths is None:
        return None
    lengths = lengths.to(device)
    t = torch.arange(T, device=device).unsqueeze(1)  # (T, 1)
    return torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)


def reverse_time(x: Tensor, index: Optional[Tensor]) -> Tensor:
    """Reverse (T, B, K) along time, per sequence when ``index`` is given (an involution)."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index.unsqueeze(2).expand_as(x))


def needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd will record a forward over these tensors (grad mode on and one of
    them requires grad); if not, nothing needs saving for a backward."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def summed_bias(b_ih: Optional[Tensor], b_hh: Optional[Tensor]) -> Optional[Tensor]:
    """``b_ih + b_hh`` (the LSTM's and RNN's engines add the two biases once), the one that
    exists, or None."""
    if b_ih is not None and b_hh is not None:
        return b_ih + b_hh
    return b_ih if b_ih is not None else b_hh


def run_layer(
    mode: str,
    x: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    weights: tuple,
    lengths: Optional[Tensor] = None,
    reverse: bool = False,
    backend: str = "auto",
    nonlinearity: str = "tanh",
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """One layer, one direction.

    Args:
        mode: "RNN", "LSTM" or "GRU".
        x: (T, B, D) time-first input, padded.
        h0: (B, P); c0: (B, H) for the LSTM, else None.
        weights: ``(w_ih, w_hh, b_ih, b_hh, w_hr)`` with None for absent tensors.
        lengths: None (all length T) or (B,) int64 on the CPU with 1 <= length <= T.
        reverse: process each sequence from its last valid step to its first.
        backend: one of BACKENDS.
    Returns:
        ``(output (T, B, P), h_n (B, P), c_n (B, H) or None)``; output is zero past each end.

    "bptt" and "fused" run as the custom operators of :mod:`rnnkit.engine.ops`
    (``torch.ops.rnnkit.lstm`` etc.), so that torch.compile, torch.export and the ONNX
    exporter see one node per layer and direction.  When no gradient is needed
    (:func:`needs_grad` false: under ``torch.no_grad()``, or no input, state or weight
    requires grad), the operator runs with ``save=False``: the Functions' forward without
    what backward reads (``lstm_inference``, ``gru_inference``, ``rnn_inference``): the same
    operations and bitwise the same outputs, but the per-step gates and states are held one
    chunk of steps at a time, so memory is about the output's O(T * B * P) instead of several
    times that.  ("reference" saves nothing for backward under no_grad anyway.)
    """
    backend = _resolve(backend, mode, x)
    if backend == "reference":
        return reference_layer(mode, x, h0, c0, weights, lengths, reverse, nonlinearity)

    index = None
    if reverse:
        index = reverse_index(lengths, x.shape[0], x.device)
        x = reverse_time(x, index)
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    c_n = None
    grad = needs_grad(x, h0, c0, *weights)
    fused = backend == "fused"
    if backend == "triton":
        out, h_n, c_n = _triton_layer(mode, x, h0, c0, weights, lengths, nonlinearity)
    elif mode == "GRU":
        out, h_n = _ops.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused, grad)
    else:
        b = summed_bias(b_ih, b_hh)
        if mode == "LSTM":
            out, h_n, c_n = _ops.lstm_layer(x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused, grad)
        else:
            out, h_n = _ops.rnn_layer(x, h0, w_ih, w_hh, b, lengths, nonlinearity, grad)
    if reverse:
        out = reverse_time(out, index)
    return out, h_n, c_n


def _triton():
    from rnnkit.engine.kernels import triton

    return triton


def _triton_layer(mode, x, h0, c0, weights, lengths, nonlinearity):
    """One layer, one direction (already reversed) on the Triton kernels: ``(out, h_n, c_n)``."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    if w_hr is not None:
        raise ValueError("backend='triton' has no LSTM projection (proj_size); use 'auto' or 'bptt'")
    tk = _triton()  # (its RNN refuses nonlinearities other than tanh and relu)
    if mode == "GRU":
        return (*tk.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths), None)
    b = summed_bias(b_ih, b_hh)
    if mode == "LSTM":
        return tk.lstm(x, h0, c0, w_ih, w_hh, b, lengths)
    return (*tk.rnn(x, h0, w_ih, w_hh, b, lengths, nonlinearity), None)
