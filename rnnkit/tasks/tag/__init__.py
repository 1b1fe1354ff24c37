"""The part-of-speech tagging task: ``rnnkit train tag``, ``rnnkit tag``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"TagPredictor": "predictor"})
