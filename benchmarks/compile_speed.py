"""torch.compile on rnnkit's LSTM against eager rnnkit and torch.nn, side by side.

One shape (T, B, D=H), two layers: rnnkit.LSTM eager, the same module under
``torch.compile(fullgraph=True)`` (each layer and direction is one ``torch.ops.rnnkit.lstm``
node; Inductor compiles what lies around them), and torch.nn.LSTM eager, for
forward+backward and forward only (no_grad).  A fresh length every few rounds checks that
compiled code is reused across lengths (the graph count is printed).  Ratios are medians
over rounds of per-round ratios against eager rnnkit.

    python benchmarks/compile_speed.py --shape 35x20x650
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import rnnkit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="35x20x650", help="TxBxH")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    T, B, H = (int(v) for v in args.shape.lower().split("x"))
    torch.manual_seed(0)
    peer = torch.nn.LSTM(H, H, num_layers=args.layers)
    ours = rnnkit.LSTM(H, H, num_layers=args.layers)
    ours.load_state_dict(peer.state_dict())
    compiled = torch.compile(ours, fullgraph=True, backend=args.backend)
    models = {"rnnkit eager": ours, "rnnkit compiled": compiled, "torch.nn eager": peer}
    x = torch.randn(T, B, H, requires_grad=True)
    grad = torch.randn(T, B, H)
    from torch._dynamo.utils import counters

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T={T} B={B} H={H}, "
          f"{args.layers} layers, compile backend {args.backend}")
    rng = random.Random(0)
    for mode in ("fwd+bwd", "fwd"):
        def step(model, x=x):
            if mode == "fwd":
                with torch.no_grad():
                    model(x)
            else:
                out = model(x)[0]
                out.backward(grad if out.shape == grad.shape else torch.ones_like(out))

        for model in models.values():  # warm-up: compiles (a static graph, then a dynamic one)
            for length in (T, T + 3, T):
                step(model, torch.randn(length, B, H, requires_grad=True))
        times = {name: [] for name in models}
        order = list(models)
        for _ in range(args.repeats):
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                step(models[name])
                times[name].append(time.perf_counter() - start)
        base = times["rnnkit eager"]
        for name, t in times.items():
            ratio = statistics.median(a / b for a, b in zip(t, base))
            print(f"{mode:8s} {name:16s} {statistics.median(t) * 1e3:9.2f} ms   ratio to rnnkit eager {ratio:5.2f}")
    print(f"graphs compiled: {counters['stats']['unique_graphs']}")


if __name__ == "__main__":
    main()
