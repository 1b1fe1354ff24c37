"""Online (streaming) inference with a recurrent layer: feed one time step, keep the state.

A :class:`Stream` wraps a uni-directional, possibly stacked ``rnnkit.RNN``, ``LSTM`` or ``GRU``
(or its torch.nn namesake) for inference one step at a time, as in live audio, sensor data or
token-by-token generation::

    lstm = rnnkit.LSTM(40, 256, num_layers=2).eval()
    stream = Stream(lstm)                   # batch of one; zero initial state
    with torch.inference_mode():
        for x_t in frames:                  # each (40,) or (1, 40)
            y_t = stream.step(x_t)          # (256,) or (1, 256): the top layer's h_t
    h_n, c_n = stream.state                 # as lstm(x) would return them

Feeding the steps of a sequence one by one gives the outputs and final state of running the
whole sequence through the layer at once, to rounding: the stream runs the same step
arithmetic as the layer's backend (the fused CPU kernel of ``rnnkit.engine.kernels`` where
the layer uses it, else the operations of the explicit-BPTT loop); only its matrix products
have other shapes (one step's rows, where the layer multiplies all steps at once), which can
round differently (about 1e-7 relative per step in float32).

Per step the stream does two matrix products per layer (input and recurrent part) and one
fused kernel call (LSTM, GRU on the CPU), into buffers and transposed weights prepared once,
and returns a fresh copy of the top layer's output.  It never records a graph, whatever the
grad mode.  The weights are copied (transposed) when the stream is made: after changing the
layer's weights, call :meth:`Stream.reload`.  Dropout is not applied (inference).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from rnnkit.engine.bptt.common import autocast_enabled
from rnnkit.engine.layer import resolve_backend
from rnnkit.engine.steps import cell_kind, check_nonlinearity
from rnnkit.models.checks import check_finite, check_tensor

__all__ = ["Stream"]

State = Union[Tensor, tuple[Tensor, Tensor]]

_ACTIVATE_ = {"tanh": torch.tanh_, "relu": torch.relu_, "sigmoid": torch.sigmoid_, "identity": None}


class Stream:
    """Step-by-step inference with a uni-directional recurrent layer.

    Args:
        layer: an ``rnnkit.RNN``/``LSTM``/``GRU`` (any ``num_layers``, ``bias``,
            ``proj_size``, RNN ``nonlinearity``, ``backend``), or the torch.nn layer of the
            same kind.  Bidirectional layers are refused: their reverse direction reads the
            sequence from its end, which a stream has not seen yet.
        batch_size: B, the number of independent streams stepped together.  Default 1.
        state: the initial state in the layer's ``hx`` format: ``(h_0, c_0)`` for an LSTM,
            ``h_0`` otherwise, with h_0 (L, B, P) and c_0 (L, B, H), or unbatched (L, P) and
            (L, H) when B = 1.  Zeros when None.  It is copied.

    Methods:
        step(x_t): feed one step, x_t (B, D), or (D,) when B = 1; returns the top layer's
            output for that step, (B, P) or (P,).  A new tensor each call.
        state: the current state in the layer's ``(h_n, c_n)`` / ``h_n`` format (a copy);
            unbatched, (L, P), when the last step's input was.
        reset(state=None): back to zeros, or to the given state.
        reload(): copy the layer's weights again (after training or ``load_state_dict``).
    """

    def __init__(self, layer: nn.Module, batch_size: int = 1, state: Optional[State] = None) -> None:
        self._name = f"Stream({type(layer).__name__})"
        if not isinstance(layer, nn.RNNBase) and not hasattr(layer, "layer_weights"):
            raise TypeError(
                f"Stream: layer must be an rnnkit or torch.nn RNN, LSTM or GRU, got {type(layer).__name__}"
            )
        if getattr(layer, "bidirectional", False):
            raise ValueError(
                f"{self._name}: bidirectional layers cannot stream: the reverse direction reads each "
                "sequence from its last step back, which needs the future.  Run the whole sequence "
                "through the layer, or stream a uni-directional layer"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{self._name}: batch_size must be an integer >= 1, got {batch_size!r}")
        self.layer = layer
        self.mode = cell_kind(layer.mode)
        self.batch_size = batch_size
        self.num_layers = layer.num_layers
        self.input_size = layer.input_size
        self.hidden_size = layer.hidden_size
        self.output_size = layer.proj_size if getattr(layer, "proj_size", 0) else layer.hidden_size
        if self.mode == "RNN":
            name = getattr(layer, "nonlinearity", "tanh")
            self.nonlinearity = check_nonlinearity(name)
        else:
            self.nonlinearity = "tanh"
        ref = layer.weight_ih_l0
        self.dtype, self.device = ref.dtype, ref.device
        self.backend, self._kernels = resolve_backend(getattr(layer, "backend", "auto"), self.mode, ref)
        B, L, P, H = batch_size, self.num_layers, self.output_size, self.hidden_size
        with torch.inference_mode(False), torch.no_grad():
            factory = {"dtype": self.dtype, "device": self.device}
            # Two slots of state: each step reads one and writes the other, h[slot, k] (B, P).
            self._h = torch.zeros(2, L, B, P, **factory)
            self._c = torch.zeros(2, L, B, H, **factory) if self.mode == "LSTM" else None
            cls = {"LSTM": _LSTMStep, "GRU": _GRUStep, "RNN": _RNNStep}[self.mode]
            self._steps = [cls(self, k) for k in range(L)]
        self._slot = 0  # the slot that holds the current state
        self._x_shape = (B, self.input_size)
        self._unbatched = False
        self.reload()
        self.reset(state)

    # ------------------------------------------------------------------------------ set-up

    def reload(self) -> None:
        """Copy the layer's current weights into the stream (transposed for the step's
        products).  The state is kept."""
        with torch.inference_mode(False), torch.no_grad():
            for k, step in enumerate(self._steps):
                step.load(_layer_weights(self.layer, k))

    # ------------------------------------------------------------------------------ state

    @property
    def state(self) -> State:
        """``(h_n, c_n)`` for an LSTM, else ``h_n``: h_n (L, B, P), c_n (L, B, H), or (L, P)
        and (L, H) when the last step's input was unbatched.  A copy."""
        h = self._h[self._slot].clone()
        c = self._c[self._slot].clone() if self._c is not None else None
        if self._unbatched:
            h = h.squeeze(1)
            c = c.squeeze(1) if c is not None else None
        return (h, c) if c is not None else h

    def reset(self, state: Optional[State] = None) -> None:
        """Start over: zero state, or ``state`` in the layer's ``hx`` format (copied)."""
        if state is None:
            self._h[self._slot].zero_()
            if self._c is not None:
                self._c[self._slot].zero_()
            return
        L, B = self.num_layers, self.batch_size
        if self.mode == "LSTM":
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise TypeError(f"{self._name}: state must be a tuple (h_0, c_0), got {type(state).__name__}")
            pairs = [("h_0", state[0], self.output_size), ("c_0", state[1], self.hidden_size)]
        else:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{self._name}: state must be a tensor h_0, got {type(state).__name__}")
            pairs = [("h_0", state, self.output_size)]
        values = []
        unbatched = set()
        for label, value, size in pairs:
            check_tensor(label, value, self._name)
            shapes = [(L, B, size)] + ([(L, size)] if B == 1 else [])
            if tuple(value.shape) not in shapes:
                expected = " or ".join(str(s) for s in shapes)
                raise ValueError(f"{self._name}: Expected {label} of shape {expected}, got {tuple(value.shape)}")
            self._check_like(label, value)
            check_finite(label, value, self._name, ("layer", "b", "d") if value.dim() == 3 else ("layer", "d"))
            unbatched.add(value.dim() == 2)
            values.append(value.detach().reshape(L, B, size))
        if len(unbatched) > 1:
            raise ValueError(f"{self._name}: h_0 and c_0 must both be batched or both unbatched")
        self._h[self._slot].copy_(values[0])
        if self._c is not None:
            self._c[self._slot].copy_(values[1])
        self._unbatched = unbatched.pop()

    def _check_like(self, label: str, value: Tensor) -> None:
        if value.dtype != self.dtype:
            raise TypeError(
                f"{self._name}: {label} dtype must match the layer's parameters. Expected {self.dtype}, "
                f"got {value.dtype}"
            )
        if value.device != self.device:
            raise ValueError(
                f"{self._name}: {label} must be on the layer's device. Expected {self.device}, got {value.device}"
            )

    # ------------------------------------------------------------------------------ step

    def step(self, x: Tensor) -> Tensor:
        """Feed one time step ``x`` (B, D), or (D,) when B = 1; return the top layer's output
        h_t, (B, P) or (P,), as a new tensor.  No gradient flows through it."""
        if not isinstance(x, Tensor) or x.shape != self._x_shape or x.dtype != self.dtype or x.device != self.device:
            x = self._unusual_input(x)
            unbatched = x.dim() == 1
            x = x.unsqueeze(0) if unbatched else x
        else:
            unbatched = False
        if x.requires_grad:
            x = x.detach()
        check_finite("input", x, self._name, ("b", "d"))
        read = self._slot
        write = 1 - read
        for step in self._steps:
            x = step(x, read, write)
        self._slot = write
        self._unbatched = unbatched
        return x[0].clone() if unbatched else x.clone()

    def _unusual_input(self, x) -> Tensor:
        """The checks behind :meth:`step`'s fast path: an unbatched (D,) input, an input
        that autocast made lower-precision (cast back, as the layer does), or an error that
        names what was expected and what was received."""
        check_tensor("input", x, self._name)
        B, D = self._x_shape
        if tuple(x.shape) != (B, D) and not (B == 1 and tuple(x.shape) == (D,)):
            expected = f"({B}, {D})" + (f" or ({D},)" if B == 1 else "")
            raise ValueError(
                f"{self._name}: Expected input of one step of shape {expected} (batch_size, input_size), "
                f"got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{self._name}: input must be a floating-point tensor, got {x.dtype}")
        if x.dtype != self.dtype and x.device == self.device and autocast_enabled(self.device.type):
            x = x.to(self.dtype)
        self._check_like("input", x)
        return x

    def __repr__(self) -> str:
        return (f"{self._name}(batch_size={self.batch_size}, layers={self.num_layers}, "
                f"backend={self.backend!r}, {self.dtype}, {self.device})")


