"""Gradient-dynamics diagnostics during training: a Trainer callback.

Every ``every`` steps the callback captures the input and initial state each recurrent layer
of the model sees (forward hooks) together with the gradient the loss sends into its output,
then replays the layer with :func:`rnnkit.models.probes.trace_dynamics` to record per
step:

- ``||h_t||`` (and ``||c_t||``),
- ``||dL/dh_t||`` for the training loss itself (``grad_h_norm``),
- ``||dL/dh_t||`` for the lecture's probe, a loss on the last step only
  (``probe_grad_h_norm``): how much of a late error reaches step t, the quantity that
  vanishes or explodes;

and per probed step the spectral radius of each ``W_hh`` and the global gradient norm (before
clipping).  It warns (:class:`GradientWarning`; the first time per layer and kind, all are kept in
``warnings``) when the probe's ``||dL/dh_1|| / ||dL/dh_T||``
is below ``vanish`` or above ``explode``, or when the global gradient norm jumps above
``spike`` times its running median, or is not finite.

Files in the run folder: ``diagnostics.csv`` (one row per probed step, layer and direction)
and ``diagnostics_steps.csv`` (one row per probed step, layer, direction and time step).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import statistics
import warnings
from collections import deque
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from rnnkit.models.probes import spectral_radius, trace_dynamics
from rnnkit.train.callbacks import Callback

SUMMARY_FIELDS = ["step", "module", "layer", "direction", "h_norm_first", "h_norm_last",
                  "probe_grad_ratio", "probe_grad_ratio_c", "spectral_radius", "grad_norm"]
STEP_FIELDS = ["step", "module", "layer", "direction", "t", "h_norm", "grad_h_norm",
               "probe_grad_h_norm", "c_norm", "grad_c_norm", "probe_grad_c_norm", "saturation", "forget"]


class GradientWarning(UserWarning):
    """Gradients explode or vanish (see :class:`DiagnosticsCallback`)."""


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The recurrent layers inside ``model`` (rnnkit's and torch.nn's), by name."""
    from rnnkit.models.rnn import RNNBase

    found = [(name or "model", m) for name, m in model.named_modules()
             if isinstance(m, (RNNBase, nn.RNNBase))]
    return found


