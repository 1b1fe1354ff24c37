"""The Triton kernels (rnnkit.engine.kernels.triton) against the reference loop in float64:
outputs, final states and every gradient, per-step and persistent kernels, float32 and
bfloat16, odd sizes, a batch of one, one step, unequal unsorted lengths, reverse direction.

Without a GPU the kernels run on CPU tensors in Triton's interpreter, which Triton takes up
only if TRITON_INTERPRET=1 is set when it is first imported.  Run alone, this module sets it
(unless it is set already) for its imports and again while its tests run, and no other test
module inherits it.  In a whole test session Triton may have been imported earlier
(torch._dynamo imports it wherever it is installed, once a test compiles); the module then
skips, saying so, and ``make test`` runs it in a process of its own with TRITON_INTERPRET=1.  With CUDA and no
TRITON_INTERPRET the same tests run the compiled kernels on the GPU.
"""

import os
import subprocess
import sys

import pytest
import torch

_fresh = "triton" not in sys.modules
_set_here = _fresh and "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available()
if _set_here:
    os.environ["TRITON_INTERPRET"] = "1"
try:
    pytest.importorskip("triton")
    from rnnkit.engine.kernels import triton as kt

    DEVICE = torch.device("cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu")
    _reason = kt.unavailable_reason(DEVICE)
    if not _reason:
        # defining the kernels is what fixes the interpreter choice
        from rnnkit.engine.kernels.triton import common, gru_layer, lstm_layer, rnn_layer  # noqa: F401
finally:
    if _set_here:
        del os.environ["TRITON_INTERPRET"]
if _reason:
    pytest.skip(f"Triton kernels cannot run here: {_reason}"
                + ("" if _fresh else " (run `TRITON_INTERPRET=1 pytest tests/engine/test_triton.py`, as `make test` does)"),
                allow_module_level=True)

from rnnkit.engine.layer import reverse_index, reverse_time  # noqa: E402
from rnnkit.engine.reference import reference_layer  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _interpreter():
    if _set_here:
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    if _set_here:
        os.environ.pop("TRITON_INTERPRET", None)


F32, BF16, F64 = torch.float32, torch.bfloat16, torch.float64
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
TOL = {F32: 1e-5, BF16: 3e-2}
"""Error allowed relative to each tensor's largest magnitude (as tests/conftest.py measures).
float32: 1e-5, as for every fast path.  bfloat16: 3e-2.  The reference runs in float64 on the
same bfloat16-valued inputs and weights, so the error is the kernels' own bfloat16 rounding:
the state h_{t-1} rounded to bfloat16 as the operand of every step's recurrent product and
the pre-activation gradients rounded likewise for the backward products (2^-9 relative each),
the output in bfloat16, compounding over the steps; measured up to 6e-3 on these cases."""


def close(actual, expected, dtype, what):
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    tol = TOL[dtype]
    torch.testing.assert_close(actual.detach().to(F64).cpu(), expected.detach(), rtol=tol,
                               atol=tol * max(scale, 1e-3), msg=lambda m: f"{what}: {m}")


def make_case(mode, T, B, D, H, dtype, bias=True, state_dtype=None, seed=0):
    """Inputs and weights, values drawn in float64 and rounded to ``dtype`` (the reference
    gets the rounded values in float64).  Weights at torch.nn's scale 1/sqrt(H)."""
    gen = torch.Generator().manual_seed(seed)
    G = GATES[mode] * H
    k = H ** -0.5

    def draw(*shape, scale=1.0, dt=dtype):  # uniform in [-1.7, 1.7] * scale
        return (scale * 1.7 * (2 * torch.rand(*shape, dtype=F64, generator=gen) - 1)).to(dt)

    state_dtype = state_dtype or dtype
    return {
        "x": draw(T, B, D),
        "h0": draw(B, H, dt=state_dtype),
        "c0": draw(B, H, dt=state_dtype) if mode == "LSTM" else None,
        "w_ih": draw(G, D, scale=k),
        "w_hh": draw(G, H, scale=k),
        "b_ih": draw(G, scale=k) if bias else None,
        "b_hh": draw(G, scale=k) if bias else None,
    }


