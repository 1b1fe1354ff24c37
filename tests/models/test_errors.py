"""Every bad input gets a ValueError/TypeError saying what was expected and what was received."""

import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit


def lstm(**kw):
    return rnnkit.LSTM(3, 4, num_layers=2, **kw)


def test_wrong_input_rank():
    with pytest.raises(ValueError, match=r"Expected input to be 2D .* or 3D .*got 4D"):
        lstm()(torch.randn(2, 3, 4, 3))
    with pytest.raises(ValueError, match="got 1D"):
        rnnkit.GRU(3, 4)(torch.randn(3))


def test_wrong_feature_size():
    with pytest.raises(ValueError, match="Expected 3, got 5"):
        lstm()(torch.randn(7, 2, 5))
    with pytest.raises(ValueError, match="Expected 3, got 5"):
        rnnkit.RNNCell(3, 4)(torch.randn(2, 5))


def test_input_not_a_tensor():
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got list"):
        rnnkit.RNN(3, 4)([[1.0, 2.0, 3.0]])


def test_integer_input():
    with pytest.raises(TypeError, match="floating-point"):
        rnnkit.RNN(3, 4)(torch.ones(2, 1, 3, dtype=torch.int64))


def test_wrong_h0_shape():
    with pytest.raises(ValueError, match=r"Expected hx size \(2, 2, 4\), got \(1, 2, 4\)"):
        rnnkit.GRU(3, 4, num_layers=2)(torch.randn(7, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"Expected h_0 size \(4, 2, 4\), got \(2, 2, 4\)"):
        lstm(bidirectional=True)(torch.randn(7, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(4, 2, 4)))


def test_wrong_c0_shape():
    with pytest.raises(ValueError, match=r"Expected c_0 size \(2, 2, 4\), got \(2, 2, 3\)"):
        lstm()(torch.randn(7, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 2, 3)))
    # with a projection, h has P features and c has H
    with pytest.raises(ValueError, match=r"Expected h_0 size \(1, 2, 2\), got \(1, 2, 4\)"):
        rnnkit.LSTM(3, 4, proj_size=2)(torch.randn(7, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))


def test_lstm_hx_must_be_a_pair():
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\), got Tensor"):
        lstm()(torch.randn(7, 2, 3), torch.zeros(2, 2, 4))
    with pytest.raises(TypeError, match="hx must be a torch.Tensor, got tuple"):
        rnnkit.RNN(3, 4)(torch.randn(7, 2, 3), (torch.zeros(1, 2, 4),))


@pytest.mark.parametrize("bad,match", [([0, 3], r"lengths must lie in \[1, 7\].*min 0"), ([8, 3], r"max 8")])
def test_lengths_out_of_range(bad, match):
    with pytest.raises(ValueError, match=match):
        lstm()(torch.randn(7, 2, 3), lengths=torch.tensor(bad))


def test_lengths_wrong_count_or_type():
    with pytest.raises(ValueError, match=r"Expected lengths of shape \(2,\).*got \(3,\)"):
        lstm()(torch.randn(7, 2, 3), lengths=[7, 7, 7])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        lstm()(torch.randn(7, 2, 3), lengths=torch.tensor([7.0, 3.0]))


def test_lengths_with_packed_input():
    packed = pack_padded_sequence(torch.randn(7, 2, 3), [7, 3])
    with pytest.raises(ValueError, match="not both"):
        lstm()(packed, lengths=[7, 3])


