"""rnnkit.LSTM against torch.nn.LSTM over the B x H grid of issue 20, side by side in one process.

For every point of the grid (batch B, hidden size H, D = H, T steps, 1 or 2 layers) it builds
a ``torch.nn.LSTM`` and an ``rnnkit.LSTM`` (default backend "auto"; ``--backend`` another,
``--cell gru|rnn`` the other layers) with the same weights and
times three modes:
  - train:          ``out, _ = lstm(x); out.backward(g)``  (forward + backward)
  - no_grad:        ``lstm(x)`` under ``torch.no_grad()``
  - inference_mode: ``lstm(x)`` under ``torch.inference_mode()``
A round runs each (model, mode) pair once, in a shuffled order, so drift and a busy machine
hit both models alike.  Each ratio is the median over rounds of that round's rnnkit time /
torch.nn time (lower is better; the issue's target is <= 1.0); times are medians.  Small
points get up to ``--rounds`` rounds; large ones stop (after ``--min-rounds``) once a point has
used ``--budget`` seconds.  On a 2-core Xeon with one thread the whole grid takes about 7
minutes, ``--quick`` under 3.

    python benchmarks/grid.py                     # the full grid, T = 50
    python benchmarks/grid.py --quick --markdown grid.md --csv grid.csv
    python benchmarks/grid.py --batches 1 8 --sizes 128 256 --layers 1 --modes no_grad
    python benchmarks/grid.py --cell gru --backend fused --quick --layers 1
"""

from __future__ import annotations

import argparse
import csv
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import time_call  # noqa: E402  (benchmarks/speed.py, beside this script)

BATCHES = [1, 8, 32, 64]
SIZES = [128, 256, 512, 1024]
LAYERS = [1, 2]
MODES = ["train", "no_grad", "inference_mode"]


def make_call(model, x, grad, mode: str):
    if mode == "train":
        def call():
            out, _ = model(x)
            (out.data if isinstance(out, PackedSequence) else out).backward(grad)
        return call
    context = torch.no_grad if mode == "no_grad" else torch.inference_mode

    def call():
        with context():
            model(x)
    return call


CELLS = {"lstm": (torch.nn.LSTM, rnnkit.LSTM), "gru": (torch.nn.GRU, rnnkit.GRU), "rnn": (torch.nn.RNN, rnnkit.RNN)}


