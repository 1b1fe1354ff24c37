"""The ``rnnkit`` command line.  Entry points stay thin: parse, then call one function."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


class _Console(logging.Handler):
    """The CLI's handler of the ``rnnkit`` logger: messages as they are, on standard output
    (warnings and errors on standard error), looking the streams up at each message so that
    redirections made later (a rank's silenced output, a test's capture) apply."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _console_logging():
    """The library's log messages on the console while a command runs."""
    logger = logging.getLogger("rnnkit")
    handler = _Console()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # printed once, whatever the root logger has
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _threads_flag(parser: argparse.ArgumentParser, default: Optional[str] = "auto") -> None:
    """``--threads`` of ``rnnkit train`` and ``rnnkit evaluate`` (rnnkit.threads' policy)."""
    from rnnkit.threads import parse_threads

    def threads(text: str):
        try:
            return parse_threads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser.add_argument("--threads", type=threads, default=default, metavar="N|auto|torch",
                        help="PyTorch CPU threads: a count, 'torch' (PyTorch's default: one per CPU) or 'auto' "
                        "(default): one per CPU that other processes leave free, following the load while "
                        "training; several threads on a busy machine can be many times slower (docs/benchmarks.md)")


def info() -> str:
    """A short report of versions, threads and available backends."""
    import torch

    import rnnkit
    from rnnkit.engine import kernels
    from rnnkit.engine.layer import BACKENDS, auto_table

    build, key, state = kernels.fused_cpu_state()
    switched_off = os.environ.get("RNNKIT_FUSED", "1") == "0"
    fused = not state.startswith("unavailable") and not switched_off
    if switched_off:
        state += "; not used by backend 'auto' (RNNKIT_FUSED=0)"
    elif state == "not built":
        state = f"not built; compiled on first use ({kernels.BUILD_TIME})"
    compiler = key["compiler"]
    dist = torch.distributed
    backends = [name for name, ok in (("gloo", dist.is_available() and dist.is_gloo_available()),
                                      ("nccl", dist.is_available() and dist.is_nccl_available())) if ok]
    lines = [
        f"rnnkit {rnnkit.__version__}",
        f"torch {torch.__version__} (threads: {torch.get_num_threads()})",
        f"cuda available: {torch.cuda.is_available()}",
        f"backends: {', '.join(BACKENDS)}",
        f"fused CPU kernels: {state}",
        f"  build: {build} (the digest covers source, flags, compiler, PyTorch and Python)",
        f"  compiler: {compiler['command']}"
        + (f" -> {compiler['path']} ({compiler['version']})" if compiler["path"] else " (not found)"),
        f"distributed training (torchrun): {', '.join(backends) or 'not available in this PyTorch build'}",
        *auto_table(fused),
    ]
    if torch.cuda.is_available():
        lines.append("backend 'auto' on cuda: native (cuDNN) wherever it runs the configuration")
    return "\n".join(lines)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of every command, and the handler of each top-level command.  Each task
    (``rnnkit.tasks.base.TASK_NAMES``) adds ``train NAME`` and its own commands."""
    import rnnkit
    from rnnkit.tasks.base import all_tasks

    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent sequence models with explicit BPTT."
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="show versions, threads and backends")
    handlers = {"train": _train, "evaluate": _evaluate, "average": _average, "lab": _lab}

    train = sub.add_parser("train", help="train a model for a task")
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in all_tasks():
        train_parser = _train_parser(tasks, task)
        if hasattr(task, "add_train_flags"):  # the optional hook of tasks.base.Task
            task.add_train_flags(train_parser)
        handlers.update(task.add_commands(sub))

    ev = sub.add_parser("evaluate", help="evaluate a trained run on a split",
                        description="Evaluate a trained run on a split of its data. The options depend on "
                        "the run's task: `rnnkit evaluate RUN --help` lists them.")
    ev.add_argument("run", help="run folder")
    ev.add_argument("options", nargs=argparse.REMAINDER, help="options of the run's task (see RUN --help)")
    _threads_flag(ev)

    av = sub.add_parser("average", help="average the weights of checkpoints of one run into a new checkpoint",
                        description="Checkpoint averaging (Vaswani et al. 2017): the element-wise mean of the "
                        "weights of CHECKPOINT... in RUN/checkpoints, written as RUN/checkpoints/NAME; evaluate "
                        "it with --checkpoint NAME.")
    av.add_argument("run", help="run folder")
    av.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="names in RUN/checkpoints (step_*, best)")
    av.add_argument("--name", default="average", help="name of the averaged checkpoint (default: average)")

    from rnnkit.lab import EXPERIMENTS
    from rnnkit.settings import MAX_LENGTH, MAX_UNITS, bounded

    lab = sub.add_parser(
        "lab", help="run one of the lecture's experiments (plots + CSV)",
        description="The lecture's experiments, measured: " + ", ".join(EXPERIMENTS) + ", or all. "
        "Each writes PNG figures, CSV tables and summary.txt into OUT/NAME and prints a summary.",
    )
    lab.add_argument("name", choices=EXPERIMENTS + ("all",), metavar="NAME",
                     help="one of: " + ", ".join(EXPERIMENTS + ("all",)))
    lab.add_argument("--out", default="runs/lab", help="output folder (default: runs/lab)")
    lab.add_argument("--full", action="store_true",
                     help="full settings (more draws; long-range: all lengths, more steps)")
    lab.add_argument("--seeds", type=bounded(int, ge=1), help="weight draws of the dynamics experiments")
    lab.add_argument("--hidden", type=bounded(int, ge=1, le=MAX_UNITS), help="hidden units")
    lab.add_argument("--steps", type=bounded(int, ge=1, le=MAX_LENGTH),
                     help="sequence length T of the dynamics experiments")
    lab.add_argument("--lengths", type=bounded(int, ge=1, le=MAX_LENGTH), nargs="+",
                     help="long-range tasks: the lengths T to train on")
    lab.add_argument("--train-steps", type=bounded(int, ge=1), help="long-range tasks: optimizer steps per run at most")
    lab.add_argument("--threads", type=bounded(int, ge=1, le=1024), default=1,
                     help="PyTorch CPU threads (default 1: fastest for these small models)")
    lab.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="long-range tasks' device")
    return parser, handlers


def _lab(args) -> int:
    from rnnkit.lab import EXPERIMENTS, run_lab

    names = EXPERIMENTS if args.name == "all" else (args.name,)
    for name in names:
        print(f"== {name}", flush=True)
        result = run_lab(name, args.out, full=args.full, seeds=args.seeds, hidden=args.hidden,
                         steps=args.steps, lengths=args.lengths, train_steps=args.train_steps,
                         device=args.device, threads=args.threads)
        print("\n".join(result.lines), flush=True)
        for figure in result.figures:
            print(f"figure: {figure}")
    return 0


def _train_parser(tasks, task):
    """``rnnkit train NAME``: --config, --run (default runs/NAME-<time>), --resume, then one
    flag per field of the task's data, model and training configs."""
    from rnnkit.settings import add_dataclass_flags

    parser = tasks.add_parser(task.NAME, help=task.HELP, description=task.DESCRIPTION)
    parser.add_argument("--config", help="TOML or YAML file with [data], [model] and [train] tables")
    parser.add_argument("--run", help=f"run folder (default: runs/{task.NAME}-<time>)")
    if task.RESUMABLE or hasattr(task, "check_resumable"):  # all its runs, or those check_resumable allows
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --run from its last checkpoint, with the run's own settings "
                            "(config.json); only --epochs, --max-steps and logging flags may change")
        parser.add_argument("--override", action="store_true",
                            help="with --resume: also allow changing --lr, --clip, --weight-decay, --early-stop, "
                            "--plateau-patience, --device and --bf16")
    for cls, title in zip(task.CONFIGS, ("data", "model", "training")):
        add_dataclass_flags(parser, cls, title)
    _threads_flag(parser)
    return parser


