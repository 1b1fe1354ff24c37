"""The spoken-digit tables of docs/results.md: a recurrent labeler of spoken numbers (3-10
recordings of one FSDD speaker), unidirectional vs bidirectional, on the official split
(repetitions 0-4 = test) and on held-out speakers.

Tuning reads the validation part only: for each split (official; held-out theo) and direction
the candidates below are trained with seed 0, and the one with the lowest validation loss is
kept.  The kept setting is then trained with seeds 0, 1, 2 and each run's best checkpoint is
evaluated once on the test part.  The leave-one-speaker-out table reuses the held-out-theo
setting for every speaker.  A context-free baseline (the same labeler trained and tested on
one-word "numbers") shows what context adds.

    python experiments/speech_table.py --data recordings [--out runs/speech-table] [--only official,theo]

Needs librosa (``pip install -e '.[speech]'``); --data is the extracted recordings/ folder of
the Free Spoken Digit Dataset.  About 20 minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from rnnkit.tasks.speech.predictor import SpeechPredictor
from rnnkit.tasks.speech.run import train_speech
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig
from rnnkit.train.config import TrainConfig

DATA = SpeechDataConfig(train_sequences=2000, eval_sequences=1000, batch_size=32)
TRAIN = TrainConfig(epochs=40, early_stop=8, lr=3e-3, progress=False, log_every=1000, device="cpu")
CANDIDATES = [SpeechModelConfig(hidden_size=h, dropout=d) for h in (64, 128) for d in (0.2, 0.4)]
SEEDS = (0, 1, 2)
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def run(name: str, data: SpeechDataConfig, model: SpeechModelConfig, seed: int, out: Path, test: bool) -> dict:
    """Train (or reuse) one run; its best validation loss, and its test scores when ``test``."""
    folder = out / name
    record = folder / "result.json"
    if record.is_file():
        result = json.loads(record.read_text())
        if not test or "test" in result:
            return result
    else:
        start = time.perf_counter()
        summary = train_speech(data, model, replace(TRAIN, seed=seed), folder)  # its log stays quiet: no handler
        result = {"name": name, "valid_loss": summary["best"], "epochs": summary["epoch"],
                  "seconds": time.perf_counter() - start, "model": model.__dict__}
    if test:
        result["test"] = SpeechPredictor.load(folder, device="cpu").evaluate("test")
    record.write_text(json.dumps(result, indent=1))
    return result


def tune(label: str, data: SpeechDataConfig, bidirectional: bool, out: Path) -> SpeechModelConfig:
    tried = []
    for k, cand in enumerate(CANDIDATES):
        cand = replace(cand, bidirectional=bidirectional)
        r = run(f"{label}-{'bi' if bidirectional else 'uni'}-cand{k}", data, cand, 0, out, test=False)
        tried.append((r["valid_loss"], k, cand))
        print(f"  tune {label} {'bi' if bidirectional else 'uni'}: H={cand.hidden_size} dropout={cand.dropout} "
              f"valid loss {r['valid_loss']:.4f}", flush=True)
    return min(tried, key=lambda t: t[0])[2]


def mean_std(values) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the FSDD recordings/ folder")
    parser.add_argument("--out", default="runs/speech-table")
    parser.add_argument("--only", default="official,theo,loso,baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    base = replace(DATA, data=args.data, feature_cache=str(out / "features.npz"))
    splits = {"official": base, "theo": replace(base, holdout_speaker="theo")}
    rows, chosen = [], {}
    for label, data in splits.items():
        if label not in only:
            continue
        for bidirectional in (False, True):
            model = tune(label, data, bidirectional, out)
            chosen[(label, bidirectional)] = model
            results = [run(f"{label}-{'bi' if bidirectional else 'uni'}-seed{s}", data, model, s, out, test=True)
                       for s in SEEDS]
            rows.append((label, bidirectional, model, results))
    print("\n| test part | model | word acc. % | sequence acc. % | first word % | later words % | "
          "valid loss | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, bi, model, results in rows:
        tests = [r["test"] for r in results]
        print(f"| {'official (reps 0-4)' if label == 'official' else 'speaker theo'} | "
              f"{'bi' if bi else 'uni'} LSTM {model.hidden_size}, dropout {model.dropout} | "
              f"{mean_std(t['word_acc'] for t in tests)} | {mean_std(t['seq_acc'] for t in tests)} | "
              f"{mean_std(t['first_word_acc'] for t in tests)} | {mean_std(t['later_word_acc'] for t in tests)} | "
              f"{statistics.mean(r['valid_loss'] for r in results):.3f} | "
              f"{statistics.mean(r['seconds'] for r in results):.0f} |", flush=True)
    if "baseline" in only:
        print("\n| test part | context-free labeler (1-word numbers) | word acc. % |")
        print("|---|---|---|")
        for label, data in splits.items():
            model = chosen.get((label, False), CANDIDATES[0])
            one = replace(data, min_words=1, max_words=1)
            results = [run(f"{label}-oneword-seed{s}", one, replace(model, bidirectional=False), s, out, test=True)
                       for s in SEEDS]
            print(f"| {label} | uni LSTM {model.hidden_size} | {mean_std(r['test']['word_acc'] for r in results)} |",
                  flush=True)
    if "loso" in only:
        print("\n| held-out speaker | uni word % | bi word % | uni sequence % | bi sequence % |")
        print("|---|---|---|---|---|")
        for speaker in SPEAKERS:
            cells = {}
            for bi in (False, True):
                model = chosen.get(("theo", bi)) or replace(CANDIDATES[0], bidirectional=bi)
                data = replace(base, holdout_speaker=speaker)
                prefix = "theo" if speaker == "theo" else f"loso-{speaker}"  # theo: the runs above
                cells[bi] = [run(f"{prefix}-{'bi' if bi else 'uni'}-seed{s}", data, model, s, out, test=True)["test"]
                             for s in SEEDS]
            print(f"| {speaker} | {mean_std(t['word_acc'] for t in cells[False])} | "
                  f"{mean_std(t['word_acc'] for t in cells[True])} | {mean_std(t['seq_acc'] for t in cells[False])} | "
                  f"{mean_std(t['seq_acc'] for t in cells[True])} |", flush=True)


if __name__ == "__main__":
    main()
