"""ONNX export of rnnkit's layers (rnnkit.onnx): the exported model takes the input as a graph
input with dynamic T and B, its outputs follow the input (never the example's baked in), and
onnxruntime matches the PyTorch module to 1e-5 on another T and B; what ONNX cannot express, and
an export without rnnkit's translations, fails with an error."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

import rnnkit  # noqa: E402
import rnnkit.onnx as rnnkit_onnx  # noqa: E402
from rnnkit.onnx import ExportUnsupported  # noqa: E402

Dim = torch.export.Dim
ATOL = 1e-5
D = 3

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the TorchScript exporter's notice
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:# The axis name"),  # T and B named twice in dynamic_shapes
]


def make(mode, **options):
    return getattr(rnnkit, mode)(D, 4, **options).eval()


def example(model, T, B, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, D) if model.batch_first else (T, B, D)
    return torch.randn(shape, generator=g)


def dims(model):
    """dynamic_shapes of the input: T and B by name."""
    return {0: Dim("B"), 1: Dim("T")} if model.batch_first else {0: Dim("T"), 1: Dim("B")}


def expected(model, *inputs, **kwargs):
    """The module's outputs, flat: output, h_n (, c_n)."""
    with torch.no_grad():
        out, state = model(*inputs, **kwargs)
    return [t.numpy() for t in (out, *(state if isinstance(state, tuple) else (state,)))]


def run(path, *feeds):
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(feeds), names
    return session.run(None, {name: feed.numpy() for name, feed in zip(names, feeds)})


def check_graph(path, model, n_inputs=1):
    """The model input is a graph input of dynamic T and B; one ONNX LSTM/GRU/RNN node per layer
    and direction; nothing of rnnkit's own domain left."""
    graph = onnx.load(str(path)).graph
    assert len(graph.input) == n_inputs
    x = graph.input[0].type.tensor_type.shape.dim
    assert len(x) == 3 and x[0].dim_param and x[1].dim_param and x[2].dim_value == D
    ops = [node.op_type for node in graph.node]
    assert ops.count(model.mode) == model.num_layers * model.num_directions, ops
    assert all(node.domain in ("", "ai.onnx") for node in graph.node), {node.domain for node in graph.node}


def check_against_module(path, model, *extra):
    """Two inputs of one shape give different outputs, each the module's; so does a third of
    another T and B."""
    a, b, c = example(model, 5, 2, 1), example(model, 5, 2, 2), example(model, 7, 3, 3)
    outs = {}
    for name, x in (("a", a), ("b", b), ("c", c)):
        got = run(path, x, *extra)
        want = expected(model, x)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)
        outs[name] = got
    assert not np.allclose(outs["a"][0], outs["b"][0])


CASES = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("RNN", {"nonlinearity": "identity", "bias": False}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("GRU", {"num_layers": 2}),
    ("GRU", {"bidirectional": True, "bias": False, "batch_first": True}),
]


@pytest.mark.parametrize("mode, options", CASES, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.items())))
def test_dynamo_export_matches_the_module_on_other_lengths_and_batches(tmp_path, mode, options):
    model = make(mode, **options)
    path = tmp_path / "model.onnx"
    rnnkit_onnx.export(model, (example(model, 5, 2, 0),), path, dynamic_shapes=(dims(model),))
    check_graph(path, model)
    check_against_module(path, model)


def test_initial_state_is_an_input(tmp_path):
    model = make("LSTM", num_layers=2, bidirectional=True)
    x = example(model, 5, 2, 0)
    h0, c0 = torch.randn(4, 2, 4), torch.randn(4, 2, 4)
    path = tmp_path / "model.onnx"
    batch = Dim("B")
    rnnkit_onnx.export(model, (x, (h0, c0)), path,
                       dynamic_shapes=({0: Dim("T"), 1: batch}, ({1: batch}, {1: batch})))
    x2, h2, c2 = example(model, 6, 3, 1), torch.randn(4, 3, 4), torch.randn(4, 3, 4)
    for g, w in zip(run(path, x2, h2, c2), expected(model, x2, (h2, c2))):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_lengths_are_an_input_with_zeros_past_each_end(tmp_path, mode):
    model = make(mode, bidirectional=True, batch_first=True)
    path = tmp_path / "model.onnx"
    rnnkit_onnx.export(model, (example(model, 5, 2, 0),), path, kwargs={"lengths": torch.tensor([5, 3])},
                       dynamic_shapes={"input": dims(model), "lengths": {0: Dim("B")}})
    check_graph(path, model, n_inputs=2)
    x, lengths = example(model, 7, 4, 1), torch.tensor([7, 1, 4, 6])
    got = run(path, x, lengths)
    for g, w in zip(got, expected(model, x, lengths=lengths)):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)
    assert np.all(got[0][1, 1:] == 0) and np.all(got[0][2, 4:] == 0)


