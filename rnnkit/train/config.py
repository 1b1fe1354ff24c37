"""Training settings shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

from rnnkit.settings import MAX_SEED, check_settings, setting

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "plateau", "cosine")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    epochs: int = setting(10, "passes over the training data", ge=1)
    optimizer: str = setting("adam", "sgd | adam | adamw", choices=OPTIMIZERS)
    lr: float = setting(2e-3, "learning rate", gt=0)
    momentum: float = setting(0.0, "momentum of sgd", ge=0, lt=1)
    weight_decay: float = setting(0.0, "weight decay of the optimizer (decoupled in adamw)", ge=0)
    schedule: str = setting("none", "none | step | plateau | cosine", choices=SCHEDULES)
    lr_decay: float = setting(0.5, 'factor of "step" and "plateau"', gt=0, le=1)
    decay_start: int = setting(4, '"step": the lr is multiplied by lr_decay after each epoch > decay_start',
                               ge=0)
    plateau_patience: int = setting(0, '"plateau": epochs without improvement before decaying', ge=0)
    early_stop: int = setting(0, "stop after this many epochs without validation improvement (0: never)", ge=0)
    clip: float = setting(5.0, "global gradient-norm clip (0: none)", ge=0)
    seed: int = setting(0, "random seed of Python, NumPy and PyTorch", ge=0, le=MAX_SEED)
    deterministic: bool = setting(False, "make PyTorch refuse nondeterministic ops")
    device: str = setting("auto", "auto | cpu | cuda", choices=DEVICES)
    bf16: bool = setting(True, "autocast to bfloat16 on CUDA")
    max_steps: int = setting(0, "stop after this many optimizer steps in total (0: no limit)", ge=0)
    log_every: int = setting(20, "steps between metric rows", ge=1)
    checkpoint_every: int = setting(0, "steps between checkpoints (0: end of each epoch only)", ge=0)
    progress: bool = setting(True, "progress bar")
    diagnostics: int = setting(0, "probe gradient dynamics every this many steps (0: off); see train.diagnostics",
                               ge=0)

    def validate(self) -> "TrainConfig":
        """This config, when every field is inside its declared range (the ranges of the
        ``setting`` calls above, which the flags and config files are checked against too);
        else a ``ConfigError`` (a ValueError) naming the field."""
        return check_settings(self)
