"""rnnkit's LSTM and torch.nn.LSTM on an idle and on a busy machine, with 1 thread and with all.

For each load ("idle": nothing started by this script; "busy": one background process that
this script starts, spinning one CPU), each thread count (``torch.set_num_threads``) and each
shape (T, B, D=H) it times, in rounds that run both models once in a shuffled order:
  - torch.nn.LSTM (oneDNN on the CPU),
  - rnnkit.LSTM with its default backend ("auto": the fused CPU kernels where they build),
for forward+backward (``out.backward(g)``) and forward only (under ``no_grad``), and prints the
median times, the ratio rnnkit / torch.nn (the median over rounds of the per-round ratio) and
each model's slowdown against its own median with 1 thread on the idle machine.

With ``--timeline SECONDS`` it instead trains rnnkit.LSTM (forward, backward, SGD step) at the
first shape for SECONDS under each thread policy (all threads, 1, "auto" following the load),
with the background process running during the middle third only, and prints the median
step time of each third and when "auto" changed the count.

    python benchmarks/contention.py                              # 35x20x200 and 35x20x650
    python benchmarks/contention.py --busy matmul --threads 1 2 auto
    OMP_WAIT_POLICY=PASSIVE python benchmarks/contention.py      # OpenMP reads it at import only
    python benchmarks/contention.py --timeline 30                # load that comes and goes
    python benchmarks/contention.py --quiet 3                    # 1 vs all threads, quiet moments only

With ``--quiet MINUTES`` it instead times 1 thread against all threads in alternation (each
round: one model, shape and mode, both thread counts in a shuffled order) for MINUTES, and
keeps only the rounds before and after which no other process was runnable: an estimate of
the idle machine on a shared one.

"idle" is only as idle as the machine is: the load average before each part is printed.
A configuration stops after --budget seconds of rounds (at least 3 rounds), so a slow one
(several threads on a busy machine) cannot stretch the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import torch

import rnnkit
from rnnkit import threads as thread_policy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speed import make_step, parse_shape  # noqa: E402  (benchmarks/speed.py, beside this script)

SHAPES = [(35, 20, 200), (35, 20, 650)]

SPIN = {
    # one CPU kept busy by the interpreter alone
    "python": "import sys\nprint('busy', flush=True)\nwhile True:\n    pass\n",
    # one CPU kept busy by single-threaded matrix products (also loads caches and memory)
    "matmul": ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nprint('busy', flush=True)\n"
               "while True:\n    a = torch.tanh(a @ a)\n"),
}


def parse_threads(text: str):
    if text in ("all", "auto"):
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads: a count, 'all' or 'auto'; got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"threads: a count >= 1; got {count}")
    return count


def start_busy(kind: str) -> subprocess.Popen:
    """A background process that keeps one CPU busy until terminated."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN[kind]], stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "busy":
        raise RuntimeError("the background process did not start")
    time.sleep(0.5)  # let it settle into its loop
    return proc


def time_config(models, x, grad, train, repeats, warmup, budget, rng):
    """Median time per model and median per-round ratio rnnkit / torch.nn."""
    steps = {name: make_step(m, x, grad, train) for name, m in models.items()}
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    order = list(steps)
    started = time.perf_counter()
    for i in range(repeats):
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() - started > budget:
            break
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch.nn"]))
    return median, ratio, len(times["rnnkit"])


