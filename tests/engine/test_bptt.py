"""The explicit BPTT Functions against the reference loop (autograd through the cell math) and
against central finite differences (torch.autograd.gradcheck, float64)."""

import pytest
import torch

from rnnkit.engine.bptt import GRUFunction, LSTMFunction, RNNFunction
from rnnkit.engine.kernels import fused_cpu
from rnnkit.engine.layer import run_layer
from tests.conftest import assert_close

F64 = torch.float64
CASES = [
    ("RNN", "tanh", 0),
    ("RNN", "relu", 0),
    ("RNN", "sigmoid", 0),
    ("RNN", "identity", 0),
    ("LSTM", "tanh", 0),
    ("LSTM", "tanh", 2),
    ("GRU", "tanh", 0),
]


def make_weights(mode, D, H, P, bias, dtype=F64, gen=None):
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[mode] * H
    P_in = P or H
    rnd = lambda *s: (0.5 * torch.randn(*s, dtype=dtype, generator=gen)).requires_grad_()  # noqa: E731
    w_ih, w_hh = rnd(G, D), rnd(G, P_in)
    b_ih, b_hh = (rnd(G), rnd(G)) if bias else (None, None)
    w_hr = rnd(P, H) if P else None
    return (w_ih, w_hh, b_ih, b_hh, w_hr)


def make_inputs(mode, T, B, D, H, P, dtype=F64, gen=None):
    x = torch.randn(T, B, D, dtype=dtype, generator=gen).requires_grad_()
    h0 = torch.randn(B, P or H, dtype=dtype, generator=gen).requires_grad_()
    c0 = torch.randn(B, H, dtype=dtype, generator=gen).requires_grad_() if mode == "LSTM" else None
    return x, h0, c0


def loss_of(out, h_n, c_n, gen):
    """A loss that touches every output with distinct weights, so no gradient hides."""
    total = (out * torch.randn(out.shape, dtype=out.dtype, generator=gen)).sum()
    total = total + (h_n * torch.randn(h_n.shape, dtype=out.dtype, generator=gen)).sum()
    if c_n is not None:
        total = total + (c_n * torch.randn(c_n.shape, dtype=out.dtype, generator=gen)).sum()
    return total


@pytest.mark.parametrize("mode,nonlinearity,P", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 2, 6, 1]])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", ["bptt", "fused"])
def test_bptt_matches_reference(mode, nonlinearity, P, reverse, lengths, bias, backend):
    gen = torch.Generator().manual_seed(11)
    T, B, D, H = 6, 4, 3, 5
    weights = make_weights(mode, D, H, P, bias, gen=gen)
    x, h0, c0 = make_inputs(mode, T, B, D, H, P, gen=gen)
    lens = torch.tensor(lengths) if lengths is not None else None
    leaves = [x, h0] + ([c0] if c0 is not None else []) + [w for w in weights if w is not None]
    results = []
    for which in (backend, "reference"):
        out, h_n, c_n = run_layer(mode, x, h0, c0, weights, lens, reverse, which, nonlinearity)
        grads = torch.autograd.grad(loss_of(out, h_n, c_n, torch.Generator().manual_seed(5)), leaves)
        results.append((out, h_n, c_n, grads))
    (o1, h1, c1, g1), (o2, h2, c2, g2) = results
    assert_close(o1, o2, F64, "output")
    assert_close(h1, h2, F64, "h_n")
    if c1 is not None:
        assert_close(c1, c2, F64, "c_n")
    for i, (a, b) in enumerate(zip(g1, g2)):
        assert_close(a, b, F64, f"gradient {i}")
    if lens is not None:
        past_end = torch.arange(T).unsqueeze(1) >= lens
        assert torch.all(o1[past_end] == 0)


