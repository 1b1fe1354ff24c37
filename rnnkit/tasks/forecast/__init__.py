"""The forecasting task: ``rnnkit train forecast``, ``rnnkit forecast``."""

from rnnkit.tasks.base import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {"ForecastPredictor": "predictor", "ForecastEstimator": "estimator"})
