"""rnnkit.RNN/LSTM/GRU against torch.nn over the grid of the Core issue: outputs, final states
and the gradients of every parameter, the input and the initial state."""

import itertools
import zlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from tests.conftest import assert_close

KINDS = {
    "rnn_tanh": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnkit.LSTM, torch.nn.LSTM, {}),
    "lstm_proj": (rnnkit.LSTM, torch.nn.LSTM, {"proj_size": 2}),
    "gru": (rnnkit.GRU, torch.nn.GRU, {}),
}

D, H = 3, 4


def grid():
    for T, B, layers, bidir, batch_first, bias, init, varlen in itertools.product(
        (1, 7), (1, 5), (1, 2), (False, True), (False, True), (True, False), (False, True), (False, True)
    ):
        if varlen and T == 1:
            continue  # a single step admits no shorter length
        yield T, B, layers, bidir, batch_first, bias, init, varlen


def _lengths(T, B, gen):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = max(1, T - 2)  # at least one sequence shorter than T
    return lengths


def _initial_state(mod, B, dtype, gen, lstm):
    dirs = 2 if mod.bidirectional else 1
    P = mod.proj_size if getattr(mod, "proj_size", 0) else mod.hidden_size
    h0 = torch.randn(mod.num_layers * dirs, B, P, dtype=dtype, generator=gen).requires_grad_()
    if not lstm:
        return h0, [h0]
    c0 = torch.randn(mod.num_layers * dirs, B, mod.hidden_size, dtype=dtype, generator=gen).requires_grad_()
    return (h0, c0), [h0, c0]


def _run(mod, x, hx, lengths, batch_first, via_packed):
    """Forward with lengths (as PackedSequence or lengths=), returning padded output, states."""
    if lengths is None:
        out, state = mod(x, hx)
    elif via_packed:
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, state = mod(packed, hx)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    else:
        out, state = mod(x, hx, lengths=lengths)
    states = list(state) if isinstance(state, tuple) else [state]
    return out, states


@pytest.mark.parametrize("backend", ["bptt", "fused", "reference", "native"])
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("T,B,layers,bidir,batch_first,bias,init,varlen", list(grid()))
def test_parity_with_torch_nn(backend, kind, T, B, layers, bidir, batch_first, bias, init, varlen):
    ours_cls, torch_cls, extra = KINDS[kind]
    lstm = ours_cls is rnnkit.LSTM
    for dtype in (torch.float64, torch.float32):
        gen = torch.Generator().manual_seed(zlib.crc32(repr((kind, T, B, layers, bidir, batch_first, bias, init, varlen)).encode()))
        kwargs = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias, dtype=dtype, **extra)
        ours = ours_cls(D, H, backend=backend, **kwargs)
        theirs = torch_cls(D, H, **kwargs)
        theirs.load_state_dict(ours.state_dict())
        shape = (B, T, D) if batch_first else (T, B, D)
        x = torch.randn(shape, dtype=dtype, generator=gen)
        lengths = _lengths(T, B, gen) if varlen else None
        hx, leaves = _initial_state(ours, B, dtype, gen, lstm) if init else (None, [])

        x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_o, st_o = _run(ours, x_ours, hx, lengths, batch_first, via_packed=(B % 2 == 1 and layers == 2))
        out_t, st_t = _run(theirs, x_theirs, hx, lengths, batch_first, via_packed=True)

        assert_close(out_o, out_t, dtype, "output")
        for a, b in zip(st_o, st_t):
            assert_close(a, b, dtype, "final state")

        w_out = torch.randn(out_t.shape, dtype=dtype, generator=gen)
        w_st = [torch.randn(s.shape, dtype=dtype, generator=gen) for s in st_t]

        def loss(out, states):
            return (out * w_out).sum() + sum((s * w).sum() for s, w in zip(states, w_st))

        g_o = torch.autograd.grad(loss(out_o, st_o), [x_ours, *ours.parameters(), *leaves])
        g_t = torch.autograd.grad(loss(out_t, st_t), [x_theirs, *theirs.parameters(), *leaves])
        names = ["input", *dict(ours.named_parameters()), *["h0", "c0"][: len(leaves)]]
        for name, a, b in zip(names, g_o, g_t):
            assert_close(a, b, dtype, f"grad of {name}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trip(kind):
    ours_cls, torch_cls, extra = KINDS[kind]
    ours = ours_cls(D, H, num_layers=2, bidirectional=True, **extra)
    theirs = torch_cls(D, H, num_layers=2, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    for name, p in theirs.named_parameters():
        assert torch.equal(getattr(ours, name), p)
    theirs2 = torch_cls(D, H, num_layers=2, bidirectional=True, **extra)
    theirs2.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input(kind):
    ours_cls, torch_cls, extra = KINDS[kind]
    ours = ours_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64, **extra)
    theirs = torch_cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64, **extra)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, D, dtype=torch.float64)
    out_o, st_o = ours(x)
    out_t, st_t = theirs(x)
    assert_close(out_o, out_t, torch.float64, "output")
    for a, b in zip(st_o if isinstance(st_o, tuple) else [st_o], st_t if isinstance(st_t, tuple) else [st_t]):
        assert_close(a, b, torch.float64, "state")
    # an unbatched initial state round-trips
    out2, _ = ours(x, st_o)
    out3, _ = theirs(x, st_t)
    assert_close(out2, out3, torch.float64, "output from given state")


@pytest.mark.parametrize("backend", ["reference", "bptt", "fused", "native"])
def test_dropout_between_layers_matches_torch_under_same_seed(backend):
    ours = rnnkit.LSTM(D, H, num_layers=3, dropout=0.5, dtype=torch.float64, backend=backend)
    theirs = torch.nn.LSTM(D, H, num_layers=3, dropout=0.5, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, D, dtype=torch.float64)
    torch.manual_seed(3)
    out_o, _ = ours(x)
    torch.manual_seed(3)
    out_t, _ = theirs(x)
    assert_close(out_o, out_t, torch.float64, "train-mode output with dropout")
    ours.eval(), theirs.eval()
    assert_close(ours(x)[0], theirs(x)[0], torch.float64, "eval-mode output")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_runs_in_parameter_dtype_under_autocast(kind):
    """Under (CPU) bf16 autocast rnnkit's engine keeps float32 state and matches the plain run;
    the result comes back in torch.nn's dtype (bf16 for the LSTM, float32 for the GRU:
    tests/models/test_compat.py checks every case against torch.nn, on "auto")."""
    ours_cls, _, extra = KINDS[kind]
    layer = ours_cls(D, H, num_layers=2, backend="fused", **extra)
    x = torch.randn(6, 3, D)
    expected, _ = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x.to(torch.bfloat16))
        out.float().sum().backward()
    assert out.dtype == (torch.bfloat16 if kind == "lstm" else torch.float32)
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.02)  # the input was rounded to bf16
    assert layer.weight_hh_l0.grad is not None
