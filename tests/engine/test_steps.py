"""The step math and the cell modules against torch.nn's cells."""

import pytest
import torch

import rnnkit
from rnnkit.engine.steps import rnn_cell
from tests.conftest import assert_close

F64 = torch.float64


@pytest.mark.parametrize(
    "ours_cls,theirs_cls,extra",
    [
        (rnnkit.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
        (rnnkit.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
        (rnnkit.LSTMCell, torch.nn.LSTMCell, {}),
        (rnnkit.GRUCell, torch.nn.GRUCell, {}),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [None, 1, 4])
@pytest.mark.parametrize("with_state", [False, True])
def test_cell_parity(ours_cls, theirs_cls, extra, bias, batch, with_state):
    ours = ours_cls(3, 5, bias=bias, dtype=F64, **extra)
    theirs = theirs_cls(3, 5, bias=bias, dtype=F64, **extra)
    theirs.load_state_dict(ours.state_dict())
    shape = (3,) if batch is None else (batch, 3)
    sshape = (5,) if batch is None else (batch, 5)
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    hx = None
    if with_state:
        hx = torch.randn(sshape, dtype=F64)
        if ours_cls is rnnkit.LSTMCell:
            hx = (hx, torch.randn(sshape, dtype=F64))
    a, b = ours(x, hx), theirs(x, hx)
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for u, v in zip(a, b):
        assert_close(u, v, F64, "state")
    ga = torch.autograd.grad(sum(u.sum() for u in a), [x, *ours.parameters()])
    gb = torch.autograd.grad(sum(v.sum() for v in b), [x, *theirs.parameters()])
    for u, v in zip(ga, gb):
        assert_close(u, v, F64, "gradient")


@pytest.mark.parametrize("nonlinearity,fn", [("sigmoid", torch.sigmoid), ("identity", lambda z: z)])
def test_rnn_cell_extra_nonlinearities(nonlinearity, fn):
    x, h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    w_ih, w_hh, b = torch.randn(4, 3, dtype=F64), torch.randn(4, 4, dtype=F64), torch.randn(4, dtype=F64)
    expected = fn(h @ w_hh.T + x @ w_ih.T + b)
    assert_close(rnn_cell(x, h, w_ih, w_hh, b, None, nonlinearity), expected, F64, "step")
