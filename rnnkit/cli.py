"""The ``rnnkit`` command line.  Entry points stay thin: parse, then call one function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence


def _add_model_options(parser) -> None:
    """--checkpoint and --device of the commands that load a trained run's model."""
    parser.add_argument("--checkpoint", default="best",
                        help="best, last, or the name of a checkpoint in the run's checkpoints/ (e.g. an average)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def info() -> str:
    """A short report of versions, threads and available backends."""
    import torch

    import rnnkit
    from rnnkit.engine import kernels
    from rnnkit.engine.layer import BACKENDS

    built = kernels.fused_cpu_built()
    dist = torch.distributed
    backends = [name for name, ok in (("gloo", dist.is_available() and dist.is_gloo_available()),
                                      ("nccl", dist.is_available() and dist.is_nccl_available())) if ok]
    lines = [
        f"rnnkit {rnnkit.__version__}",
        f"torch {torch.__version__} (threads: {torch.get_num_threads()})",
        f"cuda available: {torch.cuda.is_available()}",
        f"backends: {', '.join(BACKENDS)}",
        f"fused CPU kernels ({kernels.fused_cpu_name()}): "
        f"{'built' if built else 'compiled on first use'}",
        f"distributed training (torchrun): {', '.join(backends) or 'not available in this PyTorch build'}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    import rnnkit
    from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig

    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent sequence models with explicit BPTT."
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="show versions, threads and backends")

    train = sub.add_parser("train", help="train a model for a task")
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    lm = _train_parser(
        tasks, "lm", LMDataConfig, LMModelConfig,
        help="language model (character or word level)",
        description="Train a language model. Settings: defaults < --config file < flags. "
        "Without --data it trains on the corpus that ships with Python.")
    lm.add_argument("--sample-length", type=int, default=300, help="characters/words to sample at the end")
    _add_forecast_parsers(sub, tasks)
    _add_translate_parsers(sub, tasks)
    _add_speech_parsers(sub, tasks)
    _add_tag_parsers(sub, tasks)

    ev = sub.add_parser("evaluate", help="evaluate a trained run on a split")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--split", default="test", choices=["valid", "test"])
    ev.add_argument("--data", help="evaluate on this data instead of the run's")
    _add_model_options(ev)
    ev.add_argument("--beam", type=int, default=None, help="translation runs: beam width (default: the run's)")
    ev.add_argument("--length-penalty", type=float, default=None,
                    help="translation runs: beam length penalty alpha (default: the run's)")
    ev.add_argument("--coverage", type=float, default=None,
                    help="translation runs: beam coverage penalty beta, Wu et al. 2016 (default: the run's)")
    ev.add_argument("--limit", type=int, default=None, help="translation runs: only the first N pairs of the split")
    ev.add_argument("--unk", choices=["none", "copy", "lexicon"], default="none",
                    help="translation runs: replace <unk> outputs by the most attended source word (copy) or its "
                    "IBM Model 1 translation from the training pairs (lexicon)")
    ev.add_argument("--ensemble", nargs="+", default=(), metavar="RUN",
                    help="tagging runs: average the per-word tag probabilities with these runs'")

    av = sub.add_parser("average", help="average the weights of checkpoints of one run into a new checkpoint",
                        description="Checkpoint averaging (Vaswani et al. 2017): the element-wise mean of the "
                        "weights of CHECKPOINT... in RUN/checkpoints, written as RUN/checkpoints/NAME; evaluate "
                        "it with --checkpoint NAME.")
    av.add_argument("run", help="run folder")
    av.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="names in RUN/checkpoints (step_*, best)")
    av.add_argument("--name", default="average", help="name of the averaged checkpoint (default: average)")

    sa = sub.add_parser("sample", help="generate text from a trained language model")
    sa.add_argument("run", help="run folder")
    sa.add_argument("--prime", default="", help="text to start from")
    sa.add_argument("--length", type=int, default=300)
    sa.add_argument("--temperature", type=float, default=0.8)
    sa.add_argument("--top-k", type=int, default=None)
    sa.add_argument("--top-p", type=float, default=None)
    sa.add_argument("--seed", type=int, default=None)
    _add_model_options(sa)
    from rnnkit.lab import EXPERIMENTS

    lab = sub.add_parser(
        "lab", help="run one of the lecture's experiments (plots + CSV)",
        description="The lecture's experiments, measured: " + ", ".join(EXPERIMENTS) + ", or all. "
        "Each writes PNG figures, CSV tables and summary.txt into OUT/NAME and prints a summary.",
    )
    lab.add_argument("name", choices=EXPERIMENTS + ("all",), metavar="NAME",
                     help="one of: " + ", ".join(EXPERIMENTS + ("all",)))
    lab.add_argument("--out", default="runs/lab", help="output folder (default: runs/lab)")
    lab.add_argument("--full", action="store_true",
                     help="full settings (more draws; long-range: all lengths, more steps)")
    lab.add_argument("--seeds", type=int, help="weight draws of the dynamics experiments")
    lab.add_argument("--hidden", type=int, help="hidden units")
    lab.add_argument("--steps", type=int, help="sequence length T of the dynamics experiments")
    lab.add_argument("--lengths", type=int, nargs="+", help="long-range tasks: the lengths T to train on")
    lab.add_argument("--train-steps", type=int, help="long-range tasks: optimizer steps per run at most")
    lab.add_argument("--threads", type=int, default=1,
                     help="PyTorch CPU threads (default 1: fastest for these small models)")
    lab.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="long-range tasks' device")
    return parser


