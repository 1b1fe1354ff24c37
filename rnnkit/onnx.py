"""ONNX export of rnnkit's recurrent layers.

rnnkit's :class:`~rnnkit.RNN`, :class:`~rnnkit.LSTM` and :class:`~rnnkit.GRU` run each layer and
direction as one custom operator (``torch.ops.rnnkit.rnn``, ``.lstm``, ``.gru``, see
:mod:`rnnkit.engine.ops`).  This module gives those operators ONNX translations, onto ONNX's own
``RNN``, ``LSTM`` and ``GRU`` operators (one forward-direction node per layer and direction; the
reverse directions are time flips around them, as in PyTorch), for both of PyTorch's exporters:

- the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, PyTorch's default): use
  :func:`export`, or pass ``custom_translation_table=rnnkit.onnx.translation_table()`` to
  ``torch.onnx.export`` yourself.  Importing this module also adds the translations to the
  exporter's built-in table, so that a plain ``torch.onnx.export(model, ...)`` works too; PyTorch
  has no public hook for that, so it is done through a private one and only where that one is
  found as expected (:data:`GLOBAL_REGISTRATION` says whether it was);
- the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): importing this module
  registers symbolic functions (``torch.onnx.register_custom_op_symbolic``, public) for opset
  13 and later; earlier opsets raise :class:`ExportUnsupported`.  (With parameters that require
  grad the tracer records the layers' autograd Functions, which the exporter inlines down to the
  operators; an error raised inside shows as a warning naming it, followed by "Couldn't export
  Python operator LSTMOp".  Under ``torch.no_grad()`` the error itself is raised.)

Without ``import rnnkit.onnx`` both exporters stop with an error naming the ``rnnkit::`` operator
(or the Function ``LSTMOp``, ``GRUOp``, ``RNNOp``); they never write a model with the example's
outputs baked in.

What ONNX cannot express raises :class:`ExportUnsupported` at export time, naming the limit:

- an LSTM with ``proj_size > 0`` (ONNX's LSTM has no projection weight ``weight_hr``);
- nothing else at present: the RNN's ``'identity'`` nonlinearity becomes ONNX's ``Affine``
  activation with alpha 1 and beta 0, one of the activations the ONNX standard lists as
  optional (onnxruntime runs it; another runtime may not).

Lengths (``lengths=`` of the layers, exported as a model input: ``kwargs={"lengths": ...}``
with ``dynamic_shapes``, or a positional ``(x, None, lengths)`` with ``dynamic_axes``) reach
ONNX's ``sequence_lens`` as int32; the output is zeroed past each sequence's end by an explicit
mask, whatever a runtime leaves there, and h_n/c_n are the states at each last valid step (as
ONNX's Y_h/Y_c are).  A ``PackedSequence`` input cannot be exported (packing is data-dependent):
export the padded batch with ``lengths``.

Dtypes: the graph follows the model's dtype; onnxruntime's CPU kernels for these operators take
float32 (check your runtime for float16 and float64).
"""

from __future__ import annotations

import abc
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from rnnkit.engine.steps import GATES
from rnnkit.errors import RnnkitError
from rnnkit.extras import require

require(["onnx", "onnxscript"], "onnx", "rnnkit.onnx")

import onnx_ir  # noqa: E402  (onnxscript's own dependency)
from onnxscript import opset18 as _op  # noqa: E402

__all__ = ["ExportUnsupported", "GLOBAL_REGISTRATION", "LEGACY_MIN_OPSET", "export", "translation_table"]

LEGACY_MIN_OPSET = 13
"""The lowest ``opset_version`` the TorchScript exporter's symbolics serve (``Unsqueeze`` and
``Squeeze`` take their axes as inputs from 13 on)."""

_INT32, _INT64 = 6, 7  # onnx.TensorProto

# ONNX's gate order, in the names of torch's packing (GATES): ONNX calls the LSTM's g "c" and
# the GRU's n "h".
_ONNX_GATES = {"RNN": ("",), "LSTM": ("i", "o", "f", "g"), "GRU": ("z", "r", "n")}

_ACTIVATIONS = {
    "tanh": ("Tanh", {}),
    "relu": ("Relu", {}),
    "sigmoid": ("Sigmoid", {}),
    # alpha * x + beta: optional in the ONNX standard, supported by onnxruntime
    "identity": ("Affine", {"activation_alpha": [1.0], "activation_beta": [0.0]}),
}


