"""rnnkit.init: each initialization gives the statistics its paper states."""

import math

import pytest
import torch

import rnnkit
from rnnkit import init


@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU, torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU])
def test_hidden_normal_has_variance_scale_over_n(cls):
    layer = cls(8, 300, num_layers=2, bidirectional=True)
    init.hidden_normal_(layer, scale=3.0)
    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            assert abs(p.var().item() * 300 / 3.0 - 1) < 0.02, name  # n = 300 columns
            assert abs(p.mean().item()) < 0.01


def test_hidden_normal_sets_spectral_radius_near_sqrt_scale():
    # Girko's circular law: rho(W) -> sqrt(s) for W ~ N(0, s/n).
    layer = init.hidden_normal_(rnnkit.RNN(4, 400), scale=2.0)
    rho = torch.linalg.eigvals(layer.weight_hh_l0.detach().double()).abs().max().item()
    assert abs(rho - math.sqrt(2.0)) < 0.1


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_orthogonal_blocks(cls):
    layer = init.hidden_orthogonal_(cls(5, 16), gain=0.9)
    for block in layer.weight_hh_l0.detach().chunk(layer.weight_hh_l0.shape[0] // 16):
        torch.testing.assert_close(block @ block.t(), 0.81 * torch.eye(16), atol=1e-5, rtol=0)


def test_identity_is_the_irnn():
    layer = init.hidden_identity_(rnnkit.RNN(3, 6, nonlinearity="relu"))
    torch.testing.assert_close(layer.weight_hh_l0.detach(), torch.eye(6))
    assert layer.bias_ih_l0.abs().sum() == 0 and layer.bias_hh_l0.abs().sum() == 0
    # With zero input an IRNN holds a non-negative state exactly: h_t = relu(I h_{t-1}).
    h0 = torch.rand(1, 2, 6)
    _, h_n = layer(torch.zeros(10, 2, 3), h0)
    torch.testing.assert_close(h_n, h0)


def test_identity_refuses_projected_lstm():
    with pytest.raises(ValueError, match="square"):
        init.hidden_identity_(rnnkit.LSTM(3, 8, proj_size=4))


def test_forget_bias_sets_effective_bias_and_gate():
    lstm = init.forget_bias_(rnnkit.LSTM(3, 5, num_layers=2), 2.5)
    for layer in range(2):
        b = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")).detach()
        torch.testing.assert_close(b[5:10], torch.full((5,), 2.5))
    # torch.nn agrees on which slice is the forget gate: with zero weights f = sigmoid(2.5),
    # i = o = sigmoid(b_i), g = tanh(b_g); one step from zero state gives c_1 = i * g.
    ref = torch.nn.LSTM(3, 5)
    with torch.no_grad():
        for p in ref.parameters():
            p.zero_()
    init.forget_bias_(ref, 2.5)
    with torch.no_grad():
        ref.bias_ih_l0[10:15].fill_(1.0)  # g
        ref.bias_ih_l0[0:5].fill_(1.0)  # i
    c0 = torch.ones(1, 1, 5)
    _, (_, c1) = ref(torch.zeros(1, 1, 3), (torch.zeros(1, 1, 5), c0))
    expected = torch.sigmoid(torch.tensor(2.5)) + torch.sigmoid(torch.tensor(1.0)) * math.tanh(1.0)
    torch.testing.assert_close(c1, torch.full((1, 1, 5), expected.item()))


def test_forget_bias_errors():
    with pytest.raises(ValueError, match="LSTM"):
        init.forget_bias_(rnnkit.GRU(3, 4), 1.0)
    with pytest.raises(ValueError, match="bias=True"):
        init.forget_bias_(rnnkit.LSTM(3, 4, bias=False), 1.0)
    with pytest.raises(TypeError, match="recurrent layer"):
        init.hidden_normal_(torch.nn.Linear(3, 4))


def test_uniform_and_input_normal():
    layer = init.uniform_(rnnkit.LSTM(10, 50), 0.05)
    assert all(p.abs().max() <= 0.05 for p in layer.parameters())
    init.input_normal_(layer, 0.001)
    assert abs(layer.weight_ih_l0.std().item() - 0.001) < 1e-4


def test_apply_init_specs():
    layer = rnnkit.RNN(3, 8)
    init.apply_init(layer, "identity")
    torch.testing.assert_close(layer.weight_hh_l0.detach(), torch.eye(8))
    init.apply_init(layer, "uniform:0.01")
    assert layer.weight_hh_l0.abs().max() <= 0.01
    before = layer.weight_hh_l0.detach().clone()
    init.apply_init(layer, "default")
    torch.testing.assert_close(layer.weight_hh_l0.detach(), before)
    for bad in ("gaussian", "uniform", "normal:x"):
        with pytest.raises(ValueError, match="init spec"):
            init.apply_init(layer, bad)


def test_language_model_takes_init_and_forget_bias_from_its_config():
    from rnnkit.tasks.lm.task import LanguageModel, LMModelConfig

    model = LanguageModel(20, LMModelConfig(embed_size=8, hidden_size=8, num_layers=1, init="orthogonal",
                                            forget_bias=1.0))
    w = model.rnn.weight_hh_l0.detach()
    torch.testing.assert_close(w[8:16] @ w[8:16].t(), torch.eye(8), atol=1e-5, rtol=0)
    b = (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0).detach()
    torch.testing.assert_close(b[8:16], torch.ones(8))
    with pytest.raises(ValueError, match="init spec"):
        LanguageModel(20, LMModelConfig(init="he"))