def run_triton(mode, t, lengths, reverse, persistent, nonlinearity="tanh"):
    """The kernels, with a reverse direction by flipping as rnnkit.engine.layer does."""
    x = t["x"]
    index = None
    if reverse:
        index = reverse_index(lengths, x.shape[0], x.device)
        x = reverse_time(x, index)
    if mode == "LSTM":
        b = t["b_ih"] + t["b_hh"] if t["b_ih"] is not None else None
        out, *states = kt.lstm(x, t["h0"], t["c0"], t["w_ih"], t["w_hh"], b, lengths, persistent=persistent)
    elif mode == "GRU":
        out, *states = kt.gru(x, t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], lengths, persistent=persistent)
    else:
        b = t["b_ih"] + t["b_hh"] if t["b_ih"] is not None else None
        out, *states = kt.rnn(x, t["h0"], t["w_ih"], t["w_hh"], b, lengths, nonlinearity, persistent=persistent)
    if reverse:
        out = reverse_time(out, index)
    return (out, *states)


def check(mode, T, B, D, H, dtype=F32, lengths=None, reverse=False, persistent=False, bias=True,
          nonlinearity="tanh", state_dtype=None):
    """Outputs and the gradients of every input and weight against the float64 reference."""
    t = make_case(mode, T, B, D, H, dtype, bias, state_dtype)
    names = [n for n, v in t.items() if v is not None]
    ours = {n: t[n].to(DEVICE).requires_grad_() for n in names}
    ref = {n: t[n].to(F64).requires_grad_() for n in names}
    ref_t = {n: ref.get(n) for n in t}
    lengths = None if lengths is None else torch.tensor(lengths, dtype=torch.int64)

    outputs = run_triton(mode, {n: ours.get(n) for n in t}, lengths, reverse, persistent, nonlinearity)
    expected = reference_layer(mode, ref_t["x"], ref_t["h0"], ref_t["c0"],
                               (ref_t["w_ih"], ref_t["w_hh"], ref_t["b_ih"], ref_t["b_hh"], None),
                               lengths, reverse, nonlinearity)[: len(outputs)]
    assert outputs[0].dtype == dtype and outputs[1].dtype == t["h0"].dtype
    if mode == "LSTM":
        assert outputs[2].dtype == t["c0"].dtype
    for what, a, e in zip(("out", "h_n", "c_n"), outputs, expected):
        close(a, e, dtype, what)

    gen = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(e.shape, dtype=F64, generator=gen) for e in expected]
    grads = torch.autograd.grad([o.float() for o in outputs], [ours[n] for n in names],
                                [c.to(DEVICE, F32) for c in cotangents])
    ref_grads = torch.autograd.grad(expected, [ref[n] for n in names], cotangents)
    for n, g, e in zip(names, grads, ref_grads):
        assert g.dtype == t[n].dtype, n
        close(g, e, dtype, f"d{n}")
    return outputs


# ------------------------------------------------------------------------------------ LSTM


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("T, B, D, H, lengths, reverse, bias", [
    (4, 2, 4, 3, None, False, True),  # H = 3
    (1, 1, 3, 5, None, False, True),  # one step, one sequence
    (5, 3, 6, 17, [5, 2, 4], False, True),  # H = 17, unsorted unequal lengths
    (5, 4, 7, 5, [3, 1, 2, 3], True, False),  # reverse, longest < T, no bias
])
def test_lstm_float32(T, B, D, H, lengths, reverse, bias, persistent):
    check("LSTM", T, B, D, H, F32, lengths, reverse, persistent, bias)


@pytest.mark.parametrize("persistent", [False, True])
def test_lstm_bfloat16(persistent):
    check("LSTM", 5, 3, 6, 17, BF16, [4, 5, 2], persistent=persistent)
    # a float32 initial state gives a float32 final state
    check("LSTM", 1, 1, 4, 5, BF16, persistent=persistent, state_dtype=F32)


def test_lstm_several_tiles(monkeypatch):
    """Two programs along the batch and along H, and two K blocks of the recurrent product,
    per-step; and the persistent kernel with two programs along the batch (B > 16)."""
    monkeypatch.setattr(common, "step_blocks", lambda B, H: (16, 16, 16))
    check("LSTM", 3, 20, 9, 20, F32, list(range(1, 4)) * 6 + [3, 2])
    check("LSTM", 3, 20, 9, 20, F32, [3] * 19 + [1], persistent=True)


