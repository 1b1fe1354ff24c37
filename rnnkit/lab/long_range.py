r"""Long-range dependency benchmarks (experiment 6), trained with the project's Trainer.

**Adding problem** (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015):
two input channels of length T: numbers drawn from U[0, 1], and a marker channel that is 1 at
one step drawn from the first half and one step drawn from the second half, 0 elsewhere.  The
target is the sum of the two marked numbers, read from the last hidden state; the loss is the
mean squared error.  Always predicting 1 scores Var(u1 + u2) = 2/12 = 0.1667 (Le et al.
quote 0.1767).  *Solved*: test MSE below 0.01, 6% of that baseline.

**Copy memory** (Arjovsky, Shah & Bengio 2016): ten symbols from {1..8}, then T - 1 blanks
(0), a delimiter (9) and ten more blanks; the target is blank for T + 10 steps and then the
ten symbols.  Cross-entropy over all T + 20 steps; the memoryless baseline (blanks, then a
uniform guess) scores 10 log 8 / (T + 20).  *Solved*: at least 99% of the recalled symbols
right on the test set.

Models (one layer, H units): a tanh RNN with PyTorch's default initialization, an IRNN
(ReLU, W_hh = I, zero biases, W_ih ~ N(0, 0.001^2); Le et al.), an LSTM with forget-gate bias
1 (Jozefowicz et al. 2015) and a GRU; Adam with gradient-norm clipping at 1 (Le et al. used
SGD; Adam reaches the same regimes in far fewer steps on a CPU).  Training stops early once
the validation set counts as solved.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

import rnnkit
from rnnkit import init
from rnnkit.lab.common import LabResult
from rnnkit.plotting import pyplot, save
from rnnkit.train import TrainConfig, Trainer
from rnnkit.train.callbacks import Callback
from rnnkit.train.diagnostics import DiagnosticsCallback

logger = logging.getLogger(__name__)

MODELS = ("tanh", "irnn", "lstm", "gru")
TASKS = ("adding", "copy")
MEMORIZE, SYMBOLS = 10, 8  # copy task: symbols to remember, alphabet size
SOLVED_MSE, SOLVED_ACCURACY = 0.01, 0.99


@dataclass
class LongRangeSettings:
    task: str = "adding"
    lengths: tuple = (50, 100)
    models: tuple = MODELS
    hidden: int = 100
    batch: int = 50
    steps: int = 2000  # optimizer steps at most per run
    eval_every: int = 250
    eval_size: int = 1000
    lr: float = 1e-3
    irnn_lr: float = 1e-4  # the IRNN diverges at Adam's usual rate
    clip: float = 1.0
    seed: int = 0


QUICK = {"adding": LongRangeSettings("adding", (50, 100), steps=2000),
         "copy": LongRangeSettings("copy", (10, 20), steps=2000, lr=3e-3)}
FULL = {"adding": LongRangeSettings("adding", (50, 100, 200, 400), steps=10000),
        "copy": LongRangeSettings("copy", (10, 20, 50, 100), steps=8000, lr=3e-3)}


# ---------------------------------------------------------------------------------- data
def adding_batch(T: int, B: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (T, B, 2) and targets (B,) of the adding problem."""
    if T < 2:
        raise ValueError(f"the adding problem needs T >= 2, got {T}")
    values = torch.rand(T, B, generator=generator)
    half = T // 2
    first = torch.randint(0, half, (B,), generator=generator)
    second = torch.randint(half, T, (B,), generator=generator)
    markers = torch.zeros(T, B)
    cols = torch.arange(B)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    target = values[first, cols] + values[second, cols]  # (B,)
    return torch.stack([values, markers], dim=2), target