def _lab(args) -> int:
    from rnnkit.lab import EXPERIMENTS, run_lab

    names = EXPERIMENTS if args.name == "all" else (args.name,)
    for name in names:
        print(f"== {name}", flush=True)
        result = run_lab(name, args.out, full=args.full, seeds=args.seeds, hidden=args.hidden,
                         steps=args.steps, lengths=args.lengths, train_steps=args.train_steps,
                         device=args.device, threads=args.threads)
        print("\n".join(result.lines), flush=True)
        for figure in result.figures:
            print(f"figure: {figure}")
    return 0


def _train_parser(tasks, name: str, data_cls, model_cls, resume: bool = True, **kwargs):
    """``rnnkit train NAME``: --config, --run (default runs/NAME-<time>), --resume, then
    one flag per field of the data, model and training configs."""
    from rnnkit.settings import add_dataclass_flags
    from rnnkit.train.config import TrainConfig

    parser = tasks.add_parser(name, **kwargs)
    parser.add_argument("--config", help="TOML or YAML file with [data], [model] and [train] tables")
    parser.add_argument("--run", help=f"run folder (default: runs/{name}-<time>)")
    if resume:
        parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    add_dataclass_flags(parser, data_cls, "data")
    add_dataclass_flags(parser, model_cls, "model")
    add_dataclass_flags(parser, TrainConfig, "training")
    return parser


def _add_forecast_parsers(sub, tasks) -> None:
    from rnnkit.tasks.forecast.task import ForecastModelConfig
    from rnnkit.tasks.forecast.run import ForecastDataConfig

    _train_parser(
        tasks, "forecast", ForecastDataConfig, ForecastModelConfig, resume=False,
        help="time-series forecaster (autoregressive RNN/LSTM/GRU) against classical baselines",
        description="Train a forecaster on a CSV series (or a statsmodels series) and compare it on the "
        "test part (the last --horizon points unless --test says otherwise) with naive, seasonal naive, "
        "ARIMA and ETS. Settings: defaults < --config file < flags.")

    fo = sub.add_parser("forecast", help="forecast past the end of the data with a trained forecast run")
    fo.add_argument("run", help="run folder of rnnkit train forecast")
    fo.add_argument("--horizon", type=int, default=None, help="steps to forecast (default: the run's)")
    fo.add_argument("--test", action="store_true", help="forecast the run's test part instead, next to the truth")
    fo.add_argument("--plot", help="write a PNG plot here")
    fo.add_argument("--samples", type=int, default=None, help="sample paths for the intervals (default: the run's)")
    fo.add_argument("--seed", type=int, default=0)
    fo.add_argument("--checkpoint", default="best", choices=["best", "last"])
    fo.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _add_translate_parsers(sub, tasks) -> None:
    from rnnkit.tasks.translate.task import TranslationDataConfig, TranslationModelConfig

    _train_parser(
        tasks, "translate", TranslationDataConfig, TranslationModelConfig,
        help="encoder-decoder translation (attention, beam search) on TSV sentence pairs",
        description="Train an encoder-decoder on source<TAB>target pairs (--data, .gz too), split by a "
        "seeded shuffle grouped by source sentence. Settings: defaults < --config file < flags.")

    tl = sub.add_parser("translate", help="translate sentences with a trained translation run")
    tl.add_argument("text", nargs="+", help="sentences to translate (each argument one sentence)")
    tl.add_argument("--run", help="run folder of rnnkit train translate (default: the newest runs/translate-*)")
    tl.add_argument("--beam", type=int, default=5, help="beam width (0: greedy)")
    tl.add_argument("--n-best", type=int, default=1, help="print this many beam outputs per sentence")
    tl.add_argument("--length-penalty", type=float, default=None,
                    help="beam length penalty alpha, Wu et al. 2016 (default: the run's)")
    tl.add_argument("--coverage", type=float, default=None,
                    help="beam coverage penalty beta, Wu et al. 2016 (default: the run's)")
    tl.add_argument("--temperature", type=float, default=None, help="sample instead, at this temperature")
    tl.add_argument("--top-k", type=int, default=None)
    tl.add_argument("--top-p", type=float, default=None)
    tl.add_argument("--seed", type=int, default=None)
    tl.add_argument("--attention-png", help="draw the first sentence's attention as a heat map here")
    tl.add_argument("--unk", choices=["none", "copy", "lexicon"], default="none",
                    help="replace <unk> outputs by the most attended source word (copy) or its translation in the "
                    "run's lexicon (lexicon)")
    _add_model_options(tl)