def test_lstm_default_blocks():
    """The default tiles with H over one block (H = 40: two programs of 32, two K blocks)."""
    check("LSTM", 3, 5, 6, 40, F32, [3, 1, 2, 3, 2])


def test_lstm_saves_only_for_backward():
    t = make_case("LSTM", 4, 2, 3, 5, F32)
    args = (t["x"].to(DEVICE), t["h0"].to(DEVICE), t["c0"].to(DEVICE), t["w_ih"].to(DEVICE), t["w_hh"].to(DEVICE),
            t["b_ih"].to(DEVICE))
    lengths = torch.tensor([4, 2])
    for persistent in (False, True):
        w_hh = args[4].clone().requires_grad_()
        out, h_n, c_n = kt.lstm(*args[:4], w_hh, args[5], lengths, persistent=persistent)
        saved = [s for s in out.grad_fn.saved_tensors if s is not None]
        # x, h0, c0, the weights, the output, the gates (T, B, 4H) and c_0..c_T (T+1, B, H)
        assert sorted(tuple(s.shape) for s in saved if s.dtype == F32 and s.dim() == 3) == [
            (4, 2, 3), (4, 2, 5), (4, 2, 20), (5, 2, 5)]
        with torch.no_grad():
            plain = kt.lstm(*args[:4], w_hh, args[5], lengths, persistent=persistent)
        assert all(p.grad_fn is None for p in plain)
        for a, b in zip(plain, (out, h_n, c_n)):
            assert torch.equal(a, b.detach())  # same kernels, same numbers


# ------------------------------------------------------------------------------- GRU, RNN


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("T, B, D, H, lengths, reverse, bias", [
    (4, 2, 4, 3, None, False, True),
    (1, 1, 3, 5, None, False, False),
    (5, 3, 6, 17, [5, 2, 4], True, True),
])
def test_gru_float32(T, B, D, H, lengths, reverse, bias, persistent):
    check("GRU", T, B, D, H, F32, lengths, reverse, persistent, bias)


def test_gru_bfloat16_and_tiles(monkeypatch):
    check("GRU", 5, 3, 6, 17, BF16, [4, 5, 2])
    check("GRU", 5, 3, 6, 17, BF16, [4, 5, 2], persistent=True)
    monkeypatch.setattr(common, "step_blocks", lambda B, H: (16, 16, 16))
    check("GRU", 3, 20, 9, 20, F32, list(range(1, 4)) * 6 + [3, 2])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("T, B, D, H, lengths, reverse", [
    (1, 1, 3, 5, None, False),
    (5, 3, 6, 17, [5, 2, 4], True),
])
def test_rnn_float32(T, B, D, H, lengths, reverse, persistent, nonlinearity):
    check("RNN", T, B, D, H, F32, lengths, reverse, persistent, nonlinearity=nonlinearity)


def test_rnn_bfloat16_and_tiles(monkeypatch):
    check("RNN", 5, 3, 6, 17, BF16, [4, 5, 2])
    check("RNN", 5, 3, 6, 17, BF16, [4, 5, 2], persistent=True, nonlinearity="relu")
    monkeypatch.setattr(common, "step_blocks", lambda B, H: (16, 16, 16))
    check("RNN", 3, 20, 9, 20, F32, list(range(1, 4)) * 6 + [3, 2])


# --------------------------------------------------------------------- choices and errors


def test_persistent_size_limits():
    """The persistent kernel is picked for B <= 16 when the weight tiles fit 128 KB."""
    assert common.use_persistent(None, 8, 128, 4, BF16)  # 4 x 128 x 128 x 2 B = 128 KB
    assert not common.use_persistent(None, 8, 129, 4, BF16)  # padded to 256: 512 KB
    assert not common.use_persistent(None, 8, 256, 4, BF16)
    assert common.use_persistent(None, 16, 64, 4, F32) and not common.use_persistent(None, 16, 65, 4, F32)
    assert common.use_persistent(None, 4, 256, 1, BF16)  # the RNN's single tile
    assert not common.use_persistent(None, 17, 32, 4, BF16)  # batch over one tile: per-step
    assert common.use_persistent(True, 17, 32, 4, BF16)
    x, h0 = torch.zeros(2, 1, 3, device=DEVICE), torch.zeros(1, 65, device=DEVICE)
    with pytest.raises(ValueError, match="persistent kernel holds 4 weight tiles"):
        kt.lstm(x, h0, h0, torch.zeros(260, 3, device=DEVICE), torch.zeros(260, 65, device=DEVICE),
                persistent=True)