def test_mismatched_dtype():
    with pytest.raises(TypeError, match="Expected torch.float32, got torch.float64"):
        lstm()(torch.randn(7, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="h_0 dtype .* Expected torch.float32, got torch.float64"):
        lstm()(torch.randn(7, 2, 3), (torch.zeros(2, 2, 4, dtype=torch.float64), torch.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match="Expected torch.float64, got torch.float32"):
        rnnkit.LSTMCell(3, 4, dtype=torch.float64)(torch.randn(2, 3))


def test_mismatched_device():
    layer = rnnkit.GRU(3, 4, device="meta")
    with pytest.raises(ValueError, match="Expected meta, got cpu"):
        layer(torch.randn(7, 2, 3, device="cpu"))


def test_empty_input():
    with pytest.raises(ValueError, match="at least one step and one sequence"):
        lstm()(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="batch size 0"):
        lstm()(torch.randn(7, 0, 3))


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"Unknown nonlinearity 'gelu'. Expected one of"):
        rnnkit.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        rnnkit.RNNCell(3, 4, nonlinearity="softsign")


def test_unknown_backend():
    from rnnkit.engine.layer import BACKENDS

    assert BACKENDS[:4] == ("auto", "reference", "bptt", "fused")
    with pytest.raises(ValueError, match="Unknown backend 'cudnn'. Expected one of " + re.escape(str(list(BACKENDS)))):
        rnnkit.LSTM(3, 4, backend="cudnn")
    layer = rnnkit.LSTM(3, 4)
    layer.backend = "fast"
    with pytest.raises(ValueError, match="Unknown backend 'fast'"):
        layer(torch.randn(2, 1, 3))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(hidden_size=0), "hidden_size must be an integer >= 1, got 0"),
        (dict(num_layers=0), "num_layers must be an integer >= 1"),
        (dict(dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5"),
        (dict(proj_size=4), "proj_size must be smaller than hidden_size. Expected < 4, got 4"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rnnkit.LSTM(**args)


def test_proj_size_only_for_lstm():
    from rnnkit.models.rnn import RNNBase

    with pytest.raises(ValueError, match="proj_size is supported only by LSTM"):
        RNNBase("GRU", 3, 4, proj_size=2)


def test_unbatched_with_lengths():
    with pytest.raises(ValueError, match="lengths= needs batched"):
        lstm()(torch.randn(7, 3), lengths=[7])


def test_dropout_single_layer_warns():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        rnnkit.GRU(3, 4, dropout=0.2)


def test_fused_backend_refuses_unsupported_dtype_and_device():
    with pytest.raises(TypeError, match="backend='fused' supports float32 and float64; got torch.bfloat16"):
        rnnkit.LSTM(3, 4, backend="fused", dtype=torch.bfloat16)(torch.randn(2, 1, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="backend='fused' runs on the CPU; got input on meta"):
        rnnkit.GRU(3, 4, backend="fused", device="meta")(torch.randn(2, 1, 3, device="meta"))


def test_auto_backend_runs_bfloat16_on_the_bptt_path():
    layer = rnnkit.LSTM(3, 4, dtype=torch.bfloat16)
    out, _ = layer(torch.randn(5, 2, 3, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (5, 2, 4)


# ------------------------------------------------------------------------- NaN and infinity
@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
@pytest.mark.parametrize("value,kind", [(float("nan"), "NaN"), (float("inf"), r"\+inf"), (-float("inf"), "-inf")])
def test_non_finite_input_is_refused_naming_where(cls, value, kind):
    x = torch.randn(7, 2, 3)
    x[3, 1, 2] = value
    with pytest.raises(ValueError, match=rf"{cls.__name__}: input contains {kind} at \(t=3, b=1, d=2\); "
                                         r"expected finite values \(1 non-finite entry in all\)"):
        cls(3, 4)(x)


def test_non_finite_input_positions_follow_the_users_layout():
    x = torch.randn(2, 7, 3)  # (B, T, D)
    x[1, 5] = float("nan")
    with pytest.raises(rnnkit.errors.NonFiniteInput, match=r"at \(t=5, b=1, d=0\).*\(3 non-finite entries"):
        lstm(batch_first=True)(x)
    with pytest.raises(ValueError, match=r"input contains NaN at \(t=5, d=0\)"):
        lstm()(x[1])  # unbatched (T, D)
    packed = pack_padded_sequence(torch.randn(7, 2, 3).index_put_((torch.tensor(2), torch.tensor(1)),
                                                                  torch.tensor(float("nan"))), [7, 3])
    with pytest.raises(ValueError, match=r"input contains NaN at \(t=2, b=1, d=0\)"):
        lstm()(packed)


def test_non_finite_padding_past_lengths_is_refused_with_the_reason():
    x = torch.randn(7, 2, 3)
    x[5, 1] = float("nan")  # sequence 1 has length 3
    with pytest.raises(ValueError, match=r"at \(t=5, b=1, d=0\), in the padding past sequence 1's length 3 "
                                         r"\(pad with zeros"):
        lstm()(x, lengths=[7, 3])


def test_non_finite_initial_state_is_refused():
    h0 = torch.zeros(2, 2, 4)
    h0[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"GRU: hx contains NaN at \(layer=1, b=0, d=3\)"):
        rnnkit.GRU(3, 4, num_layers=2)(torch.randn(7, 2, 3), h0)
    c0 = torch.zeros(4, 2, 4)
    c0[3, 1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"LSTM: c_0 contains \+inf at \(layer\*2\+direction=3, b=1, d=0\)"):
        lstm(bidirectional=True)(torch.randn(7, 2, 3), (torch.zeros(4, 2, 4), c0))


@pytest.mark.parametrize("cls", [rnnkit.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell])
def test_cells_refuse_non_finite_input_and_state(cls):
    x = torch.randn(2, 3)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"{cls.__name__}: input contains NaN at \(b=1, d=0\)"):
        cls(3, 4)(x)
    with pytest.raises(ValueError, match=r"input contains NaN at \(d=0\)"):
        cls(3, 4)(x[1])
    h = torch.zeros(2, 4)
    h[0, 2] = -float("inf")
    state = (h, torch.zeros(2, 4)) if cls is rnnkit.LSTMCell else h
    with pytest.raises(ValueError, match=r"contains -inf at \(b=0, d=2\)"):
        cls(3, 4)(torch.randn(2, 3), state)


def test_finite_checks_can_be_switched_off():
    x = torch.full((2, 1, 3), float("nan"))
    with rnnkit.finite_checks(False):
        out, _ = rnnkit.GRU(3, 4)(x)
        assert torch.isnan(out).all()
        rnnkit.GRUCell(3, 4)(x[0])
    with pytest.raises(ValueError, match="NaN"):
        rnnkit.GRU(3, 4)(x)  # back on after the block
    previous = rnnkit.set_finite_checks(False)
    try:
        assert previous is True
        rnnkit.RNN(3, 4)(x)
    finally:
        rnnkit.set_finite_checks(True)


def test_finite_inputs_pass_unchanged_through_the_check():
    x = torch.randn(7, 2, 3)
    x[3] = 1e38  # huge but finite
    out, _ = rnnkit.RNN(3, 4)(x)
    assert torch.isfinite(out).all()


def test_empty_batches_and_zero_lengths_are_refused_everywhere():
    for layer in (rnnkit.RNN(3, 4), rnnkit.GRU(3, 4, batch_first=True), lstm(bidirectional=True)):
        with pytest.raises(ValueError, match="at least one step and one sequence"):
            layer(torch.randn(0, 2, 3))
        with pytest.raises(ValueError, match="at least one step and one sequence"):
            layer(torch.randn(2, 0, 3))
        with pytest.raises(ValueError, match="at least one step and one sequence"):
            layer(torch.randn(0, 3))  # unbatched, no steps
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, 7\].*min 0"):
            layer(torch.randn(2, 7, 3) if layer.batch_first else torch.randn(7, 2, 3), lengths=[0, 7])
    for cell in (rnnkit.RNNCell(3, 4), rnnkit.LSTMCell(3, 4), rnnkit.GRUCell(3, 4)):
        with pytest.raises(ValueError, match="got batch size 0"):
            cell(torch.randn(0, 3))