@pytest.mark.parametrize("mode,nonlinearity,P", CASES)
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]])
@pytest.mark.parametrize("fused", [False, True])
def test_bptt_gradcheck(mode, nonlinearity, P, lengths, fused):
    """Central finite differences on every input of the Function."""
    kernels = fused_cpu() if fused else None
    gen = torch.Generator().manual_seed(3)
    T, B, D, H = 4, 3, 2, 3
    w_ih, w_hh, b_ih, b_hh, w_hr = make_weights(mode, D, H, P, True, gen=gen)
    x, h0, c0 = make_inputs(mode, T, B, D, H, P, gen=gen)
    lens = torch.tensor(lengths) if lengths is not None else None
    if mode == "LSTM":
        fn = lambda x, h0, c0, w_ih, w_hh, b, w_hr: LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b, w_hr, lens, kernels)  # noqa: E731
        args = (x, h0, c0, w_ih, w_hh, (b_ih + b_hh).detach().requires_grad_(), w_hr)
        if w_hr is None:
            fn2 = lambda x, h0, c0, w_ih, w_hh, b: fn(x, h0, c0, w_ih, w_hh, b, None)  # noqa: E731
            assert torch.autograd.gradcheck(fn2, args[:-1])
            return
    elif mode == "GRU":
        fn = lambda *a: GRUFunction.apply(*a, lens, kernels)  # noqa: E731
        args = (x, h0, w_ih, w_hh, b_ih, b_hh)
    else:
        fn = lambda x, h0, w_ih, w_hh, b: RNNFunction.apply(x, h0, w_ih, w_hh, b, lens, nonlinearity)  # noqa: E731
        args = (x, h0, w_ih, w_hh, (b_ih + b_hh).detach().requires_grad_())
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_backward_in_eval_mode_and_twice(mode):
    import rnnkit

    layer = getattr(rnnkit, mode)(3, 4, num_layers=2, dtype=F64).eval()
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    out, _ = layer(x)
    (g1,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(out.sum(), x)  # saved tensors are not consumed by backward
    assert torch.equal(g1, g2)
    assert g1.abs().sum() > 0


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_no_grad_forward_matches(mode):
    import rnnkit

    layer = getattr(rnnkit, mode)(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    with torch.no_grad():
        out, _ = layer(x)
    ref = getattr(rnnkit, mode)(3, 4, dtype=F64, backend="reference")
    ref.load_state_dict(layer.state_dict())
    assert_close(out, ref(x)[0].detach(), F64, "output")


def test_gradients_reach_step_one_through_shared_weights():
    """The lecture's BPTT: a loss on the last step only still has gradient w.r.t. x_1."""
    import rnnkit

    layer = rnnkit.LSTM(2, 8, dtype=F64)
    x = torch.randn(30, 1, 2, dtype=F64, requires_grad=True)
    out, _ = layer(x)
    out[-1].sum().backward()
    assert x.grad[0].abs().sum() > 0
    assert layer.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["packed", "transposed", "view"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recurrent_weight_layouts(kind, dtype):
    """Every layout of the prepared recurrent weight computes h @ W^T (+ b)."""
    from rnnkit.engine.bptt.recurrent_matmul import _MKL_PACKING, RecurrentWeight

    if kind == "packed" and (dtype != torch.float32 or not _MKL_PACKING):
        pytest.skip("MKL packing covers float32 with MKL only")
    w = torch.randn(12, 5, dtype=dtype)
    h = torch.randn(3, 5, dtype=dtype)
    b = torch.randn(12, dtype=dtype)
    prepared = RecurrentWeight(w, 3, force=kind)
    out = torch.randn(3, 12, dtype=dtype)
    expected = out + h @ w.T
    assert_close(prepared.addmm_(out, h), expected, dtype, "addmm_")
    assert_close(prepared.mm(h, torch.empty(3, 12, dtype=dtype)), h @ w.T, dtype, "mm")
    assert_close(prepared.mm(h, torch.empty(3, 12, dtype=dtype), b), h @ w.T + b, dtype, "mm + bias")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_activations_match_torch(dtype):
    """The kernels' own exp-based sigmoid and tanh agree with torch's to a few ulp."""
    k = fused_cpu()
    x = torch.cat([torch.linspace(-60, 60, 100001, dtype=dtype), torch.logspace(-20, 1, 500, dtype=dtype)])
    x = torch.cat([x, -x])
    eps = torch.finfo(dtype).eps
    for name, theirs in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        want = theirs(x)
        rel = ((k.activation(x, name) - want).abs() / want.abs().clamp_min(torch.finfo(dtype).tiny)).max()
        assert rel < 8 * eps, f"{name}: max relative error {rel}"


@pytest.mark.parametrize(
    "mode,H,extra",
    [("LSTM", 256, {}), ("LSTM", 512, {"proj_size": 128}), ("GRU", 300, {})],
)
def test_large_recurrent_weight_packed_path_matches_reference(mode, H, extra):
    """Float32 layers big enough for MKL's packed recurrent GEMM (the Python-driven loop of
    the fused backend) match the reference in outputs, states and gradients."""
    import rnnkit
    from rnnkit.engine.bptt.recurrent_matmul import PACK_MIN_NUMEL

    torch.manual_seed(1)
    layer = getattr(rnnkit, mode)(16, H, backend="fused", **extra)
    assert layer.weight_hh_l0.numel() >= PACK_MIN_NUMEL
    ref = getattr(rnnkit, mode)(16, H, backend="reference", **extra)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(3, 2, 16)
    lengths = torch.tensor([3, 2])
    out, state = layer(x, lengths=lengths)
    out_r, state_r = ref(x, lengths=lengths)
    assert_close(out, out_r, torch.float32, "output")
    for a, b in zip(state if isinstance(state, tuple) else (state,), state_r if isinstance(state_r, tuple) else (state_r,)):
        assert_close(a, b, torch.float32, "state")
    g = torch.autograd.grad(out.pow(2).sum(), list(layer.parameters()))
    g_r = torch.autograd.grad(out_r.pow(2).sum(), list(ref.parameters()))
    for a, b in zip(g, g_r):
        assert_close(a, b, torch.float32, "gradient")


def test_a_checkout_at_another_path_reuses_the_kernel_build(tmp_path):
    """The build compiles a copy of the source kept in the build folder, so a copy of the
    package elsewhere (another checkout, another virtual environment) loads the same build
    instead of compiling again."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import rnnkit

    so = Path(fused_cpu().__file__)
    built_at = so.stat().st_mtime_ns
    shutil.copytree(Path(rnnkit.__file__).parent, tmp_path / "rnnkit", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import rnnkit; from rnnkit.engine import kernels as k; "
            "print(rnnkit.__file__); print(k.fused_cpu_built()); k.fused_cpu()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    where, built = proc.stdout.split()
    assert where.startswith(str(tmp_path)) and built == "True"
    assert "compiling" not in proc.stderr
    assert so.stat().st_mtime_ns == built_at, "the other checkout rebuilt the kernels"


@pytest.mark.parametrize("mode,P", [("LSTM", 0), ("LSTM", 2), ("GRU", 0)])
@pytest.mark.parametrize("layout", ["transposed", "view", "packed"])
def test_fused_loops_without_direct_blas_and_in_every_weight_layout(mode, P, layout, monkeypatch):
    """The fused loops call the BLAS directly; with that switched off they take ATen's path.
    Both, and every layout of the recurrent weight, give the reference's numbers."""
    from rnnkit.engine.bptt import gru, lstm
    from rnnkit.engine.bptt.recurrent_matmul import RecurrentWeight

    kernels = fused_cpu()
    for module in (lstm, gru):
        monkeypatch.setattr(module, "recurrent_weight", lambda w, batch, k: RecurrentWeight(w, batch, force=layout))
    gen = torch.Generator().manual_seed(3)
    T, B, D, H = 5, 5, 4, 6  # B >= 4: MKL packs the weight
    weights = make_weights(mode, D, H, P, True, dtype=torch.float32, gen=gen)
    x, h0, c0 = make_inputs(mode, T, B, D, H, P, dtype=torch.float32, gen=gen)
    leaves = [x, h0] + ([c0] if c0 is not None else []) + [w for w in weights if w is not None]
    results = []
    try:
        for direct, pack, backend in ((True, True, "fused"), (True, False, "fused"), (False, True, "fused"),
                                      (True, True, "reference")):
            kernels.set_direct_blas(direct)
            kernels.set_packing(pack)
            out, h_n, c_n = run_layer(mode, x, h0, c0, weights, torch.tensor([5, 2, 4, 1, 5]), False, backend)
            grads = torch.autograd.grad(loss_of(out, h_n, c_n, torch.Generator().manual_seed(5)), leaves)
            results.append((out, *grads))
    finally:
        kernels.set_direct_blas(True)
        kernels.set_packing(True)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
