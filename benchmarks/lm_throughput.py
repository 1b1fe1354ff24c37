"""Training throughput of the PTB language models of Zaremba et al. (2014), vocabulary 10000,
batch 20: rnnkit's LSTM vs the same model with torch.nn.LSTM, side by side.

    python benchmarks/lm_throughput.py                     # "small": 2x200, BPTT 20
    python benchmarks/lm_throughput.py --size medium       # "medium": 2x650, BPTT 35, dropout 0.5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from rnnkit.tasks.lm.task import LanguageModel, LMModelConfig, detach_state

SIZES = {"small": (200, 20, 0.0), "medium": (650, 35, 0.5)}  # hidden, bptt, dropout


def build(peer: bool, vocab: int, hidden: int, dropout: float, device) -> LanguageModel:
    torch.manual_seed(0)
    cfg = LMModelConfig(embed_size=hidden, hidden_size=hidden, num_layers=2, dropout=dropout, init_range=0.1)
    model = LanguageModel(vocab, cfg)
    if peer:
        model.rnn = torch.nn.LSTM(hidden, hidden, num_layers=2, dropout=dropout)
    return model.to(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    hidden, T, dropout = SIZES[args.size]
    V, B = 10000, 20
    data = torch.randint(0, V, (T * args.steps + 1, B), device=device)
    models = {name: build(name.startswith("torch"), V, hidden, dropout, device).train()
              for name in ("torch.nn.LSTM", "rnnkit.LSTM")}
    optims = {k: torch.optim.SGD(m.parameters(), lr=1.0) for k, m in models.items()}

    def run(name):
        model, opt, state = models[name], optims[name], None
        start = time.perf_counter()
        for i in range(args.steps):
            x, y = data[i * T:(i + 1) * T], data[i * T + 1:(i + 1) * T + 1]
            opt.zero_grad()
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.view(-1, V), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
            state = detach_state(state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return T * B * args.steps / (time.perf_counter() - start)

    for name in models:
        run(name)  # warm-up (and the fused kernel build)
    speeds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in models:
            speeds[name].append(run(name))
    peer = statistics.median(speeds["torch.nn.LSTM"])
    ours = statistics.median(speeds["rnnkit.LSTM"])
    print(f"# PTB {args.size} model (2x{hidden}, BPTT {T}, batch {B}), {args.device}, "
          f"threads {torch.get_num_threads()}, {args.rounds} rounds of {args.steps} steps")
    print("| model | tokens/s |\n|---|---:|")
    print(f"| torch.nn.LSTM | {peer:,.0f} |\n| rnnkit.LSTM | {ours:,.0f} |")
    print(f"rnnkit / torch.nn throughput ratio: {ours / peer:.2f} (higher is better)")


if __name__ == "__main__":
    main()