def bench_point(B, H, layers, T, modes, device, dtype, args, rng):
    """``{mode: (torch.nn seconds, rnnkit seconds, ratio)}`` and the number of rounds run."""
    theirs, mine = CELLS[args.cell]
    peer = theirs(H, H, num_layers=layers, device=device, dtype=dtype)
    ours = mine(H, H, num_layers=layers, backend=args.backend, device=device, dtype=dtype)
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(T, B, H, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(T, B, H, device=device, dtype=dtype)
    if args.lengths:
        # one full sequence, the others uniform in [T/2, T]; both models take the same packed batch
        lengths = torch.randint((T + 1) // 2, T + 1, (B,), generator=torch.Generator().manual_seed(B))
        lengths[0] = T
        packed = pack_padded_sequence(x.detach(), lengths, enforce_sorted=False)
        x = packed._replace(data=packed.data.requires_grad_())  # a leaf: every call its own graph
        grad = torch.randn_like(x.data)
    calls = {(name, mode): make_call(model, x, grad, mode)
             for name, model in (("torch.nn", peer), ("rnnkit", ours)) for mode in modes}
    for call in calls.values():
        for _ in range(args.warmup):
            call()
    times = {key: [] for key in calls}
    order = list(calls)
    start = time.perf_counter()
    rounds = 0
    while rounds < args.rounds and (rounds < args.min_rounds or time.perf_counter() - start < args.budget):
        rng.shuffle(order)
        for key in order:
            times[key].append(time_call(calls[key], device))
        rounds += 1
    result = {}
    for mode in modes:
        theirs, mine = times[("torch.nn", mode)], times[("rnnkit", mode)]
        ratio = statistics.median(a / b for a, b in zip(mine, theirs))
        result[mode] = (statistics.median(theirs), statistics.median(mine), ratio)
    return result, rounds


def summary(rows, batches, sizes, layer_counts, modes) -> list[str]:
    """One B x H table of ratios per mode and depth; ratios above 1.0 in bold."""
    ratio = {(r["mode"], r["layers"], r["B"], r["H"]): r["ratio"] for r in rows}
    lines = []
    for mode in modes:
        for layers in layer_counts:
            lines += ["", f"{mode}, {layers} layer{'s' if layers > 1 else ''} (rnnkit / torch.nn):", "",
                      "| B \\ H | " + " | ".join(str(H) for H in sizes) + " |",
                      "|---:|" + "---:|" * len(sizes)]
            for B in batches:
                cells = []
                for H in sizes:
                    q = ratio.get((mode, layers, B, H))
                    cells.append("" if q is None else (f"**{q:.2f}**" if q > 1.0 else f"{q:.2f}"))
                lines.append(f"| {B} | " + " | ".join(cells) + " |")
    above = [r for r in rows if r["ratio"] > 1.0]
    counts = ", ".join(f"{mode} {sum(r['mode'] == mode for r in above)} of {sum(r['mode'] == mode for r in rows)}"
                       for mode in modes)
    lines += ["", f"Points above 1.0: {len(above)} of {len(rows)} ({counts})"]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", default="lstm", choices=list(CELLS), help="layer kind (default lstm)")
    parser.add_argument("--backend", default="auto", help="rnnkit's backend (default auto)")
    parser.add_argument("--lengths", action="store_true",
                        help="a batch of several lengths (packed; one of length T, the others in [T/2, T])")
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES, metavar="B")
    parser.add_argument("--sizes", nargs="+", type=int, default=SIZES, metavar="H")
    parser.add_argument("--layers", nargs="+", type=int, default=LAYERS, metavar="L")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--steps", "-T", type=int, default=50, help="sequence length T (default 50)")
    parser.add_argument("--rounds", type=int, default=25, help="most rounds per point")
    parser.add_argument("--min-rounds", type=int, default=3, help="fewest rounds per point")
    parser.add_argument("--budget", type=float, default=25.0, help="seconds per point after which rounds stop "
                        "(once --min-rounds are done)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model and mode")
    parser.add_argument("--quick", action="store_true", help="at most 9 rounds and a 4 s budget per point")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--csv", type=Path, default=None, help="also write every point to this CSV file")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.budget = min(args.rounds, 9), min(args.budget, 4.0)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    if min(args.batches + args.sizes + args.layers + [args.steps, args.rounds, args.min_rounds]) < 1:
        parser.error("batches, sizes, layers, --steps, --rounds and --min-rounds must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    rng = random.Random(0)

    lines = [
        f"# rnnkit {rnnkit.__version__}, torch {torch.__version__}, {args.device}, {args.dtype}, "
        f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"{args.cell}, backend {args.backend!r}" + (", packed batches of several lengths" if args.lengths else ""),
        f"# T = {args.steps}, D = H; {args.min_rounds}..{args.rounds} rounds per point ({args.budget:g} s budget); "
        "times are medians; ratio = median over rounds of rnnkit / torch.nn (lower is better)",
        "| B | H | layers | mode | torch.nn ms | rnnkit ms | ratio | rounds |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    began = time.perf_counter()
    for layers in args.layers:
        for H in args.sizes:
            for B in args.batches:
                result, rounds = bench_point(B, H, layers, args.steps, args.modes, device, dtype, args, rng)
                for mode in args.modes:
                    theirs, mine, ratio = result[mode]
                    rows.append({"B": B, "H": H, "layers": layers, "mode": mode, "T": args.steps,
                                 "torch_ms": 1e3 * theirs, "rnnkit_ms": 1e3 * mine, "ratio": ratio, "rounds": rounds})
                    shown = f"**{ratio:.2f}**" if ratio > 1.0 else f"{ratio:.2f}"
                    line = (f"| {B} | {H} | {layers} | {mode} | {1e3 * theirs:.2f} | {1e3 * mine:.2f} | {shown} | "
                            f"{rounds} |")
                    lines.append(line)
                    print(line, flush=True)
    tail = summary(rows, args.batches, args.sizes, args.layers, args.modes)
    tail.append(f"\n# {time.perf_counter() - began:.0f} s in all")
    lines += tail
    print("\n".join(tail), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
