"""What every ``rnnkit train`` command does around its task: refuse to overwrite a run, seed,
record the settings, build the Trainer (and the CPU kernels before the clock starts), resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rnnkit.errors import CheckpointError, RnnkitError
from rnnkit.train import distributed, run_lock
from rnnkit.train.config import TrainConfig
from rnnkit.train.record_schema import describe, read_json
from rnnkit.train.trainer import Trainer, seed_everything

logger = logging.getLogger(__name__)


# What `--resume` may change: none of it changes the model, the data or what the optimizer saw.
RESUME_SAFE = ("epochs", "max_steps", "progress", "log_every", "checkpoint_every", "diagnostics")
# What it may change with `--override` too: the optimization from here on, and the device.
RESUME_OVERRIDE = ("lr", "clip", "weight_decay", "early_stop", "plateau_patience", "device", "bf16")
SECTIONS = ("data", "model", "train")


def read_record(run_dir: str | Path) -> dict:
    """The settings a run was created with (its ``config.json``: {"data", "model", "train"})."""
    path = Path(run_dir) / "config.json"
    record = read_json(path, "run record", missing="this run cannot be resumed with its own settings")
    if not isinstance(record, dict) or not all(isinstance(record.get(k), dict) for k in SECTIONS):
        raise CheckpointError(f"{path}: expected an object with data, model and train settings")
    return record


def _shown(value: Any) -> str:
    """A recorded value for a message: itself when short, else only what kind it is."""
    text = repr(value)
    return text if len(text) <= 80 else describe(value)


def resume_changes(record: dict, configs: tuple) -> list[tuple[str, str, Any, Any]]:
    """(section, setting, recorded value, given value) of every setting that differs from the record."""
    changes = []
    for section, cfg in zip(SECTIONS, configs):
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
        for name, value in asdict(cfg).items():
            if name in record[section] and record[section][name] != value:
                changes.append((section, name, record[section][name], value))
            elif name not in record[section] and value != defaults[name]:
                # a setting newer than the run: the run trained as its default does
                changes.append((section, name, "(not recorded: the default)", value))
    return changes


def changed_settings(record: dict, configs: tuple) -> dict[str, list]:
    """:func:`resume_changes` as ``{"section.name": [in the run, given]}``."""
    return {f"{sec}.{name}": [was, given] for sec, name, was, given in resume_changes(record, configs)}


def check_resume(record: dict, configs: tuple, override: bool = False) -> None:
    """Refuse a resume that would change a setting other than :data:`RESUME_SAFE` (and, with
    ``override``, :data:`RESUME_OVERRIDE`)."""
    allowed = RESUME_SAFE + (RESUME_OVERRIDE if override else ())
    for section, name, was, given in resume_changes(record, configs):
        if section == "train" and name in allowed:
            continue
        flag = "--" + name.replace("_", "-")
        hint = (f"; {flag} may change only with --override" if section == "train" and name in RESUME_OVERRIDE
                else f"; only {', '.join('--' + n.replace('_', '-') for n in RESUME_SAFE)} may change "
                     f"(and with --override {', '.join('--' + n.replace('_', '-') for n in RESUME_OVERRIDE)})")
        raise RnnkitError(f"--resume keeps the run's settings: {section}.{name} is {_shown(was)} in the run, "
                          f"given {_shown(given)}{hint}")


def open_run(run_dir: str | Path, resume: bool, data_cfg, model_cfg, train_cfg: TrainConfig,
             override: bool = False) -> Path:
    """The run folder, after refusing to start over an existing run without ``resume``, and to
    resume with settings other than the run's own (:func:`check_resume`); seeds every random
    stream."""
    run_dir = Path(run_dir)
    folder = run_lock.acquire(run_dir) if distributed.is_main() else None
    try:
        if not resume and (run_dir / "checkpoints" / "last").exists():
            raise RnnkitError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --run")
        if resume:
            if not (run_dir / "checkpoints" / "last").exists():
                raise RnnkitError(f"{run_dir}: no checkpoint to resume from (checkpoints/last is missing)")
            check_resume(read_record(run_dir), (data_cfg, model_cfg, train_cfg), override)
    except BaseException:
        if folder is not None:
            run_lock.release(folder)
        raise
    seed_everything(train_cfg.seed, train_cfg.deterministic)
    return run_dir


def write_run_config(run_dir: Path, configs: tuple, **extra: Any) -> dict:
    """Write a new run's ``config.json``: ``extra`` keys (e.g. "task") and the three config
    sections; returns the record."""
    record = {**extra, **dict(zip(SECTIONS, map(asdict, configs)))}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def log_resume(run_dir: Path, changed: dict, **extra: Any) -> None:
    """Append a resume's line to ``resumes.jsonl``: its time, ``extra`` (e.g. the step) and
    the settings it changed, ``{"section.name": [was, given]}``."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra, "changed": changed}
    with open(run_dir / "resumes.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def build_trainer(model, task: Any, data_cfg, model_cfg, train_cfg: TrainConfig, run_dir: Path,
                  resume: bool) -> Trainer:
    """A Trainer for ``task`` in ``run_dir``, holding the folder's lock (:mod:`rnnkit.train.run_lock`)
    while it lives: a new run's three configs written to ``config.json`` (rank 0; written once,
    a resume appends what it changed to ``resumes.jsonl`` instead), the fused CPU kernels built,
    and on ``resume`` the last checkpoint loaded."""
    configs = (data_cfg, model_cfg, train_cfg)
    record = dict(zip(SECTIONS, map(asdict, configs)))
    folder = run_lock.acquire(run_dir) if distributed.is_main() else None  # held since open_run: no wait
    try:
        if distributed.is_main() and not resume:
            write_run_config(run_dir, configs)
        trainer = Trainer(model, task, train_cfg, run_dir, record)
    except BaseException:
        if folder is not None:
            run_lock.release(folder, every=True)
        raise
    if folder is not None:  # open_run's hold and this one end with the Trainer
        weakref.finalize(trainer, run_lock.release, folder, True)
    if trainer.device.type == "cpu" and os.environ.get("RNNKIT_FUSED", "1") != "0":
        from rnnkit.engine.kernels import fused_cpu_available

        fused_cpu_available()  # build the CPU kernels (once per machine) before the clock starts
    if resume:
        logger.info(f"resuming from {trainer.resume()} (step {trainer.step})")
        changed = changed_settings(read_record(run_dir), configs)
        for group in trainer.optimizer.param_groups:  # the checkpoint's optimizer state has the old ones
            if "train.lr" in changed:
                group["lr"] = train_cfg.lr
                if "initial_lr" in group:  # what a schedule decays from
                    group["initial_lr"] = train_cfg.lr
            if "train.weight_decay" in changed:
                group["weight_decay"] = train_cfg.weight_decay
        if changed:
            logger.info("changed on resume: " + ", ".join(f"{k} {was!r} -> {given!r}"
                                                           for k, (was, given) in changed.items()))
        if distributed.is_main():
            log_resume(run_dir, changed, step=trainer.step)
    return trainer