def _add_speech_parsers(sub, tasks) -> None:
    from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig

    _train_parser(
        tasks, "speech", SpeechDataConfig, SpeechModelConfig,
        help="label each spoken digit of a spoken number (sequence of word vectors, uni/bidirectional)",
        description="Train a recurrent labeler on spoken numbers: 3-10 recordings of one speaker from a folder "
        "of {digit}_{speaker}_{index}.wav files (--data, e.g. the Free Spoken Digit Dataset's recordings/), "
        "each turned into one acoustic vector. Test: the official split (repetitions 0-4) or "
        "--holdout-speaker NAME. Settings: defaults < --config file < flags.")


def _train_speech(args) -> int:
    from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig
    from rnnkit.tasks.speech.run import train_speech

    defaults = {"epochs": 30, "early_stop": 8, "lr": 3e-3, "log_every": 20, "progress": False}
    data_cfg, model_cfg, train_cfg = _task_configs(args, SpeechDataConfig, SpeechModelConfig, defaults)
    summary = train_speech(data_cfg, model_cfg, train_cfg, _run_name(args, "speech"), args.resume)
    return 130 if summary["status"] == "interrupted" else 0


def _evaluate_speech(args) -> int:
    from rnnkit.tasks.speech.run import evaluate_speech

    r = evaluate_speech(args.run, args.split, args.data, args.checkpoint, args.device)
    print(f"{args.split}: word accuracy {r['word_acc']:.4f}, sequence accuracy {r['seq_acc']:.4f} "
          f"(first words {r['first_word_acc']:.4f}, later words {r['later_word_acc']:.4f}); loss {r['loss']:.4f}; "
          f"{int(r['sequences'])} spoken numbers, {int(r['words'])} words")
    return 0


def _add_tag_parsers(sub, tasks) -> None:
    from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig

    _train_parser(
        tasks, "tag", TaggingDataConfig, TaggerModelConfig,
        help="part-of-speech tagger (character + word BiLSTM, optional CRF) on a CoNLL-U treebank",
        description="Train a tagger on a UD treebank folder (--data DIR with *-ud-train.conllu and "
        "*-ud-dev.conllu, .gz too); the best checkpoint is the one with the highest validation accuracy. "
        "Settings: defaults < --config file < flags.")

    tg = sub.add_parser("tag", help="tag plain text with a trained tagging run (CoNLL-U or TSV out)")
    tg.add_argument("text", nargs="*", help="text to tag (default: --file)")
    tg.add_argument("--file", help="plain-text file to tag (one or more sentences per line)")
    tg.add_argument("--run", help="run folder of rnnkit train tag (default: the newest runs/tag-*)")
    tg.add_argument("--format", default="conllu", choices=["conllu", "tsv"])
    tg.add_argument("--out", help="write here instead of standard output")
    _add_model_options(tg)


