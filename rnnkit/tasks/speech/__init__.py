"""The spoken-number task: ``rnnkit train speech``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"SpeechPredictor": "predictor"})
