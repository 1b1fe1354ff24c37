"""Training a spoken-number labeler, with plain arguments (``rnnkit train speech`` calls it),
and the task over a folder of recordings that training and evaluation share."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from rnnkit.errors import CheckpointError, DataError
from rnnkit.tasks.speech.audio import Normalizer, list_recordings, load_features
from rnnkit.tasks.speech.task import SpeechDataConfig, SpeechModelConfig, SpeechTask, split_recordings
from rnnkit.train import TrainConfig, distributed, read_state
from rnnkit.train.run import build_trainer, fit_and_report, open_run
from rnnkit.train.trainer import pick_device

logger = logging.getLogger(__name__)


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
                 run_dir: str | Path, resume: bool = False, override: bool = False) -> dict:
    """Train a spoken-number labeler in ``run_dir``; log validation metrics and an example."""
    run_dir = open_run(run_dir, resume, data_cfg, model_cfg, train_cfg, override)
    meta = read_state(run_dir)["task"] if resume else None
    start = time.perf_counter()
    distributed.init(pick_device(train_cfg.device))  # torchrun: join now, so that
    with distributed.main_first():  # rank 0 fills the feature cache and the others read it
        task = make_task(data_cfg, model_cfg, train_cfg.seed, run_dir, meta)
    feature_seconds = time.perf_counter() - start
    model = task.build_model()
    trainer = build_trainer(model, task, data_cfg, model_cfg, train_cfg, run_dir, resume)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"data: {task.source}: {len(task.recordings):,} recordings of {len(set(task.speakers))} speakers, "
          f"word vectors of {task.input_size} numbers ({feature_seconds:.1f} s); {describe_split(task)}; "
          f"model: {model_cfg.num_layers}x{model_cfg.hidden_size} "
          f"{'bidirectional ' if model_cfg.bidirectional else ''}{model_cfg.cell.upper()}, {n_params:,} parameters; "
          f"device {trainer.device}")
    summary = fit_and_report(trainer, task, run_dir)
    if not trainer.is_main:
        return summary
    if summary["status"] != "interrupted":
        number = task.numbers["valid"][0]
        predicted, _ = task.predict(model, [number])
        logger.info(f"example ({task.speakers[number[0]]}): spoken {' '.join(str(task.digits[i]) for i in number)} "
              f"-> labeled {' '.join(map(str, predicted[0]))}")
    return summary
