"""The SST-2 table of docs/results.md from the runs of experiments/classify_sst2.sh.

Dev accuracy of every run; uni- vs bidirectional (final-state pooling, seeds 0-2) as mean and
standard deviation; the pooling choices of the bidirectional model on dev.  ``--test`` reads
the test split once, for runs declared here before any test number was seen: the six uni/bi
runs (the lecture's claim) and the pooling chosen by dev accuracy (the headline model).

    python experiments/classify_sst2_report.py [OUT] [--test]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rnnkit.tasks.classify.predictor import ClassifyPredictor

SEEDS = (0, 1, 2)
POOLINGS = ("final", "max", "mean", "attention")


def accuracy(run: Path, split: str) -> float:
    return 100 * ClassifyPredictor.load(run, device="cpu").evaluate(split, write=split == "test")["acc"]


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="runs/sst2")
    parser.add_argument("--test", action="store_true", help="also read the test split (once)")
    args = parser.parse_args()
    out = Path(args.out)
    splits = ("valid", "test") if args.test else ("valid",)
    runs = [f"{kind}-final-s{seed}" for kind in ("uni", "bi") for seed in SEEDS]
    runs += [f"bi-{pooling}-s0" for pooling in POOLINGS if pooling != "final"]
    scores = {name: {split: accuracy(out / name, split) for split in splits} for name in runs}
    chosen = max(POOLINGS, key=lambda p: scores[f"bi-{p}-s0"]["valid"])
    lines = ["| run | dev acc | " + ("test acc |" if args.test else ""),
             "|---|---:|" + ("---:|" if args.test else "")]
    lines += [f"| {name} | {s['valid']:.2f} | " + (f"{s['test']:.2f} |" if args.test else "")
              for name, s in scores.items()]
    lines.append("")
    for split in splits:
        uni = [scores[f"uni-final-s{seed}"][split] for seed in SEEDS]
        bi = [scores[f"bi-final-s{seed}"][split] for seed in SEEDS]
        gains = [b - u for b, u in zip(bi, uni)]
        lines.append(f"{split}: unidirectional {spread(uni)}, bidirectional {spread(bi)}, "
                     f"gain per seed {', '.join(f'{g:+.2f}' for g in gains)} (mean {statistics.mean(gains):+.2f})")
    lines.append(f"pooling chosen on dev: {chosen} ({scores[f'bi-{chosen}-s0']['valid']:.2f})"
                 + (f"; its test accuracy {scores[f'bi-{chosen}-s0']['test']:.2f}" if args.test else ""))
    text = "\n".join(lines)
    print(text)
    (out / ("table-test.md" if args.test else "table-dev.md")).write_text(text + "\n", encoding="utf-8")
    (out / "scores.json").write_text(json.dumps({"scores": scores, "chosen": chosen}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
