"""The recurrent product ``h_{t-1} W_hh^T``, repeated T times with the same weight.

The time loop multiplies a small (B, P) state by the same (G, P) weight at every step, so the
weight is laid out once per call for fast repeated products:

- float32 on a CPU with MKL, for weights of at least ``PACK_MIN_NUMEL`` entries: MKL's packed
  GEMM format (``cblas_sgemm_pack``, through PyTorch's ``mkl::_mkl_linear``), which skips the
  re-packing a plain GEMM does on every call; worthwhile once the weight is large;
- other CPU cases: a contiguous copy of ``W_hh^T``, so every step is a plain (non-transposed)
  GEMM;
- CUDA: the transposed view (cuBLAS reads either layout at full speed).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this many weight entries (4 * 256 * 256 for an LSTM of H = 256) packing costs more
# than it saves; measured with benchmarks/speed.py on a 2-core AVX-512 machine.
PACK_MIN_NUMEL = 4 * 256 * 256


def _mkl_packing_available() -> bool:
    ops = getattr(torch.ops, "mkl", None)
    try:
        return ops is not None and hasattr(ops, "_mkl_linear") and hasattr(ops, "_mkl_reorder_linear_weight")
    except (RuntimeError, AttributeError):
        return False


_MKL_PACKING = _mkl_packing_available()


class RecurrentWeight:
    """``w`` (G, P) prepared for repeated ``h @ w.T`` with ``h`` of ``batch`` rows.

    ``force`` picks a layout ("packed", "transposed", "view") for tests; None chooses.
    ``transpose`` makes the contiguous ``w.T`` (default: ``w.t().contiguous()``); the fused
    CPU kernels pass their tiled transpose, which is 2-3x faster on large weights.
    """

    def __init__(self, w: Tensor, batch: int, force: str | None = None, transpose=None) -> None:
        self.w = w
        self.kind = force or self._choose(w)
        if self.kind == "packed":
            self.batch = batch
            self.packed = torch.ops.mkl._mkl_reorder_linear_weight(w.contiguous(), batch)
        elif self.kind == "transposed":
            self.w_t = transpose(w.contiguous()) if transpose else w.t().contiguous()  # (P, G)
        else:
            self.w_t = w.t()  # a view

    @staticmethod
    def _choose(w: Tensor) -> str:
        if w.device.type != "cpu":
            return "view"
        if _MKL_PACKING and w.dtype == torch.float32 and w.numel() >= PACK_MIN_NUMEL:
            return "packed"
        return "transposed"

    def addmm_(self, out: Tensor, h: Tensor) -> Tensor:
        """``out += h @ w.T`` in place; out (B, G), h (B, P)."""
        if self.kind == "packed":
            return out.add_(torch.ops.mkl._mkl_linear(h, self.packed, self.w, None, self.batch))
        return out.addmm_(h, self.w_t)

    def mm(self, h: Tensor, out: Tensor, bias: Tensor | None = None) -> Tensor:
        """``out = h @ w.T (+ bias)``; out (B, G), h (B, P), bias (G,) or None."""
        if self.kind == "packed":
            return out.copy_(torch.ops.mkl._mkl_linear(h, self.packed, self.w, bias, self.batch))
        if bias is None:
            return torch.mm(h, self.w_t, out=out)
        return torch.addmm(bias, h, self.w_t, out=out)