def timeline(seconds: float, shape, busy_kind: str, default_threads: int, rng) -> None:
    """Training steps under each policy while load comes (second third) and goes (last third)."""
    T, B, H = shape
    torch.manual_seed(0)
    model = rnnkit.LSTM(H, H)
    # lr 0: the step runs but the weights stay, so every step costs the same (on this target a
    # model that learns saturates its gates within seconds, and denormal gradients slow it 15x)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, grad = torch.randn(T, B, H), torch.randn(T, B, H)
    policies = ["all", 1, "auto"]
    rng.shuffle(policies)
    print(f"# timeline: {T}x{B}x{H} training steps, {seconds:g} s per policy, one busy background process "
          f"({busy_kind}) in the middle third; median ms per step in each third")
    print("| threads | idle ms | busy ms | idle again ms | steps | thread changes (s after start: count) |")
    print("|---|---:|---:|---:|---:|---|")
    for policy in policies:
        if policy == "auto":
            count = thread_policy.configure("auto", adapt=True)
            label = f"auto (from {count})"
        else:
            count = thread_policy.configure(default_threads if policy == "all" else policy)
            label = f"{count} (all)" if policy == "all" else str(count)
        adapter = thread_policy.adapting()
        phases: list[list[float]] = [[], [], []]
        busy = None
        start = time.monotonic()
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                phase = min(2, int(3 * elapsed / seconds))
                if phase == 1 and busy is None:
                    busy = start_busy(busy_kind)
                elif phase == 2 and busy is not None and busy.poll() is None:
                    busy.terminate()
                    busy.wait()
                t0 = time.perf_counter()
                opt.zero_grad()
                out, _ = model(x)
                out.backward(grad)
                opt.step()
                phases[phase].append(time.perf_counter() - t0)
        finally:
            if busy is not None and busy.poll() is None:
                busy.terminate()
                busy.wait()
            thread_policy.stop_adapting()
        changes = ", ".join(f"{at - start:.0f}: {n}" for at, n in adapter.changes) if adapter else ""
        cells = " | ".join(f"{1e3 * statistics.median(p):.1f}" if p else "-" for p in phases)
        print(f"| {label} | {cells} | {sum(map(len, phases))} | {changes or '-'} |", flush=True)


