"""rnnkit.models.streaming.Stream: stepping a layer one time step at a time gives what the
layer gives on the whole sequence (and what torch.nn gives), in every grad mode; bad inputs
are refused with what was expected and what was received."""

import itertools
import runpy
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.engine import kernels
from rnnkit.errors import NonFiniteInput
from rnnkit.models.streaming import Stream

D, H, T = 3, 5, 9
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}

KINDS = {
    "rnn_tanh": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "rnn_sigmoid": (rnnkit.RNN, None, {"nonlinearity": "sigmoid"}),
    "rnn_identity": (rnnkit.RNN, None, {"nonlinearity": "identity"}),
    "lstm": (rnnkit.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 2}),
    "gru": (rnnkit.GRU, torch.nn.GRU, {}),
}


def close(actual, expected, dtype, what):
    tol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


def random_state(layer, B, dtype, unbatched=False):
    P = layer.proj_size if getattr(layer, "proj_size", 0) else layer.hidden_size
    lead = (layer.num_layers,) if unbatched else (layer.num_layers, B)
    h0 = torch.randn(*lead, P, dtype=dtype)
    if layer.mode != "LSTM":
        return h0
    return h0, torch.randn(*lead, layer.hidden_size, dtype=dtype)


def stream_all(stream, x):
    """Feed x (T, B, D) or (T, D) step by step; the stacked outputs."""
    return torch.stack([stream.step(x_t) for x_t in x.unbind(0)])


