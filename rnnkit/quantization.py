"""Dynamic quantization of models that hold rnnkit layers.

``torch.ao.quantization.quantize_dynamic`` picks the modules to quantize by their exact type
(``torch.nn.LSTM``, ``torch.nn.GRU``, ``torch.nn.LSTMCell``, ...), so it passes over
rnnkit's layers, which are not subclasses of torch.nn's (a subclass would make
``torch.compile`` graph-break on them: see docs/compatibility.md), and leaves them in float
without a word.  :func:`quantize_dynamic` first swaps each rnnkit layer and cell for the
equivalent torch.nn module holding the same weights, then calls PyTorch's, which replaces
those with its dynamically quantized LSTM/GRU and cells.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rnnkit.models.cells import _CellBase
from rnnkit.models.rnn import RNNBase


def to_torch(module: nn.Module) -> nn.Module:
    """The torch.nn equivalent of one rnnkit layer or cell, with copies of its weights;
    any other module is returned as it is."""
    return module.to_torch() if isinstance(module, (RNNBase, _CellBase)) else module


def swap_to_torch(model: nn.Module) -> nn.Module:
    """``model`` with every rnnkit layer and cell inside it replaced (in place) by its
    torch.nn equivalent; returns the model (or the equivalent, if ``model`` is one itself).

    The torch.nn layers take no ``lengths=`` argument: a model that passes ``lengths=`` to
    its recurrent layer should pass a PackedSequence instead before it is swapped."""
    top = to_torch(model)
    if top is not model:
        return top
    for name, child in list(model.named_children()):
        setattr(model, name, swap_to_torch(child))
    return model


def quantize_dynamic(model: nn.Module, qconfig_spec=None, dtype=torch.qint8, inplace: bool = False) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` that also quantizes rnnkit's layers and
    cells (see the module docstring); the same arguments.  The quantized layers are
    PyTorch's own and run PyTorch's kernels."""
    if not inplace:
        model = copy.deepcopy(model)
    model = swap_to_torch(model)
    return torch.ao.quantization.quantize_dynamic(model, qconfig_spec, dtype=dtype, inplace=True)
