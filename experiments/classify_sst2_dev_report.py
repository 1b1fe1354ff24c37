"""Dev accuracy of the runs of experiments/classify_sst2_regularizers.sh, one by one and as
ensembles (mean class probabilities, rnnkit.tasks.classify.ClassifyEnsemble).  Reads dev only.

    python experiments/classify_sst2_dev_report.py OUT [ROUND1_OUT]

With ROUND1_OUT (the runs of experiments/classify_sst2.sh), also the ensemble of every run of
both folders.  Writes OUT/table-dev.md.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rnnkit.tasks.classify.predictor import ClassifyEnsemble, ClassifyPredictor


def runs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "checkpoints" / "best").is_dir())


def dev(predictor) -> float:
    return 100 * predictor.evaluate("valid", write=False)["acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("round1", nargs="?")
    args = parser.parse_args()
    out = Path(args.out)
    mine = [ClassifyPredictor.load(run, device="cpu") for run in runs_in(out)]
    scores = {p.run.name: dev(p) for p in mine}
    lines = ["| run | dev acc |", "|---|---:|"] + [f"| {name} | {acc:.2f} |" for name, acc in scores.items()]
    lines += ["", f"single runs: {statistics.mean(scores.values()):.2f} ± {statistics.stdev(scores.values()):.2f} "
              f"(min {min(scores.values()):.2f}, max {max(scores.values()):.2f}, {len(scores)} runs)",
              f"ensemble of these {len(mine)} runs: {dev(ClassifyEnsemble(mine)):.2f}"]
    if args.round1:
        earlier = [ClassifyPredictor.load(run, device="cpu") for run in runs_in(Path(args.round1))]
        lines.append(f"ensemble of these and the {len(earlier)} runs of {args.round1}: "
                     f"{dev(ClassifyEnsemble(mine + earlier)):.2f}")
    text = "\n".join(lines)
    print(text)
    (out / "table-dev.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