def _task_configs(args, configs, record: Optional[dict] = None):
    """(data, model, train) configs: each class's defaults < ``record`` (a resumed run's own
    settings) < --config file < flags."""
    from rnnkit.settings import build, load_config_file, unknown_sections

    file_values = load_config_file(args.config) if args.config else {}
    source = args.config or "flags"
    unknown_sections(file_values, {"data", "model", "train"}, source)
    if record is not None:
        if args.config:
            source = f"{source} over the run's config.json"
        else:
            source = "the run's config.json"
        flat = {k: v for k, v in file_values.items() if not isinstance(v, dict)}  # a file's top-level keys
        file_values = {section: {**record[section], **{k: v for k, v in flat.items() if k in record[section]},
                                 **(file_values.get(section) or {})}
                       for section in ("data", "model", "train")}
    data_cls, model_cls, train_cls = configs
    return (build(data_cls, file_values, args, "data", source),
            build(model_cls, file_values, args, "model", source),
            build(train_cls, file_values, args, "train", source).validate())


def _train(args) -> int:
    import time

    from rnnkit.tasks.base import get_task
    from rnnkit.train import distributed

    task = get_task(args.task)
    run = args.run or f"runs/{task.NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
    # under torchrun every process runs this; rank 0 prints, the Trainer joins the process group
    with distributed.main_process_output():
        try:
            resume = getattr(args, "resume", False)
            if getattr(args, "override", False) and not resume:
                raise ValueError("--override goes with --resume (it allows changing settings of a resumed run)")
            record = None
            if resume:
                from rnnkit.train.run import read_record

                if args.run is None:
                    raise ValueError("--resume needs --run RUN (the run folder to continue)")
                if hasattr(task, "check_resumable"):  # a task that resumes some of its runs only
                    task.check_resumable(args, run)
                record = read_record(run)
            classes = task.configs_for(args, record) if hasattr(task, "configs_for") else task.CONFIGS
            configs = _task_configs(args, classes, record)
            from rnnkit.threads import policy

            with policy(getattr(args, "threads", "auto"), adapt=True):  # of this run only, recorded nowhere
                summary = task.train(*configs, run, resume, args)
            return (143 if summary.get("signal") == "SIGTERM" else 130) if summary.get("status") == "interrupted" else 0
        finally:
            distributed.destroy()