@pytest.mark.parametrize("backend", ["auto", "bptt", "reference"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("layers,B,bias,init", list(itertools.product((1, 2), (1, 4), (True, False), (False, True))))
def test_stream_equals_the_whole_sequence_through_the_layer(backend, kind, layers, B, bias, init):
    ours_cls, _, extra = KINDS[kind]
    for dtype in (torch.float64, torch.float32):
        layer = ours_cls(D, H, num_layers=layers, bias=bias, backend=backend, dtype=dtype, **extra)
        x = torch.randn(T, B, D, dtype=dtype)
        hx = random_state(layer, B, dtype) if init else None
        with torch.no_grad():
            expected, expected_state = layer(x, hx)
        stream = Stream(layer, batch_size=B, state=hx)
        with torch.no_grad():
            out = stream_all(stream, x)
        close(out, expected, dtype, f"{dtype} outputs")
        for got, want in zip(as_list(stream.state), as_list(expected_state)):
            close(got, want, dtype, f"{dtype} final state")


@pytest.mark.parametrize("kind", [k for k, v in KINDS.items() if v[1] is not None])
@pytest.mark.parametrize("layers", [1, 2])
def test_stream_equals_torch_nn_with_the_same_state_dict(kind, layers):
    ours_cls, torch_cls, extra = KINDS[kind]
    for dtype in (torch.float64, torch.float32):
        theirs = torch_cls(D, H, num_layers=layers, dtype=dtype, **extra)
        layer = ours_cls(D, H, num_layers=layers, dtype=dtype, **extra)
        layer.load_state_dict(theirs.state_dict())
        x = torch.randn(T, 2, D, dtype=dtype)
        hx = random_state(layer, 2, dtype)
        with torch.no_grad():
            expected, expected_state = theirs(x, hx)
        stream = Stream(layer, batch_size=2, state=hx)
        with torch.inference_mode():
            out = stream_all(stream, x)
        close(out, expected, dtype, "outputs against torch.nn")
        for got, want in zip(as_list(stream.state), as_list(expected_state)):
            close(got, want, dtype, "final state against torch.nn")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_a_torch_nn_layer_streams_too(kind):
    _, torch_cls, extra = KINDS[kind]
    theirs = torch_cls(D, H, num_layers=2, dtype=torch.float64, **extra)
    x = torch.randn(T, 3, D, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = theirs(x)
        out = stream_all(Stream(theirs, batch_size=3), x)
    close(out, expected, torch.float64, "a torch.nn layer streamed")


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_tanh"])
def test_unbatched_steps_and_state(kind):
    ours_cls, _, extra = KINDS[kind]
    layer = ours_cls(D, H, num_layers=2, dtype=torch.float64, **extra)
    x = torch.randn(T, D, dtype=torch.float64)
    hx = random_state(layer, 1, torch.float64, unbatched=True)
    with torch.no_grad():
        expected, expected_state = layer(x, hx)
    stream = Stream(layer, state=hx)
    out = stream_all(stream, x)
    assert out.shape == expected.shape  # (T, P): each step's output is unbatched too
    close(out, expected, torch.float64, "unbatched outputs")
    for got, want in zip(as_list(stream.state), as_list(expected_state)):
        assert got.shape == want.shape
        close(got, want, torch.float64, "unbatched state")
    # a batched step makes the state batched again
    stream.step(x[0].unsqueeze(0))
    assert as_list(stream.state)[0].shape == (2, 1, layer.output_size)


def test_the_state_carries_over_to_the_layer_and_back():
    layer = rnnkit.LSTM(D, H, num_layers=2, dtype=torch.float64)
    x = torch.randn(2 * T, 2, D, dtype=torch.float64)
    with torch.no_grad():
        expected, (h_n, c_n) = layer(x)
        stream = Stream(layer, batch_size=2)
        first = stream_all(stream, x[:T])
        second, (h2, c2) = layer(x[T:], stream.state)  # the layer goes on from the stream's state
        close(torch.cat([first, second]), expected, torch.float64, "stream then layer")
        close(h2, h_n, torch.float64, "h_n")
        _, state = layer(x[:T])
        stream.reset(state)  # and the stream goes on from the layer's
        close(stream_all(stream, x[T:]), expected[T:], torch.float64, "layer then stream")
        close(stream.state[1], c_n, torch.float64, "c_n")


def test_reset_and_fresh_outputs():
    layer = rnnkit.GRU(D, H, dtype=torch.float64)
    x = torch.randn(T, 1, D, dtype=torch.float64)
    stream = Stream(layer)
    first = stream_all(stream, x)
    y = stream.step(x[0])
    kept = y.clone()
    stream.step(x[1]), stream.step(x[2])
    assert torch.equal(y, kept)  # each step returns its own tensor, never a view of the state
    stream.reset()
    assert torch.count_nonzero(stream.state) == 0
    assert torch.equal(stream_all(stream, x), first)
    state = stream.state
    state.add_(1.0)  # state is a copy
    assert not torch.equal(stream.state, state)


def test_grad_modes_and_no_graph():
    layer = rnnkit.LSTM(D, H, num_layers=2)
    x = torch.randn(T, 2, D, requires_grad=True)
    with torch.no_grad():
        expected, _ = layer(x)
    stream = Stream(layer, batch_size=2)
    out = stream_all(stream, x)  # grad mode on, input and weights requiring grad
    assert not out.requires_grad
    close(out, expected, torch.float32, "grad mode")
    with torch.inference_mode():
        made_inside = Stream(layer, batch_size=2)  # buffers made in inference mode ...
        stream.reset()
        close(stream_all(stream, x), expected, torch.float32, "inference mode")
    close(stream_all(made_inside, x), expected, torch.float32, "stepped outside")  # ... still step outside it


def test_dropout_is_not_applied():
    layer = rnnkit.LSTM(D, H, num_layers=3, dropout=0.5, dtype=torch.float64)  # training mode
    x = torch.randn(T, 2, D, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = layer.eval()(x)
    layer.train()
    close(stream_all(Stream(layer, batch_size=2), x), expected, torch.float64, "dropout")


def test_weights_are_copied_until_reload():
    layer = rnnkit.LSTM(D, H, dtype=torch.float64)
    x = torch.randn(T, 1, D, dtype=torch.float64)
    stream = Stream(layer)
    before = stream_all(stream, x)
    with torch.no_grad():
        layer.weight_hh_l0.mul_(0.5)
        expected, _ = layer(x)
    stream.reset()
    assert torch.equal(stream_all(stream, x), before)
    stream.reload()
    stream.reset()
    close(stream_all(stream, x), expected, torch.float64, "after reload")


@pytest.mark.skipif(not kernels.fused_cpu_available(), reason="no C++ compiler for the fused kernels")
def test_the_stream_runs_the_layers_backend():
    assert Stream(rnnkit.LSTM(D, H)).backend == "fused"
    assert Stream(rnnkit.GRU(D, H, dtype=torch.float64)).backend == "fused"
    assert Stream(rnnkit.LSTM(D, H, backend="bptt")).backend == "bptt"
    assert Stream(rnnkit.RNN(D, H)).backend == "bptt"  # the RNN step has no kernel
    assert Stream(rnnkit.LSTM(D, H, dtype=torch.bfloat16)).backend == "bptt"


def test_lower_precision_input_under_autocast_is_cast_back():
    layer = rnnkit.LSTM(D, H)
    x = torch.randn(T, 1, D).to(torch.bfloat16)
    with torch.no_grad():
        expected, _ = layer(x.float())
    stream = Stream(layer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stream_all(stream, x)
    assert out.dtype == torch.float32
    close(out, expected, torch.float32, "autocast")


# ------------------------------------------------------------------------------ errors


def test_bidirectional_layers_are_refused():
    with pytest.raises(ValueError, match=r"bidirectional .*reverse direction.*needs the future"):
        Stream(rnnkit.GRU(D, H, bidirectional=True))
    with pytest.raises(ValueError, match="bidirectional"):
        Stream(torch.nn.LSTM(D, H, bidirectional=True))


def test_not_a_recurrent_layer():
    with pytest.raises(TypeError, match="layer must be an rnnkit or torch.nn RNN, LSTM or GRU, got LSTMCell"):
        Stream(rnnkit.LSTMCell(D, H))


@pytest.mark.parametrize("batch_size", [0, 2.0, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {batch_size!r}"):
        Stream(rnnkit.LSTM(D, H), batch_size=batch_size)


def test_wrong_step_shapes():
    stream = Stream(rnnkit.LSTM(D, H), batch_size=2)
    with pytest.raises(ValueError, match=r"Expected input of one step of shape \(2, 3\) .*got \(2, 4\)"):
        stream.step(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"Expected input of one step of shape \(2, 3\) .*got \(3,\)"):
        stream.step(torch.randn(3))  # unbatched only with batch_size 1
    with pytest.raises(ValueError, match=r"shape \(1, 3\) or \(3,\) .*got \(5, 1, 3\)"):
        Stream(rnnkit.GRU(D, H)).step(torch.randn(5, 1, 3))  # a sequence is not a step


def test_wrong_step_dtype_device_and_type():
    stream = Stream(rnnkit.LSTM(D, H))
    with pytest.raises(TypeError, match=r"input dtype must match .*Expected torch.float32, got torch.float64"):
        stream.step(torch.randn(1, D, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point tensor, got torch.int64"):
        stream.step(torch.ones(1, D, dtype=torch.int64))
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got list"):
        stream.step([0.0, 1.0, 2.0])
    if torch.device("meta") != stream.device:
        with pytest.raises(ValueError, match=r"on the layer's device. Expected cpu, got meta"):
            stream.step(torch.empty(1, D, device="meta"))


def test_wrong_state():
    layer = rnnkit.LSTM(D, H, num_layers=2, proj_size=2)
    with pytest.raises(ValueError, match=r"Expected h_0 of shape \(2, 3, 2\), got \(2, 3, 5\)"):
        Stream(layer, batch_size=3, state=(torch.zeros(2, 3, 5), torch.zeros(2, 3, 5)))
    with pytest.raises(ValueError, match=r"Expected c_0 of shape \(2, 1, 5\) or \(2, 5\), got \(2, 1, 2\)"):
        Stream(layer, state=(torch.zeros(2, 1, 2), torch.zeros(2, 1, 2)))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h_0, c_0\), got Tensor"):
        Stream(layer, state=torch.zeros(2, 1, 2))
    with pytest.raises(TypeError, match="state must be a tensor h_0, got tuple"):
        Stream(rnnkit.GRU(D, H), state=(torch.zeros(1, 1, H),))
    with pytest.raises(ValueError, match="both be batched or both unbatched"):
        Stream(layer, state=(torch.zeros(2, 1, 2), torch.zeros(2, 5)))
    with pytest.raises(TypeError, match="h_0 dtype must match"):
        Stream(rnnkit.GRU(D, H), state=torch.zeros(1, 1, H, dtype=torch.float64))


def test_non_finite_input_is_refused_and_the_state_kept():
    stream = Stream(rnnkit.LSTM(D, H))
    stream.step(torch.randn(1, D))
    before = stream.state
    x = torch.randn(1, D)
    x[0, 2] = float("nan")
    with pytest.raises(NonFiniteInput, match=r"input contains NaN at \(b=0, d=2\)"):
        stream.step(x)
    for got, want in zip(stream.state, before):
        assert torch.equal(got, want)
    with rnnkit.finite_checks(False):
        assert torch.isnan(stream.step(x)).all()


BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "streaming.py"


def test_the_latency_benchmark_runs(capsys):
    """benchmarks/streaming.py end to end on a tiny size (no timing is asserted)."""
    main = runpy.run_path(str(BENCHMARK))["main"]
    main(["--sizes", "8", "--layers", "1", "2", "--rounds", "1", "--steps", "3"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 8 |")]
    assert len(rows) == 2 and all(line.count("|") == 10 for line in rows)


@pytest.mark.skipif(not kernels.fused_cpu_available(), reason="no C++ compiler for the fused kernels")
def test_the_kernel_comparison_runs(capsys):
    runpy.run_path(str(BENCHMARK))["main"](["--kernel", "--sizes", "8", "--layers", "1", "--rounds", "1", "--steps", "3"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| LSTM |", "| GRU |"))]
    assert len(rows) == 2 and all(line.count("|") == 7 for line in rows)
