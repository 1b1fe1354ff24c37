"""Backend "native" (PyTorch's own fused recurrent operator) and the rule by which "auto"
chooses between it and rnnkit's engine.  Its parity with torch.nn over the whole grid (outputs,
states, every gradient, lengths, packing, dropout) is in test_parity.py; here: bit-for-bit
identity with torch.nn, agreement with the other backends, double backward, the fallback and
error paths, and the rule."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.engine import layer as engine_layer
from rnnkit.engine import native
from rnnkit.engine.layer import choose_stack

LAYERS = [
    (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 3}),
    (rnnkit.LSTM, torch.nn.LSTM, {}),
    (rnnkit.GRU, torch.nn.GRU, {}),
    (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
]
IDS = ["LSTM-proj", "LSTM", "GRU", "RNN-relu"]


def _pair(cls, peer, extra, **kwargs):
    torch.manual_seed(0)
    theirs = peer(5, 6, **extra, **kwargs)
    ours = cls(5, 6, backend="native", **extra, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _flat(result):
    out, state = result
    out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
    return [out, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("cls, peer, extra", LAYERS, ids=IDS)
def test_native_is_torch_nn_bit_for_bit(cls, peer, extra):
    """The same operator on the same weights: equal to the last bit, forward and backward,
    padded and packed, training with dropout under one seed, and in eval mode."""
    ours, theirs = _pair(cls, peer, extra, num_layers=2, bidirectional=True, dropout=0.3)
    x = torch.randn(7, 4, 5)
    packed = pack_padded_sequence(x, [7, 2, 5, 1], enforce_sorted=False)
    for arg in (x, packed):
        results = []
        for model in (ours, theirs):
            model.zero_grad()
            torch.manual_seed(7)
            tensors = _flat(model(arg))
            sum(t.pow(2).sum() for t in tensors).backward()
            results.append(tensors + [p.grad for p in model.parameters()])
        for a, b in zip(*results):
            assert torch.equal(a, b)
    ours.eval(), theirs.eval()
    with torch.inference_mode():
        for a, b in zip(_flat(ours(x)), _flat(theirs(x))):
            assert torch.equal(a, b)


@pytest.mark.parametrize("cls, peer, extra", LAYERS, ids=IDS)
def test_lengths_give_what_the_other_backends_give(cls, peer, extra):
    """lengths= on a padded batch (unsorted, one full) against bptt and reference in float64:
    output zero past each end, states at each last step, all gradients."""
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])
    h0 = torch.randn(2 * 2, 4, extra.get("proj_size") or 6, dtype=torch.float64)
    results = {}
    for backend in ("native", "bptt", "reference"):
        torch.manual_seed(0)
        model = cls(5, 6, num_layers=2, bidirectional=True, backend=backend, dtype=torch.float64, **extra)
        xx, hh = x.clone().requires_grad_(), h0.clone().requires_grad_()
        hx = (hh, torch.zeros(4, 4, 6, dtype=torch.float64)) if cls is rnnkit.LSTM else hh
        tensors = _flat(model(xx, hx, lengths=lengths))
        loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view_as(t)).sum() for t in tensors)
        results[backend] = tensors + list(torch.autograd.grad(loss, [xx, hh, *model.parameters()]))
    for other in ("bptt", "reference"):
        for a, b in zip(results["native"], results[other]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert results["native"][0][1:, 2].abs().max() == 0  # sequence 2 has length 1: both directions


@pytest.mark.parametrize("cls, peer, extra", LAYERS, ids=IDS)
def test_second_derivatives_on_native_equal_torch_nn(cls, peer, extra):
    ours, theirs = _pair(cls, peer, extra, dtype=torch.float64)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    grads = []
    for model in (ours, theirs):
        xx = x.clone().requires_grad_()
        out = model(xx)[0]
        (g,) = torch.autograd.grad(out.pow(2).sum(), xx, create_graph=True)
        grads.append(torch.autograd.grad(g.pow(2).sum(), list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_what_the_operator_lacks_is_a_clear_error_or_rnnkit_s_engine():
    with pytest.raises(ValueError, match=r"backend='native'.*not 'sigmoid'.*Use backend 'auto'"):
        rnnkit.RNN(3, 4, nonlinearity="sigmoid", backend="native")(torch.randn(2, 1, 3))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for nonlinearity in ("sigmoid", "identity"):
        auto = rnnkit.RNN(3, 4, nonlinearity=nonlinearity, dtype=torch.float64)
        ref = rnnkit.RNN(3, 4, nonlinearity=nonlinearity, dtype=torch.float64, backend="reference")
        ref.load_state_dict(auto.state_dict())
        torch.testing.assert_close(auto(x)[0], ref(x)[0])


def _calls_native(monkeypatch, model, *args, **kwargs) -> bool:
    """Run ``model`` and say whether it went through PyTorch's operator."""
    calls = []
    real = native.run_stack

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr("rnnkit.models.rnn.run_stack", spy)
    model(*args, **kwargs)
    return bool(calls)