class ExportUnsupported(RnnkitError, NotImplementedError):
    """A model (or an exporter setting) that rnnkit cannot translate to ONNX; the message says
    what and why."""


# ------------------------------------------------------------------------------ builders


class _Builder(abc.ABC):
    """The graph-building calls the translations need, over either exporter's graph
    (:class:`_ScriptBuilder` for the dynamo exporter, :class:`_TorchScriptBuilder` for the
    TorchScript one)."""

    @abc.abstractmethod
    def op(self, name: str, *inputs, outputs: int = 1, **attrs):
        """An ONNX node ``name`` over ``inputs``; its output, or a tuple of ``outputs``."""

    @abc.abstractmethod
    def const(self, array: np.ndarray):
        """A constant holding ``array``."""

    @abc.abstractmethod
    def static_dim(self, value, axis: int) -> Optional[int]:
        """The size of ``value`` along ``axis`` where the graph knows it, else None."""

    def ints(self, values: Sequence[int]):
        return self.const(np.asarray(list(values), dtype=np.int64))

    def zeros(self, shape, like):
        """Zeros of ``like``'s dtype and the 1-D int64 ``shape`` (empty: a scalar)."""
        return self.op("CastLike", self.op("ConstantOfShape", shape), like)


class _ScriptBuilder(_Builder):
    """The dynamo exporter's: onnxscript operators, recorded by the exporter's tracer."""

    def op(self, name, *inputs, outputs=1, **attrs):
        return getattr(_op, name)(*inputs, **attrs)

    def const(self, array):
        return _op.Constant(value=onnx_ir.tensor(array))

    def static_dim(self, value, axis):
        shape = value.shape
        if shape is None or len(shape) <= axis:
            return None
        dim = shape[axis]
        return dim if isinstance(dim, int) else None