def copy_batch(delay: int, B: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot inputs (delay + 20, B, 10) and int64 targets (delay + 20, B) of copy memory."""
    if delay < 1:
        raise ValueError(f"the copy task needs a delay >= 1, got {delay}")
    L = delay + 2 * MEMORIZE
    symbols = torch.randint(1, SYMBOLS + 1, (MEMORIZE, B), generator=generator)
    tokens = torch.zeros(L, B, dtype=torch.int64)
    tokens[:MEMORIZE] = symbols
    tokens[MEMORIZE + delay - 1] = SYMBOLS + 1  # the delimiter
    target = torch.zeros(L, B, dtype=torch.int64)
    target[-MEMORIZE:] = symbols
    return nn.functional.one_hot(tokens, SYMBOLS + 2).float(), target


def baseline(task: str, T: int) -> float:
    """The loss of the best memoryless predictor."""
    return 2.0 / 12.0 if task == "adding" else MEMORIZE * math.log(SYMBOLS) / (T + 2 * MEMORIZE)


# --------------------------------------------------------------------------------- model
class LongRangeModel(nn.Module):
    """One recurrent layer and a linear read-out: of the last step (adding) or of every
    step (copy)."""

    def __init__(self, kind: str, task: str, hidden: int) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {kind!r}")
        inputs, outputs = (2, 1) if task == "adding" else (SYMBOLS + 2, SYMBOLS + 1)
        self.task = task
        if kind == "lstm":
            self.rnn = init.forget_bias_(rnnkit.LSTM(inputs, hidden), 1.0)
        elif kind == "gru":
            self.rnn = rnnkit.GRU(inputs, hidden)
        elif kind == "irnn":
            self.rnn = init.input_normal_(init.hidden_identity_(rnnkit.RNN(inputs, hidden, nonlinearity="relu")), 1e-3)
        else:
            self.rnn = rnnkit.RNN(inputs, hidden, nonlinearity="tanh")
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, B, H)
        if self.task == "adding":
            return self.head(out[-1]).squeeze(-1)  # (B,)
        return self.head(out)  # (T, B, C)


# ---------------------------------------------------------------------------------- task
class LongRangeTask:
    """The Trainer's hooks for one task and length; batches are drawn from a generator seeded
    by the batch's index, so an epoch is the same every time it is replayed (resume)."""

    def __init__(self, task: str, T: int, cfg: LongRangeSettings) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task, self.T, self.cfg = task, T, cfg
        self.per_epoch = max(1, min(cfg.eval_every, cfg.steps))
        self.sets = {split: self.batch(cfg.eval_size, torch.Generator().manual_seed(cfg.seed * 7919 + k))
                     for k, split in ((1, "valid"), (2, "test"))}

    def batch(self, B: int, generator: torch.Generator):
        if self.task == "adding":
            return adding_batch(self.T, B, generator)
        return copy_batch(self.T, B, generator)

    def loss(self, model, x, y) -> torch.Tensor:
        out = model(x)
        if self.task == "adding":
            return nn.functional.mse_loss(out, y)
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def train_batches(self, epoch: int) -> list[int]:
        return list(range(epoch * self.per_epoch, (epoch + 1) * self.per_epoch))

    @staticmethod
    def _to(model, x, y):
        """Inputs (and regression targets) in the model's device and dtype."""
        p = next(model.parameters())
        return x.to(p.device, p.dtype), (y.to(p.device, p.dtype) if y.is_floating_point() else y.to(p.device))

    def train_step(self, model, index: int, state):
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 17 + index)
        x, y = self._to(model, *self.batch(self.cfg.batch, g))
        return self.loss(model, x, y), self.cfg.batch, None

    @torch.no_grad()
    def evaluate(self, model, split: str) -> dict:
        model.eval()
        x, y = self._to(model, *self.sets[split])
        metrics = {"loss": float(self.loss(model, x, y))}
        if self.task == "copy":
            predicted = model(x)[-MEMORIZE:].argmax(-1)  # (10, B)
            metrics["accuracy"] = float((predicted == y[-MEMORIZE:]).double().mean())
        model.train()
        return metrics

    def solved(self, metrics: dict) -> bool:
        if self.task == "adding":
            return metrics["loss"] < SOLVED_MSE
        return metrics["accuracy"] >= SOLVED_ACCURACY

    def meta(self) -> dict:
        return {"task": self.task, "T": self.T, "settings": asdict(self.cfg)}


class _StopWhenSolved(Callback):
    def __init__(self, task: LongRangeTask) -> None:
        self.task = task
        self.curve: list[tuple[int, dict]] = []
        self.solved_at: Optional[int] = None

    def on_validation_end(self, trainer, metrics: dict) -> None:
        self.curve.append((trainer.step, dict(metrics)))
        if self.task.solved(metrics) and self.solved_at is None:
            self.solved_at = trainer.step
            trainer.should_stop = True


