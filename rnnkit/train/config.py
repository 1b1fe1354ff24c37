"""Training settings shared by every task."""

from __future__ import annotations

from dataclasses import dataclass

from rnnkit.settings import setting

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "plateau", "cosine")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    epochs: int = setting(10, "passes over the training data")
    optimizer: str = setting("adam", "sgd | adam | adamw")
    lr: float = setting(2e-3, "learning rate")
    momentum: float = setting(0.0, "sgd")
    weight_decay: float = setting(0.0, "weight decay of the optimizer (decoupled in adamw)")
    schedule: str = setting("none", "none | step | plateau | cosine")
    lr_decay: float = setting(0.5, 'factor of "step" and "plateau"')
    decay_start: int = setting(4, '"step": the lr is multiplied by lr_decay after each epoch > decay_start')
    plateau_patience: int = setting(0, '"plateau": epochs without improvement before decaying')
    early_stop: int = setting(0, "stop after this many epochs without validation improvement (0: never)")
    clip: float = setting(5.0, "global gradient-norm clip (0: none)")
    seed: int = setting(0, "random seed of Python, NumPy and PyTorch")
    deterministic: bool = setting(False, "make PyTorch refuse nondeterministic ops")
    device: str = setting("auto", "auto | cpu | cuda")
    bf16: bool = setting(True, "autocast to bfloat16 on CUDA")
    max_steps: int = setting(0, "stop after this many optimizer steps in total (0: no limit)")
    log_every: int = setting(20, "steps between metric rows")
    checkpoint_every: int = setting(0, "steps between checkpoints (0: end of each epoch only)")
    progress: bool = setting(True, "progress bar")
    diagnostics: int = setting(0, "probe gradient dynamics every this many steps (0: off); see train.diagnostics")

    def validate(self) -> "TrainConfig":
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.clip >= 0, f"clip must be >= 0, got {self.clip}"),
            (0 < self.lr_decay <= 1, f"lr_decay must be in (0, 1], got {self.lr_decay}"),
            (self.diagnostics >= 0, f"diagnostics must be >= 0, got {self.diagnostics}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self
