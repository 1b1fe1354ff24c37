"""trace_dynamics and spectral_radius against independent oracles: torch.nn's own cells with
autograd's retain_grad (the total derivative dL/dh_t), torch.linalg on the weights."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.models.probes import spectral_radius, trace_dynamics


def _oracle_rnn(ref: torch.nn.RNN, x, loss="last"):
    """Per-step ||h_t|| and ||dL/dh_t|| with torch.nn.RNNCell and retain_grad."""
    cell = torch.nn.RNNCell(ref.input_size, ref.hidden_size, nonlinearity=ref.nonlinearity, dtype=x.dtype)
    cell.load_state_dict({k[:-3]: v for k, v in ref.state_dict().items()})
    h = x.new_zeros(x.shape[1], ref.hidden_size)
    states = []
    for t in range(x.shape[0]):
        h = cell(x[t], h)
        h.retain_grad()
        states.append(h)
    (states[-1].sum() if loss == "last" else sum(s.sum() for s in states)).backward()
    return (np.array([s.detach().norm(dim=1).mean().item() for s in states]),
            np.array([s.grad.norm(dim=1).mean().item() for s in states]))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["last", "sum"])
def test_rnn_trace_matches_retain_grad_oracle(nonlinearity, loss):
    ref = torch.nn.RNN(4, 6, nonlinearity=nonlinearity, dtype=torch.float64)
    ours = rnnkit.RNN(4, 6, nonlinearity=nonlinearity, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    h_norm, g_norm = _oracle_rnn(ref, x, loss)
    for module in (ours, ref):  # rnnkit and torch.nn layers are both accepted
        d = trace_dynamics(module, x, loss=loss).directions[0]
        np.testing.assert_allclose(d.h_norm, h_norm, rtol=1e-10)
        np.testing.assert_allclose(d.grad_h_norm, g_norm, rtol=1e-10)
    assert d.gradient_ratio() == pytest.approx(g_norm[0] / g_norm[-1], rel=1e-10)
    if nonlinearity == "tanh":
        assert d.saturation.shape == (9,) and ((d.saturation >= 0) & (d.saturation <= 1)).all()


def test_lstm_trace_matches_retain_grad_oracle_for_h_and_c():
    ref = torch.nn.LSTM(3, 5, dtype=torch.float64)
    with torch.no_grad():
        ref.bias_ih_l0[5:10] += 2.0  # a forget gate away from 1/2
    cell = torch.nn.LSTMCell(3, 5, dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in ref.state_dict().items()})
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    h = c = x.new_zeros(2, 5)
    hs, cs = [], []
    for t in range(8):
        h, c = cell(x[t], (h, c))
        h.retain_grad()
        c.retain_grad()
        hs.append(h)
        cs.append(c)
    hs[-1].sum().backward()
    d = trace_dynamics(ref, x).directions[0]
    np.testing.assert_allclose(d.grad_h_norm, [s.grad.norm(dim=1).mean().item() for s in hs], rtol=1e-10)
    np.testing.assert_allclose(d.grad_c_norm, [s.grad.norm(dim=1).mean().item() for s in cs], rtol=1e-10)
    np.testing.assert_allclose(d.c_norm, [s.detach().norm(dim=1).mean().item() for s in cs], rtol=1e-10)
    # the mean forget gate of each step, from torch.nn's gate layout
    hprev = [x.new_zeros(2, 5)] + [s.detach() for s in hs[:-1]]
    f = [torch.sigmoid((x[t] @ ref.weight_ih_l0.T + ref.bias_ih_l0 + hprev[t] @ ref.weight_hh_l0.T
                        + ref.bias_hh_l0)[:, 5:10]).mean().item() for t in range(8)]
    np.testing.assert_allclose(d.forget, f, rtol=1e-10)


def test_stacked_bidirectional_with_lengths_matches_module_outputs():
    gru = rnnkit.GRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5])
    out, _ = gru(x, lengths=lengths)
    trace = trace_dynamics(gru, x, lengths=lengths)
    assert [(d.layer, d.direction) for d in trace.directions] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    top_forward = trace.directions[2].h_norm
    expected = [out[t, lengths > t, :4].norm(dim=1).mean().item() for t in range(7)]
    np.testing.assert_allclose(top_forward, expected, rtol=1e-10)
    # the loss at each sequence's last valid step, summed, as "last" promises
    last = out[lengths - 1, torch.arange(3)].sum().item()
    assert trace.loss == pytest.approx(last, rel=1e-10)


def test_grad_output_equals_the_loss_it_comes_from():
    lstm = rnnkit.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 6, 3, dtype=torch.float64)  # (B, T, D)
    by_sum = trace_dynamics(lstm, x, loss="sum")
    by_grad = trace_dynamics(lstm, x, grad_output=torch.ones(2, 6, 4, dtype=torch.float64))
    np.testing.assert_allclose(by_grad.directions[0].grad_h_norm, by_sum.directions[0].grad_h_norm, rtol=1e-12)
    # a PackedSequence input takes the gradient of the packed output's data
    lengths = torch.tensor([6, 3])
    packed = pack_padded_sequence(x, lengths, batch_first=True)
    out, _ = lstm(packed)
    g = torch.randn_like(out.data)
    trace = trace_dynamics(lstm, packed, grad_output=g)
    assert trace.directions[0].grad_h_norm.shape == (6,)
    with pytest.raises(ValueError, match="grad_output"):
        trace_dynamics(lstm, x, grad_output=torch.ones(2, 5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="loss"):
        trace_dynamics(lstm, x, loss="mean")


def test_parameter_grads_untouched():
    rnn = rnnkit.RNN(3, 4)
    trace_dynamics(rnn, torch.randn(5, 2, 3))
    assert all(p.grad is None for p in rnn.parameters())


def test_spectral_radius_against_eigvals():
    rnn = rnnkit.RNN(3, 10, num_layers=2)
    radii = spectral_radius(rnn)
    assert set(radii) == {"weight_hh_l0", "weight_hh_l1"}
    expected = np.abs(np.linalg.eigvals(rnn.weight_hh_l1.detach().double().numpy())).max()
    assert radii["weight_hh_l1"] == pytest.approx(expected, rel=1e-10)
    lstm = rnnkit.init.hidden_identity_(rnnkit.LSTM(3, 6))
    assert spectral_radius(lstm) == pytest.approx({f"weight_hh_l0[{g}]": 1.0 for g in "ifgo"})
    projected = spectral_radius(rnnkit.LSTM(3, 6, proj_size=2))
    assert len(projected) == 4 and all(v >= 0 for v in projected.values())
