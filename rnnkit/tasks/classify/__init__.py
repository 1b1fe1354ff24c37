"""The sentence-classification task: ``rnnkit train classify``, ``rnnkit classify``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"ClassifyPredictor": "predictor", "ClassifyEnsemble": "predictor",
                                               "Prediction": "predictor"})