def fit_and_report(trainer: Trainer, task: Any, run_dir: Path) -> dict:
    """Train; on rank 0 print how it ended: the validation metrics (evaluating when the run had
    nothing left to train, e.g. resumed when complete), the best monitored value and what the
    checkpoints hold.  A run stopped by a signal is not evaluated (a scheduler's SIGTERM leaves
    seconds): its last validation, if any, is shown."""
    start = time.perf_counter()
    summary = trainer.fit()
    if not trainer.is_main:  # torchrun: rank 0 reports
        return summary
    stopped = summary["status"] == "interrupted"
    if summary["valid"] is None and not stopped:
        summary["valid"] = task.evaluate(trainer.model, "valid")
    key, _ = getattr(task, "monitor", ("loss", "min"))
    how = summary["status"] + (f" by {summary['signal']}" if summary.get("signal") else "")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in (summary["valid"] or {}).items())
    shown = f": {'last ' if stopped else ''}validation {shown}" if shown else ""
    best = f"; best {key} {summary['best']:.4f}" if summary["best"] is not None else ""
    kept = f"checkpoints/last holds step {summary['step']}"
    kept += ", checkpoints/best the best" if summary["best"] is not None else ""
    logger.info(f"{how} at step {summary['step']} after {time.perf_counter() - start:.0f} s{shown}{best} "
                f"({kept}); run folder {run_dir}")
    return summary
