"""Speed of rnnkit's LSTM against torch.nn.LSTM, side by side in one process.

For each shape (T, B, D=H) it times, in rounds that run every model once in a shuffled order
(so drift and cache effects hit all alike):
  - torch.nn.LSTM (oneDNN on CPU; cuDNN on GPU, after flatten_parameters()),
  - rnnkit.LSTM on each backend of --backends:
    "fused": explicit BPTT with fused CPU step kernels (the CPU default),
    "bptt": explicit BPTT with each step in PyTorch operations,
    "reference": the per-step loop under autograd,
    "native": PyTorch's own fused operator (the one torch.nn.LSTM calls) behind rnnkit's layer,
    "triton": Triton kernels (CUDA only),
    "auto": whatever rnnkit chooses for the call,
for forward+backward (training) and forward only (inference, under no_grad), as --mode says,
and prints the median times, the achieved TFLOP/s and the ratio rnnkit / torch.nn as the
median over rounds of the per-round ratio (each round's two runs are seconds apart, so the
ratio is robust to a noisy machine).  A backend that cannot be built or run on this device
and dtype shows "n/a" in its cells; the reason is printed under the table.

FLOPs (one layer, one direction; the matrix products, not the pointwise gate work):
    forward   8*T*B*H*(D+H): the four gates' W_ih x_t (2*4H*D a sequence and step) and W_hh h_{t-1} (2*4H*H)
    backward 16*T*B*H*(D+H): twice the forward (the gradient of the inputs and states, and of the weights)
    training  = 24*T*B*H*(D+H); inference = 8*T*B*H*(D+H); TFLOP/s = FLOPs / median time / 1e12.

    python benchmarks/speed.py                      # the CPU shapes of the Core issue
    python benchmarks/speed.py --shapes 35x20x650 --repeats 20 --backends fused bptt   # without "reference"
    python benchmarks/speed.py --device cuda --dtype float32 bfloat16 --backends auto native triton bptt --mode train
    python benchmarks/speed.py --shapes 256x1x256 --mode infer --per-step --output speed.md
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
BACKENDS = ("auto", "fused", "bptt", "reference", "native", "triton")
MODES = {"train": "fwd+bwd", "infer": "fwd"}


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        T, B, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like TxBxH (e.g. 35x20x650), got {text!r}") from None
    return T, B, H


def lstm_flops(T: int, B: int, D: int, H: int, train: bool) -> int:
    """Matrix-product FLOPs of one LSTM layer: 8*T*B*H*(D+H) forward, three times that with
    the backward (see the module's docstring)."""
    forward = 8 * T * B * H * (D + H)
    return 3 * forward if train else forward


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


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def build_models(H: int, device, dtype, backends) -> tuple[dict, dict]:
    """torch.nn.LSTM and an rnnkit.LSTM per backend with its weights; backends that fail to
    build are returned apart, with the reason."""
    peer = torch.nn.LSTM(H, H, device=device, dtype=dtype)
    if device.type == "cuda":
        peer.flatten_parameters()  # cuDNN's one contiguous weight buffer
    models, failed = {"torch.nn": peer}, {}
    for backend in backends:
        try:
            ours = rnnkit.LSTM(H, H, backend=backend, device=device, dtype=dtype)
            ours.load_state_dict(peer.state_dict())
        except Exception as exc:  # a backend absent here is reported as n/a, not a crash
            failed[backend] = _why(exc)
            continue
        models[backend] = ours
    return models, failed


def bench_shape(T, B, H, device, dtype, repeats, warmup, backends, rng, modes=tuple(MODES)):
    """For each mode: median seconds and median ratio to torch.nn per model (None for a
    backend that failed), and the reasons of the failures."""
    models, failed = build_models(H, device, dtype, backends)
    x = torch.randn(T, B, H, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(T, B, H, device=device, dtype=dtype)
    results = {}
    for mode in modes:
        train = mode == "train"
        steps = {name: make_step(m, x, grad, train) for name, m in models.items()}
        na = dict(failed)
        for name in list(steps):
            try:
                steps[name]()  # the first warm-up run; it also checks that the backend runs here
                _sync(device)
            except Exception as exc:
                if name == "torch.nn":
                    raise
                na[name] = _why(exc)
                del steps[name]
        for step in steps.values():
            for _ in range(warmup - 1):
                step()
        times = {name: [] for name in steps}
        order = list(steps)
        for _ in range(repeats):
            rng.shuffle(order)
            for name in order:
                times[name].append(time_call(steps[name], device))
        results[mode] = {
            "time": {n: statistics.median(t) for n, t in times.items()},
            "ratio": {
                n: statistics.median(a / b for a, b in zip(t, times["torch.nn"])) for n, t in times.items()
            },
            "na": na,
        }
    return results


def _tflops(flops: int, seconds: float) -> str:
    rate = flops / seconds / 1e12
    return f"{rate:.2f}" if rate < 100 else f"{rate:.0f}"


def table_header(backends, per_step: bool) -> list[str]:
    per_model = " ms | us/step | TFLOP/s" if per_step else " ms | TFLOP/s"
    width = 3 if per_step else 2
    return [
        f"| T, B, H | mode | torch.nn{per_model} | " + " | ".join(f"{b}{per_model} | ratio" for b in backends) + " |",
        "|---|---|" + "---:|" * width + ("---:|" * (width + 1)) * len(backends),
    ]


def table_row(T, B, H, mode, result, backends, per_step: bool) -> str:
    t, q = result["time"], result["ratio"]
    flops = lstm_flops(T, B, H, H, mode == "train")

    def model_cells(name):
        if name not in t:
            return ["n/a"] * (3 if per_step else 2)
        cells = [f"{1e3 * t[name]:.2f}"]
        if per_step:
            cells.append(f"{1e6 * t[name] / T:.1f}")
        return cells + [_tflops(flops, t[name])]

    cells = [f"{T}, {B}, {H}", MODES[mode], *model_cells("torch.nn")]
    for b in backends:
        ratio = "n/a" if b not in q else (f"**{q[b]:.2f}**" if b == backends[0] else f"{q[b]:.2f}")
        cells += [*model_cells(b), ratio]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64", "bfloat16"],
                        help="one table per dtype")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=None, metavar="TxBxH")
    parser.add_argument("--mode", default="both", choices=["train", "infer", "both"],
                        help="forward+backward, forward only under no_grad, or both (default)")
    parser.add_argument("--per-step", action="store_true", help="also print each model's time per step (us)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per model (median)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed runs per model before timing (at least one, which checks that it runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--backends", nargs="+", default=None, choices=BACKENDS,
                        help="rnnkit backends to time (default: fused bptt reference on CPU, bptt on CUDA)")
    parser.add_argument("--output", default=None, metavar="FILE", help="also write the table(s) to FILE")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = args.shapes or CPU_SHAPES
    modes = tuple(MODES) if args.mode == "both" else (args.mode,)
    backends = args.backends or (["fused", "bptt", "reference"] if args.device == "cpu" else ["bptt", "reference"])
    torch.manual_seed(0)
    rng = random.Random(0)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())

    out = open(args.output, "w", encoding="utf-8") if args.output else None

    def emit(line: str = "") -> None:
        print(line, flush=True)
        if out is not None:
            out.write(line + "\n")
            out.flush()

    try:
        for i, dtype_name in enumerate(args.dtype):
            dtype = getattr(torch, dtype_name)
            if i:
                emit()
            emit(f"# rnnkit {rnnkit.__version__}, torch {torch.__version__}, {args.device}, {dtype_name}, "
                 f"threads {torch.get_num_threads()}, {machine}")
            emit(f"# {args.repeats} rounds; times are medians; ratio = median over rounds of rnnkit / torch.nn "
                 "(lower is better); TFLOP/s of the matrix products: 24*T*B*H*(D+H) FLOPs fwd+bwd, "
                 "8*T*B*H*(D+H) fwd")
            for line in table_header(backends, args.per_step):
                emit(line)
            reasons = {}
            for T, B, H in shapes:
                res = bench_shape(T, B, H, device, dtype, args.repeats, args.warmup, backends, rng, modes)
                for mode in modes:
                    emit(table_row(T, B, H, mode, res[mode], backends, args.per_step))
                    for name, why in res[mode]["na"].items():
                        reasons.setdefault((name, why), []).append(f"{T}x{B}x{H} {MODES[mode]}")
            for (name, why), where in reasons.items():
                emit(f"# n/a {name} ({', '.join(where)}): {why}")
    finally:
        if out is not None:
            out.close()


if __name__ == "__main__":
    main()
