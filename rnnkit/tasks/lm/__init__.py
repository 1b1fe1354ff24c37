"""The language-modeling task: ``rnnkit train lm``, ``rnnkit sample``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"LMPredictor": "predictor"})
