"""The task interface and the registry.

A task is a package ``rnnkit/tasks/<name>/`` whose ``commands`` module satisfies :class:`Task`:
its name, its three config classes, how to train it, how to evaluate a run of it, the commands
of its own (``rnnkit tag``, ``rnnkit translate``, ...) and how to load a trained run as a
predictor.  The CLI builds every parser by looping over :data:`TASK_NAMES`, so adding a task is
one new package and one name here.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Callable, Protocol

from rnnkit.errors import CheckpointError

TASK_NAMES = ("lm", "tag", "translate", "speech", "forecast", "classify")

Command = Callable[[argparse.Namespace], int]


class Task(Protocol):
    """What a task's ``commands`` module provides (a module satisfies a Protocol).

    Optional: ``add_train_flags(parser)``, flags of `rnnkit train NAME` beyond the config
    fields (the language model's ``--sample-length``); ``configs_for(args, record)``, the
    three config classes for these arguments when a task trains more than one kind of model
    (forecasting: one series, or many with ``--m4``; ``record`` is a resumed run's
    ``config.json``, else None); ``check_resumable(args, run)``, raising the reason when
    ``--resume`` cannot continue that run (forecasting resumes its --m4 runs only)."""

    NAME: str  # the CLI command of `rnnkit train NAME`, the run-folder prefix and the checkpoint's task name
    HELP: str  # one line in `rnnkit train --help`
    DESCRIPTION: str  # the text of `rnnkit train NAME --help`
    CONFIGS: tuple[type, type, type]  # data, model and training config dataclasses, each with its defaults
    RESUMABLE: bool  # whether `rnnkit train NAME --resume` continues a run

    def train(self, data_cfg: Any, model_cfg: Any, train_cfg: Any, run: str, resume: bool,
              args: argparse.Namespace) -> dict:
        """Train a run; the Trainer's summary (its "status" says whether it was interrupted)."""

    def add_evaluate_flags(self, parser: argparse.ArgumentParser) -> None:
        """Flags of `rnnkit evaluate RUN` for a run of this task."""

    def evaluate(self, args: argparse.Namespace) -> None:
        """Evaluate ``args.run`` and print the metrics."""

    def add_commands(self, sub: Any) -> dict[str, Command]:
        """Add this task's own top-level commands to the subparsers ``sub``; their handlers by name."""

    def load(self, run: str | Path, checkpoint: str = "best", device: str = "auto") -> Any:
        """The predictor of a trained run."""


def get_task(name: str) -> Task:
    """The task registered as ``name`` (old checkpoint names map to today's)."""
    from rnnkit.train.checkpoint import OLD_TASK_NAMES

    name = OLD_TASK_NAMES.get(name, name)
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    return importlib.import_module(f"rnnkit.tasks.{name}.commands")


def all_tasks() -> list[Task]:
    return [get_task(name) for name in TASK_NAMES]


def task_of_run(run: str | Path) -> Task:
    """The task a run folder was trained for: the ``task`` of its ``config.json`` (runs that
    are ensembles, like forecasting's, record it there) or of its last checkpoint."""
    from rnnkit.train.checkpoint import read_state, task_name
    from rnnkit.train.record_schema import describe, read_json

    run = Path(run)
    name = None
    config = run / "config.json"
    if config.exists() or config.is_symlink():
        record = read_json(config, "run record")
        name = record.get("task") if isinstance(record, dict) else None
        if name is not None and not isinstance(name, str):
            raise CheckpointError(f"{config}: task must be a task's name, got {describe(name)}")
    if name is None:  # the checkpoint's own metadata; read_state says what is wrong with a bad run
        name = task_name(read_state(run).get("task", {}))
    if name is None:
        raise CheckpointError(f"{run}: its checkpoint does not name the task it was trained for")
    try:
        return get_task(name)
    except ValueError as exc:
        raise CheckpointError(f"{run}: {exc}") from None


def load(run: str | Path, checkpoint: str = "best", device: str = "auto") -> Any:
    """The predictor of a trained run, whatever its task: ``rnnkit.load("runs/tag-ewt").tag("...")``.

    ``checkpoint`` is "best" (the best validation score; the last when there is none), "last",
    or the name of a checkpoint in ``RUN/checkpoints`` (a ``step_*`` folder, an average).
    """
    return task_of_run(run).load(run, checkpoint, device)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --device of the commands that load a trained run's model."""
    parser.add_argument("--checkpoint", default="best",
                        help="best, last, or the name of a checkpoint in the run's checkpoints/ (e.g. an average)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def lazy_exports(package: str, names: dict[str, str]):
    """``(__getattr__, __all__)`` for a task package that exports ``names`` (name -> its module
    in the package) on first use, so that importing the package (which the CLI does for every
    task's ``commands``) does not import its predictor."""

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(names)


def add_run_option(parser: argparse.ArgumentParser, task: str, positional: bool = False) -> None:
    """``--run RUN`` of the commands that use a trained run (default: the newest ``runs/TASK-*``);
    with ``positional``, the run may also come first without the flag (``rnnkit sample RUN``)."""
    if positional:
        parser.add_argument("run_positional", nargs="?", metavar="RUN", help="run folder (the same as --run RUN)")
    parser.add_argument("--run", help=f"run folder of rnnkit train {task} (default: the newest runs/{task}-*)")


def chosen_run(args: argparse.Namespace, task: str) -> Path:
    """The run of :func:`add_run_option`'s flags: --run, the positional, or the newest one."""
    from rnnkit.train.checkpoint import newest_run

    given = getattr(args, "run_positional", None)
    if args.run and given and args.run != given:
        raise ValueError(f"give the run once: --run {args.run} or {given}, not both")
    return Path(args.run or given) if (args.run or given) else newest_run("runs", task, f"rnnkit train {task}")
