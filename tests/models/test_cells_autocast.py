"""Cells under autocast take what autocast made lower-precision (a decoder's state from an
encoder or a projection) and give torch.nn's dtypes, as the layers do."""

import pytest
import torch

import rnnkit

CELLS = [(rnnkit.RNNCell, torch.nn.RNNCell), (rnnkit.LSTMCell, torch.nn.LSTMCell), (rnnkit.GRUCell, torch.nn.GRUCell)]
DTYPES = [torch.float32, torch.bfloat16]


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("cls, peer_cls", CELLS, ids=[c.__name__ for c, _ in CELLS])
@pytest.mark.parametrize("x_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("h_dtype", DTYPES, ids=str)
def test_cells_under_cpu_autocast_match_torch_nn(cls, peer_cls, x_dtype, h_dtype):
    ours = cls(3, 5)
    peer = peer_cls(3, 5)
    peer.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3).to(x_dtype)
    h = torch.randn(4, 5).to(h_dtype)
    state = (h, torch.randn(4, 5).to(h_dtype)) if cls is rnnkit.LSTMCell else h
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _as_tuple(ours(x, state))
        expected = _as_tuple(peer(x, state))
    assert [t.dtype for t in got] == [t.dtype for t in expected]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=2e-2)
    sum(t.float().sum() for t in got).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())


def test_outside_autocast_a_lower_precision_state_is_still_refused():
    with pytest.raises(TypeError, match="GRUCell: hx dtype must match the parameters' dtype"):
        rnnkit.GRUCell(3, 5)(torch.randn(2, 3), torch.randn(2, 5, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="LSTMCell: input dtype must match"):
        rnnkit.LSTMCell(3, 5)(torch.randn(2, 3, dtype=torch.bfloat16))


def test_float64_cells_are_left_alone_by_autocast():
    cell = rnnkit.GRUCell(3, 5, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cell(torch.randn(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float64
