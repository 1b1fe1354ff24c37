"""The language-modeling commands: ``rnnkit train lm``, ``rnnkit evaluate`` of an lm run,
``rnnkit sample [--run RUN]`` (the run as a positional argument works too, as before).
Satisfies :class:`rnnkit.tasks.base.Task`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.settings import MAX_LENGTH, MAX_SEED, bounded
from rnnkit.tasks.base import chosen_run
from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig
from rnnkit.train.config import TrainConfig

NAME = "lm"
HELP = "language model (character or word level)"
DESCRIPTION = ("Train a language model. Settings: defaults < --config file < flags. "
               "Without --data it trains on the corpus that ships with Python.")
CONFIGS = (LMDataConfig, LMModelConfig, TrainConfig)
RESUMABLE = True


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample-length", type=bounded(int, ge=0, le=MAX_LENGTH), default=300,
                        help="characters/words to sample at the end")


def train(data_cfg, model_cfg, train_cfg, run: str, resume: bool, args: argparse.Namespace) -> dict:
    from rnnkit.tasks.lm.run import train_lm

    return train_lm(data_cfg, model_cfg, train_cfg, run, resume, args.sample_length, args.override)


def load(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    from rnnkit.tasks.lm.predictor import LMPredictor

    return LMPredictor.load(run, checkpoint, device)


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="evaluate on this text file or folder instead of the run's data")


def evaluate(args: argparse.Namespace) -> None:
    metrics = load(args.run, args.checkpoint, args.device).evaluate(args.split, args.data)
    print(f"{args.split}: " + ", ".join(f"{k} {v:.4f}" if k != "tokens" else f"{k} {int(v)}"
                                         for k, v in metrics.items()))


def add_commands(sub) -> dict:
    from rnnkit.tasks.base import add_model_options, add_run_option

    sa = sub.add_parser("sample", help="generate text from a trained language model",
                        description="Generate text from a trained language model: --run RUN (default: the newest "
                        "runs/lm-*); `rnnkit sample RUN` works too.")
    add_run_option(sa, NAME, positional=True)
    sa.add_argument("--prime", default="", help="text to start from")
    sa.add_argument("--length", type=bounded(int, ge=0, le=MAX_LENGTH), default=300)
    sa.add_argument("--temperature", type=bounded(float, gt=0), default=0.8)
    sa.add_argument("--top-k", type=bounded(int, ge=1), default=None)
    sa.add_argument("--top-p", type=bounded(float, gt=0, le=1), default=None)
    sa.add_argument("--seed", type=bounded(int, ge=0, le=MAX_SEED), default=None)
    add_model_options(sa)
    return {"sample": _sample}


def _sample(args: argparse.Namespace) -> int:
    predictor = load(chosen_run(args, NAME), args.checkpoint, args.device)
    print(predictor.sample(args.prime, args.length, args.temperature, args.top_k, args.top_p, args.seed))
    return 0