def _task_configs(args, data_cls, model_cls, train_defaults: Optional[dict] = None):
    """(data, model, train) configs: the task's train defaults < --config file < flags."""
    from rnnkit.settings import build, load_config_file, unknown_sections
    from rnnkit.train.config import TrainConfig

    file_values = load_config_file(args.config) if args.config else {}
    source = args.config or "flags"
    unknown_sections(file_values, {"data", "model", "train"}, source)
    train_values = {**file_values, "train": {**(train_defaults or {}), **file_values.get("train", {})}}
    return (build(data_cls, file_values, args, "data", source),
            build(model_cls, file_values, args, "model", source),
            build(TrainConfig, train_values, args, "train", source).validate())


def _run_name(args, prefix: str) -> str:
    import time

    return args.run or f"runs/{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train(args) -> int:
    from rnnkit.train import distributed

    trainers = {"lm": _train_lm, "forecast": _train_forecast, "translate": _train_translate,
                "tag": _train_tag, "speech": _train_speech}
    # under torchrun every process runs this; rank 0 prints, the Trainer joins the process group
    with distributed.main_process_output():
        try:
            return trainers[args.task](args)
        finally:
            distributed.destroy()


def _train_translate(args) -> int:
    from rnnkit.tasks.translate.task import TranslationDataConfig, TranslationModelConfig
    from rnnkit.tasks.translate.run import train_translation

    data_cfg, model_cfg, train_cfg = _task_configs(args, TranslationDataConfig, TranslationModelConfig,
                                                   {"lr": 1e-3, "log_every": 50})
    run = _run_name(args, "translate")
    summary = train_translation(data_cfg, model_cfg, train_cfg, run, args.resume)
    return 130 if summary["status"] == "interrupted" else 0


def _translate(args) -> int:
    from rnnkit.tasks.translate.run import translate_text
    from rnnkit.train.checkpoint import newest_run

    run = args.run or newest_run("runs", "translate", "rnnkit train translate")
    results = translate_text(run, args.text, args.beam, args.n_best, args.attention_png, args.temperature,
                             args.top_k, args.top_p, args.seed, args.checkpoint, args.device, args.unk,
                             args.coverage, args.length_penalty)
    for outputs in results:
        if args.n_best > 1:
            for rank, (text, log_prob) in enumerate(outputs, 1):
                print(f"{rank}\t{log_prob:.3f}\t{text}")
        else:
            print(outputs[0][0])
    if args.attention_png:
        print(f"attention: {args.attention_png}")
    return 0


def _train_tag(args) -> int:
    from rnnkit.tasks.tag.task import TaggerModelConfig, TaggingDataConfig
    from rnnkit.tasks.tag.run import train_tagger

    data_cfg, model_cfg, train_cfg = _task_configs(args, TaggingDataConfig, TaggerModelConfig,
                                                   {"epochs": 30, "early_stop": 8, "log_every": 50})
    summary = train_tagger(data_cfg, model_cfg, train_cfg, _run_name(args, "tag"), args.resume)
    return 130 if summary["status"] == "interrupted" else 0


def _tag(args) -> int:
    from rnnkit.tasks.tag.run import tag_text, write_tagged
    from rnnkit.train.checkpoint import newest_run

    if bool(args.text) == bool(args.file):
        raise ValueError("give the text to tag as arguments or --file FILE (one of the two)")
    run = args.run or newest_run("runs", "tag", "rnnkit train tag")
    sentences = tag_text(run, " ".join(args.text) if args.text else None, args.file, args.checkpoint, args.device)
    column = "upos"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            write_tagged(sentences, f, args.format, column)
        print(f"tagged {len(sentences)} sentences ({sum(map(len, sentences))} words) into {args.out}")
    else:
        write_tagged(sentences, sys.stdout, args.format, column)
    return 0


def _train_forecast(args) -> int:
    from rnnkit.tasks.forecast.task import ForecastModelConfig
    from rnnkit.tasks.forecast.run import ForecastDataConfig, train_forecast

    defaults = {"epochs": 200, "early_stop": 20, "lr": 3e-3, "log_every": 50, "progress": False}
    data_cfg, model_cfg, train_cfg = _task_configs(args, ForecastDataConfig, ForecastModelConfig, defaults)
    run = _run_name(args, "forecast")
    train_forecast(data_cfg, model_cfg, train_cfg, run)
    return 0


