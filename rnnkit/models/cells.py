"""Single-step cells, drop-in for ``torch.nn.RNNCell``, ``LSTMCell`` and ``GRUCell``.

Decoders and other step-wise loops use these; they call the same step math as the
reference path (``rnnkit.engine.steps``) and are differentiated by autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnkit.engine.bptt.common import autocast_enabled
from rnnkit.engine.steps import check_nonlinearity, gru_cell, lstm_cell, rnn_cell
from rnnkit.models.checks import check_finite, check_float_like, check_shape, check_tensor


def torch_equivalent(module: nn.Module, *args, **kwargs) -> nn.Module:
    """The torch.nn module of ``module``'s class name (``RNN``, ``LSTMCell``, ...), built with
    ``args`` and ``kwargs`` on its device and dtype, holding copies of its weights, in its
    train/eval mode.  An RNN's nonlinearity goes along; torch.nn has only tanh and relu."""
    name = type(module).__name__
    nonlinearity = getattr(module, "nonlinearity", None) if name in ("RNN", "RNNCell") else None
    if nonlinearity is not None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"{name}.to_torch: torch.nn.{name} supports nonlinearity 'tanh' or 'relu', got {nonlinearity!r}"
            )
        kwargs["nonlinearity"] = nonlinearity
    ref = next(module.parameters())
    peer = getattr(nn, name)(*args, **kwargs, device=ref.device, dtype=ref.dtype)
    peer.load_state_dict(module.state_dict())
    peer.train(module.training)
    return peer


class _CellBase(nn.Module):
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool, device, dtype) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {arg} must be an integer >= 1, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        G = self._gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, as torch.nn."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def to_torch(self) -> nn.Module:
        """An equivalent ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell`` holding copies of these
        weights (see :meth:`rnnkit.models.rnn.RNNBase.to_torch`)."""
        return torch_equivalent(self, self.input_size, self.hidden_size, bias=self.bias)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s

    def _check_like(self, label: str, value: Tensor) -> None:
        """``value`` must share the parameters' device, and their dtype unless autocast is on:
        then, as torch.nn's cells do, a cell takes an input or state that autocast made
        lower-precision (an encoder's final state, a projection's output); the step runs with
        :meth:`_step_weights`, and its results come out in the dtypes torch.nn's cell gives on
        the CPU (the state's dtype for the LSTM and GRU, autocast's for the RNN; on CUDA
        torch.nn's cells return autocast's dtype throughout)."""
        ref = self.weight_ih
        check_float_like(label, value, ref, type(self).__name__, any_float=autocast_enabled(ref.device.type))

    def _step_weights(self) -> tuple:
        """``(w_ih, w_hh, b_ih, b_hh)`` for a step: the parameters, or under autocast (with
        float32 parameters) their copies in autocast's dtype, as torch.nn's cells compute
        their affine maps in it, bias included (``F.linear`` under autocast)."""
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        device_type = self.weight_ih.device.type
        if self.weight_ih.dtype != torch.float32 or not autocast_enabled(device_type):
            return weights
        low = torch.get_autocast_dtype(device_type)
        return tuple(None if w is None else w.to(low) for w in weights)

    def _check_input(self, input) -> tuple[Tensor, bool]:
        """Return (B, D) input and whether it was unbatched (D,)."""
        name = type(self).__name__
        check_tensor("input", input, name)
        if input.dim() not in (1, 2):
            raise ValueError(
                f"{name}: Expected input to be 1D (D,) or 2D (B, D), got {input.dim()}D "
                f"with shape {tuple(input.shape)}"
            )
        self._check_like("input", input)
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.shape[-1]}"
            )
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[0] == 0:
            raise ValueError(f"{name}: Expected a batch of at least one, got batch size 0")
        check_finite("input", input, name, ("d",) if unbatched else ("b", "d"))
        return x, unbatched

    def _check_state(self, label: str, value, x: Tensor, unbatched: bool) -> Tensor:
        name = type(self).__name__
        if value is None:
            return x.new_zeros(x.shape[0], self.hidden_size)
        check_tensor(label, value, name)
        expected = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        check_shape(label, value, expected, name)
        self._check_like(label, value)
        check_finite(label, value, name, ("d",) if unbatched else ("b", "d"))
        return value.unsqueeze(0) if unbatched else value


class RNNCell(_CellBase):
    r"""One step of an Elman RNN, drop-in for :class:`torch.nn.RNNCell`.

    .. math:: h' = f(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    Args:
        input_size: D.  hidden_size: H.  bias: default True.
        nonlinearity: ``'tanh'`` | ``'relu'`` | ``'sigmoid'`` | ``'identity'``.
    Inputs: ``input`` (B, D) or (D,), ``hx`` (B, H) or (H,), zeros if None.
    Outputs: ``h'`` of the shape of ``hx``.
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        self.nonlinearity = check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, unbatched = self._check_input(input)
        h = self._check_state("hx", hx, x, unbatched)
        h = rnn_cell(x, h, *self._step_weights(), self.nonlinearity)
        return h.squeeze(0) if unbatched else h


class LSTMCell(_CellBase):
    r"""One step of an LSTM, drop-in for :class:`torch.nn.LSTMCell`; gates i, f, g, o.

    .. math::
        [i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](W_{ih} x + b_{ih} + W_{hh} h + b_{hh}) \\
        c' = c \odot f + i \odot g, \qquad h' = \tanh(c') \odot o

    Inputs: ``input`` (B, D) or (D,), ``hx = (h, c)`` each (B, H) or (H,), zeros if None.
    Outputs: ``(h', c')``.
    """

    _gates = 4

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:
        x, unbatched = self._check_input(input)
        if hx is None:
            hx = (None, None)
        elif not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        h = self._check_state("h", hx[0], x, unbatched)
        c = self._check_state("c", hx[1], x, unbatched)
        h, c = lstm_cell(x, h, c, *self._step_weights())
        if unbatched:
            return h.squeeze(0), c.squeeze(0)
        return h, c


class GRUCell(_CellBase):
    r"""One step of a GRU, drop-in for :class:`torch.nn.GRUCell`; gates r, z, n.

    .. math::
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \quad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})), \quad
        h' = (1 - z) \odot n + z \odot h

    Inputs: ``input`` (B, D) or (D,), ``hx`` (B, H) or (H,), zeros if None.
    Outputs: ``h'``.
    """

    _gates = 3

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, unbatched = self._check_input(input)
        h = self._check_state("hx", hx, x, unbatched)
        h = gru_cell(x, h, *self._step_weights())
        return h.squeeze(0) if unbatched else h