def _layer_weights(layer: nn.Module, k: int) -> tuple:
    """``(w_ih, w_hh, b_ih, b_hh, w_hr)`` of layer k, forward direction; None where absent."""
    get = lambda base: getattr(layer, f"{base}_l{k}", None)  # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")


def _transposed(w: Optional[Tensor]) -> Optional[Tensor]:
    """A contiguous copy of ``w.T``: each step's product is then a plain (non-transposed) one."""
    return None if w is None else w.detach().t().contiguous()


def _copy(b: Optional[Tensor]) -> Optional[Tensor]:
    return None if b is None else b.detach().clone()


def _combined_bias(b_ih: Optional[Tensor], b_hh: Optional[Tensor]) -> Optional[Tensor]:
    """b_ih + b_hh, as the layer adds them once for all steps (RNN and LSTM)."""
    if b_ih is None or b_hh is None:
        return _copy(b_ih if b_ih is not None else b_hh)
    return (b_ih + b_hh).detach()


# One layer's step.  Each holds its transposed weights and its step buffers, made once; the
# state lives in the Stream's two slots (read one, write the other), so no step copies it.
# ``__call__(x, read, write)`` takes the layer's input x (B, D_k) and returns the slot-``write``
# view of its new state, h_t (B, P), which is the next layer's input.  (Measured: one product
# of [x_t | h_(t-1)] with [W_ih | W_hh]^T instead of two gains nothing, since a step's products
# are bound by reading the weights from memory, and it would round differently from the layer.)


