"""The lecture's experiments as code: ``rnnkit lab NAME`` (see :func:`run_lab`).

1. ``activations``: ||h_t|| of ReLU RNNs with W_hh ~ N(0, s/n), s in {1.5, 2, 3};
2. ``gradients``: ||dL/dh_t|| of the same models for a loss at the last step;
3. ``saturation``: tanh and sigmoid RNNs as the weight scale grows;
4. ``lstm``: the same gradient probe through an LSTM's cell state, forget-gate bias 0..5;
5. ``spectral``: growth rate of ||h_t|| against the spectral radius of W_hh;
6. ``adding`` and ``copy``: long-range benchmarks, tanh RNN vs IRNN vs LSTM vs GRU.

Each writes PNG figures and CSV tables into its output folder and returns a summary.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

from rnnkit.extras import require
from rnnkit.lab.common import LabResult, LabSettings

DYNAMICS = ("activations", "gradients", "saturation", "lstm", "spectral")
LONG_RANGE = ("adding", "copy")
EXPERIMENTS = DYNAMICS + LONG_RANGE


def run_lab(name: str, out_dir: str | Path, full: bool = False, seeds: Optional[int] = None,
            hidden: Optional[int] = None, steps: Optional[int] = None, lengths: Optional[tuple] = None,
            train_steps: Optional[int] = None, device: str = "cpu", threads: Optional[int] = 1) -> LabResult:
    """Run one experiment into ``out_dir/NAME``; write its tables and a ``summary.txt``.

    Args:
        name: one of :data:`EXPERIMENTS`.
        full: the full settings (more seeds; for the long-range tasks all lengths and more
            steps) instead of the quick ones.
        seeds, hidden, steps: override the dynamics experiments' draws, units and length T
            (``hidden`` also sets the long-range models' size).
        lengths, train_steps: override the long-range tasks' lengths and step budget.
        threads: PyTorch's CPU threads while the experiment runs (restored after).  The
            models are small (100 units): one thread is fastest, and on a busy machine
            several threads can be many times slower.  None keeps PyTorch's setting.
    """
    require("matplotlib", "lab", "rnnkit lab")  # the figures, drawn after the measurements
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}. Expected one of {list(EXPERIMENTS)}")
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    import torch

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(name, out, full, seeds, hidden, steps, lengths, train_steps, device)
    finally:
        torch.set_num_threads(previous_threads)


def _run(name, out, full, seeds, hidden, steps, lengths, train_steps, device) -> LabResult:
    start = time.perf_counter()
    if name in DYNAMICS:
        from rnnkit.lab import dynamics

        cfg = LabSettings(seeds=10 if full else 5)
        cfg = replace(cfg, **{k: v for k, v in (("seeds", seeds), ("hidden", hidden), ("steps", steps))
                              if v is not None})
        if cfg.steps < 2 or cfg.seeds < 1 or cfg.hidden < 1:
            raise ValueError(f"need steps >= 2, seeds >= 1 and hidden >= 1, got {cfg}")
        result = getattr(dynamics, name)(cfg, out)
        settings = cfg
    else:
        from rnnkit.lab import long_range

        settings = (long_range.FULL if full else long_range.QUICK)[name]
        settings = replace(settings, **{k: v for k, v in (("lengths", tuple(lengths) if lengths else None),
                                                          ("steps", train_steps), ("hidden", hidden))
                                        if v is not None})
        if settings.steps < 1 or settings.hidden < 1 or min(settings.lengths) < 1:
            raise ValueError(f"need train steps >= 1, hidden >= 1 and lengths >= 1, got {settings}")
        result = long_range.run(name, settings, out, device=device)
    result.write_tables(out)
    seconds = time.perf_counter() - start
    result.lines.append(f"({seconds:.0f} s; settings: {settings}; files in {out})")
    (out / "summary.txt").write_text("\n".join(result.lines) + "\n", encoding="utf-8")
    return result


__all__ = ["EXPERIMENTS", "LabResult", "LabSettings", "run_lab"]
