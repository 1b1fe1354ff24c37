"""Multi-layer, optionally bidirectional RNN/LSTM/GRU layers, drop-in for torch.nn.

Same constructor arguments, forward signature, return values and parameter names as
``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``, so ``load_state_dict`` works both
ways; the time loop runs on rnnkit's engine (``backend=``).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.engine.bptt.common import autocast_enabled
from rnnkit.engine.layer import check_backend, choose_stack, needs_grad, run_layer
from rnnkit.engine.native import run_stack
from rnnkit.engine.steps import GATES, check_nonlinearity
from rnnkit.models.cells import torch_equivalent
from rnnkit.models.checks import (
    check_finite,
    check_float_like,
    check_shape,
    check_tensor,
    normalize_lengths,
)

Lengths = Union[Tensor, Sequence[int], None]


class RNNBase(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Layer k's hidden states are layer k+1's inputs (stacking); with ``bidirectional=True``
    each layer runs a second set of weights (suffix ``_reverse``) from each sequence's end to
    its start and the two outputs are concatenated feature-wise (Schuster & Paliwal 1997).
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        nonlinearity: str = "tanh",
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value, low in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
            ("proj_size", proj_size, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: {arg} must be an integer >= {low}, got {value!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
            0 <= dropout <= 1
        ):
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{name}: dropout={dropout} applies between layers and has no effect with "
                "num_layers=1",
                stacklevel=3,
            )
        if proj_size and mode != "LSTM":
            raise ValueError(f"{name}: proj_size is supported only by LSTM")
        if proj_size >= hidden_size:
            raise ValueError(
                f"{name}: proj_size must be smaller than hidden_size. "
                f"Expected < {hidden_size}, got {proj_size}"
            )
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.nonlinearity = check_nonlinearity(nonlinearity)
        self.backend = check_backend(backend)

        factory = {"device": device, "dtype": dtype}
        gate_size = len(GATES[mode]) * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                for base, shape in shapes:
                    self.register_parameter(base + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(base + suffix)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, as torch.nn."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """Kept for drop-in compatibility with torch.nn (cuDNN's flat buffer); a no-op here."""

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features per direction of the output and of h_n (proj_size when projecting)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def layer_weights(self, layer: int, direction: int) -> tuple:
        """``(w_ih, w_hh, b_ih, b_hh, w_hr)`` of one layer and direction; None where absent."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        get = lambda base: getattr(self, base + suffix, None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [
            [w for w in self.layer_weights(layer, d) if w is not None]
            for layer in range(self.num_layers)
            for d in range(self.num_directions)
        ]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def _autocast_result(self, result, device_type: str, packed: bool):
        """``result`` (computed in float32) in the dtypes torch.nn gives under autocast."""
        if self.weight_ih_l0.dtype != torch.float32:  # autocast only lowers float32
            return result
        low = torch.get_autocast_dtype(device_type)
        out_low, h_low, c_low = _autocast_dtypes(self.mode, device_type, packed, self.proj_size > 0)
        output, state = result
        if out_low:
            output = _cast_input(output, low)
        if self.mode == "LSTM":
            h_n, c_n = state
            return output, (h_n.to(low) if h_low else h_n, c_n.to(low) if c_low else c_n)
        return output, (state.to(low) if h_low else state)

    @property
    def _flat_weights(self) -> list[Optional[Tensor]]:
        """The parameters in torch.nn's flat order (``_flat_weights_names``), as torch.nn
        keeps them (code that reads ``rnn._flat_weights`` works unchanged)."""
        params = self._parameters
        # a dict lookup per name (Module.__getattr__ costs a microsecond a call); getattr for a
        # name that is not a plain parameter (a parametrization's property, a replaced tensor)
        return [params.get(name) if name in params else getattr(self, name, None)
                for name in self._flat_weights_names]

    def __prepare_scriptable__(self):
        """torch.jit.script calls this before scripting a module (and each submodule)."""
        raise RuntimeError(
            f"{type(self).__name__}: rnnkit's layers cannot be compiled by torch.jit.script "
            "(their forward runs rnnkit's Python engine, which TorchScript does not parse). Use "
            "torch.export.export (or torch.compile) instead; torch.jit.trace also works, recording "
            "one torch.ops.rnnkit operator per layer and direction (see docs/compatibility.md)"
        )

    def stream(self, batch_size: int = 1, state=None):
        """A :class:`~rnnkit.models.streaming.Stream` for online inference with this layer:
        ``y_t = stream.step(x_t)`` one time step at a time, the state kept between calls
        (docs/streaming.md).  Uni-directional layers only."""
        from rnnkit.models.streaming import Stream

        return Stream(self, batch_size=batch_size, state=state)

    def to_torch(self) -> nn.RNNBase:
        """An equivalent ``torch.nn.RNN``/``LSTM``/``GRU`` holding copies of these weights
        (for tools that key on torch.nn's types, e.g. dynamic quantization); raises
        ValueError for settings torch.nn lacks (the RNN's sigmoid and identity)."""
        kwargs = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                      dropout=self.dropout, bidirectional=self.bidirectional)
        if self.proj_size:
            kwargs["proj_size"] = self.proj_size
        return torch_equivalent(self, self.input_size, self.hidden_size, **kwargs)

    # ----------------------------------------------------------------------------- forward

    def _prepare_input(self, input, lengths: Lengths):
        """Return time-first padded ``x`` (T, B, D), CPU lengths or None, and how to shape
        the output back: ``("packed", packed_input)``, ``("unbatched", None)`` or ``("batched", None)``."""
        name = type(self).__name__
        ref = self.weight_ih_l0
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{name}: pass lengths= or a PackedSequence, not both")
            check_float_like("input", input.data, ref, name)
            x, lens = pad_packed_sequence(input)  # (T, B, D), original batch order
            kind = ("packed", input)
            lengths = lens
        else:
            check_tensor("input", input, name)
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{name}: Expected input to be 2D (T, D) or 3D "
                    f"({'B, T' if self.batch_first else 'T, B'}, D), got {input.dim()}D "
                    f"with shape {tuple(input.shape)}"
                )
            if not input.is_floating_point():
                raise TypeError(f"{name}: input must be a floating-point tensor, got {input.dtype}")
            check_float_like("input", input, ref, name)
            if input.dim() == 2:
                if lengths is not None:
                    raise ValueError(f"{name}: lengths= needs batched (3D) input, got 2D input")
                x, kind = input.unsqueeze(1), ("unbatched", None)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
                kind = ("batched", None)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {x.shape[-1]}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"{name}: Expected at least one step and one sequence, got input of "
                f"{x.shape[0]} steps and batch size {x.shape[1]}"
            )
        lengths = normalize_lengths(lengths, x.shape[1], x.shape[0], name)
        axes = ("t", None, "d") if kind[0] == "unbatched" else ("t", "b", "d")
        check_finite("input", x, name, axes, lengths)
        return x, lengths, kind

    def _prepare_state(self, hx, x: Tensor, unbatched: bool):
        """Initial (h0, c0) as (L*dirs, B, P) and (L*dirs, B, H); zeros when ``hx`` is None."""
        name = type(self).__name__
        states = self.num_layers * self.num_directions
        B = x.shape[1]
        shape_h = (states, B, self.output_size)
        shape_c = (states, B, self.hidden_size)
        if hx is None:
            h0 = x.new_zeros(shape_h)
            return h0, (x.new_zeros(shape_c) if self.mode == "LSTM" else None)
        if self.mode == "LSTM":
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            pairs = [("h_0", hx[0], shape_h), ("c_0", hx[1], shape_c)]
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{name}: hx must be a torch.Tensor, got {type(hx).__name__}")
            pairs = [("hx", hx, shape_h)]
        out = []
        for label, value, shape in pairs:
            check_tensor(label, value, name)
            expected = (shape[0], shape[2]) if unbatched else shape
            check_shape(label, value, expected, name)
            check_float_like(label, value, self.weight_ih_l0, name)
            layer = "layer" if self.num_directions == 1 else "layer*2+direction"
            check_finite(label, value, name, (layer, "d") if unbatched else (layer, "b", "d"))
            out.append(value.unsqueeze(1) if unbatched else value)
        return out[0], (out[1] if self.mode == "LSTM" else None)

    def forward(self, input, hx=None, lengths: Lengths = None):
        """Run all layers and directions.

        Args:
            input: (T, B, D), or (B, T, D) with ``batch_first``, or unbatched (T, D), or a
                ``PackedSequence``.
            hx: initial state, zeros if None: (L*dirs, B, P) for RNN/GRU; ``(h_0, c_0)`` for
                LSTM with c_0 (L*dirs, B, H).  Unbatched input takes unbatched states.
            lengths: optional (B,) valid lengths of a padded batch (any order, 1..T).
        Returns:
            ``(output, h_n)`` or, for LSTM, ``(output, (h_n, c_n))``, as torch.nn.  Output
            past a sequence's end is zero; h_n/c_n are the states at each last valid step.
        """
        device_type = self.weight_ih_l0.device.type
        if autocast_enabled(device_type):
            dtype = self.weight_ih_l0.dtype
            input, hx = _cast_input(input, dtype), _cast_state(hx, dtype)
            native = self._native(input, hx, lengths)
            if native:
                # PyTorch's operator under autocast: the dtypes torch.nn gives, by construction.
                return self._forward(input, hx, lengths, native)
            # The recurrence runs in the parameters' dtype (state and accumulation in fp32 under
            # mixed precision); inputs that autocast made lower-precision are cast back, and
            # the results come out in the dtypes torch.nn's layer gives under autocast.
            with torch.autocast(device_type, enabled=False):
                result = self._forward(input, hx, lengths, native)
            return self._autocast_result(result, device_type, isinstance(input, PackedSequence))
        return self._forward(input, hx, lengths, self._native(input, hx, lengths))

    def _native(self, input, hx, lengths) -> bool:
        """Whether this call runs on PyTorch's operator (:func:`choose_stack`); False for
        input that is not a tensor or PackedSequence (``_prepare_input`` then says why)."""
        if isinstance(input, PackedSequence):
            x, batch = input.data, int(input.batch_sizes[0])
        elif isinstance(input, Tensor) and input.dim() in (2, 3):
            x = input
            batch = 1 if input.dim() == 2 else input.shape[0 if self.batch_first else 1]
        else:
            return False
        grad = False
        if torch.is_grad_enabled():
            states = hx if isinstance(hx, (tuple, list)) else (hx,)
            grad = needs_grad(x, *(h for h in states if isinstance(h, Tensor)), *self._flat_weights)
        varlen = lengths is not None or isinstance(input, PackedSequence)  # (choose_stack: and batch > 1)
        return choose_stack(self.backend, self.mode, self.nonlinearity, x, batch, self.hidden_size, grad,
                            varlen=varlen)

    def _forward(self, input, hx, lengths: Lengths, native: bool):
        x, lengths, (kind, packed) = self._prepare_input(input, lengths)
        h0, c0 = self._prepare_state(hx, x, kind == "unbatched")
        if native:
            x, h_n, c_n = run_stack(
                self.mode, x, h0, c0, self._flat_weights, lengths, bias=self.bias,
                num_layers=self.num_layers, dropout=self.dropout, training=self.training,
                bidirectional=self.bidirectional, nonlinearity=self.nonlinearity,
                packed=packed if kind == "packed" else None,
            )
            if kind == "packed":
                x = PackedSequence(x, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
            return self._shape_output(x, h_n, c_n, kind, lengths, packed)
        h_n, c_n = [], []
        dirs = self.num_directions
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(dirs):
                k = layer * dirs + direction
                out, h, c = run_layer(
                    self.mode,
                    x,
                    h0[k],
                    c0[k] if c0 is not None else None,
                    self.layer_weights(layer, direction),
                    lengths=lengths,
                    reverse=direction == 1,
                    backend=self.backend,
                    nonlinearity=self.nonlinearity,
                )
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if dirs == 1 else torch.cat(outputs, dim=2)  # (T, B, dirs*P)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = torch.stack(h_n)  # (L*dirs, B, P)
        c_n = torch.stack(c_n) if self.mode == "LSTM" else None
        return self._shape_output(x, h_n, c_n, kind, lengths, packed)

    def _shape_output(self, x, h_n: Tensor, c_n: Optional[Tensor], kind: str, lengths, packed):
        """The results in the caller's layout: ``x`` is the time-first padded output (or,
        already packed, a PackedSequence); h_n (L*dirs, B, P), c_n (L*dirs, B, H) or None."""
        if kind == "packed":
            output = x if isinstance(x, PackedSequence) else _repack(x, lengths, packed)
        elif kind == "unbatched":
            output, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        else:
            output = x.transpose(0, 1) if self.batch_first else x
        if self.mode == "LSTM":
            return output, (h_n, c_n)
        return output, h_n


def _autocast_dtypes(mode: str, device_type: str, packed: bool, projected: bool) -> tuple[bool, bool, bool]:
    """Which of (output, h_n, c_n) torch.nn's layer returns in autocast's lower-precision
    dtype (given float32 parameters), as PyTorch 2.13 does it: on CUDA every result
    (cuDNN's autocast wrapper); on the CPU the RNN's, not the GRU's, and the LSTM's unless
    the input is packed, with c_n kept in float32 when projecting (tests/models compare
    against torch.nn on the CPU)."""
    if device_type != "cpu":
        return True, True, True
    if mode == "RNN":
        return True, True, True
    if mode == "GRU":
        return False, False, False
    if projected:
        return True, True, False
    return (False, False, False) if packed else (True, True, True)


def _cast_input(input, dtype):
    if isinstance(input, PackedSequence):
        if input.data.is_floating_point() and input.data.dtype != dtype:
            return input._replace(data=input.data.to(dtype))
        return input
    if isinstance(input, Tensor) and input.is_floating_point() and input.dtype != dtype:
        return input.to(dtype)
    return input


def _cast_state(hx, dtype):
    if isinstance(hx, (tuple, list)):
        return tuple(_cast_input(h, dtype) for h in hx)
    return _cast_input(hx, dtype)


def _repack(x: Tensor, lengths: Optional[Tensor], like: PackedSequence) -> PackedSequence:
    """Pack time-first padded output ``x`` (original batch order) exactly as ``like``."""
    if lengths is None:
        lengths = torch.full((x.shape[1],), x.shape[0], dtype=torch.int64)
    if like.sorted_indices is not None:
        order = like.sorted_indices
        x = x.index_select(1, order)
        lengths = lengths[order.cpu()]
    data = pack_padded_sequence(x, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(RNNBase):
    r"""Multi-layer Elman RNN, drop-in for :class:`torch.nn.RNN`.

    .. math::
        h_t = f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    with f = ``nonlinearity``: ``'tanh'`` or ``'relu'`` as torch.nn, and also ``'sigmoid'``
    and ``'identity'`` (the lecture's saturation and linear-RNN experiments).

    Args:
        input_size: D, features of x_t.
        hidden_size: H, features of h_t.
        num_layers: stacked layers; layer k's outputs are layer k+1's inputs. Default 1.
        nonlinearity: ``'tanh'`` | ``'relu'`` | ``'sigmoid'`` | ``'identity'``. Default tanh.
        bias: use ``b_ih`` and ``b_hh``. Default True.
        batch_first: input and output as (B, T, D) instead of (T, B, D). Default False.
        dropout: dropout on each layer's output except the last. Default 0.
        bidirectional: add a reverse-time direction per layer. Default False.
        backend: ``'auto'`` | ``'bptt'`` (explicit backward) | ``'reference'`` (per-step loop
            under autograd). Default ``'auto'``.

    Inputs: ``input, hx=None, lengths=None`` — see :meth:`RNNBase.forward`.

    Outputs: ``output`` (T, B, dirs*H) and ``h_n`` (L*dirs, B, H).

    Attributes:
        weight_ih_l[k]: (H, D) for k = 0, else (H, dirs*H).
        weight_hh_l[k]: (H, H).  bias_ih_l[k], bias_hh_l[k]: (H,).
        Reverse-direction weights carry the suffix ``_reverse``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            "RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, nonlinearity, backend, device, dtype,
        )


class LSTM(RNNBase):
    r"""Multi-layer LSTM, drop-in for :class:`torch.nn.LSTM`.

    .. math::
        [i_t, f_t, g_t, o_t] = [\sigma, \sigma, \tanh, \sigma]
            (W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}) \\
        c_t = c_{t-1} \odot f_t + i_t \odot g_t \\
        h_t = \tanh(c_t) \odot o_t

    With ``proj_size > 0``, :math:`h_t = W_{hr}(\tanh(c_t) \odot o_t)` (Sak et al. 2014).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        backend: as :class:`RNN`.
        proj_size: P, size of the projected hidden state; 0 (default) for none.

    Inputs: ``input, (h_0, c_0)=None, lengths=None`` — see :meth:`RNNBase.forward`.

    Outputs: ``output`` (T, B, dirs*P), ``(h_n (L*dirs, B, P), c_n (L*dirs, B, H))``.

    Attributes:
        weight_ih_l[k]: (4H, D) packed ``(W_ii|W_if|W_ig|W_io)``; weight_hh_l[k]: (4H, P)
        packed ``(W_hi|W_hf|W_hg|W_ho)``; bias_ih_l[k], bias_hh_l[k]: (4H,);
        weight_hr_l[k]: (P, H) when ``proj_size > 0``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, "tanh", backend, device, dtype,
        )


class GRU(RNNBase):
    r"""Multi-layer GRU, drop-in for :class:`torch.nn.GRU` (Cho et al. 2014).

    .. math::
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    Args: as :class:`RNN` without ``nonlinearity``.

    Outputs: ``output`` (T, B, dirs*H) and ``h_n`` (L*dirs, B, H).

    Attributes:
        weight_ih_l[k]: (3H, D) packed ``(W_ir|W_iz|W_in)``; weight_hh_l[k]: (3H, H) packed
        ``(W_hr|W_hz|W_hn)``; bias_ih_l[k], bias_hh_l[k]: (3H,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        backend: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, 0, "tanh", backend, device, dtype,
        )


LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
"""The layer classes by the names that configs and the command line give them (``cell=``)."""
