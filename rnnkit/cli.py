"""The ``rnnkit`` command line.  Entry points stay thin: parse, then call one function."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def info() -> str:
    """A short report of versions, threads and available backends."""
    import torch

    import rnnkit
    from rnnkit.engine import kernels
    from rnnkit.engine.layer import BACKENDS

    built = kernels.fused_cpu_built()
    lines = [
        f"rnnkit {rnnkit.__version__}",
        f"torch {torch.__version__} (threads: {torch.get_num_threads()})",
        f"cuda available: {torch.cuda.is_available()}",
        f"backends: {', '.join(BACKENDS)}",
        f"fused CPU kernels ({kernels.fused_cpu_name()}): "
        f"{'built' if built else 'compiled on first use'}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    import rnnkit

    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent sequence models with explicit BPTT."
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="show versions, threads and backends")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info())
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
