"""The translation task: ``rnnkit train translate``, ``rnnkit translate``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"TranslatePredictor": "predictor"})
