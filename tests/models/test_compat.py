"""Drop-in where torch.nn's layers go: torch.compile, torch.export, TorchScript, torch.func,
autocast, dynamic quantization, whole-model torch.load, and training a word-level language
model step for step like torch.nn.  docs/compatibility.md lists each item with its test."""

from __future__ import annotations

import io

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.engine import layer as engine_layer
from rnnkit.quantization import quantize_dynamic

LAYERS = [(rnnkit.LSTM, torch.nn.LSTM), (rnnkit.GRU, torch.nn.GRU), (rnnkit.RNN, torch.nn.RNN)]
IDS = ["LSTM", "GRU", "RNN"]


def _layer(cls, **kwargs):
    torch.manual_seed(0)
    return cls(6, 8, num_layers=2, **kwargs)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_compile_fullgraph_one_graph_for_every_length(cls, _, monkeypatch):
    """Under a compiler "auto" runs rnnkit's operators; eager with NATIVE["enabled"] off runs the
    same engine, bit for bit."""
    from torch._dynamo.utils import counters

    monkeypatch.setitem(engine_layer.NATIVE, "enabled", False)

    model = _layer(cls, bidirectional=True)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    counters.clear()
    for T in (3, 5, 9, 17, 33):
        x = torch.randn(T, 4, 6)
        torch.testing.assert_close(compiled(x)[0], model(x)[0], rtol=0, atol=0)
    # the first length compiles a static graph, the second a dynamic one that serves the rest
    assert counters["stats"]["unique_graphs"] <= 2


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_compile_training_step_matches_eager(cls, _):
    model = _layer(cls)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(7, 3, 6, requires_grad=True)
    lengths = torch.tensor([7, 4, 2])
    grads = []
    for run in (compiled, model):
        out = run(x, lengths=lengths)[0]
        grads.append(torch.autograd.grad((out ** 2).sum(), [x, *model.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_export_with_a_dynamic_length(cls, _):
    model = _layer(cls, batch_first=True)
    T = torch.export.Dim("T", min=2, max=512)
    program = torch.export.export(model, (torch.randn(3, 5, 6),), dynamic_shapes=({1: T},))
    names = {node.target.name() for node in program.graph.nodes if hasattr(node.target, "name")}
    assert any(name.startswith("rnnkit::") for name in names)
    x = torch.randn(3, 11, 6)
    torch.testing.assert_close(program.module()(x)[0], model(x)[0])


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_jit_trace_follows_a_new_length_and_script_says_what_to_use(cls, _):
    model = _layer(cls)
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(model, (torch.randn(5, 2, 6),), check_trace=False)
    graph = str(traced.inlined_graph)
    assert "rnnkit::" in graph or 'module="rnnkit.engine.ops"' in graph  # the operator, not constants
    x = torch.randn(12, 3, 6)
    torch.testing.assert_close(traced(x)[0], model(x)[0])
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.export.export"):
        torch.jit.script(model)
    with pytest.raises(RuntimeError, match="torch.jit.script"):
        torch.jit.script(torch.nn.Sequential(torch.nn.Identity(), model))


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_torch_func_grad_vjp_and_jacrev_equal_autograd(cls, _):
    model = _layer(cls).double()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p, x):
        return (torch.func.functional_call(model, p, (x,))[0] ** 2).sum()

    grads = torch.func.grad(loss)(params, x)
    expected = torch.autograd.grad(loss(dict(model.named_parameters()), x), list(model.parameters()))
    for (name, _p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(grads[name], e)
    jac = torch.func.jacrev(lambda x: torch.func.functional_call(model, params, (x,))[0].sum(0))(x)
    x_ = x.clone().requires_grad_()
    out = model(x_)[0].sum(0)  # (B, H)
    row = torch.autograd.grad(out[1, 3], x_)[0]
    torch.testing.assert_close(jac[1, 3], row)


@pytest.mark.parametrize("backend", ["auto", "fused"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("cls, peer, extra", [
    (rnnkit.LSTM, torch.nn.LSTM, {}),
    (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 3}),
    (rnnkit.GRU, torch.nn.GRU, {}),
    (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
], ids=["LSTM", "LSTM-proj", "GRU", "RNN"])
def test_autocast_output_dtypes_are_torch_nn_s(cls, peer, extra, packed, dtype, backend):
    """On "auto" (here PyTorch's operator for the LSTM) and on rnnkit's own engine."""
    ours = cls(4, 6, backend=backend, **extra)
    theirs = peer(4, 6, **extra)
    x = torch.randn(5, 3, 4)
    arg = pack_padded_sequence(x, [5, 4, 2]) if packed else x

    def dtypes(module):
        with torch.autocast("cpu", dtype=dtype):
            out, state = module(arg)
        out = out.data if packed else out
        return [t.dtype for t in (out, *(state if isinstance(state, tuple) else (state,)))]

    try:
        expected = dtypes(theirs)
    except RuntimeError:  # torch.nn's CPU LSTM has no float16 kernel; rnnkit lowers as for bfloat16
        assert cls is rnnkit.LSTM and dtype == torch.float16
        expected = [dtype, dtype] + ([torch.float32] if extra else [dtype])
    assert dtypes(ours) == expected


def test_flat_weights_follow_torch_nn_s_order():
    ours = rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    theirs = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [w.shape for w in ours._flat_weights] == [w.shape for w in theirs._flat_weights]
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names))


def test_to_torch_gives_the_same_function():
    for cls, kwargs in ((rnnkit.LSTM, {"proj_size": 2}), (rnnkit.GRU, {}), (rnnkit.RNN, {"nonlinearity": "relu"})):
        ours = cls(3, 5, num_layers=2, bidirectional=True, **kwargs)
        peer = ours.to_torch()
        assert type(peer) is getattr(torch.nn, cls.__name__)
        x = torch.randn(4, 2, 3)
        torch.testing.assert_close(peer(x)[0], ours(x)[0])
    with pytest.raises(ValueError, match="sigmoid"):
        rnnkit.RNN(3, 5, nonlinearity="sigmoid").to_torch()


class _Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = rnnkit.LSTM(16, 32, num_layers=2)
        self.gru = rnnkit.GRU(32, 32)
        self.cell = rnnkit.LSTMCell(32, 32)
        self.out = torch.nn.Linear(32, 5)

    def forward(self, x):
        y = self.gru(self.rnn(x)[0])[0]
        return self.out(self.cell(y[-1])[0])


def test_quantize_dynamic_quantizes_rnnkit_layers():
    from torch.ao.nn.quantized import dynamic as nnqd

    torch.manual_seed(0)
    model = _Tagger().eval()
    quantized = quantize_dynamic(model)
    assert isinstance(quantized.rnn, nnqd.LSTM) and isinstance(quantized.gru, nnqd.GRU)
    assert isinstance(quantized.cell, nnqd.LSTMCell) and isinstance(quantized.out, nnqd.Linear)
    assert isinstance(model.rnn, rnnkit.LSTM)  # not in place by default
    x = torch.randn(10, 3, 16)
    with torch.no_grad():
        exact, approx = model(x), quantized(x)
    assert 0 < (exact - approx).abs().max() < 0.05


def test_a_whole_model_saved_with_torch_save_loads_with_weights_only():
    model = torch.nn.Sequential(rnnkit.LSTM(3, 4, num_layers=2), rnnkit.GRUCell(4, 4))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals([torch.nn.Sequential]):
        loaded = torch.load(buffer, weights_only=True)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(loaded[0](x)[0], model[0](x)[0])


class _WordLM(torch.nn.Module):
    """The shape of PyTorch's word_language_model example: embedding, dropout, a two-layer
    LSTM with dropout between layers, dropout, a decoder tied to the embedding."""

    def __init__(self, rnn, vocab=50, size=16):
        super().__init__()
        self.encoder = torch.nn.Embedding(vocab, size)
        self.rnn = rnn
        self.drop = torch.nn.Dropout(0.2)
        self.decoder = torch.nn.Linear(size, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return self.decoder(self.drop(out)), hidden


@pytest.mark.parametrize("backend", ["auto", "bptt"])
def test_word_language_model_trains_like_torch_nn(backend):
    """30 steps of truncated BPTT (hidden state carried and detached, clipping, SGD) in float64:
    the losses of the rnnkit model and the torch.nn model agree to 1e-9.  (Dropout between
    the LSTM layers is off: torch.nn draws its masks inside its kernel, in another order.)"""
    torch.manual_seed(0)
    # four streams of a learnable text: each token mostly determines the next
    data = torch.zeros(30 * 8 + 1, 4, dtype=torch.int64)
    data[0] = torch.randint(0, 50, (4,))
    for t in range(1, data.shape[0]):
        noise = torch.randint(0, 50, (4,))
        data[t] = torch.where(torch.rand(4) < 0.9, (3 * data[t - 1] + 1) % 50, noise)
    state = _WordLM(torch.nn.LSTM(16, 16, num_layers=2)).double().state_dict()
    losses = []
    for rnn in (torch.nn.LSTM(16, 16, num_layers=2), rnnkit.LSTM(16, 16, num_layers=2, backend=backend)):
        model = _WordLM(rnn).double()
        model.load_state_dict(state)
        optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
        hidden = None
        run = []
        torch.manual_seed(3)  # the same dropout masks in both runs
        for step in range(30):
            tokens, targets = data[step * 8 : step * 8 + 8], data[step * 8 + 1 : step * 8 + 9]
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(tokens, hidden)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0][0] > losses[0][-1] + 0.1  # it learns
    for theirs, ours in zip(*losses):
        assert abs(theirs - ours) < 1e-9


@pytest.mark.parametrize("cls, _", LAYERS, ids=IDS)
def test_inference_export_and_the_eager_shortcut_run_the_operator(cls, _, monkeypatch):
    """Under no_grad, plain eager calls the operator's implementation directly; export still
    records the operator, and both give the eager result bit for bit (eager on rnnkit's own
    engine: NATIVE["enabled"] = False)."""
    monkeypatch.setitem(engine_layer.NATIVE, "enabled", False)
    model = _layer(cls).eval()
    x = torch.randn(6, 3, 6)
    with torch.no_grad():
        eager = model(x)[0]
        program = torch.export.export(model, (x,))
        exported = program.module()(x)[0]
    targets = {str(node.target) for node in program.graph.nodes}
    assert any(t.startswith("rnnkit.") for t in targets), targets
    torch.testing.assert_close(exported, eager, rtol=0, atol=0)


def test_a_traced_reference_layer_is_not_fixed_to_the_example_length():
    """backend='reference' is a Python loop over time; traced, it would be unrolled for the
    example's length.  Under tracing it records the operator of the same math instead."""
    model = rnnkit.LSTM(6, 8, backend="reference")
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(model, (torch.randn(5, 2, 6),), check_trace=False)
    x = torch.randn(9, 2, 6)
    assert traced(x)[0].shape == (9, 2, 8)
    torch.testing.assert_close(traced(x)[0], model(x)[0])


def test_layer_stream_steps_like_the_whole_sequence():
    torch.manual_seed(0)
    layer = rnnkit.GRU(4, 6, num_layers=2).eval()
    x = torch.randn(7, 4)
    stream = layer.stream()
    with torch.inference_mode():
        steps = torch.stack([stream.step(x_t) for x_t in x])
        whole, h_n = layer(x)
    torch.testing.assert_close(steps, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stream.state, h_n, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="future"):
        rnnkit.LSTM(4, 6, bidirectional=True).stream()
