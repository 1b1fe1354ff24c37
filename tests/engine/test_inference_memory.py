"""The forward without gradient (``torch.no_grad()``, or nothing requiring grad) keeps only
what the output needs: memory grows with the output (T, B, P), not with the per-step gates and
states a backward would read; and its outputs are bitwise those of the gradient path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import rnnkit
from rnnkit.engine.bptt.common import INFERENCE_ROWS, inference_chunks
from rnnkit.engine.layer import needs_grad

CASES = [("LSTM", "bptt"), ("LSTM", "fused"), ("GRU", "bptt"), ("GRU", "fused"), ("RNN", "bptt"), ("RNN", "fused")]


def _outputs(result) -> list[torch.Tensor]:
    out, state = result
    return [out, *(state if isinstance(state, tuple) else (state,))]


def _layer(mode, backend, dtype=torch.float32, **kw):
    if backend == "fused" and mode != "RNN":
        pytest.importorskip("rnnkit.engine.kernels")
        from rnnkit.engine import kernels

        if not kernels.fused_cpu_available():
            pytest.skip("the fused CPU kernels do not build here")
    return getattr(rnnkit, mode)(5, 6, backend=backend, **kw).to(dtype)


def test_chunks_cover_every_step_once_with_equal_gemms():
    for T, B in [(1, 1), (5, 3), (INFERENCE_ROWS, 1), (INFERENCE_ROWS + 1, 1), (150, 64), (128, 64), (1000, 7)]:
        C, chunks = inference_chunks(T, B)
        ran = [t for start, skip in chunks for t in range(start + skip, start + C)]
        assert ran == list(range(T)), (T, B)
        if len(chunks) > 1:  # every projection GEMM has the same, large row count
            assert C * B >= INFERENCE_ROWS and all(start + C <= T for start, _ in chunks)


@pytest.mark.parametrize("mode,backend", CASES)
@pytest.mark.parametrize("T,B", [(1, 1), (7, 3), (150, 64), (INFERENCE_ROWS + 900, 1)])
@pytest.mark.parametrize("variant", ["plain", "lengths", "state", "float64"])
def test_no_grad_outputs_bitwise_equal(mode, backend, T, B, variant):
    """Stacked and bidirectional (the reverse direction too), with chunking (T > C) and without."""
    if variant == "float64" and T > 1000:
        pytest.skip("float64 is checked on the shorter sequences")
    torch.manual_seed(T + B)
    dtype = torch.float64 if variant == "float64" else torch.float32
    kw = {"proj_size": 4} if mode == "LSTM" and variant == "state" else {}
    layer = _layer(mode, backend, dtype, num_layers=2, bidirectional=True, bias=variant != "lengths", **kw)
    x = torch.randn(T, B, 5, dtype=dtype)
    lengths = None
    if variant == "lengths":
        lengths = torch.randint(1, T + 1, (B,))
        lengths[-1] = T
        if B > 1:
            lengths[0] = max(1, T - 1)
    hx = None
    if variant == "state":
        h = torch.randn(4, B, layer.output_size, dtype=dtype)
        hx = (h, torch.randn(4, B, 6, dtype=dtype)) if mode == "LSTM" else h
    graded = layer(x, hx, lengths=lengths)
    assert graded[0].requires_grad
    with torch.no_grad():
        plain = layer(x, hx, lengths=lengths)
    for a, b in zip(_outputs(graded), _outputs(plain)):
        assert not b.requires_grad
        assert torch.equal(a.detach(), b)


def test_nothing_requiring_grad_also_takes_the_inference_path():
    layer = _layer("GRU", "bptt")
    x = torch.randn(4, 2, 5)
    assert needs_grad(x, *layer.parameters())
    layer.requires_grad_(False)
    assert not needs_grad(x, None, *layer.parameters())
    with torch.no_grad():
        assert not needs_grad(x.requires_grad_())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_no_grad_outputs_bitwise_equal_cuda(mode):
    torch.manual_seed(0)
    layer = getattr(rnnkit, mode)(32, 64, bidirectional=True, backend="bptt").cuda()
    x = torch.randn(INFERENCE_ROWS // 8 * 3 + 5, 16, 32, device="cuda")
    graded = layer(x)
    with torch.no_grad():
        plain = layer(x)
    for a, b in zip(_outputs(graded), _outputs(plain)):
        assert torch.equal(a.detach(), b)


# Peak memory (ru_maxrss) of one forward under no_grad, each in a fresh process (memory freed
# by an earlier forward stays with the allocator and would hide a later one's growth).
_MEASURE = textwrap.dedent("""
    import resource, sys, torch, rnnkit
    torch.set_num_threads(1)
    mode, backend, T = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    layer = getattr(rnnkit, mode)(64, 256, backend=backend)
    x = torch.randn(T, 1, 64)
    with torch.no_grad():
        layer(x[:10])  # warm up: kernels loaded, threads started
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        out = layer(x)[0]
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(grew * (1 if sys.platform == "darwin" else 1024))
""")


def peak_growth(mode: str, backend: str, T: int) -> int:
    """Bytes by which the peak resident memory of a fresh process grew during the forward of
    a (T, 1, 64) sequence through a one-layer ``mode`` of 256 units under no_grad."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, mode, backend, str(T)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_no_grad_memory_grows_with_the_output_only():
    """T = 20,000 vs 2,000 steps (B = 1, H = 256): before, the LSTM's forward under no_grad
    grew ~190 MB more for the longer sequence (per step: 4H gates, g, c, h and their
    views); the output grows by 17.6 MB.  Allowed: 1.5x the output's growth plus the chunk
    buffers (4096 steps of 7H floats, 29 MB)."""
    if sys.platform not in ("linux", "darwin"):
        pytest.skip("ru_maxrss in bytes or KiB on Linux and macOS only")
    from rnnkit.engine import kernels

    cases = [case for case in CASES if case[1] == "bptt" or kernels.fused_cpu_available()]
    out_growth = (20000 - 2000) * 256 * 4
    chunk_buffers = INFERENCE_ROWS * 7 * 256 * 4
    for mode, backend in cases:
        short, long = peak_growth(mode, backend, 2000), peak_growth(mode, backend, 20000)
        seen = f"{mode} {backend}: T=2000 {short / 2**20:.1f} MB, T=20000 {long / 2**20:.1f} MB"
        assert long - short <= 1.5 * out_growth + chunk_buffers, seen