@pytest.mark.skipif(not rnnkit_onnx.GLOBAL_REGISTRATION, reason="this PyTorch's exporter table was not found")
def test_plain_torch_onnx_export_finds_the_translations_after_import(tmp_path):
    model = make("GRU")
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (example(model, 5, 2, 0),), path, dynamo=True, dynamic_shapes=(dims(model),))
    check_against_module(path, model)


def test_a_callers_translation_wins():
    def refuse(*args, **kwargs):
        raise ExportUnsupported("the caller's own translation ran")

    model = make("RNN")
    with pytest.raises(ExportUnsupported, match="the caller's own translation ran"):
        rnnkit_onnx.export(model, (example(model, 5, 2, 0),),
                           custom_translation_table={torch.ops.rnnkit.rnn.default: refuse})


@pytest.mark.parametrize("mode, options, grad", [
    ("LSTM", {"num_layers": 2, "bidirectional": True}, True),  # the autograd Functions, inlined
    ("GRU", {"batch_first": True}, False),
    ("RNN", {"nonlinearity": "relu"}, True),
])
def test_torchscript_export_matches_the_module(tmp_path, mode, options, grad):
    model = make(mode, **options)
    path = tmp_path / "model.onnx"
    axes = {0: "B", 1: "T"} if model.batch_first else {0: "T", 1: "B"}
    with torch.set_grad_enabled(grad):
        torch.onnx.export(model, (example(model, 5, 2, 0),), path, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": axes})
    check_graph(path, model)
    check_against_module(path, model)


def test_torchscript_export_with_lengths(tmp_path):
    model = make("LSTM", bidirectional=True)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (example(model, 5, 2, 0), None, torch.tensor([5, 3])), path, dynamo=False,
                      input_names=["x", "lengths"], dynamic_axes={"x": {0: "T", 1: "B"}, "lengths": {0: "B"}},
                      opset_version=rnnkit_onnx.LEGACY_MIN_OPSET)
    x, lengths = example(model, 7, 4, 1), torch.tensor([7, 1, 4, 6])
    for g, w in zip(run(path, x, lengths), expected(model, x, lengths=lengths)):
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------- clear failures


def test_projection_is_refused_by_every_path(tmp_path):
    model = make("LSTM", proj_size=2)
    x = example(model, 5, 2, 0)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportUnsupported, match="proj_size > 0 cannot be exported"):
        rnnkit_onnx.export(model, (x,), path)
    with pytest.raises(Exception) as caught:
        torch.onnx.export(model, (x,), path, dynamo=True)
    assert "proj_size > 0 cannot be exported" in str(caught.value)
    with torch.no_grad(), pytest.raises(ExportUnsupported, match="proj_size > 0 cannot be exported"):
        torch.onnx.export(model, (x,), path, dynamo=False)
    # with grad the exporter reports the Function it could not inline (the reason is its warning)
    with pytest.raises(RuntimeError, match="Couldn't export Python operator LSTMOp"):
        torch.onnx.export(model, (x,), path, dynamo=False)
    assert not path.exists()


def test_torchscript_export_below_the_lowest_opset_is_refused(tmp_path):
    model = make("GRU")
    with torch.no_grad(), pytest.raises(ExportUnsupported, match=f"needs opset_version >= {rnnkit_onnx.LEGACY_MIN_OPSET}"):
        torch.onnx.export(model, (example(model, 5, 2, 0),), tmp_path / "model.onnx", dynamo=False,
                          opset_version=rnnkit_onnx.LEGACY_MIN_OPSET - 1)


def test_export_refuses_the_torchscript_exporter():
    with pytest.raises(ExportUnsupported, match="runs the dynamo exporter"):
        rnnkit_onnx.export(make("GRU"), (torch.randn(5, 2, D),), dynamo=False)


@pytest.fixture
def unregistered(monkeypatch):
    """The exporters as without ``import rnnkit.onnx`` (their private tables, restored after)."""
    from torch.onnx._internal.exporter._torchlib import _torchlib_registry
    from torch.onnx._internal.torchscript_exporter import registration

    ours = set(rnnkit_onnx.translation_table())
    monkeypatch.setattr(_torchlib_registry, "_registry",
                        [e for e in _torchlib_registry._registry if e.fx_target not in ours])
    for name in ("lstm", "gru", "rnn"):
        monkeypatch.delitem(registration.registry._registry, f"rnnkit::{name}")


def test_without_the_translations_every_exporter_fails(tmp_path, unregistered):
    model = make("LSTM")
    x = example(model, 5, 2, 0)
    path = tmp_path / "model.onnx"
    with pytest.raises(Exception, match="rnnkit.lstm"):
        torch.onnx.export(model, (x,), path, dynamo=True)
    with torch.no_grad(), pytest.raises(Exception, match="rnnkit::lstm"):
        torch.onnx.export(model, (x,), path, dynamo=False)
    with pytest.raises(RuntimeError, match="Couldn't export Python operator LSTMOp"):
        torch.onnx.export(model, (x,), path, dynamo=False)
    assert not path.exists()