def _evaluate(args) -> int:
    """``rnnkit evaluate RUN [options]``: the options are those of the run's task."""
    from rnnkit.tasks.base import add_model_options, task_of_run

    wants_help = any(option in ("-h", "--help") for option in args.options)
    task = task_of_run(args.run)
    parser = argparse.ArgumentParser(prog=f"rnnkit evaluate {args.run}",
                                     description=f"Evaluate this {task.NAME} run on a split of its data.")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    add_model_options(parser)
    task.add_evaluate_flags(parser)
    _threads_flag(parser, default=getattr(args, "threads", "auto"))
    if wants_help:
        parser.print_help()
        return 0
    options = parser.parse_args(args.options, namespace=argparse.Namespace(run=args.run))
    from rnnkit.threads import policy

    with policy(options.threads, announce=False):  # standard output is the results, for pipes
        task.evaluate(options)
    return 0


def _average(args) -> int:
    from rnnkit.train.checkpoint import average_checkpoints

    folder = average_checkpoints(Path(args.run) / "checkpoints", args.checkpoints, args.name)
    print(f"averaged {', '.join(args.checkpoints)} into {folder}; use --checkpoint {args.name}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rnnkit.errors import RnnkitError

    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info(), flush=True)  # flushed here: a closed pipe then fails inside the try, not at exit
            return 0
        if args.command in commands:
            with _console_logging():
                return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and returns 130 itself), or a second one
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `rnnkit tag ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RnnkitError, ValueError, OSError, ImportError) as exc:  # OSError: an unwritable --run, a full disk
        print(f"rnnkit: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


def console() -> int:
    """The ``rnnkit`` program: :func:`main`, then, after a run stopped by a signal, no further
    Ctrl-C or SIGTERM can turn the few remaining moments of interpreter shutdown into a traceback."""
    code = main()
    if code in (130, 143):
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(console())
