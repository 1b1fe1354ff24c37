"""rnnkit: recurrent sequence models on PyTorch with their own cells and explicit BPTT."""

from rnnkit import init
from rnnkit.models import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from rnnkit.models.checks import finite_checks, set_finite_checks

__version__ = "0.1.0"


def _allow_weights_only_loads() -> None:
    """Let ``torch.load(..., weights_only=True)`` (PyTorch's default) rebuild whole models
    saved with ``torch.save(model)`` that hold rnnkit layers and cells, as it rebuilds
    torch.nn's own once a program allow-lists them (``torch.serialization.add_safe_globals``).
    rnnkit's classes hold only parameters, numbers and strings, like torch.nn's."""
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add([RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell])


_allow_weights_only_loads()

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "finite_checks", "init", "load",
           "set_finite_checks", "__version__"]


def load(run, checkpoint: str = "best", device: str = "auto"):
    """The predictor of a trained run, whatever its task (the run folder says which):
    ``rnnkit.load("runs/tag-ewt").tag("The old man the boat.")``.  See :mod:`rnnkit.tasks.base`."""
    from rnnkit.tasks.base import load as load_run

    return load_run(run, checkpoint, device)
