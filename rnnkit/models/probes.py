r"""What happens inside a recurrent layer over time: the lecture's diagnostics as functions.

:func:`trace_dynamics` runs any ``rnnkit.RNN/LSTM/GRU`` (or a ``torch.nn`` one: same
parameter names) step by step with the cell math of :mod:`rnnkit.engine.cells` and records,
for every layer and direction and every step t:

- ``||h_t||`` (and ``||c_t||`` for the LSTM): do activations explode or vanish?
- ``||dL/dh_t||`` (and ``||dL/dc_t||``): the *total* derivative of the loss with respect to
  the state at step t, through every later step, which is what BPTT carries back:

  .. math::
      \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial y_t}
          + \Big(\frac{\partial h_{t+1}}{\partial h_t}\Big)^{\!\top} \frac{\partial L}{\partial h_{t+1}}

  It is read off exactly by adding a zero tensor :math:`\epsilon_t` to each :math:`h_t` and
  differentiating with respect to it.
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

from rnnkit.engine.cells import gru_cell, lstm_gates, rnn_cell
from rnnkit.engine.layer import reverse_index, reverse_time

SATURATED_BELOW = 0.05
"""A unit is saturated when its activation's derivative is below this fraction of the peak."""

GATE_NAMES = {"RNN": ("",), "LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
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
    mode = "RNN" if module.mode.startswith("RNN") else module.mode
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    T, B = x.shape[0], x.shape[1]
    dirs = 2 if module.bidirectional else 1
    x, h0 = x.detach(), h0.detach()
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
                              weights, step_valid)
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
        eps = [e for rec in records for e in rec["eps_h"] + rec["eps_c"]]
        grads = torch.autograd.grad(objective, eps, allow_unused=True)

    trace = Trace(loss=value)
    pos = 0
    for rec in records:
        n_h, n_c = len(rec["eps_h"]), len(rec["eps_c"])
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


def _unroll(mode, nonlinearity, x, h, c, weights, step_valid) -> dict:
    """One layer, one direction, with a zero probe added to every state (see module doc)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    rec = {"eps_h": [], "eps_c": [], "h_norm": [], "c_norm": [], "saturation": [], "forget": []}
    outputs = []
    for t in range(x.shape[0]):
        valid = None if step_valid is None else step_valid[t].to(x.device)
        if mode == "LSTM":
            i, f, g, o = lstm_gates(x[t], h, w_ih, w_hh, b_ih, b_hh)
            c_new = c * f + i * g
            e_c = torch.zeros_like(c_new, requires_grad=True)
            c_new = c_new + e_c  # the probe enters before h_t reads c_t: dL/dc_t is total
            rec["eps_c"].append(e_c)
            rec["c_norm"].append(_masked_mean(c_new.detach().double().norm(dim=1).cpu(), _cpu(valid)))
            h_new = torch.tanh(c_new) * o
            if w_hr is not None:
                h_new = h_new @ w_hr.t()  # (B, P)
            rec["forget"].append(_masked_mean(f.detach().double().mean(dim=1).cpu(), _cpu(valid)))
        elif mode == "GRU":
            h_new, c_new = gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh), None
        else:
            h_new, c_new = rnn_cell(x[t], h, w_ih, w_hh, b_ih, b_hh, nonlinearity), None
            mask = _saturation(h_new.detach(), nonlinearity)
            if mask is not None:
                rec["saturation"].append(_masked_mean(mask.double().mean(dim=1).cpu(), _cpu(valid)))
        e_h = torch.zeros_like(h_new, requires_grad=True)
        h_new = h_new + e_h
        rec["eps_h"].append(e_h)
        rec["h_norm"].append(_masked_mean(h_new.detach().double().norm(dim=1).cpu(), _cpu(valid)))
        if valid is None:
            h, c = h_new, c_new
            outputs.append(h_new)
        else:
            keep = valid.unsqueeze(1)  # (B, 1)
            h = torch.where(keep, h_new, h)
            c = torch.where(keep, c_new, c) if c_new is not None else None
            outputs.append(torch.where(keep, h_new, torch.zeros_like(h_new)))
    rec["out"] = torch.stack(outputs)  # (T, B, P)
    return rec


def _cpu(valid: Optional[Tensor]) -> Optional[Tensor]:
    return None if valid is None else valid.cpu()


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
    mode = "RNN" if module.mode.startswith("RNN") else module.mode
    result = {}
    for name, w in module.named_parameters():
        if not name.startswith("weight_hh"):
            continue
        w = w.detach().double().cpu()
        suffix = name[len("weight_hh"):]
        w_hr = getattr(module, "weight_hr" + suffix, None)
        for gate, block in zip(GATE_NAMES[mode], w.chunk(len(GATE_NAMES[mode]), dim=0)):
            if w_hr is not None:
                block = block @ w_hr.detach().double().cpu()  # (H, H)
            rho = float(torch.linalg.eigvals(block).abs().max())
            result[name + (f"[{gate}]" if gate else "")] = rho
    return result