def global_grad_norm(model: nn.Module) -> float:
    norms = [p.grad.detach().norm().double() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


class DiagnosticsCallback(Callback):
    """Record and check gradient dynamics while training (see the module docstring).

    Args:
        every: probe every this many optimizer steps (and at the first step).
        vanish, explode: thresholds on the last-step probe's ``||dL/dh_1|| / ||dL/dh_T||``.
        spike: warn when the gradient norm exceeds this multiple of its median over the last
            ``window`` steps.
        run_dir: where to write the CSV files (default: the Trainer's run folder).
    """

    def __init__(self, every: int = 100, vanish: float = 1e-6, explode: float = 1e6,
                 spike: float = 10.0, window: int = 50, run_dir: Optional[str | Path] = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.vanish, self.explode, self.spike = every, vanish, explode, spike
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.norms: deque = deque(maxlen=window)
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self._warned: set = set()
        self._modules: list[tuple[str, nn.Module]] = []
        self._hooks: list = []
        self._captured: dict[str, dict] = {}
        self._files = None
        self._active = True

    # ---------------------------------------------------------------------------- callbacks
    def on_fit_start(self, trainer) -> None:
        # several processes (torchrun): rank 0 probes its part of each batch and writes the files
        self._active = getattr(trainer, "is_main", True)
        if not self._active:
            return
        self._modules = recurrent_modules(trainer.model)
        folder = self.run_dir or trainer.run_dir
        self._files = []
        writers = []
        for name, fields in (("diagnostics.csv", SUMMARY_FIELDS), ("diagnostics_steps.csv", STEP_FIELDS)):
            path = Path(folder) / name
            new = not path.exists()
            handle = open(path, "a", newline="", encoding="utf-8")
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            self._files.append(handle)
            writers.append(writer)
        self._summary_csv, self._steps_csv = writers

    def on_step_start(self, trainer, batch) -> None:
        if self._active and (trainer.step == 0 or (trainer.step + 1) % self.every == 0):
            self._arm()

    def on_after_backward(self, trainer) -> None:
        if not self._active:
            return
        norm = global_grad_norm(trainer.model)
        step = trainer.step + 1
        if not math.isfinite(norm):
            self._warn(f"step {step}: the gradient norm is {norm}")
        elif len(self.norms) >= 5 and norm > self.spike * statistics.median(self.norms):
            self._warn(f"step {step}: gradient norm {norm:.3g} is over {self.spike:g}x its recent "
                       f"median {statistics.median(self.norms):.3g} (exploding gradients?)")
        if math.isfinite(norm):
            self.norms.append(norm)
        if self._hooks:
            self._disarm()
            self._probe(step, norm)

    def on_fit_end(self, trainer, summary) -> None:
        self._disarm()
        for handle in self._files or []:
            handle.close()
        self._files = None
        # matplotlib is optional: without it the CSV files hold everything
        if self.records and importlib.util.find_spec("matplotlib") is not None:
            self.plot(Path(self.run_dir or trainer.run_dir) / "diagnostics.png")

    def plot(self, path: str | Path) -> Path:
        """Figure of the probed steps: the last-step probe's gradient ratio and the spectral
        radius of each layer's W_hh against the training step."""
        from rnnkit.plotting import pyplot, save

        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
        layers = sorted({(r["module"], r["layer"], r["direction"]) for r in self.records})
        for key in layers:
            rows = [r for r in self.records if (r["module"], r["layer"], r["direction"]) == key]
            label = f"{key[0]} l{key[1]}" + (" reverse" if key[2] else "")
            steps = [r["step"] for r in rows]
            axes[0].plot(steps, [r["probe_grad_ratio"] for r in rows], marker=".", label=label)
            axes[1].plot(steps, [r["spectral_radius"] for r in rows], marker=".", label=label)
        steps = sorted({r["step"] for r in self.records})
        first = {r["step"]: r["grad_norm"] for r in self.records}
        axes[2].plot(steps, [first[s] for s in steps], marker=".", color="black")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("||dL/dh_1|| / ||dL/dh_T|| (loss at step T)")
        axes[1].set_ylabel("spectral radius of W_hh (largest gate)")
        axes[2].set_yscale("log")
        axes[2].set_ylabel("gradient norm (before clipping)")
        for ax in axes:
            ax.set_xlabel("training step")
        axes[0].legend(fontsize=7)
        fig.suptitle("Gradient dynamics during training")
        return save(fig, Path(path))

    # ------------------------------------------------------------------------------ probing
    def _arm(self) -> None:
        self._captured = {}
        for name, module in self._modules:
            self._hooks.append(module.register_forward_hook(self._capture(name), with_kwargs=True))

    def _disarm(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _capture(self, name: str):
        def hook(module, args, kwargs, output):
            if name in self._captured:  # a layer called several times per step: the first call
                return
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            lengths = args[2] if len(args) > 2 else kwargs.get("lengths")
            entry = {"input": _detach(args[0] if args else kwargs["input"]), "hx": _detach(hx),
                     "lengths": lengths, "grad": None}
            out = output[0]
            data = out.data if hasattr(out, "batch_sizes") else out
            if data.requires_grad:
                def keep(grad):
                    entry["grad"] = grad.detach()
                data.register_hook(keep)
            self._captured[name] = entry
        return hook

    def _probe(self, step: int, grad_norm: float) -> None:
        for name, module in self._modules:
            entry = self._captured.get(name)
            if entry is None:
                continue
            probe = trace_dynamics(module, entry["input"], entry["hx"], entry["lengths"], loss="last")
            real = (trace_dynamics(module, entry["input"], entry["hx"], entry["lengths"],
                                   grad_output=entry["grad"]) if entry["grad"] is not None else None)
            radii = spectral_radius(module)
            for k, d in enumerate(probe.directions):
                suffix = f"_l{d.layer}" + ("_reverse" if d.direction else "")
                rho = max(v for key, v in radii.items() if key.startswith("weight_hh" + suffix + "[")
                          or key == "weight_hh" + suffix)
                ratio = d.gradient_ratio()
                ratio_c = d.gradient_ratio(cell=True) if d.grad_c_norm is not None else None
                record = {"step": step, "module": name, "layer": d.layer, "direction": d.direction,
                          "h_norm_first": float(d.h_norm[0]), "h_norm_last": float(d.h_norm[-1]),
                          "probe_grad_ratio": ratio, "probe_grad_ratio_c": ratio_c,
                          "spectral_radius": rho, "grad_norm": grad_norm}
                self.records.append(record)
                self._summary_csv.writerow(record)
                rows = d.rows()
                real_rows = real.directions[k].rows() if real is not None else [{}] * len(rows)
                for row, real_row in zip(rows, real_rows):
                    row = {**row, "probe_grad_h_norm": row.pop("grad_h_norm"),
                           "probe_grad_c_norm": row.pop("grad_c_norm", None),
                           "grad_h_norm": real_row.get("grad_h_norm"), "grad_c_norm": real_row.get("grad_c_norm")}
                    self._steps_csv.writerow({"step": step, "module": name, **row})
                where = f"{name} layer {d.layer}{' (reverse)' if d.direction else ''}"
                T = len(d.h_norm)
                kind = "vanishing" if ratio < self.vanish else "exploding" if ratio > self.explode else None
                if T > 1 and kind:
                    self._warn_once((kind, where), f"step {step}: {where}: {kind} gradients, a loss at "
                                    f"step {T} reaches step 1 scaled by {ratio:.2e}")
        for handle in self._files or []:
            handle.flush()
        self._captured = {}

    def _warn_once(self, key, message: str) -> None:
        """Record every occurrence; show the first of each kind per layer (no flood)."""
        if key in self._warned:
            self.warnings.append(message)
            return
        self._warned.add(key)
        self._warn(message)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, GradientWarning, stacklevel=2)


def _detach(value):
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    if hasattr(value, "batch_sizes"):  # PackedSequence
        return type(value)(value.data.detach(), value.batch_sizes, value.sorted_indices, value.unsorted_indices)
    return value.detach() if isinstance(value, torch.Tensor) else value
