"""Choose a translation run's decoding settings on its validation part: every checkpoint x beam
width x length penalty x coverage penalty is decoded once (with attention), and each output is
scored three ways, leaving ``<unk>`` as written, copying the most attended source word, or
translating it with the run's IBM Model 1 lexicon (docs/results.md#translation).

    python experiments/translation_decoding_grid.py runs/translate-spa-attention-long \\
        --data ../shared/data/spa_eng/spa.txt.gz --checkpoints best average --beam 10 \\
        --alpha 0.6 1.0 --coverage 0 0.2 0.4 [--limit N] [--out grid.json]

Only the validation part is read; the test part is for the one setting this grid picks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time

from rnnkit.tasks.translate.predictor import TranslatePredictor
from rnnkit.tasks.translate.run import make_task, run_lexicon
from rnnkit.tasks.translate.task import TranslationDataConfig, corpus_scores, translate_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data", help="the run's pairs file, when not at the path it was trained from")
    ap.add_argument("--checkpoints", nargs="+", default=["best"])
    ap.add_argument("--beam", nargs="+", type=int, default=[10])
    ap.add_argument("--alpha", nargs="+", type=float, default=[1.0])
    ap.add_argument("--coverage", nargs="+", type=float, default=[0.0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation pairs")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # rnnkit's messages (lexicon)

    task, rows = None, []
    for checkpoint in args.checkpoints:
        predictor = TranslatePredictor.load(args.run, checkpoint, "cpu")
        if task is None:
            data_cfg = TranslationDataConfig(**predictor.meta["data"])
            if args.data:
                data_cfg.data = args.data
            task = make_task(data_cfg, predictor.task.model_cfg, predictor.meta.get("seed", 0), predictor.meta)
            lexicon = run_lexicon(args.run, task)
            pairs = task.pairs["valid"][: args.limit] if args.limit else task.pairs["valid"]
            words = [task.src_tok.tokenize(s) for s, _ in pairs]
            sources = [task.src_vocab.encode(w) for w in words]
            references = [t for _, t in pairs]
            print(f"{len(pairs)} validation pairs; lexicon of {len(lexicon):,} source words", flush=True)
            print("checkpoint\tbeam\talpha\tcoverage\tunk\tBLEU\tchrF\tseconds", flush=True)
        for beam, alpha, coverage in itertools.product(args.beam, args.alpha, args.coverage):
            start = time.perf_counter()
            hyps = translate_ids(predictor.model, sources, "beam", beam=beam, alpha=alpha, coverage=coverage,
                                 with_attention=True)
            seconds = time.perf_counter() - start
            for unk in ("none", "copy", "lexicon"):
                outputs = [task.output_text(h, w, unk, lexicon) for (h, *_), w in zip(hyps, words)]
                scores = corpus_scores(outputs, references, task.data_cfg.lower)
                rows.append(dict(checkpoint=checkpoint, beam=beam, alpha=alpha, coverage=coverage, unk=unk,
                                 seconds=seconds, **scores))
                print(f"{checkpoint}\t{beam}\t{alpha}\t{coverage}\t{unk}\t{scores['bleu']:.2f}\t"
                      f"{scores['chrf']:.2f}\t{seconds:.0f}", flush=True)
    best = max(rows, key=lambda r: r["bleu"])
    print("best on validation: " + ", ".join(f"{k} {v}" for k, v in best.items() if k not in ("seconds",)))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"run": args.run, "pairs": len(references), "rows": rows, "best": best}, fh, indent=1)


if __name__ == "__main__":
    main()
