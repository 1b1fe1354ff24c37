"""Speed of rnnkit's LSTM against torch.nn.LSTM, side by side in one process.

For each shape (T, B, D=H) it times, in rounds that run every model once in a shuffled order
(so drift and cache effects hit all alike):
  - torch.nn.LSTM (oneDNN on CPU, cuDNN on GPU),
  - rnnkit.LSTM, backend "fused": explicit BPTT with fused CPU step kernels (the CPU default),
  - rnnkit.LSTM, backend "bptt": explicit BPTT with each step in PyTorch operations,
  - rnnkit.LSTM, backend "reference": the per-step loop under autograd,
for forward+backward (training) and forward only (inference, under no_grad), and prints the
median times and the ratio rnnkit / torch.nn as the median over rounds of the per-round
ratio (each round's two runs are seconds apart, so the ratio is robust to a noisy machine).

    python benchmarks/speed.py                      # the CPU shapes of the Core issue
    python benchmarks/speed.py --shapes 35x20x650 --repeats 20 --backends fused bptt   # without "reference"
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

import rnnkit

CPU_SHAPES = [(100, 1, 128), (35, 20, 200), (35, 20, 650), (100, 32, 256), (200, 64, 512)]


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        T, B, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like TxBxH (e.g. 35x20x650), got {text!r}") from None
    return T, B, H


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def make_step(model, x, grad, train: bool):
    if train:
        def step():
            out, _ = model(x)
            out.backward(grad)
    else:
        def step():
            with torch.no_grad():
                model(x)
    return step


def bench_shape(T, B, H, device, dtype, repeats, warmup, backends, rng):
    peer = torch.nn.LSTM(H, H, device=device, dtype=dtype)
    models = {"torch.nn": peer}
    for backend in backends:
        ours = rnnkit.LSTM(H, H, backend=backend, device=device, dtype=dtype)
        ours.load_state_dict(peer.state_dict())
        models[backend] = ours
    x = torch.randn(T, B, H, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(T, B, H, device=device, dtype=dtype)
    results = {}
    for train in (True, False):
        steps = {name: make_step(m, x, grad, train) for name, m in models.items()}
        for step in steps.values():
            for _ in range(warmup):
                step()
        times = {name: [] for name in steps}
        order = list(steps)
        for _ in range(repeats):
            rng.shuffle(order)
            for name in order:
                times[name].append(time_call(steps[name], device))
        results["train" if train else "infer"] = {
            "time": {n: statistics.median(t) for n, t in times.items()},
            "ratio": {
                n: statistics.median(a / b for a, b in zip(t, times["torch.nn"])) for n, t in times.items()
            },
        }
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=None, metavar="TxBxH")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per model (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--backends", nargs="+", default=None, choices=["fused", "bptt", "reference"],
                        help="rnnkit backends to time (default: fused bptt reference on CPU, bptt on CUDA)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    shapes = args.shapes or CPU_SHAPES
    torch.manual_seed(0)
    rng = random.Random(0)

    print(f"# rnnkit {rnnkit.__version__}, torch {torch.__version__}, {args.device}, {args.dtype}, "
          f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    backends = args.backends or (["fused", "bptt", "reference"] if args.device == "cpu" else ["bptt", "reference"])
    print(f"# {args.repeats} rounds; times are medians; ratio = median over rounds of rnnkit / torch.nn "
          "(lower is better)")
    print("| T, B, H | mode | torch.nn ms | " + " | ".join(f"{b} ms | ratio" for b in backends) + " |")
    print("|---|---|---:|" + "---:|---:|" * len(backends))
    for T, B, H in shapes:
        res = bench_shape(T, B, H, device, dtype, args.repeats, args.warmup, backends, rng)
        for mode, label in (("train", "fwd+bwd"), ("infer", "fwd")):
            t, q = res[mode]["time"], res[mode]["ratio"]
            cells = [f"{1e3 * t[b]:.2f} | **{q[b]:.2f}**" if b == backends[0]
                     else f"{1e3 * t[b]:.2f} | {q[b]:.2f}" for b in backends]
            print(f"| {T}, {B}, {H} | {label} | {1e3 * t['torch.nn']:.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
