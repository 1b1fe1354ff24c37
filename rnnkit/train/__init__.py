"""Training: the Trainer, its configuration, checkpoints and metric logs."""

from rnnkit.train.checkpoint import average_checkpoints, load_weights, read_state, resolve_checkpoint, save_checkpoint
from rnnkit.train.config import TrainConfig
from rnnkit.train.trainer import Trainer, pick_device, seed_everything

__all__ = [
    "Trainer", "TrainConfig", "average_checkpoints", "load_weights", "pick_device", "read_state", "resolve_checkpoint",
    "save_checkpoint", "seed_everything",
]
