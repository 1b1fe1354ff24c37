"""Second derivatives (create_graph=True: gradient penalties, Hessian-vector products,
gradgradcheck) through every backend, against torch.nn and finite differences.

The hand-derived BPTT backward runs as a custom operator whose own autograd formula
recomputes the layer on the reference path (rnnkit.engine.ops); the bare autograd Functions,
which have no such formula, refuse instead of dropping a term."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engine.bptt import LSTMFunction
from rnnkit.engine.bptt.common import SECOND_ORDER

LAYERS = [(rnnkit.LSTM, torch.nn.LSTM), (rnnkit.GRU, torch.nn.GRU), (rnnkit.RNN, torch.nn.RNN)]
BACKENDS = ["auto", "bptt", "fused", "reference"]


def _penalized_grads(module, x):
    """Gradients of loss + |d loss / d params|^2 (a gradient penalty) with respect to the params."""
    out, _ = module(x)
    loss = (out ** 2).sum()
    grads = torch.autograd.grad(loss, list(module.parameters()), create_graph=True)
    total = loss + sum((g ** 2).sum() for g in grads)
    return torch.autograd.grad(total, list(module.parameters()))


def _pair(layer, peer, backend, **kwargs):
    if backend == "fused" and layer is rnnkit.RNN:
        pytest.skip("the RNN has no fused kernel ('fused' runs 'bptt')")
    torch.manual_seed(0)
    module = layer(3, 4, num_layers=2, backend=backend, **kwargs).double()
    oracle = peer(3, 4, num_layers=2, **kwargs).double()
    oracle.load_state_dict(module.state_dict())
    return module, oracle


@pytest.mark.parametrize("layer, peer", LAYERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_penalty_equals_torch_nn(layer, peer, backend):
    module, oracle = _pair(layer, peer, backend, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for ours, theirs in zip(_penalized_grads(module, x), _penalized_grads(oracle, x)):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layer, peer", LAYERS)
@pytest.mark.parametrize("backend", ["auto", "bptt"])
def test_the_penalty_alone_and_one_parameter_at_a_time(layer, peer, backend):
    """A loss linear in the output (the incoming gradient needs no grad), and
    torch.autograd.grad with respect to one bias only (it skips nodes off its paths)."""
    module, oracle = _pair(layer, peer, backend)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    results = []
    for m in (module, oracle):
        params = list(m.parameters())
        grads = torch.autograd.grad(m(x)[0].sum(), params, create_graph=True)
        results.append(torch.autograd.grad(sum((g ** 2).sum() for g in grads), [params[-1], params[1]]))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
        assert ours.abs().sum() > 0


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_gradgradcheck_with_lengths_and_projection(mode):
    torch.manual_seed(0)
    kwargs = {"proj_size": 2} if mode == "LSTM" else {}
    module = getattr(rnnkit, mode)(3, 4, backend="bptt", **kwargs).double()
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    params = list(module.parameters())

    def fn(x, *weights):
        names = [n for n, _ in module.named_parameters()]
        out, state = torch.func.functional_call(module, dict(zip(names, weights)), (x,), {"lengths": lengths})
        h_n = state[0] if isinstance(state, tuple) else state
        return out, h_n

    inputs = (x, *[p.detach().clone().requires_grad_() for p in params])
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_the_bare_function_refuses_a_second_derivative():
    """LSTMFunction (the eager autograd Function under the operator) has no double backward:
    it raises, naming the way, rather than dropping the term."""
    torch.manual_seed(1)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    w_ih = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    out, _, _ = LSTMFunction.apply(x, h0, h0.clone(), w_ih, w_hh, None, None, None)
    (g,) = torch.autograd.grad(out.sum(), [w_hh], create_graph=True)
    with pytest.raises(RuntimeError, match="first-order only"):
        (g ** 2).sum().backward()
    assert "backend='reference'" in SECOND_ORDER


def test_first_order_training_is_untouched():
    """create_graph=False (every optimizer step): the same gradients as torch.nn, no error."""
    torch.manual_seed(1)
    module = rnnkit.LSTM(3, 4, backend="bptt").double()
    oracle = torch.nn.LSTM(3, 4).double()
    oracle.load_state_dict(module.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    ours = torch.autograd.grad(module(x)[0].sum(), list(module.parameters()))
    theirs = torch.autograd.grad(oracle(x)[0].sum(), list(oracle.parameters()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
