"""The spoken-number commands: ``rnnkit train speech``, ``rnnkit evaluate`` of a speech run and
``rnnkit recognize [--run RUN] WAV...``, which prints the digits of one spoken number (its
recordings, one word each, in order) on one line, e.g. ``314``, with
:meth:`~rnnkit.tasks.speech.predictor.SpeechPredictor.recognize`; ``--run`` defaults to the
newest ``runs/speech-*``.  Satisfies :class:`rnnkit.tasks.base.Task`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.tasks.base import chosen_run
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig, SpeechTrainConfig

NAME = "speech"
HELP = "label each spoken digit of a spoken number (sequence of word vectors, uni/bidirectional)"
DESCRIPTION = ("Train a recurrent labeler on spoken numbers: 3-10 recordings of one speaker from a folder "
               "of {digit}_{speaker}_{index}.wav files (--data, e.g. the Free Spoken Digit Dataset's recordings/), "
               "each turned into one acoustic vector. Test: the official split (repetitions 0-4) or "
               "--holdout-speaker NAME. Settings: defaults < --config file < flags.")
CONFIGS = (SpeechDataConfig, SpeechModelConfig, SpeechTrainConfig)
RESUMABLE = True


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.tasks.speech.run import train_speech

    return train_speech(data_cfg, model_cfg, train_cfg, run, resume, args.override)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.speech.predictor import SpeechPredictor

    return SpeechPredictor.load(run, checkpoint, device)


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="evaluate on this folder of recordings instead of the run's")


def evaluate(args: argparse.Namespace) -> None:
    r = load(args.run, args.checkpoint, args.device).evaluate(args.split, args.data)
    print(f"{args.split}: word accuracy {r['word_acc']:.4f}, sequence accuracy {r['seq_acc']:.4f} "
                f"(first words {r['first_word_acc']:.4f}, later words {r['later_word_acc']:.4f}); "
                f"loss {r['loss']:.4f}; {int(r['sequences'])} spoken numbers, {int(r['words'])} words")


def add_commands(sub) -> dict:
    from rnnkit.tasks.base import add_model_options, add_run_option

    rc = sub.add_parser("recognize", help="print the digits of a spoken number's recordings with a trained speech run",
                        description="Print the digits a trained speech run hears in the recordings of one spoken "
                        "number (16-bit PCM mono .wav files, one word each, in order, all at one sample rate), on "
                        "one line without spaces, e.g. 314. --run RUN: default the newest runs/speech-*.")
    rc.add_argument("wavs", nargs="+", metavar="WAV", help="the recordings of one spoken number, in order")
    add_run_option(rc, NAME)
    add_model_options(rc)
    return {"recognize": _recognize}


def _recognize(args: argparse.Namespace) -> int:

    run = chosen_run(args, NAME)
    digits = load(run, args.checkpoint, args.device).recognize(args.wavs)
    print("".join(str(d) for d in digits))
    return 0
