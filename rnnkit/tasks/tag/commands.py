"""The tagging commands: ``rnnkit train tag``, ``rnnkit evaluate`` of a tagging run,
``rnnkit tag [--run RUN] TEXT... | --file FILE`` (``--file -``: standard input).  Satisfies
:class:`rnnkit.tasks.base.Task`.

``rnnkit tag`` tags any length of text in bounded memory: a sentence longer than
:data:`~rnnkit.tasks.tag.predictor.MAX_SENTENCE_WORDS` (1,000) words is tagged and written as
consecutive sentences of at most that many words, and a word longer than
:data:`~rnnkit.tasks.tag.predictor.MAX_WORD_CHARS` (64) characters is read by the character
BiLSTM as its first and last 32 characters; both with a warning on standard error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO

from rnnkit.tasks.base import add_model_options, add_run_option, chosen_run
from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig, TagTrainConfig
from rnnkit.tasks.tag.treebank import TaggedSentence, write_conllu, write_tsv

NAME = "tag"
HELP = "part-of-speech tagger (character + word BiLSTM, optional CRF) on a CoNLL-U treebank"
DESCRIPTION = ("Train a tagger on a UD treebank folder (--data DIR with *-ud-train.conllu and "
               "*-ud-dev.conllu, .gz too); the best checkpoint is the one with the highest validation accuracy. "
               "Settings: defaults < --config file < flags.")
CONFIGS = (TaggingDataConfig, TaggerModelConfig, TagTrainConfig)
RESUMABLE = True


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.tasks.tag.run import train_tagger

    return train_tagger(data_cfg, model_cfg, train_cfg, run, resume, args.override)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.tag.predictor import TagPredictor

    return TagPredictor.load(run, checkpoint, device)


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="evaluate on this treebank folder instead of the run's")
    parser.add_argument("--ensemble", nargs="+", default=(), metavar="RUN",
                        help="average the per-word tag probabilities with these runs'")


def evaluate(args: argparse.Namespace) -> None:
    r = load(args.run, args.checkpoint, args.device).evaluate(args.split, args.data, args.ensemble)
    which = f"{args.split} (ensemble of {r['models']} runs)" if args.ensemble else args.split
    print(f"{which}: accuracy {r['acc']:.4f} ({r['tokens']} words), out-of-vocabulary accuracy "
                f"{r['oov_acc']:.4f} ({r['oov_tokens']} words)")
    print("tag\tsupport\tprecision\trecall")
    for tag, t in r["per_tag"].items():
        print(f"{tag}\t{t['support']}\t{t['precision']:.4f}\t{t['recall']:.4f}")
    if r.get("plot"):
        print(f"confusion matrix: {r['plot']}")


def add_commands(sub) -> dict:
    from rnnkit.tasks.tag.predictor import MAX_SENTENCE_WORDS, MAX_WORD_CHARS

    tg = sub.add_parser("tag", help="tag plain text with a trained tagging run (CoNLL-U or TSV out)",
                        description=f"Tag plain text with a trained tagging run: --run RUN (default: the newest "
                        f"runs/tag-*). Sentences longer than {MAX_SENTENCE_WORDS} words are tagged (and written) as "
                        f"consecutive sentences of at most {MAX_SENTENCE_WORDS} words; words longer than "
                        f"{MAX_WORD_CHARS} characters are read by the character model as their first and last "
                        f"{MAX_WORD_CHARS // 2} characters (both with a warning).")
    tg.add_argument("text", nargs="*", help="text to tag (default: --file)")
    tg.add_argument("--file", help="plain-text file to tag (one or more sentences per line); - reads standard input")
    add_run_option(tg, NAME)
    tg.add_argument("--format", default="conllu", choices=["conllu", "tsv"])
    tg.add_argument("--out", help="write here instead of standard output")
    add_model_options(tg)
    return {"tag": _tag}


def _tag(args: argparse.Namespace) -> int:

    if bool(args.text) == bool(args.file):
        raise ValueError("give the text to tag as arguments or --file FILE (one of the two)")
    run = chosen_run(args, NAME)
    predictor = load(run, args.checkpoint, args.device)
    if args.file == "-":
        sentences = predictor.tag_sentences(sys.stdin.read())
    else:
        sentences = predictor.tag_sentences(" ".join(args.text) if args.text else None, args.file)
    column = predictor.task.data_cfg.column  # a run trained on XPOS writes its tags there
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            write_tagged(sentences, f, args.format, column)
        print(f"tagged {len(sentences)} sentences ({sum(map(len, sentences))} words) into {args.out}")
    else:
        write_tagged(sentences, sys.stdout, args.format, column)
    return 0


def write_tagged(sentences: Sequence[TaggedSentence], out: TextIO, form: str = "conllu",
                 column: str = "upos") -> None:
    """Tagged sentences as CoNLL-U or as TSV (``word<TAB>tag`` lines, a blank line after each sentence)."""
    if form == "conllu":
        write_conllu(sentences, out, column)
    elif form == "tsv":
        write_tsv(sentences, out)
    else:
        raise ValueError(f"format must be 'conllu' or 'tsv', got {form!r}")