class _TorchScriptBuilder(_Builder):
    """The TorchScript exporter's: ``g.op`` nodes of a symbolic function."""

    def __init__(self, g) -> None:
        self.g = g

    def op(self, name, *inputs, outputs=1, **attrs):
        inputs = list(inputs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        inputs = [self._absent() if v is None else v for v in inputs]
        # g.op names an attribute's type by a suffix (_i, _f, _s; a list value makes it a list)
        named = {}
        for key, value in attrs.items():
            first = value[0] if isinstance(value, (list, tuple)) else value
            suffix = "s" if isinstance(first, str) else "f" if isinstance(first, float) else "i"
            named[f"{key}_{suffix}"] = list(value) if isinstance(value, (list, tuple)) else value
        return self.g.op(name, *inputs, outputs=outputs, **named)

    def _absent(self):
        """A missing optional input in the middle of a node's inputs."""
        value = self.g.op("prim::Constant")
        value.setType(torch._C.OptionalType.ofTensor())
        return value

    def const(self, array):
        return self.g.op("Constant", value_t=torch.from_numpy(np.ascontiguousarray(array)))

    def zeros(self, shape, like):
        dtype = like.type().dtype() if like.type().isSubtypeOf(torch._C.TensorType.get()) else None
        if dtype is None:
            return super().zeros(shape, like)
        return self.g.op("ConstantOfShape", shape, value_t=torch.zeros(1, dtype=dtype))

    def static_dim(self, value, axis):
        try:
            sizes = value.type().sizes()
        except RuntimeError:
            return None
        if sizes is None or len(sizes) <= axis:
            return None
        return sizes[axis]


# -------------------------------------------------------------------------- translations


def _hidden_size(bld: _Builder, w_hh, kind: str) -> int:
    """H from the recurrent weight (blocks*H, H), which must have a static shape: ONNX's
    recurrent operators take the hidden size as an attribute."""
    blocks = len(GATES[kind])
    H = bld.static_dim(w_hh, 1)
    rows = bld.static_dim(w_hh, 0)
    if H is None or rows is None:
        raise ExportUnsupported(
            f"rnnkit.onnx: the {kind} layer's recurrent weight has no static shape; ONNX's {kind} "
            "operator takes the hidden size as a fixed attribute"
        )
    if rows != blocks * H:
        raise ExportUnsupported(
            f"rnnkit.onnx: the {kind} layer's recurrent weight has shape ({rows}, {H}); expected "
            f"({blocks}*H, H)"
        )
    return H


def _gates(bld: _Builder, w, kind: str, H: int):
    """Rows of a packed weight or bias, block by block in ONNX's gate order."""
    order = [GATES[kind].index(gate) for gate in _ONNX_GATES[kind]]
    if order == sorted(order):
        return w
    index = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
    return bld.op("Gather", w, bld.const(index), axis=0)


def _zeros_like(bld: _Builder, v):
    return bld.zeros(bld.op("Shape", v), v)


def _dirs(bld: _Builder, v):
    """(...) -> (1, ...): ONNX's num_directions axis."""
    return bld.op("Unsqueeze", v, bld.ints([0]))


def _output(bld: _Builder, Y, x, lengths):
    """ONNX's Y (T, 1, B, H) as rnnkit's output (T, B, H), zero past each sequence's end."""
    out = bld.op("Squeeze", Y, bld.ints([1]))
    if lengths is None:
        return out
    T = bld.op("Gather", bld.op("Shape", x), bld.const(np.array(0, dtype=np.int64)))
    steps = bld.op("Range", bld.const(np.array(0, dtype=np.int64)), T, bld.const(np.array(1, dtype=np.int64)))
    valid = bld.op("Less", bld.op("Unsqueeze", steps, bld.ints([1])),
                   bld.op("Unsqueeze", bld.op("Cast", lengths, to=_INT64), bld.ints([0])))  # (T, B)
    zero = bld.zeros(bld.ints([]), out)
    return bld.op("Where", bld.op("Unsqueeze", valid, bld.ints([2])), out, zero)


def _state(bld: _Builder, Y_h):
    """ONNX's Y_h (1, B, H) as (B, H)."""
    return bld.op("Squeeze", Y_h, bld.ints([0]))


def _buffer(bld: _Builder, x, width: Optional[int]):
    """A stand-in for one of the operator's saved-for-backward outputs, which nothing in an
    inference graph reads (the exporter's optimizer drops it): zeros of its shape,
    (T, B, width), or (0,) for an empty one (width None)."""
    if width is None:
        shape = bld.ints([0])
    else:
        time_batch = bld.op("Slice", bld.op("Shape", x), bld.ints([0]), bld.ints([2]))
        shape = bld.op("Concat", time_batch, bld.ints([width]), axis=0)
    return bld.zeros(shape, x)


def _is_absent(v) -> bool:
    if v is None:
        return True
    node = getattr(v, "node", None)
    return bool(isinstance(v, torch._C.Value) and node().mustBeNone())


def _recurrent(bld: _Builder, kind: str, x, states, w_ih, w_hh, b_ih, b_hh, lengths,
               saved: Sequence[Optional[int]], **attrs):
    """One layer and direction as ONNX's ``kind`` node: ``(output, *final states, *buffers)``
    in the operator's shapes.  ``states`` are the initial ones (h0, and c0 for the LSTM);
    ``b_ih``, ``b_hh`` and ``lengths`` may be absent; ``saved`` gives, per saved-for-backward
    output of the operator, its width in multiples of H (None: an empty one)."""
    H = _hidden_size(bld, w_hh, kind)
    W, R = (_dirs(bld, _gates(bld, w, kind, H)) for w in (w_ih, w_hh))
    wb, rb = (None if _is_absent(v) else _gates(bld, v, kind, H) for v in (b_ih, b_hh))
    B = None
    if wb is not None or rb is not None:
        # ONNX's B is (Wb | Rb); an absent one is zeros (the LSTM's and RNN's operators take
        # b_ih + b_hh as one bias, ONNX's Wb)
        wb = wb if wb is not None else _zeros_like(bld, rb)
        rb = rb if rb is not None else _zeros_like(bld, wb)
        B = _dirs(bld, bld.op("Concat", wb, rb, axis=0))
    lengths = None if _is_absent(lengths) else lengths
    sequence_lens = None if lengths is None else bld.op("Cast", lengths, to=_INT32)
    Y, *finals = bld.op(
        kind, x, W, R, B, sequence_lens, *(_dirs(bld, s) for s in states),
        outputs=1 + len(states), hidden_size=H, **attrs,
    )
    return (_output(bld, Y, x, lengths), *(_state(bld, s) for s in finals),
            *(_buffer(bld, x, None if k is None else k * H) for k in saved))


def _lstm(bld: _Builder, x, h0, c0, w_ih, w_hh, b, w_hr, lengths, save: bool):
    if not _is_absent(w_hr):
        raise ExportUnsupported(
            "rnnkit.onnx: an LSTM with proj_size > 0 cannot be exported to ONNX: ONNX's LSTM "
            "operator has no projection of the hidden state (weight_hr). Export a model without "
            "proj_size, or fold the projection into a per-step loop of your own"
        )
    # saved for backward: gates (4H), g and cells (H), and m, empty without a projection
    saved = (4, 1, 1, None) if save else (None,) * 4
    return _recurrent(bld, "LSTM", x, (h0, c0), w_ih, w_hh, b, None, lengths, saved)


def _gru(bld: _Builder, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save: bool):
    # saved for backward: gates (3H) and u_n (H)
    saved = (3, 1) if save else (None, None)
    # linear_before_reset=1: n = tanh(W_n x + b_in + r * (W_hn h + b_hn)), torch.nn's GRU
    return _recurrent(bld, "GRU", x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, saved, linear_before_reset=1)


def _rnn(bld: _Builder, x, h0, w_ih, w_hh, b, lengths, nonlinearity: str):
    if nonlinearity not in _ACTIVATIONS:
        raise ExportUnsupported(
            f"rnnkit.onnx: the RNN nonlinearity {nonlinearity!r} has no ONNX activation; "
            f"supported: {sorted(_ACTIVATIONS)}"
        )
    activation, params = _ACTIVATIONS[nonlinearity]
    return _recurrent(bld, "RNN", x, (h0,), w_ih, w_hh, b, None, lengths, (), activations=[activation], **params)


# The dynamo exporter's translations: called by the exporter with the operator's arguments, its
# tensors as graph values (None for an absent optional one) and its bools and strings as Python
# values.  Their names become the functions' names in the exporter's reports.


def rnnkit_lstm(x, h0, c0, w_ih, w_hh, b=None, w_hr=None, lengths=None, fused: bool = False, save: bool = False):
    """``torch.ops.rnnkit.lstm`` as ONNX's LSTM (see :func:`rnnkit.engine.ops.lstm`)."""
    return _lstm(_ScriptBuilder(), x, h0, c0, w_ih, w_hh, b, w_hr, lengths, save)


def rnnkit_gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, fused: bool = False, save: bool = False):
    """``torch.ops.rnnkit.gru`` as ONNX's GRU (see :func:`rnnkit.engine.ops.gru`)."""
    return _gru(_ScriptBuilder(), x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save)


