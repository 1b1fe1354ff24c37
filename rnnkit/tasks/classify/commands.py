"""The classification commands: ``rnnkit train classify``, ``rnnkit evaluate`` of a
classification run, ``rnnkit classify [--run RUN] TEXT... | --file FILE`` (``--file -``:
standard input; one text per line, blank lines skipped), which prints
``LABEL<TAB>PROBABILITY<TAB>TEXT`` per text, or with ``--json`` one JSON object per line
(:meth:`~rnnkit.tasks.classify.predictor.ClassifyPredictor.predict`: the words, every class's
probability and, for attention pooling, each word's weight).  Satisfies
:class:`rnnkit.tasks.base.Task`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit.tasks.base import add_model_options, add_run_option, chosen_run
from rnnkit.tasks.classify.task import ClassifierModelConfig, ClassifyDataConfig, ClassifyTrainConfig

NAME = "classify"
HELP = "sentence classification (e.g. sentiment): embeddings, (bi)LSTM, pooling, softmax"
DESCRIPTION = ("Train a sentence classifier: --data is a folder with train.txt, dev.txt (or valid.txt) and test.txt "
               "(LABEL TEXT lines as in SST-2; .tsv/.csv with --text-column and --label-column; .gz too) or one "
               "file split by --split. The best checkpoint is the one with the highest validation accuracy. "
               "Settings: defaults < --config file < flags.")
CONFIGS = (ClassifyDataConfig, ClassifierModelConfig, ClassifyTrainConfig)
RESUMABLE = True


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.tasks.classify.run import train_classifier

    return train_classifier(data_cfg, model_cfg, train_cfg, run, resume, args.override)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto", ensemble=None):
    """The run's predictor; with ``ensemble`` (more runs), the ensemble of the run and those."""
    from rnnkit.tasks.classify.predictor import ClassifyEnsemble, ClassifyPredictor

    if ensemble:
        return ClassifyEnsemble.load([run, *ensemble], checkpoint, device)
    return ClassifyPredictor.load(run, checkpoint, device)


ENSEMBLE_HELP = ("another run of the same classes, once per run (--ensemble R2 --ensemble R3): classify by the "
                 "mean of the class probabilities of this run and those (an ensemble)")


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="evaluate on this folder (its split file) or file (all of it) instead of "
                        "the run's data")
    parser.add_argument("--ensemble", action="append", metavar="RUN", help=ENSEMBLE_HELP + "; the files are written "
                        "into this run as <split>_ensemble_*")


def evaluate(args: argparse.Namespace) -> None:
    predictor = load(args.run, args.checkpoint, args.device, args.ensemble)
    r = predictor.evaluate(args.split, args.data)
    if args.ensemble:
        print(f"ensemble of {len(predictor.members)} runs (mean probabilities): "
              f"{', '.join(str(m.run) for m in predictor.members)}")
    print(f"{args.split}: accuracy {r['acc']:.4f}, macro-F1 {r['macro_f1']:.4f} ({r['examples']} texts); "
                f"loss {r['loss']:.4f}")
    print("class\tsupport\tprecision\trecall\tF1")
    for label, c in r["per_class"].items():
        print(f"{label}\t{c['support']}\t{c['precision']:.4f}\t{c['recall']:.4f}\t{c['f1']:.4f}")
    if r.get("plot"):
        print(f"confusion matrix: {r['plot']}")


def add_commands(sub) -> dict:
    cl = sub.add_parser("classify", help="label texts with a trained classification run (label, probability)",
                        description="Label texts with a trained classification run: --run RUN (default: the newest "
                        "runs/classify-*). Each TEXT argument is one text; --file reads one text per line (blank "
                        "lines skipped; - reads standard input). Prints LABEL<TAB>PROBABILITY<TAB>TEXT per text, or "
                        "with --json one JSON object per line (words, every class's probability and, for attention "
                        "pooling, each word's weight).")
    cl.add_argument("text", nargs="*", help="texts to classify, one per argument (default: --file)")
    cl.add_argument("--file", help="file of texts, one per line; - reads standard input")
    add_run_option(cl, NAME)
    cl.add_argument("--ensemble", action="append", metavar="RUN", help=ENSEMBLE_HELP)
    cl.add_argument("--json", action="store_true", help="one JSON object per text")
    cl.add_argument("--attention-png", metavar="PNG",
                    help="also draw the attention weights of the first 8 texts (runs with --pooling attention)")
    add_model_options(cl)
    return {"classify": _classify}


def _read_texts(args: argparse.Namespace) -> list[str]:
    if bool(args.text) == bool(args.file):
        raise ValueError("give the texts to classify as arguments or --file FILE (one of the two)")
    if args.text:
        return list(args.text)
    if args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        from rnnkit.data.text import read_lines

        lines = [line for _, line in read_lines(args.file)]
    texts = [line for line in lines if line.strip()]
    if not texts:
        from rnnkit.errors import DataError

        raise DataError(f"{'standard input' if args.file == '-' else args.file}: nothing to classify (no text lines)")
    return texts


def _classify(args: argparse.Namespace) -> int:
    if args.attention_png and args.ensemble:
        raise ValueError("--attention-png draws one run's attention weights; an ensemble has none of its own "
                         "(give one --run without --ensemble)")
    if args.attention_png:
        from rnnkit.extras import require

        require("matplotlib", "lab", "rnnkit classify --attention-png")
    texts = _read_texts(args)
    predictor = load(chosen_run(args, NAME), args.checkpoint, args.device, args.ensemble)
    if args.attention_png and predictor.pooling != "attention":
        raise ValueError(f"--attention-png needs a run trained with --pooling attention; this run pools with "
                         f"{predictor.pooling!r}")
    records = predictor.predict(texts)
    for record in records:
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(f"{record['label']}\t{record['probability']:.4f}\t{' '.join(record['text'].split())}")
    sys.stdout.flush()
    if args.attention_png:
        from rnnkit.tasks.classify.predictor import MAX_PLOT_TEXTS

        path = predictor.attention_plot(texts, args.attention_png)
        shown = min(len(texts), MAX_PLOT_TEXTS)
        # on standard error: standard output holds only the labels (or JSON lines)
        print(f"attention weights of {'the first ' if len(texts) > shown else ''}{shown} text"
              f"{'s' if shown > 1 else ''}: {path}", file=sys.stderr)
    return 0
