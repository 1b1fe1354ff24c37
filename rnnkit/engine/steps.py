"""The step math of each recurrent cell, written as in the lecture.

Each function computes one time step for a batch and is differentiable by autograd.  They are
the *reference*: the per-step loop over these functions (``rnnkit.engine.reference``) is the
oracle every fast path is tested against.

Shapes: B batch, D input size, H hidden size, P projection size (P = H without projection).
Weights follow torch.nn's layout and gate packing:

- RNN:  ``w_ih`` (H, D), ``w_hh`` (H, H)
- LSTM: ``w_ih`` (4H, D) packed ``(W_ii|W_if|W_ig|W_io)``, ``w_hh`` (4H, P), ``w_hr`` (P, H)
- GRU:  ``w_ih`` (3H, D) packed ``(W_ir|W_iz|W_in)``, ``w_hh`` (3H, H)
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

GATES: dict[str, tuple[str, ...]] = {"RNN": ("",), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
"""The blocks each cell kind packs along the rows of ``w_ih``, ``w_hh`` and the biases, in
order (torch.nn's packing); the vanilla RNN has one block, with no gate name."""


def cell_kind(mode: str) -> str:
    """The key of :data:`GATES` for a recurrent layer's ``mode``: torch.nn's RNN names its
    nonlinearity there ("RNN_TANH", "RNN_RELU"); anything else is returned as it is."""
    return "RNN" if mode in ("RNN_TANH", "RNN_RELU") else mode


NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda z: z,
}


def check_nonlinearity(name: str) -> str:
    """Return ``name`` if it is a known RNN nonlinearity, else raise ValueError."""
    if name not in NONLINEARITIES:
        raise ValueError(
            f"Unknown nonlinearity {name!r}. Expected one of {sorted(NONLINEARITIES)}"
        )
    return name


def _affine(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    y = x @ w.t()
    return y if b is None else y + b


def rnn_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    r"""One step of the vanilla (Elman) RNN.

    .. math::
        h_t = f(W_{hh} h_{t-1} + W_{hx} x_t + b_h)

    with f in {tanh, relu, sigmoid, identity}; ``b_h = b_ih + b_hh`` as in torch.nn.

    Args:
        x: (B, D) input at step t.
        h: (B, H) previous hidden state.
    Returns:
        (B, H) new hidden state.
    """
    act = NONLINEARITIES[check_nonlinearity(nonlinearity)]
    return act(_affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh))


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    w_hr: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    r"""One step of the LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers, Schmidhuber & Cummins 2000), gates in the order i, f, g, o.

    .. math::
        [i_t, f_t, g_t, o_t] = [\sigma, \sigma, \tanh, \sigma](W_{hh} h_{t-1} + W_{hx} x_t + b_h) \\
        c_t = c_{t-1} \odot f_t + i_t \odot g_t \\
        h_t = \tanh(c_t) \odot o_t

    With a projection (Sak, Senior & Beaufays 2014; torch.nn's ``proj_size``),
    :math:`h_t = W_{hr} (\tanh(c_t) \odot o_t)`.

    Args:
        x: (B, D) input; h: (B, P) previous hidden state; c: (B, H) previous cell state.
    Returns:
        ``(h_t, c_t)`` of shapes (B, P) and (B, H).
    """
    i, f, g, o = lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    c_new = c * f + i * g
    h_new = torch.tanh(c_new) * o
    if w_hr is not None:
        h_new = h_new @ w_hr.t()  # (B, P)
    return h_new, c_new


def lstm_gates(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The LSTM's activated gates ``(i, f, g, o)``, each (B, H), of one step."""
    gates = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
) -> Tensor:
    r"""One step of the GRU (Cho et al. 2014) with torch.nn's equations, gates r, z, n.

    .. math::
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    Args:
        x: (B, D) input; h: (B, H) previous hidden state.
    Returns:
        (B, H) new hidden state.
    """
    gx = _affine(x, w_ih, b_ih)  # (B, 3H)
    gh = _affine(h, w_hh, b_hh)  # (B, 3H)
    xr, xz, xn = gx.chunk(3, dim=1)
    hr, hz, hn = gh.chunk(3, dim=1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h
