"""The spoken-number commands with plain arguments: train and evaluate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rnnkit.tasks.speech.audio import Normalizer, list_recordings, load_features
from rnnkit.errors import CheckpointError, DataError
from rnnkit.tasks.speech.task import (
    SpeechDataConfig,
    SpeechModelConfig,
    SpeechTask,
    build_model,
    split_recordings,
)
from rnnkit.train import TrainConfig, distributed, load_weights, read_state
from rnnkit.train.run import fit_and_report, open_run, build_trainer
from rnnkit.train.checkpoint import task_checkpoint
from rnnkit.train.trainer import pick_device


def make_task(data_cfg: SpeechDataConfig, model_cfg: SpeechModelConfig, seed: int, run_dir: str | Path,
              meta: Optional[dict] = None) -> SpeechTask:
    """The task over the recordings of ``data_cfg.data``: acoustic vectors (cached in
    ``data_cfg.feature_cache``, else ``run_dir/features.npz``), the split, and the normalizer
    of ``meta`` (a run's checkpoint) when given, else fitted on the training part."""
    if data_cfg.data is None:
        raise DataError("speech needs --data DIR (a folder of {digit}_{speaker}_{index}.wav recordings, "
                        "e.g. the recordings/ folder of the Free Spoken Digit Dataset)")
    recordings = list_recordings(data_cfg.data)
    cache = data_cfg.feature_cache or Path(run_dir) / "features.npz"
    features = load_features(recordings, data_cfg.n_mfcc, cache)  # (N, D)
    parts = split_recordings(recordings, data_cfg)
    if meta is not None:
        normalizer = Normalizer.from_dict(meta["normalizer"])
        if len(normalizer.mean) != features.shape[1]:
            raise CheckpointError(f"the run's word vectors have {len(normalizer.mean)} numbers, these "
                                  f"recordings give {features.shape[1]}")
    else:
        normalizer = Normalizer.fit(features[parts["train"]])
    return SpeechTask(recordings, features, parts, normalizer, data_cfg, model_cfg, seed, str(data_cfg.data))


def describe_split(task: SpeechTask) -> str:
    cfg = task.data_cfg
    how = (f"held-out speaker {cfg.holdout_speaker}" if cfg.holdout_speaker
           else f"official split (test repetitions {cfg.test_indices})")
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in task.parts.items())
    return f"{how}, validation repetitions {cfg.valid_indices}; recordings {sizes}"


def train_speech(data_cfg: SpeechDataConfig, model_cfg: SpeechModelConfig, train_cfg: TrainConfig,
                 run_dir: str | Path, resume: bool = False) -> dict:
    """Train a spoken-number labeler in ``run_dir``; print validation metrics and an example."""
    run_dir = open_run(run_dir, resume, train_cfg)
    meta = read_state(run_dir)["task"] if resume else None
    start = time.perf_counter()
    distributed.init(pick_device(train_cfg.device))  # torchrun: join now, so that
    with distributed.main_first():  # rank 0 fills the feature cache and the others read it
        task = make_task(data_cfg, model_cfg, train_cfg.seed, run_dir, meta)
    feature_seconds = time.perf_counter() - start
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"data: {task.source}: {len(task.recordings):,} recordings of {len(set(task.speakers))} speakers, "
          f"word vectors of {task.input_size} numbers ({feature_seconds:.1f} s); {describe_split(task)}; "
          f"model: {model_cfg.num_layers}x{model_cfg.hidden_size} "
          f"{'bidirectional ' if model_cfg.bidirectional else ''}{model_cfg.cell.upper()}, {n_params:,} parameters; "
          f"device {trainer.device}", flush=True)
    summary = fit_and_report(trainer, task, run_dir)
    if not trainer.is_main:
        return summary
    if summary["status"] != "interrupted":
        number = task.numbers["valid"][0]
        predicted, _ = task.predict(model, [number])
        print(f"example ({task.speakers[number[0]]}): spoken {' '.join(str(task.digits[i]) for i in number)} "
              f"-> labeled {' '.join(map(str, predicted[0]))}", flush=True)
    return summary


def load_speech(run: str | Path, checkpoint: str = "best", device: str = "auto"):
    """(model, meta) of a trained spoken-number run; ``checkpoint`` as in :func:`task_checkpoint`."""
    where, meta = task_checkpoint(run, "speech", checkpoint, "spoken-number")
    model = build_model(int(meta["input_size"]), SpeechModelConfig(**meta["model"]))
    dev = pick_device(device)
    load_weights(model, where, dev)
    return model.to(dev).eval(), meta


def evaluate_speech(run: str | Path, split: str = "test", data: Optional[str] = None,
                    checkpoint: str = "best", device: str = "auto") -> dict:
    """Loss, word and sequence accuracy (also of first and later words) and counts on the
    fixed spoken numbers of a part of the run's split, with the run's normalization; the
    recordings of ``data`` instead of the run's when given."""
    model, meta = load_speech(run, checkpoint, device)
    data_cfg = SpeechDataConfig(**meta["data"])
    if data is not None:
        data_cfg.data = data
    task = make_task(data_cfg, SpeechModelConfig(**meta["model"]), meta.get("seed", 0), run, meta)
    return task.scores(model, split)