class _LSTMStep:
    def __init__(self, stream: Stream, k: int) -> None:
        B, H = stream.batch_size, stream.hidden_size
        self.kernels = stream._kernels
        self.h3 = (stream._h[0, k : k + 1], stream._h[1, k : k + 1])  # (1, B, P): the kernel's (T, B, .)
        self.c3 = (stream._c[0, k : k + 1], stream._c[1, k : k + 1])  # (1, B, H)
        self.h = tuple(v[0] for v in self.h3)
        self.c = tuple(v[0] for v in self.c3)
        new = stream._h.new_empty
        self.gates3 = new(1, B, 4 * H)
        self.gates = self.gates3[0]
        self.i, self.f, self.pre_g, self.o = self.gates.view(B, 4, H).unbind(1)
        self.g3 = new(1, B, H)  # tanh(g)
        self.g = self.g3[0]
        self.tanh_c = new(B, H)
        self.proj = stream.output_size != H
        self.m3 = new(1, B, H) if self.proj else None  # o * tanh(c), before the projection
        self.m = self.m3[0] if self.proj else None

    def load(self, weights: tuple) -> None:
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        self.w_ih_t, self.w_hh_t, self.w_hr_t = _transposed(w_ih), _transposed(w_hh), _transposed(w_hr)
        self.b = _combined_bias(b_ih, b_hh)
        if self.kernels is not None:  # the kernel adds the bias itself
            self.b_fused = self.b if self.b is not None else self.gates.new_zeros(self.gates.shape[1])

    def __call__(self, x: Tensor, read: int, write: int) -> Tensor:
        gates, h = self.gates, self.h[write]
        if self.kernels is not None:
            torch.mm(x, self.w_ih_t, out=gates)
            gates.addmm_(self.h[read], self.w_hh_t)
            out3 = self.m3 if self.proj else self.h3[write]
            self.kernels.lstm_forward_step(self.gates3, self.b_fused, self.g3, self.c3[write], out3, self.c3[read], 0)
        else:  # rnnkit.engine.bptt.lstm's loop, one step
            if self.b is None:
                torch.mm(x, self.w_ih_t, out=gates)
            else:
                torch.addmm(self.b, x, self.w_ih_t, out=gates)
            gates.addmm_(self.h[read], self.w_hh_t)
            torch.tanh(self.pre_g, out=self.g)
            gates.sigmoid_()  # i, f, o (the g slot is not read again)
            c = torch.mul(self.f, self.c[read], out=self.c[write])
            c.addcmul_(self.i, self.g)
            torch.tanh(c, out=self.tanh_c)
            torch.mul(self.o, self.tanh_c, out=self.m if self.proj else h)
        if self.proj:
            torch.mm(self.m, self.w_hr_t, out=h)
        return h


