"""The translation commands: ``rnnkit train translate``, ``rnnkit evaluate`` of a translation
run, ``rnnkit translate [--run RUN] SENTENCE...``.  Satisfies :class:`rnnkit.tasks.base.Task`.

``rnnkit translate`` refuses (one line, naming the limit and the length received) a sentence
longer than 10 times the run's longest training sentences (``--max-length``), 1,000 tokens at
most (:attr:`~rnnkit.tasks.translate.predictor.TranslatePredictor.max_source_tokens`); the
decoder stops at twice the source plus 10 tokens."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.settings import MAX_SEED, bounded
from rnnkit.tasks.base import add_model_options, add_run_option, chosen_run
from rnnkit.tasks.translate.task import (
    MAX_BEAM,
    TranslateTrainConfig,
    TranslationDataConfig,
    TranslationModelConfig,
)

NAME = "translate"
HELP = "encoder-decoder translation (attention, beam search) on TSV sentence pairs"
DESCRIPTION = ("Train an encoder-decoder on source<TAB>target pairs (--data, .gz too), split by a "
               "seeded shuffle grouped by source sentence. Settings: defaults < --config file < flags.")
CONFIGS = (TranslationDataConfig, TranslationModelConfig, TranslateTrainConfig)
RESUMABLE = True


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.tasks.translate.run import train_translation

    return train_translation(data_cfg, model_cfg, train_cfg, run, resume, args.override)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.translate.predictor import TranslatePredictor

    return TranslatePredictor.load(run, checkpoint, device)


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length-penalty", type=bounded(float, ge=0), default=None,
                        help="beam length penalty alpha, Wu et al. 2016 (default: the run's)")
    parser.add_argument("--coverage", type=bounded(float, ge=0), default=None,
                        help="beam coverage penalty beta, Wu et al. 2016 (default: the run's)")
    parser.add_argument("--unk", choices=["none", "copy", "lexicon"], default="none",
                        help="replace <unk> outputs by the most attended source word (copy) or its IBM Model 1 "
                        "translation from the training pairs, kept in the run's lexicon (lexicon)")


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="evaluate on this TSV file of pairs instead of the run's")
    parser.add_argument("--beam", type=bounded(int, ge=0, le=MAX_BEAM), default=None,
                        help="beam width (default: the run's)")
    parser.add_argument("--limit", type=bounded(int, ge=1), default=None, help="only the first N pairs of the split")
    _add_decoding_flags(parser)


def evaluate(args: argparse.Namespace) -> None:
    results = load(args.run, args.checkpoint, args.device).evaluate(
        args.split, args.data, args.beam, args.limit, args.length_penalty, args.unk, args.coverage)
    print("decoder\tsacreBLEU\tchrF\tpairs\tseconds")
    for name, r in results.items():
        print(f"{name}\t{r['bleu']:.2f}\t{r['chrf']:.2f}\t{r['pairs']}\t{r['seconds']:.0f}")


def add_commands(sub) -> dict:
    from rnnkit.tasks.translate.predictor import MAX_SOURCE_TOKENS, SOURCE_LENGTH_FACTOR

    tl = sub.add_parser("translate", help="translate sentences with a trained translation run",
                        description=f"Translate sentences with a trained translation run: --run RUN (default: the "
                        f"newest runs/translate-*). A sentence longer than {SOURCE_LENGTH_FACTOR} times the run's "
                        f"longest training sentences (its --max-length), {MAX_SOURCE_TOKENS} tokens at most, is "
                        f"refused; the output stops at twice the source's tokens plus 10.")
    tl.add_argument("text", nargs="+", help="sentences to translate (each argument one sentence)")
    add_run_option(tl, NAME)
    tl.add_argument("--beam", type=bounded(int, ge=0, le=MAX_BEAM), default=5, help="beam width (0: greedy)")
    tl.add_argument("--n-best", type=bounded(int, ge=1, le=MAX_BEAM), default=1,
                    help="print this many beam outputs per sentence")
    tl.add_argument("--temperature", type=bounded(float, gt=0), default=None,
                    help="sample instead, at this temperature")
    tl.add_argument("--top-k", type=bounded(int, ge=1), default=None)
    tl.add_argument("--top-p", type=bounded(float, gt=0, le=1), default=None)
    tl.add_argument("--seed", type=bounded(int, ge=0, le=MAX_SEED), default=None)
    tl.add_argument("--attention-png", help="draw the first sentence's attention as a heat map here")
    _add_decoding_flags(tl)
    add_model_options(tl)
    return {"translate": _translate}


def _translate(args: argparse.Namespace) -> int:

    run = chosen_run(args, NAME)
    results = load(run, args.checkpoint, args.device).translate(
        args.text, args.beam, args.n_best, args.length_penalty, args.coverage, args.unk, args.temperature,
        args.top_k, args.top_p, args.seed, attention_png=args.attention_png)
    for translation in results:  # per sentence: its text, or with --n-best its (text, log-probability) list
        if args.n_best > 1:
            for rank, (text, log_prob) in enumerate(translation, 1):
                print(f"{rank}\t{log_prob:.3f}\t{text}")
        else:
            print(translation)
    if args.attention_png:
        print(f"attention: {args.attention_png}")
    return 0
