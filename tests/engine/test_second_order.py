"""Second derivatives: the hand-derived BPTT backward is first-order, and says so instead of
dropping a term; the reference backend differentiates twice, as torch.nn does."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engine.bptt.common import SECOND_ORDER

LAYERS = [(rnnkit.LSTM, torch.nn.LSTM), (rnnkit.GRU, torch.nn.GRU), (rnnkit.RNN, torch.nn.RNN)]


def _penalized_grads(module, x):
    """Gradients of loss + |d loss / d params|^2 (a gradient penalty) with respect to the params."""
    out, _ = module(x)
    loss = (out ** 2).sum()
    grads = torch.autograd.grad(loss, list(module.parameters()), create_graph=True)
    total = loss + sum((g ** 2).sum() for g in grads)
    return torch.autograd.grad(total, list(module.parameters()))


@pytest.mark.parametrize("layer, _", LAYERS)
@pytest.mark.parametrize("backend", ["auto", "bptt"])
def test_a_gradient_penalty_through_bptt_is_refused_not_dropped(layer, _, backend):
    torch.manual_seed(0)
    module = layer(3, 4, num_layers=2, backend=backend).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="first-order only.*backend='reference'"):
        _penalized_grads(module, x)
    # with respect to one bias only (torch.autograd.grad skips what lies off its paths)
    out, _ = module(x)
    loss = (out ** 2).sum()
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order only"):
        torch.autograd.grad(loss + sum((g ** 2).sum() for g in grads), [params[-1]])
    # the penalty alone (a loss linear in the output: the incoming gradient needs no grad)
    out, _ = module(x)
    grads = torch.autograd.grad(out.sum(), list(module.parameters()), create_graph=True)
    with pytest.raises(RuntimeError, match="first-order only"):
        sum((g ** 2).sum() for g in grads).backward()


@pytest.mark.parametrize("layer, peer", LAYERS)
def test_the_reference_backend_gives_the_gradient_penalty_of_torch_nn(layer, peer):
    torch.manual_seed(0)
    module = layer(3, 4, num_layers=2, backend="reference").double()
    oracle = peer(3, 4, num_layers=2).double()
    oracle.load_state_dict(module.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for ours, theirs in zip(_penalized_grads(module, x), _penalized_grads(oracle, x)):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)


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
    assert "backend='reference'" in SECOND_ORDER
