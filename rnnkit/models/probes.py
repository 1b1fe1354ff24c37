r"""What happens inside a recurrent layer over time: the lecture's diagnostics as functions.

:func:`trace_dynamics` runs any ``rnnkit.RNN/LSTM/GRU`` (or a ``torch.nn`` one: same
parameter names) step by step on the reference loop (:func:`rnnkit.engine.reference.reference_layer`,
the cell math of :mod:`rnnkit.engine.steps` under autograd) and records, for every layer and
direction and every step t:

- ``||h_t||`` (and ``||c_t||`` for the LSTM): do activations explode or vanish?
- ``||dL/dh_t||`` (and ``||dL/dc_t||``): the *total* derivative of the loss with respect to
  the state at step t, through every later step, which is what BPTT carries back:

  .. math::
      \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial y_t}
          + \Big(\frac{\partial h_{t+1}}{\partial h_t}\Big)^{\!\top} \frac{\partial L}{\partial h_{t+1}}

  It is read off exactly as autograd's gradient with respect to the state tensor
  :math:`h_t` itself, which sums what reaches it through every later use.
- the fraction of saturated units (tanh and sigmoid RNNs): units whose derivative
  :math:`f'(a)` is below 5% of its largest value, where gradients stop flowing;
- the mean forget gate :math:`f_t` of the LSTM, which sets how much of :math:`dL/dc_{t}`
  survives into :math:`dL/dc_{t-1}` (:math:`\partial c_t / \partial c_{t-1} = f_t`).

:func:`spectral_radius` gives :math:`\rho(W_{hh})` of each layer (per gate for gated cells).

Norms are averaged over the batch (over the sequences still running at step t when lengths
are given).  Dropout between layers is not applied: the trace is of the deterministic model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnkit.engine.layer import reverse_index, reverse_time
from rnnkit.engine.reference import reference_layer
from rnnkit.engine.steps import GATES, cell_kind, lstm_gates

SATURATED_BELOW = 0.05
"""A unit is saturated when its activation's derivative is below this fraction of the peak."""

LOSSES = ("last", "sum")


@dataclass
class DirectionTrace:
    """Per-step measurements of one layer and direction, each an array of shape (T,),
    indexed in the order the direction processes the sequence (step 0 is processed first)."""

    layer: int
    direction: int
    h_norm: np.ndarray
    grad_h_norm: np.ndarray
    c_norm: Optional[np.ndarray] = None
    grad_c_norm: Optional[np.ndarray] = None
    saturation: Optional[np.ndarray] = None
    forget: Optional[np.ndarray] = None

    @property
    def name(self) -> str:
        return f"l{self.layer}" + ("_reverse" if self.direction == 1 else "")

    def gradient_ratio(self, cell: bool = False) -> float:
        """``||dL/dh_1|| / ||dL/dh_T||`` (or of c): > 1 gradients explode back in time,
        << 1 they vanish.  inf when the last step's gradient is zero."""
        g = self.grad_c_norm if cell else self.grad_h_norm
        if g is None:
            raise ValueError("no cell-state gradients: this trace is not of an LSTM")
        return float(g[0] / g[-1]) if g[-1] > 0 else float("inf")

    def rows(self) -> list[dict]:
        """One dict per step, for CSV files."""
        columns = {k: v for k, v in (
            ("h_norm", self.h_norm), ("grad_h_norm", self.grad_h_norm), ("c_norm", self.c_norm),
            ("grad_c_norm", self.grad_c_norm), ("saturation", self.saturation), ("forget", self.forget),
        ) if v is not None}
        return [{"layer": self.layer, "direction": self.direction, "t": t + 1,
                 **{k: float(v[t]) for k, v in columns.items()}} for t in range(len(self.h_norm))]


@dataclass
class Trace:
    """Everything :func:`trace_dynamics` measured, one entry per layer and direction."""

    directions: list[DirectionTrace] = field(default_factory=list)
    loss: float = float("nan")

    def rows(self) -> list[dict]:
        return [row for d in self.directions for row in d.rows()]


def _saturation(h: Tensor, nonlinearity: str) -> Optional[Tensor]:
    """Per-unit saturation mask of an RNN's new state h = f(a), from h alone."""
    if nonlinearity == "tanh":
        return (1 - h * h) < SATURATED_BELOW  # tanh' = 1 - tanh^2, peak 1
    if nonlinearity == "sigmoid":
        return h * (1 - h) < 0.25 * SATURATED_BELOW  # sigmoid' = s(1 - s), peak 1/4
    return None


