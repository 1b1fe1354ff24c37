"""Latency of one streaming step, B = 1: rnnkit's Stream.step against torch.nn, in one process.

For each hidden size H (D = H) and depth (1 or 2 layers) it feeds the same sequence of steps,
one at a time and carrying the state, to
  - ``rnnkit.models.streaming.Stream`` over an ``rnnkit.LSTM`` (default backend "auto"), with
    rnnkit's NaN/inf input check on (the default) and off (``rnnkit.finite_checks(False)``),
  - ``torch.nn.LSTMCell``, one per layer, stacked in a Python loop,
  - ``torch.nn.LSTM`` called with T = 1 and its state carried from call to call,
all with the same weights, float32, under ``torch.inference_mode()``.  Each round runs every
contender once over the steps in a shuffled order; the table gives the median microseconds
per step and, for each peer, the median over rounds of the per-round ratio Stream / peer
(lower is better).

With ``--kernel`` it instead times Stream.step over an LSTM and a GRU whose backend is
"fused" (the compiled CPU step kernel, what "auto" picks) against the same layer with backend
"bptt" (the step in PyTorch operations), NaN/inf checks off: what the kernel saves per step.

    python benchmarks/streaming.py                           # H 128..1024, 1 and 2 layers
    python benchmarks/streaming.py --sizes 256 --layers 2 --rounds 31
    python benchmarks/streaming.py --kernel --layers 1
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

import rnnkit
from rnnkit.models.streaming import Stream

SIZES = [128, 256, 512, 1024]
PEERS = ["LSTMCell", "nn.LSTM T=1"]


def build(H: int, layers: int, dtype: torch.dtype):
    """Every contender's ``run(xs)`` (feed the steps ``xs`` from a zero state), same weights."""
    peer = torch.nn.LSTM(H, H, num_layers=layers, dtype=dtype).eval()
    ours = rnnkit.LSTM(H, H, num_layers=layers, dtype=dtype).eval()
    ours.load_state_dict(peer.state_dict())
    cells = []
    for k in range(layers):
        cell = torch.nn.LSTMCell(H, H, dtype=dtype)
        cell.load_state_dict({name: getattr(peer, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih",
                                                                               "bias_hh")})
        cells.append(cell)
    stream = Stream(ours)

    def run_stream(xs):
        stream.reset()
        for x in xs:
            stream.step(x)

    def run_stream_unchecked(xs):
        with rnnkit.finite_checks(False):
            run_stream(xs)

    def run_cells(xs):
        state = [None] * layers
        for x in xs:
            for k, cell in enumerate(cells):
                state[k] = x, _ = cell(x, state[k])

    def run_lstm(xs):
        state = None
        for x in xs:
            _, state = peer(x.view(1, 1, -1), state)

    return {"Stream": run_stream, "Stream, checks off": run_stream_unchecked, "LSTMCell": run_cells,
            "nn.LSTM T=1": run_lstm}


def bench(H, layers, dtype, rounds, steps, rng):
    """Median µs per step of each contender, and the median per-round ratio Stream / peer."""
    runs = build(H, layers, dtype)
    xs = list(torch.randn(steps, 1, H, dtype=dtype).unbind(0))
    for run in runs.values():  # warm-up: kernels loaded, caches and allocator primed
        run(xs[: max(1, steps // 4)])
    times = {name: [] for name in runs}
    order = list(runs)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            runs[name](xs)
            times[name].append((time.perf_counter() - start) / steps)
    median = {name: 1e6 * statistics.median(t) for name, t in times.items()}
    ratio = {peer: statistics.median(a / b for a, b in zip(times["Stream"], times[peer])) for peer in PEERS}
    ratio["unchecked/LSTMCell"] = statistics.median(
        a / b for a, b in zip(times["Stream, checks off"], times["LSTMCell"]))
    return median, ratio


def bench_kernel(kind, H, layers, dtype, rounds, steps, rng):
    """Median µs per step of a Stream over the "fused" and the "bptt" layer, and the median
    per-round ratio fused / bptt."""
    fused = getattr(rnnkit, kind)(H, H, num_layers=layers, backend="fused", dtype=dtype)
    plain = getattr(rnnkit, kind)(H, H, num_layers=layers, backend="bptt", dtype=dtype)
    plain.load_state_dict(fused.state_dict())
    streams = {"fused": Stream(fused), "bptt": Stream(plain)}
    xs = list(torch.randn(steps, 1, H, dtype=dtype).unbind(0))

    def run(stream):
        stream.reset()
        for x in xs:
            stream.step(x)

    for stream in streams.values():
        run(stream)
    times = {name: [] for name in streams}
    order = list(streams)
    with rnnkit.finite_checks(False):
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                run(streams[name])
                times[name].append((time.perf_counter() - start) / steps)
    ratio = statistics.median(a / b for a, b in zip(times["fused"], times["bptt"]))
    return {name: 1e6 * statistics.median(t) for name, t in times.items()}, ratio


def steps_for(H: int, layers: int, target_ms: float) -> int:
    """Steps per timed run so that one run takes about ``target_ms`` (the weights of a step are
    read from memory once, so the time grows with their size)."""
    per_step_us = 10 + layers * 4 * 2 * H * H * 4 / 4e3  # ~10 µs overhead + weights at ~4 GB/s
    return max(16, min(2000, int(1e3 * target_ms / per_step_us)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=SIZES, metavar="H")
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2], choices=[1, 2, 3, 4])
    parser.add_argument("--rounds", type=int, default=15, help="timed runs per contender (median)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: about 20 ms of work)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--kernel", action="store_true", help="time the fused step kernel against PyTorch operations")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    rng = random.Random(0)
    print(f"# rnnkit {rnnkit.__version__}, torch {torch.__version__}, cpu, {args.dtype}, B = 1, "
          f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    if args.kernel:
        print(f"# {args.rounds} rounds under torch.inference_mode(), NaN/inf checks off; µs per step of Stream.step "
              "are medians; ratio = median over rounds of fused / bptt")
        print("| cell | H | layers | fused µs | bptt µs | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        with torch.inference_mode():
            for kind in ("LSTM", "GRU"):
                for layers in args.layers:
                    for H in args.sizes:
                        steps = args.steps or steps_for(H, layers, 20.0)
                        t, q = bench_kernel(kind, H, layers, dtype, args.rounds, steps, rng)
                        print(f"| {kind} | {H} | {layers} | {t['fused']:.1f} | {t['bptt']:.1f} | {q:.2f} |", flush=True)
        return
    print(f"# {args.rounds} rounds under torch.inference_mode(); µs per step are medians; ratio = median over "
          "rounds of Stream / peer (lower is better)")
    print("| H | layers | Stream µs | LSTMCell µs | ratio | nn.LSTM T=1 µs | ratio | Stream, checks off µs "
          "| ratio to LSTMCell |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for layers in args.layers:
            for H in args.sizes:
                steps = args.steps or steps_for(H, layers, 20.0)
                t, q = bench(H, layers, dtype, args.rounds, steps, rng)
                print(f"| {H} | {layers} | {t['Stream']:.1f} | {t['LSTMCell']:.1f} | **{q['LSTMCell']:.2f}** | "
                      f"{t['nn.LSTM T=1']:.1f} | {q['nn.LSTM T=1']:.2f} | {t['Stream, checks off']:.1f} | "
                      f"{q['unchecked/LSTMCell']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
