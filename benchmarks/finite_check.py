"""Cost of the NaN/inf input checks of rnnkit's layers and cells (``rnnkit.finite_checks``).

For each case it times the same call with the checks on and off, alternating in rounds, and
prints the median times and the median per-round overhead in percent.  Cases: an LSTM layer's
forward (inference, under no_grad) and forward+backward at (T, B, D=H), and one LSTMCell step
(the per-step call of decoders, where a fixed cost weighs most).

    python benchmarks/finite_check.py
    python benchmarks/finite_check.py --rounds 50 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnkit


def _timed(fn, device: torch.device, inner: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / inner


def compare(fn, device: torch.device, rounds: int, inner: int) -> tuple[float, float, float]:
    """(median seconds on, median seconds off, median per-round overhead in %)."""
    fn()  # warm-up (kernel builds, allocator)
    on, off, overhead = [], [], []
    for r in range(rounds):
        pair = {}
        for enabled in ((True, False) if r % 2 == 0 else (False, True)):
            with rnnkit.finite_checks(enabled):
                pair[enabled] = _timed(fn, device, inner)
        on.append(pair[True])
        off.append(pair[False])
        overhead.append(100 * (pair[True] / pair[False] - 1))
    return statistics.median(on), statistics.median(off), statistics.median(overhead)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    print(f"{'case':<34}{'checks on':>12}{'off':>12}{'overhead':>10}")
    for T, B, H in [(35, 20, 200), (100, 32, 256)]:
        layer = rnnkit.LSTM(H, H, device=device)
        x = torch.randn(T, B, H, device=device)

        def forward():
            with torch.no_grad():
                layer(x)

        def train():
            layer(x)[0].sum().backward()

        for name, fn, inner in (("forward", forward, 3), ("forward+backward", train, 2)):
            on, off, pct = compare(fn, device, args.rounds, inner)
            print(f"{f'LSTM {T}x{B}x{H} {name}':<34}{on * 1e3:>10.3f}ms{off * 1e3:>10.3f}ms{pct:>9.1f}%")
    for B, H in [(1, 128), (32, 256)]:
        cell = rnnkit.LSTMCell(H, H, device=device)
        x, h, c = (torch.randn(B, H, device=device) for _ in range(3))

        def step():
            with torch.no_grad():
                cell(x, (h, c))

        on, off, pct = compare(step, device, args.rounds, 200)
        print(f"{f'LSTMCell B={B} H={H} step':<34}{on * 1e6:>10.1f}us{off * 1e6:>10.1f}us{pct:>9.1f}%")


if __name__ == "__main__":
    main()
