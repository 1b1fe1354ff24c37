"""Initializations for recurrent layers, by the names the literature gives them.

Every function takes a recurrent module — ``rnnkit.RNN/LSTM/GRU`` or their ``torch.nn``
namesakes (same parameter names) — changes its parameters in place under ``no_grad`` and
returns the module, so calls chain::

    rnn = rnnkit.init.hidden_normal_(rnnkit.RNN(8, 100, nonlinearity="relu"), scale=2.0)
    lstm = rnnkit.init.forget_bias_(rnnkit.init.hidden_orthogonal_(rnnkit.LSTM(8, 100)), 1.0)

Gated cells pack their gates along the rows of ``weight_hh`` (4 blocks for the LSTM, 3 for
the GRU); block-wise initializations (orthogonal, identity) treat each gate's (H, P) block on
its own, as the papers that introduced them treat the single matrix of a plain RNN.

- :func:`hidden_normal_`: ``W_hh ~ N(0, s/n)`` with n the size of the state that ``W_hh``
  multiplies.  For a ReLU RNN about half the units are active, so each step scales
  ``E||h||^2`` by ``s/2``: s = 2 keeps the scale (He et al. 2015's argument, applied over
  time), s = 3 explodes, s = 1.5 vanishes.
- :func:`hidden_orthogonal_`: every gate block orthogonal (Saxe, McClelland & Ganguli 2014);
  all singular values equal ``gain``.
- :func:`hidden_identity_`: ``W_hh = gain * I`` and zero biases: the IRNN of Le, Jaitly &
  Hinton (2015) ("A simple way to initialize recurrent networks of rectified linear units").
- :func:`input_normal_`: ``W_ih ~ N(0, std^2)``.
- :func:`uniform_`: every parameter ``U(-a, a)`` (Zaremba et al. 2014 use a = 0.05 / 0.04).
- :func:`forget_bias_`: the LSTM forget gate's bias (Gers, Schmidhuber & Cummins 2000;
  Jozefowicz, Zaremba & Sutskever 2015 recommend 1), so f_t starts near sigmoid(value).
- :func:`apply_init`: one of these by a short spec string, for configs and the command line.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from rnnkit.engine.steps import GATES, cell_kind


def _mode(module: nn.Module) -> str:
    """The cell kind ("RNN", "LSTM" or "GRU") of a recurrent layer; TypeError for anything else."""
    mode = cell_kind(getattr(module, "mode", None))
    if mode not in GATES or not hasattr(module, "weight_hh_l0"):
        raise TypeError(
            "expected a recurrent layer (rnnkit or torch.nn RNN/LSTM/GRU), got "
            f"{type(module).__name__}"
        )
    return mode


def _suffixes(module: nn.Module) -> Iterator[str]:
    directions = 2 if module.bidirectional else 1
    for layer in range(module.num_layers):
        for direction in range(directions):
            yield f"_l{layer}" + ("_reverse" if direction == 1 else "")


def _params(module: nn.Module, base: str) -> Iterator[torch.Tensor]:
    for suffix in _suffixes(module):
        p = getattr(module, base + suffix, None)
        if p is not None:
            yield p


def _blocks(module: nn.Module, weight: torch.Tensor) -> list[torch.Tensor]:
    """The gate blocks of a packed weight, as views."""
    return list(weight.chunk(len(GATES[_mode(module)]), dim=0))


@torch.no_grad()
def hidden_normal_(module: nn.Module, scale: float = 1.0) -> nn.Module:
    """``W_hh ~ N(0, scale / n)`` for every layer and direction; n = ``W_hh.shape[1]``."""
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    _mode(module)
    for w in _params(module, "weight_hh"):
        w.normal_(0.0, math.sqrt(scale / w.shape[1]))
    return module


@torch.no_grad()
def hidden_orthogonal_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Each gate block of ``W_hh`` a (semi-)orthogonal matrix times ``gain``."""
    _mode(module)
    for w in _params(module, "weight_hh"):
        for block in _blocks(module, w):
            nn.init.orthogonal_(block, gain=gain)
    return module


@torch.no_grad()
def hidden_identity_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """IRNN: each gate block of ``W_hh`` = ``gain * I``, every bias zero."""
    _mode(module)
    for w in _params(module, "weight_hh"):
        for block in _blocks(module, w):
            if block.shape[0] != block.shape[1]:
                raise ValueError(
                    "identity initialization needs square recurrent blocks; got "
                    f"{tuple(block.shape)} (a projected LSTM has P != H)"
                )
            block.copy_(torch.eye(block.shape[0], dtype=block.dtype, device=block.device) * gain)
    zero_bias_(module)
    return module


@torch.no_grad()
def input_normal_(module: nn.Module, std: float) -> nn.Module:
    """``W_ih ~ N(0, std^2)`` for every layer and direction."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    _mode(module)
    for w in _params(module, "weight_ih"):
        w.normal_(0.0, std)
    return module


@torch.no_grad()
def uniform_(module: nn.Module, a: float) -> nn.Module:
    """Every parameter ``U(-a, a)``."""
    if a < 0:
        raise ValueError(f"a must be >= 0, got {a}")
    _mode(module)
    for p in module.parameters():
        p.uniform_(-a, a)
    return module


@torch.no_grad()
def zero_bias_(module: nn.Module) -> nn.Module:
    _mode(module)
    for base in ("bias_ih", "bias_hh"):
        for b in _params(module, base):
            b.zero_()
    return module


@torch.no_grad()
def forget_bias_(module: nn.Module, value: float = 1.0) -> nn.Module:
    """Set the LSTM's forget-gate bias ``b_f = b_if + b_hf`` to ``value``.

    torch.nn keeps two bias vectors that add; ``b_if`` gets ``value`` and ``b_hf`` zero, so
    the effective bias is exactly ``value``.
    """
    if _mode(module) != "LSTM":
        raise ValueError(f"forget_bias_ applies to an LSTM, got a {type(module).__name__}")
    if not module.bias:
        raise ValueError("forget_bias_ needs an LSTM with bias=True")
    H = module.hidden_size
    for suffix in _suffixes(module):
        getattr(module, "bias_ih" + suffix)[H:2 * H].fill_(value)
        getattr(module, "bias_hh" + suffix)[H:2 * H].zero_()
    return module


INIT_SPECS = ("default", "normal:S", "orthogonal[:GAIN]", "identity[:GAIN]", "uniform:A")


def apply_init(module: nn.Module, spec: str) -> nn.Module:
    """Initialize the recurrent weights by a spec string: ``"default"`` (leave as built),
    ``"normal:2"`` (W_hh ~ N(0, 2/n)), ``"orthogonal"``, ``"identity"`` (IRNN),
    ``"uniform:0.05"``; an optional number after the colon is the scale, gain or bound."""
    name, _, arg = spec.partition(":")
    try:
        value = float(arg) if arg else None
    except ValueError:
        raise ValueError(f"init spec {spec!r}: the part after ':' must be a number, got {arg!r}") from None
    if name == "default" and value is None:
        return module
    if name == "normal":
        return hidden_normal_(module, 1.0 if value is None else value)
    if name == "orthogonal":
        return hidden_orthogonal_(module, 1.0 if value is None else value)
    if name == "identity":
        return hidden_identity_(module, 1.0 if value is None else value)
    if name == "uniform" and value is not None:
        return uniform_(module, value)
    raise ValueError(f"unknown init spec {spec!r}. Expected one of {list(INIT_SPECS)}")
