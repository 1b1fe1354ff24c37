"""What every ``rnnkit train`` command does around its task: refuse to overwrite a run, seed,
record the settings, build the Trainer (and the CPU kernels before the clock starts), resume."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.train import distributed
from rnnkit.train.config import TrainConfig
from rnnkit.train.trainer import Trainer, seed_everything

logger = logging.getLogger(__name__)


def open_run(run_dir: str | Path, resume: bool, train_cfg: TrainConfig) -> Path:
    """The run folder, after refusing to start over an existing run without ``resume``;
    seeds every random stream."""
    run_dir = Path(run_dir)
    if not resume and (run_dir / "checkpoints" / "last").exists():
        raise RnnkitError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run")
    seed_everything(train_cfg.seed, train_cfg.deterministic)
    return run_dir


def build_trainer(model, task: Any, data_cfg, model_cfg, train_cfg: TrainConfig, run_dir: Path,
                resume: bool) -> Trainer:
    """A Trainer for ``task`` in ``run_dir``: the three configs written to ``config.json``
    (rank 0), the fused CPU kernels built, and on ``resume`` the last checkpoint loaded."""
    record = {"data": asdict(data_cfg), "model": asdict(model_cfg), "train": asdict(train_cfg)}
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    trainer = Trainer(model, task, train_cfg, run_dir, record)
    if trainer.device.type == "cpu" and os.environ.get("RNNKIT_FUSED", "1") != "0":
        from rnnkit.engine.kernels import fused_cpu_available

        fused_cpu_available()  # build the CPU kernels (once per machine) before the clock starts
    if resume:
        logger.info(f"resuming from {trainer.resume()} (step {trainer.step})")
    return trainer


def fit_and_report(trainer: Trainer, task: Any, run_dir: Path) -> dict:
    """Train; on rank 0, make sure the summary holds validation metrics (evaluating when
    training stopped between validations) and print them with the best monitored value."""
    start = time.perf_counter()
    summary = trainer.fit()
    if not trainer.is_main:  # torchrun: rank 0 reports
        return summary
    if summary["valid"] is None or summary["status"] == "max_steps":
        summary["valid"] = task.evaluate(trainer.model, "valid")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in summary["valid"].items())
    key, _ = getattr(task, "monitor", ("loss", "min"))
    best = f"; best {key} {summary['best']:.4f}" if summary["best"] is not None else ""
    logger.info(f"{summary['status']} at step {summary['step']} after {time.perf_counter() - start:.0f} s: "
          f"validation {shown}{best} (checkpoints/best keeps the best); run folder {run_dir}")
    return summary