def quiet_rounds(minutes: float, setups: dict, default_threads: int, rng) -> None:
    """1 thread against all, alternating, keeping only rounds with no other runnable process."""
    cases = [(shape, name, train) for shape, (models, _, _) in setups.items() for name in models
             for train in (True, False)]
    steps = {case: make_step(setups[case[0]][0][case[1]], setups[case[0]][1], setups[case[0]][2], case[2])
             for case in cases}
    counts = [1, default_threads]
    for step in steps.values():
        for n in counts:
            thread_policy.configure(n)
            step()
    kept: dict = {(case, n): [] for case in cases for n in counts}
    rounds = 0
    end = time.monotonic() + 60 * minutes
    while time.monotonic() < end:
        case = rng.choice(cases)
        order = counts[:]
        rng.shuffle(order)
        before = thread_policy.other_load(samples=3, interval=0.005)
        times = {}
        for n in order:
            thread_policy.configure(n)
            t0 = time.perf_counter()
            steps[case]()
            times[n] = time.perf_counter() - t0
        after = thread_policy.other_load(samples=3, interval=0.005)
        rounds += 1
        if before == 0 and after == 0:
            for n in counts:
                kept[(case, n)].append(times[n])
    quiet = sum(len(kept[(case, 1)]) for case in cases)
    print(f"# quiet: {rounds} rounds in {minutes:g} min, {quiet} with no other runnable process before and after; "
          f"all = {default_threads} threads; ratio = median over those rounds of all / 1")
    print(f"| T, B, H | model | mode | 1 thread ms | {default_threads} threads ms | ratio | quiet rounds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for case in cases:
        (T, B, H), name, train = case
        one, all_ = kept[(case, 1)], kept[(case, default_threads)]
        cells = (f"{1e3 * statistics.median(one):.2f} | {1e3 * statistics.median(all_):.2f} | "
                 f"**{statistics.median(b / a for a, b in zip(one, all_)):.2f}**") if one else "- | - | -"
        print(f"| {T}, {B}, {H} | {name} | {'fwd+bwd' if train else 'fwd'} | {cells} | {len(one)} |", flush=True)


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=None, metavar="TxBxH")
    parser.add_argument("--threads", nargs="+", type=parse_threads, default=[1, "all"],
                        help="thread counts to time: numbers, 'all' (PyTorch's default) or 'auto' "
                        "(rnnkit.threads' policy, decided after the background process started)")
    parser.add_argument("--loads", nargs="+", default=["idle", "busy"], choices=["idle", "busy"])
    parser.add_argument("--busy", default="python", choices=sorted(SPIN), help="what the background process runs")
    parser.add_argument("--repeats", type=int, default=9, help="rounds per configuration at most (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of rounds per configuration at most")
    parser.add_argument("--timeline", type=float, default=None, metavar="SECONDS",
                        help="instead: train under each policy for SECONDS while load comes and goes")
    parser.add_argument("--quiet", type=float, default=None, metavar="MINUTES",
                        help="instead: 1 vs all threads, alternating, in the machine's quiet moments only")
    args = parser.parse_args(argv)

    default_threads = torch.get_num_threads()
    shapes = args.shapes or SHAPES
    torch.manual_seed(0)
    rng = random.Random(0)
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"# rnnkit {rnnkit.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs ({thread_policy.usable_cpus()} usable), PyTorch default threads {default_threads}, "
          f"OMP_WAIT_POLICY {wait_policy}")
    if args.timeline:
        print(f"# load average {load_average()}")
        timeline(args.timeline, shapes[0], args.busy, default_threads, rng)
        thread_policy.configure(default_threads)
        return
    setups = {}
    for T, B, H in shapes:
        peer = torch.nn.LSTM(H, H)
        ours = rnnkit.LSTM(H, H)
        ours.load_state_dict(peer.state_dict())
        x = torch.randn(T, B, H, requires_grad=True)
        ours(x)  # the first call builds or loads the kernels
        setups[(T, B, H)] = ({"torch.nn": peer, "rnnkit": ours}, x, torch.randn(T, B, H))

    if args.quiet:
        quiet_rounds(args.quiet, setups, default_threads, rng)
        thread_policy.configure(default_threads)
        return
    print(f"# at most {args.repeats} rounds or {args.budget:g} s per configuration; times are medians; "
          "ratio = median over rounds of rnnkit / torch.nn; xbase = median / the same model's median with "
          "1 thread on the idle machine")
    print("| load | threads | T, B, H | mode | torch.nn ms | rnnkit ms | ratio | torch.nn xbase | rnnkit xbase "
          "| rounds |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    base: dict = {}
    for load in args.loads:
        busy = start_busy(args.busy) if load == "busy" else None
        try:
            print(f"# {load}: load average {load_average()}", flush=True)
            for choice in args.threads:
                if choice == "all":
                    count = thread_policy.configure(default_threads)
                    label = f"{count} (all)"
                elif choice == "auto":
                    count = thread_policy.configure("auto")
                    label = f"{count} (auto)"
                else:
                    count = thread_policy.configure(choice)
                    label = str(count)
                for shape, (models, x, grad) in setups.items():
                    for train, mode in ((True, "fwd+bwd"), (False, "fwd")):
                        median, ratio, rounds = time_config(models, x, grad, train, args.repeats, args.warmup,
                                                            args.budget, rng)
                        if load == "idle" and choice == 1:
                            base[(shape, mode)] = median
                        ref = base.get((shape, mode))
                        rel = [f"{median[n] / ref[n]:.2f}" if ref else "-" for n in ("torch.nn", "rnnkit")]
                        T, B, H = shape
                        print(f"| {load} | {label} | {T}, {B}, {H} | {mode} | {1e3 * median['torch.nn']:.2f} | "
                              f"{1e3 * median['rnnkit']:.2f} | **{ratio:.2f}** | {rel[0]} | {rel[1]} | {rounds} |",
                              flush=True)
        finally:
            if busy is not None:
                busy.terminate()
                busy.wait()
    thread_policy.configure(default_threads)


if __name__ == "__main__":
    main()