def _masked_mean(values: Tensor, valid: Optional[Tensor]) -> float:
    """Mean of (B,) values over the sequences still running (all when valid is None)."""
    if valid is None:
        return float(values.mean())
    n = int(valid.sum())
    return float(values[valid].sum() / n) if n else float("nan")


def _as_time_first(module, grad_output, like_input) -> Tensor:
    """The gradient of the module's output, in the (T, B, F) layout of the unrolled run."""
    if isinstance(like_input, PackedSequence):
        if isinstance(grad_output, PackedSequence):
            grad_output = grad_output.data
        packed = PackedSequence(grad_output, like_input.batch_sizes, like_input.sorted_indices,
                                like_input.unsorted_indices)
        return pad_packed_sequence(packed)[0]
    if grad_output.dim() == 2:
        return grad_output.unsqueeze(1)
    return grad_output.transpose(0, 1) if module.batch_first else grad_output


def trace_dynamics(module, input, hx=None, lengths=None, grad_output=None,
                   loss: str = "last") -> Trace:
    """Unroll ``module`` on ``input`` and measure states and gradients at every step.

    Args:
        module: a recurrent layer (``rnnkit.RNN/LSTM/GRU`` or ``torch.nn``'s).
        input, hx, lengths: as for ``module(input, hx, lengths=...)``.
        grad_output: the gradient of some loss with respect to the module's output (same
            layout as the output), e.g. captured during training; then ``dL/dh_t`` is for
            that loss.  Without it the loss is built here from ``loss``.
        loss: ``"last"``: L = sum of the last layer's output at each sequence's last step
            (the lecture's "loss at the last step"); ``"sum"``: the sum over all steps.
    Returns:
        a :class:`Trace`.  Parameter ``.grad`` fields are not touched.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    from rnnkit.models.rnn import RNNBase

    if isinstance(module, RNNBase):
        x, lengths, (kind, _) = module._prepare_input(input, lengths)
        h0, c0 = module._prepare_state(hx, x, kind == "unbatched")
    else:
        x, lengths, h0, c0 = _prepare_torch(module, input, hx, lengths)
    mode = cell_kind(module.mode)
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    T, B = x.shape[0], x.shape[1]
    dirs = 2 if module.bidirectional else 1
    # Every state depends on h0: with h0 needing grad, the states are in autograd's graph (to
    # be differentiated against) even when the module's parameters are frozen.
    x, h0 = x.detach(), h0.detach().requires_grad_()
    c0 = c0.detach() if c0 is not None else None
    step_valid = None if lengths is None else [(lengths > t) for t in range(T)]  # (B,) each

    records = []
    with torch.enable_grad():
        for layer in range(module.num_layers):
            outs = []
            for direction in range(dirs):
                k = layer * dirs + direction
                weights = tuple(getattr(module, base + f"_l{layer}" + ("_reverse" if direction else ""), None)
                                for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))
                index = reverse_index(lengths, T, x.device) if direction == 1 else None
                xin = reverse_time(x, index) if direction == 1 else x
                rec = _unroll(mode, nonlinearity, xin, h0[k], c0[k] if c0 is not None else None,
                              weights, lengths, step_valid)
                rec["layer"], rec["direction"] = layer, direction
                records.append(rec)
                outs.append(reverse_time(rec["out"], index) if direction == 1 else rec["out"])
            x = outs[0] if dirs == 1 else torch.cat(outs, dim=2)  # (T, B, dirs*P)
        out = x
        if grad_output is not None:
            g = _as_time_first(module, grad_output, input).to(out.dtype)
            if g.shape != out.shape:
                raise ValueError(f"grad_output must have the output's shape. Expected "
                                 f"{tuple(out.shape)} (time first), got {tuple(g.shape)}")
            objective = (out * g.detach()).sum()
            value = float("nan")
        else:
            if loss == "sum":
                objective = out.sum()
            else:
                last = (lengths - 1 if lengths is not None else torch.full((B,), T - 1)).to(out.device)
                objective = out[last, torch.arange(B, device=out.device)].sum()
            value = float(objective.detach())
        states = [s for rec in records for s in rec["h"] + rec["c"]]
        grads = torch.autograd.grad(objective, states, allow_unused=True)

    trace = Trace(loss=value)
    pos = 0
    for rec in records:
        n_h, n_c = len(rec["h"]), len(rec["c"])
        g_h, g_c = grads[pos:pos + n_h], grads[pos + n_h:pos + n_h + n_c]
        pos += n_h + n_c

        def norms(tensors):
            return np.array([_masked_mean(torch.zeros(B, dtype=torch.float64) if t is None else
                                          t.detach().double().norm(dim=1).cpu(),
                                          None if step_valid is None else step_valid[i].cpu())
                             for i, t in enumerate(tensors)])
        trace.directions.append(DirectionTrace(
            layer=rec["layer"], direction=rec["direction"],
            h_norm=np.array(rec["h_norm"]), grad_h_norm=norms(g_h),
            c_norm=np.array(rec["c_norm"]) if rec["c_norm"] else None,
            grad_c_norm=norms(g_c) if n_c else None,
            saturation=np.array(rec["saturation"]) if rec["saturation"] else None,
            forget=np.array(rec["forget"]) if rec["forget"] else None,
        ))
    return trace


def _unroll(mode, nonlinearity, x, h, c, weights, lengths, step_valid) -> dict:
    """One layer, one direction on the reference loop, keeping every step's new states (the
    tensors themselves, for their gradients; see the module doc) and their measurements."""
    rec = {"h": [], "c": [], "h_norm": [], "c_norm": [], "saturation": [], "forget": []}

    def record(t, h_prev, c_prev, h_new, c_new):
        valid = None if step_valid is None else step_valid[t].cpu()
        rec["h"].append(h_new)
        rec["h_norm"].append(_masked_mean(h_new.detach().double().norm(dim=1).cpu(), valid))
        if mode == "LSTM":
            rec["c"].append(c_new)
            rec["c_norm"].append(_masked_mean(c_new.detach().double().norm(dim=1).cpu(), valid))
            with torch.no_grad():  # the cell keeps its gates to itself: f_t again, off the graph
                f = lstm_gates(x[t], h_prev, *weights[:4])[1]  # (B, H)
            rec["forget"].append(_masked_mean(f.double().mean(dim=1).cpu(), valid))
        elif mode == "RNN":
            mask = _saturation(h_new.detach(), nonlinearity)
            if mask is not None:
                rec["saturation"].append(_masked_mean(mask.double().mean(dim=1).cpu(), valid))

    rec["out"] = reference_layer(mode, x, h, c, weights, lengths, nonlinearity=nonlinearity,
                                 on_step=record)[0]  # (T, B, P)
    return rec


def _prepare_torch(module, input, hx, lengths):
    """torch.nn layers: the same time-first padded view the rnnkit layers build."""
    if isinstance(input, PackedSequence):
        x, lengths = pad_packed_sequence(input)
    else:
        x = input.unsqueeze(1) if input.dim() == 2 else (input.transpose(0, 1) if module.batch_first else input)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.int64)
    states = module.num_layers * (2 if module.bidirectional else 1)
    P = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    if hx is None:
        h0 = x.new_zeros(states, x.shape[1], P)
        c0 = x.new_zeros(states, x.shape[1], module.hidden_size) if module.mode == "LSTM" else None
    elif module.mode == "LSTM":
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    if input.dim() == 2 and not isinstance(input, PackedSequence) and hx is not None:
        h0 = h0.unsqueeze(1)
        c0 = c0.unsqueeze(1) if c0 is not None else None
    return x, lengths, h0, c0


@torch.no_grad()
def spectral_radius(module) -> dict[str, float]:
    """``max |eigenvalue|`` of each recurrent weight: ``{"weight_hh_l0": rho}`` for an RNN,
    ``{"weight_hh_l0[f]": rho, ...}`` per gate block for LSTM/GRU.  With an LSTM projection
    the block's map on the state is ``W_block @ W_hr`` (H x H)."""
    gates = GATES[cell_kind(module.mode)]
    result = {}
    for name, w in module.named_parameters():
        if not name.startswith("weight_hh"):
            continue
        w = w.detach().double().cpu()
        suffix = name[len("weight_hh"):]
        w_hr = getattr(module, "weight_hr" + suffix, None)
        for gate, block in zip(gates, w.chunk(len(gates), dim=0)):
            if w_hr is not None:
                block = block @ w_hr.detach().double().cpu()  # (H, H)
            rho = float(torch.linalg.eigvals(block).abs().max())
            result[name + (f"[{gate}]" if gate else "")] = rho
    return result