def _forecast(args) -> int:
    from rnnkit.tasks.forecast.run import forecast_future

    rows = forecast_future(args.run, args.horizon, args.plot, args.test, args.checkpoint, args.device,
                           args.samples, args.seed)
    keys = list(rows[0]) if rows else []
    print("\t".join(keys))
    for row in rows:
        print("\t".join(row[k] if k == "date" else f"{row[k]:.6g}" for k in keys))
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _train_lm(args) -> int:
    from rnnkit.tasks.lm.task import LMDataConfig, LMModelConfig
    from rnnkit.tasks.lm.run import train_lm

    data_cfg, model_cfg, train_cfg = _task_configs(args, LMDataConfig, LMModelConfig)
    run = _run_name(args, "lm")
    summary = train_lm(data_cfg, model_cfg, train_cfg, run, args.resume, args.sample_length)
    return 130 if summary["status"] == "interrupted" else 0


def _evaluate(args) -> int:
    from rnnkit.tasks.forecast.run import is_forecast_run
    from rnnkit.train.checkpoint import run_task

    task = "forecast" if is_forecast_run(args.run) else run_task(args.run)
    if args.ensemble and task != "tag":
        raise ValueError("--ensemble averages tagging runs; this run is not one")
    evaluators = {"speech": _evaluate_speech, "translate": _evaluate_translation, "tag": _evaluate_tagging,
                  "forecast": _evaluate_forecast}
    return evaluators.get(task, _evaluate_lm)(args)


def _evaluate_translation(args) -> int:
    from rnnkit.tasks.translate.run import evaluate_translation

    results = evaluate_translation(args.run, args.split, args.data, args.checkpoint, args.device,
                                   args.beam, limit=args.limit, alpha=args.length_penalty, unk=args.unk,
                                   coverage=args.coverage)
    print("decoder\tsacreBLEU\tchrF\tpairs\tseconds")
    for name, r in results.items():
        print(f"{name}\t{r['bleu']:.2f}\t{r['chrf']:.2f}\t{r['pairs']}\t{r['seconds']:.0f}")
    return 0


def _evaluate_tagging(args) -> int:
    from rnnkit.tasks.tag.run import evaluate_tagger

    r = evaluate_tagger(args.run, args.split, args.data, args.checkpoint, args.device, ensemble=args.ensemble)
    which = f"{args.split} (ensemble of {r['models']} runs)" if args.ensemble else args.split
    print(f"{which}: accuracy {r['acc']:.4f} ({r['tokens']} words), out-of-vocabulary accuracy "
          f"{r['oov_acc']:.4f} ({r['oov_tokens']} words)")
    print("tag\tsupport\tprecision\trecall")
    for tag, t in r["per_tag"].items():
        print(f"{tag}\t{t['support']}\t{t['precision']:.4f}\t{t['recall']:.4f}")
    if r.get("plot"):
        print(f"confusion matrix: {r['plot']}")
    return 0


def _evaluate_forecast(args) -> int:
    from rnnkit.tasks.forecast.run import evaluate_forecast, format_table

    table = evaluate_forecast(args.run, args.split, args.checkpoint, args.device)
    print(f"{args.split}: " + format_table(table, 0).split("\n", 1)[1])
    return 0


def _evaluate_lm(args) -> int:
    from rnnkit.tasks.lm.run import evaluate_lm

    metrics = evaluate_lm(args.run, args.split, args.data, args.checkpoint, args.device)
    print(f"{args.split}: " + ", ".join(f"{k} {v:.4f}" if k != "tokens" else f"{k} {int(v)}"
                                         for k, v in metrics.items()))
    return 0


def _sample(args) -> int:
    from rnnkit.tasks.lm.run import sample_lm

    print(sample_lm(args.run, args.prime, args.length, args.temperature, args.top_k, args.top_p,
                    args.seed, args.checkpoint, args.device))
    return 0


def _average(args) -> int:
    from rnnkit.train.checkpoint import average_checkpoints

    folder = average_checkpoints(Path(args.run) / "checkpoints", args.checkpoints, args.name)
    print(f"averaged {', '.join(args.checkpoints)} into {folder}; use --checkpoint {args.name}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rnnkit.errors import RnnkitError

    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": _train, "evaluate": _evaluate, "sample": _sample, "forecast": _forecast, "lab": _lab,
                "translate": _translate, "tag": _tag, "average": _average}
    if args.command == "info":
        print(info())
        return 0
    try:
        if args.command in commands:
            return commands[args.command](args)
    except BrokenPipeError:  # the reader went away (e.g. `rnnkit tag ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RnnkitError, ValueError, OSError, ImportError) as exc:  # OSError: an unwritable --run, a full disk
        print(f"rnnkit: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