def rnnkit_rnn(x, h0, w_ih, w_hh, b=None, lengths=None, nonlinearity: str = "tanh", save: bool = False):
    """``torch.ops.rnnkit.rnn`` as ONNX's RNN (see :func:`rnnkit.engine.ops.rnn`)."""
    return _rnn(_ScriptBuilder(), x, h0, w_ih, w_hh, b, lengths, nonlinearity)


def translation_table() -> dict:
    """``{operator: translation}`` for ``torch.onnx.export(..., custom_translation_table=...)``
    (the dynamo exporter), for the three operators ``torch.ops.rnnkit.{lstm,gru,rnn}.default``."""
    return {
        torch.ops.rnnkit.lstm.default: rnnkit_lstm,
        torch.ops.rnnkit.gru.default: rnnkit_gru,
        torch.ops.rnnkit.rnn.default: rnnkit_rnn,
    }


def export(model, args: tuple = (), f=None, *, custom_translation_table: Optional[dict] = None, **kwargs):
    """``torch.onnx.export(model, args, f, dynamo=True, ...)`` with rnnkit's translations
    (:func:`translation_table`) merged under ``custom_translation_table`` (the caller's entries
    win).  Other keywords go to ``torch.onnx.export`` (``dynamic_shapes``, ``input_names``,
    ``opset_version``, ...).  Returns its ``ONNXProgram``.

    Raises :class:`ExportUnsupported` for what ONNX cannot express (see the module's notes), and
    for ``dynamo=False`` (call ``torch.onnx.export(..., dynamo=False)`` for the TorchScript
    exporter, whose symbolics importing this module registers).
    """
    if kwargs.pop("dynamo", True) is not True:
        raise ExportUnsupported(
            "rnnkit.onnx.export runs the dynamo exporter; for the TorchScript one call "
            "torch.onnx.export(..., dynamo=False) (its rnnkit symbolics are registered by "
            "import rnnkit.onnx)"
        )
    table = translation_table()
    table.update(custom_translation_table or {})
    try:
        return torch.onnx.export(model, args, f, dynamo=True, custom_translation_table=table, **kwargs)
    except Exception as exc:
        cause = _unsupported_cause(exc)
        if cause is None:
            raise
        raise ExportUnsupported(str(cause)) from exc