class _GRUStep:
    def __init__(self, stream: Stream, k: int) -> None:
        B, H = stream.batch_size, stream.hidden_size
        self.kernels = stream._kernels
        self.h3 = (stream._h[0, k : k + 1], stream._h[1, k : k + 1])
        self.h = tuple(v[0] for v in self.h3)
        new = stream._h.new_empty
        self.gates3 = new(1, B, 3 * H)
        self.gates = self.gates3[0]
        self.u = new(B, 3 * H)  # W_hh h_{t-1} + b_hh
        self.u_n3 = new(1, B, H)  # the kernel keeps the n-part of u here
        gates, u = self.gates, self.u
        self.rz, self.r, self.z, self.n = gates[:, : 2 * H], gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        self.u_rz, self.u_n = u[:, : 2 * H], u[:, 2 * H :]
        self.diff = new(B, H)

    def load(self, weights: tuple) -> None:
        w_ih, w_hh, b_ih, b_hh, _ = weights
        self.w_ih_t, self.w_hh_t = _transposed(w_ih), _transposed(w_hh)
        self.b_ih, self.b_hh = _copy(b_ih), _copy(b_hh)
        if self.kernels is not None:  # the kernel adds b_ih itself
            self.b_fused = self.b_ih if self.b_ih is not None else self.gates.new_zeros(self.gates.shape[1])

    def __call__(self, x: Tensor, read: int, write: int) -> Tensor:
        gates, u, h_prev = self.gates, self.u, self.h[read]
        if self.b_hh is None:
            torch.mm(h_prev, self.w_hh_t, out=u)
        else:
            torch.addmm(self.b_hh, h_prev, self.w_hh_t, out=u)
        if self.kernels is not None:
            torch.mm(x, self.w_ih_t, out=gates)
            self.kernels.gru_forward_step(self.gates3, self.b_fused, u, self.u_n3, self.h3[write], self.h3[read], 0)
            return self.h[write]
        # rnnkit.engine.bptt.gru's loop, one step
        if self.b_ih is None:
            torch.mm(x, self.w_ih_t, out=gates)
        else:
            torch.addmm(self.b_ih, x, self.w_ih_t, out=gates)
        self.rz.add_(self.u_rz).sigmoid_()
        self.n.addcmul_(self.r, self.u_n).tanh_()
        torch.sub(h_prev, self.n, out=self.diff)
        return torch.addcmul(self.n, self.z, self.diff, out=self.h[write])  # n + z (h - n)


class _RNNStep:
    def __init__(self, stream: Stream, k: int) -> None:
        self.h = (stream._h[0, k], stream._h[1, k])
        self.activate_ = _ACTIVATE_[stream.nonlinearity]

    def load(self, weights: tuple) -> None:
        w_ih, w_hh, b_ih, b_hh, _ = weights
        self.w_ih_t, self.w_hh_t = _transposed(w_ih), _transposed(w_hh)
        self.b = _combined_bias(b_ih, b_hh)

    def __call__(self, x: Tensor, read: int, write: int) -> Tensor:
        h = self.h[write]
        if self.b is None:
            torch.mm(x, self.w_ih_t, out=h)
        else:
            torch.addmm(self.b, x, self.w_ih_t, out=h)
        h.addmm_(self.h[read], self.w_hh_t)
        if self.activate_ is not None:
            self.activate_(h)
        return h