def test_errors():
    x = torch.zeros(2, 1, 3, dtype=F64, device=DEVICE)
    h0 = torch.zeros(1, 4, dtype=F64, device=DEVICE)
    with pytest.raises(TypeError, match="supports float32 and bfloat16 inputs; got torch.float64"):
        kt.lstm(x, h0, h0, torch.zeros(16, 3, dtype=F64, device=DEVICE), torch.zeros(16, 4, dtype=F64, device=DEVICE))
    x, h0 = x.float(), h0.float()
    with pytest.raises(TypeError, match="w_hh must have the input's dtype"):
        kt.gru(x, h0, torch.zeros(12, 3, device=DEVICE), torch.zeros(12, 4, dtype=BF16, device=DEVICE))
    with pytest.raises(ValueError, match="w_hh must be"):
        kt.rnn(x, h0, torch.zeros(4, 3, device=DEVICE), torch.zeros(4, 5, device=DEVICE))
    with pytest.raises(ValueError, match="nonlinearity"):
        kt.rnn(x, h0, torch.zeros(4, 3, device=DEVICE), torch.zeros(4, 4, device=DEVICE), nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="lengths must lie in"):
        kt.rnn(x, h0, torch.zeros(4, 3, device=DEVICE), torch.zeros(4, 4, device=DEVICE), lengths=torch.tensor([3]))


def test_availability():
    assert kt.available(DEVICE) and kt.unavailable_reason(DEVICE) == ""
    assert "CUDA devices" in kt.unavailable_reason("meta")
    if DEVICE.type == "cpu" and not torch.cuda.is_available():
        assert "CUDA is not available" in kt.unavailable_reason("cuda")


def test_without_triton():
    """Importing rnnkit and this package loads none of its kernels; without Triton the layers
    say so.  (PyTorch's own torch._dynamo imports Triton where it is installed, so the check
    runs as if it were not.)"""
    code = "\n".join([
        "import sys, torch",
        "sys.modules['triton'] = None",  # as if not installed
        "import rnnkit, rnnkit.engine.layer",
        "import rnnkit.engine.kernels.triton as kt",
        "from rnnkit.engine.kernels import KernelUnavailable",
        "assert not [m for m in sys.modules if m.startswith('rnnkit.engine.kernels.triton.')]",
        "assert 'Triton is not installed' in kt.unavailable_reason('cpu'), kt.unavailable_reason('cpu')",
        "x = torch.zeros(1, 1, 1)",
        "try:",
        "    kt.rnn(x, x[0], x[0], x[0])",
        "except KernelUnavailable as exc:",
        "    assert 'not installed' in str(exc)",
        "else:",
        "    raise AssertionError('no error')",
    ])
    env = dict(os.environ, TRITON_INTERPRET="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.parametrize("cls, extra", [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "relu"})])
def test_layers_with_backend_triton_equal_reference(cls, extra):
    """rnnkit.LSTM/GRU/RNN(backend="triton"): two layers, bidirectional, lengths= (the engine's
    reverse flip and bias sum around the kernels), against the reference backend in float32."""
    import rnnkit

    torch.manual_seed(0)
    ours = getattr(rnnkit, cls)(5, 6, num_layers=2, bidirectional=True, backend="triton", **extra).to(DEVICE)
    ref = getattr(rnnkit, cls)(5, 6, num_layers=2, bidirectional=True, backend="reference", **extra).to(DEVICE)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 5, device=DEVICE)
    lengths = torch.tensor([4, 2, 3])
    results = []
    for model in (ours, ref):
        xx = x.clone().requires_grad_()
        out, state = model(xx, lengths=lengths)
        tensors = [out, *(state if isinstance(state, tuple) else (state,))]
        loss = sum((t * torch.linspace(-1, 1, t.numel(), device=DEVICE).view_as(t)).sum() for t in tensors)
        results.append(tensors + list(torch.autograd.grad(loss, [xx, *model.parameters()])))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no LSTM projection"):
        rnnkit.LSTM(5, 6, proj_size=2, backend="triton").to(DEVICE)(x)