def train_one(task: str, kind: str, T: int, cfg: LongRangeSettings, run_dir: Path,
              device: str = "cpu") -> dict:
    """Train one model on one length; returns the row of the results table."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the lab's own folder: a rerun starts afresh
    torch.manual_seed(cfg.seed)
    the_task = LongRangeTask(task, T, cfg)
    model = LongRangeModel(kind, task, cfg.hidden)
    train_cfg = TrainConfig(
        epochs=math.ceil(cfg.steps / the_task.per_epoch), optimizer="adam",  # whole eval intervals
        lr=cfg.irnn_lr if kind == "irnn" else cfg.lr, clip=cfg.clip, seed=cfg.seed, device=device,
        progress=False, log_every=50,
    )
    stopper = _StopWhenSolved(the_task)
    diagnostics = DiagnosticsCallback(every=the_task.per_epoch, vanish=0.0, explode=math.inf, spike=math.inf)
    trainer = Trainer(model, the_task, train_cfg, run_dir, the_task.meta(), callbacks=[stopper, diagnostics])
    start = time.perf_counter()
    summary = trainer.fit()
    seconds = time.perf_counter() - start
    test = the_task.evaluate(trainer.model, "test")
    ratios = [r["probe_grad_ratio"] for r in diagnostics.records]
    row = {"task": task, "model": kind, "T": T, "steps": trainer.step, "seconds": round(seconds, 1),
           "test_loss": test["loss"], "baseline_loss": baseline(task, T),
           "solved": the_task.solved(test), "solved_at_step": stopper.solved_at,
           "probe_grad_ratio_start": ratios[0] if ratios else None,
           "probe_grad_ratio_end": ratios[-1] if ratios else None, "status": summary["status"]}
    if task == "copy":
        row["test_accuracy"] = test["accuracy"]
    row["curve"] = stopper.curve
    return row


def run(task: str, cfg: LongRangeSettings, out_dir: Path, device: str = "cpu") -> LabResult:
    """Every model at every length: a results table, learning curves and a figure; each
    trained model logged as it finishes."""
    res = LabResult(task)
    rows, curves = [], []
    for T in cfg.lengths:
        for kind in cfg.models:
            row = train_one(task, kind, T, cfg, out_dir / "runs" / f"{kind}_T{T}", device)
            curves += [{"model": kind, "T": T, "step": step, **m} for step, m in row.pop("curve")]
            rows.append(row)
            extra = f", recall accuracy {row['test_accuracy']:.3f}" if task == "copy" else ""
            logger.info(f"{task} T={T:<4d} {kind:<5s} test loss {row['test_loss']:.4f} (baseline "
                f"{row['baseline_loss']:.4f}){extra} -> {'solved' if row['solved'] else 'not solved'} "
                f"after {row['steps']} steps, {row['seconds']:.0f} s")
    res.tables[task] = rows
    res.tables[f"{task}_curves"] = curves
    res.facts = {(r["model"], r["T"]): r for r in rows}
    criterion = f"test MSE < {SOLVED_MSE}" if task == "adding" else f"recall accuracy >= {SOLVED_ACCURACY:.0%}"
    header = "model  " + "  ".join(f"T={T:<5d}" for T in cfg.lengths)
    res.lines += [f"solved ({criterion}):", header]
    for kind in cfg.models:
        marks = [next(("yes" if r["solved"] else "no") for r in rows if r["model"] == kind and r["T"] == T)
                 for T in cfg.lengths]
        res.lines.append(f"{kind:<6s} " + "  ".join(f"{m:<7s}" for m in marks))

    res.figures.append(plot_curves(task, cfg, curves, out_dir / f"{task}.png"))
    return res


def plot_curves(task: str, cfg: LongRangeSettings, curves: list[dict], path: Path) -> Path:
    """Validation learning curves, one panel per length (rows as in ``{task}_curves.csv``)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cfg.lengths), figsize=(4.2 * len(cfg.lengths), 3.6), squeeze=False)
    metric = "loss" if task == "adding" else "accuracy"
    for ax, T in zip(axes[0], cfg.lengths):
        for kind in cfg.models:
            pts = [(c["step"], c[metric]) for c in curves if c["model"] == kind and c["T"] == T]
            if pts:
                ax.plot(*np.array(pts).T, marker=".", label=kind)
        if task == "adding":
            ax.axhline(baseline(task, T), color="gray", ls="--", lw=0.8, label="predict 1")
            ax.axhline(SOLVED_MSE, color="gray", ls=":", lw=0.8, label="solved")
            ax.set_yscale("log")
            ax.set_ylabel("validation MSE")
        else:
            ax.axhline(1 / SYMBOLS, color="gray", ls="--", lw=0.8, label="chance")
            ax.axhline(SOLVED_ACCURACY, color="gray", ls=":", lw=0.8, label="solved")
            ax.set_ylabel("validation recall accuracy")
        ax.set_title(f"T = {T}")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle(f"{'Adding problem' if task == 'adding' else 'Copy memory'}: {cfg.hidden} units, batch {cfg.batch}")
    return save(fig, path)