def test_auto_follows_the_measured_rule(monkeypatch):
    monkeypatch.setattr(engine_layer, "_fused_ready", lambda explicit: True)
    cpu32 = torch.empty(0)

    def choose(mode, batch, hidden, grad, x=cpu32, nonlinearity="tanh", backend="auto"):
        return choose_stack(backend, mode, nonlinearity, x, batch, hidden, grad)

    # LSTM training: rnnkit's fused kernels from H = 256 on
    assert choose("LSTM", 32, 128, True) and not choose("LSTM", 32, 256, True)
    # LSTM forward only: the fused kernels at H >= 1024, and at H >= 512 for B <= 8
    assert choose("LSTM", 64, 512, False) and not choose("LSTM", 8, 512, False)
    assert not choose("LSTM", 64, 1024, False) and choose("LSTM", 1, 256, False)
    # GRU: the fused kernels everywhere; RNN: rnnkit's engine except forward at B = 1, H >= 512
    assert not any(choose("GRU", b, h, g) for b in (1, 64) for h in (128, 1024) for g in (True, False))
    assert choose("RNN", 1, 512, False) and not choose("RNN", 2, 512, False) and not choose("RNN", 1, 512, True)
    # PyTorch's operator for dtypes the fused kernels lack; never for what it lacks itself
    assert choose("GRU", 8, 128, True, x=torch.empty(0, dtype=torch.bfloat16))
    assert not choose("RNN", 1, 1024, False, x=torch.empty(0, dtype=torch.bfloat16), nonlinearity="sigmoid")
    # a batch of several lengths (lengths= or packed): PyTorch's CPU operator runs it without
    # oneDNN, so the LSTM and GRU stay on the fused kernels
    assert not choose_stack("auto", "LSTM", "tanh", cpu32, 32, 128, True, varlen=True)
    assert not choose_stack("auto", "LSTM", "tanh", cpu32, 32, 128, False, varlen=True)
    assert choose_stack("auto", "LSTM", "tanh", cpu32, 64, 128, False, varlen=True)  # forward, B = 64
    assert choose_stack("auto", "LSTM", "tanh", cpu32, 1, 128, True, varlen=True)  # one sequence: one length
    assert choose_stack("auto", "LSTM", "tanh", cpu32, 32, 128, True, fused=False, varlen=True)
    # only "auto" and "native" choose it
    assert not choose("LSTM", 32, 128, True, backend="fused") and choose("GRU", 8, 1024, True, backend="native")
    monkeypatch.setitem(engine_layer.NATIVE, "enabled", False)
    assert not choose("LSTM", 32, 128, True)
    monkeypatch.setitem(engine_layer.NATIVE, "enabled", True)
    # without the fused kernels, the LSTM and GRU take PyTorch's operator
    monkeypatch.setattr(engine_layer, "_fused_ready", lambda explicit: False)
    assert choose("GRU", 8, 1024, True) and choose("LSTM", 8, 1024, True)


def test_auto_decides_per_call_from_grad_mode(monkeypatch):
    """The same LSTM (H = 300) trains on the fused kernels and runs forward-only on PyTorch's
    operator; NATIVE["enabled"] = False keeps it on rnnkit's engine."""
    monkeypatch.setattr(engine_layer, "_fused_ready", lambda explicit: True)
    model = rnnkit.LSTM(4, 300)
    x = torch.randn(3, 16, 4)
    assert not _calls_native(monkeypatch, model, x)
    with torch.no_grad():
        assert _calls_native(monkeypatch, model, x)
        assert not _calls_native(monkeypatch, model, x, lengths=[3] * 15 + [2])
        monkeypatch.setitem(engine_layer.NATIVE, "enabled", False)
        assert not _calls_native(monkeypatch, model, x)


def test_under_a_compiler_auto_runs_rnnkit_s_operator(monkeypatch):
    """Traced, "auto" records torch.ops.rnnkit (one node per layer and direction), never the
    native operator that a tracer would unroll per time step."""
    model = rnnkit.LSTM(4, 6).eval()
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        assert _calls_native(monkeypatch, model, x)
        program = torch.export.export(model, (x,))
    targets = {str(node.target) for node in program.graph.nodes}
    assert any(t.startswith("rnnkit.") for t in targets) and not any("lstm" == t.split(".")[-2] for t in targets
                                                                       if t.startswith("aten."))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x)[0], model(x)[0])


def test_triton_where_it_cannot_run_is_a_clear_error():
    """Without CUDA (and outside Triton's interpreter) backend='triton' names why and what to
    use; "auto" never chooses it."""
    from rnnkit.engine.kernels import KernelUnavailable
    from rnnkit.engine.kernels import triton as kt

    x = torch.randn(3, 2, 4)
    reason = kt.unavailable_reason(x.device)
    if not reason:
        pytest.skip("Triton's kernels can run here")
    with pytest.raises(KernelUnavailable, match=r"backend='triton' cannot run here: .*Use 'auto'"):
        rnnkit.LSTM(4, 5, backend="triton")(x)