def _unsupported_cause(exc: BaseException) -> Optional[ExportUnsupported]:
    """The ExportUnsupported among an exception's causes, if any (the exporter wraps what a
    translation raises in its own errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ExportUnsupported):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# ------------------------------------------------------------------ global registration


def _register_dynamo() -> bool:
    """Add the translations to the dynamo exporter's built-in table, so that a plain
    ``torch.onnx.export`` finds them.  PyTorch offers no public way: this appends to the private
    list that the exporter reads its own translations from on every export
    (``torch.onnx._internal.exporter._torchlib._torchlib_registry._registry``), as entries below
    any ``custom_translation_table`` of the caller's.  Returns whether it could; where that
    list is not found as expected it does nothing (then pass :func:`translation_table`)."""
    try:
        from torch.onnx._internal.exporter import _registration
        from torch.onnx._internal.exporter._torchlib import _torchlib_registry
    except ImportError:
        return False
    entries = getattr(_torchlib_registry, "_registry", None)
    meta_type = getattr(_registration, "OnnxDecompMeta", None)
    if not isinstance(entries, list) or meta_type is None:
        return False
    try:
        metas = [
            meta_type(onnx_function=function, fx_target=target, signature=None, is_custom=False,
                      skip_signature_inference=True)
            for target, function in translation_table().items()
        ]
    except TypeError:
        return False
    ours = {m.fx_target for m in metas}
    entries[:] = [e for e in entries if getattr(e, "fx_target", None) not in ours]  # re-import
    entries.extend(metas)
    return True


def _torchscript_lstm(g, x, h0, c0, w_ih, w_hh, b, w_hr, lengths, fused, save):
    return _lstm(_TorchScriptBuilder(g), x, h0, c0, w_ih, w_hh, b, w_hr, lengths, save)


def _torchscript_gru(g, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, fused, save):
    return _gru(_TorchScriptBuilder(g), x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save)


def _torchscript_rnn(g, x, h0, w_ih, w_hh, b, lengths, nonlinearity, save):
    return _rnn(_TorchScriptBuilder(g), x, h0, w_ih, w_hh, b, lengths, nonlinearity)


def _too_old(name: str) -> Callable:
    def symbolic(g, *args):
        raise ExportUnsupported(
            f"rnnkit.onnx: exporting rnnkit::{name} with the TorchScript exporter needs "
            f"opset_version >= {LEGACY_MIN_OPSET}"
        )

    return symbolic


def _register_torchscript() -> None:
    """Symbolics for ``torch.onnx.export(..., dynamo=False)`` (a public registry)."""
    from torch.onnx import symbolic_helper

    # "v": a graph value (or an absent optional one), "b" a bool, "s" a string
    symbolics = {
        "lstm": symbolic_helper.parse_args(*"vvvvvvvvbb")(_torchscript_lstm),
        "gru": symbolic_helper.parse_args(*"vvvvvvvbb")(_torchscript_gru),
        "rnn": symbolic_helper.parse_args(*"vvvvvvsb")(_torchscript_rnn),
    }
    for name, symbolic in symbolics.items():
        torch.onnx.register_custom_op_symbolic(f"rnnkit::{name}", _too_old(name), 7)
        torch.onnx.register_custom_op_symbolic(f"rnnkit::{name}", symbolic, LEGACY_MIN_OPSET)


def _register_all() -> bool:
    import rnnkit.engine.ops  # noqa: F401  (defines the operators)

    _register_torchscript()
    return _register_dynamo()


GLOBAL_REGISTRATION: bool = _register_all()
"""Whether a plain ``torch.onnx.export(..., dynamo=True)`` finds rnnkit's translations without
``custom_translation_table`` (see :func:`_register_dynamo`)."""

