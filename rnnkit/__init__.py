"""rnnkit: recurrent sequence models on PyTorch with their own cells and explicit BPTT."""

from rnnkit import init
from rnnkit.models import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from rnnkit.models.checks import finite_checks, set_finite_checks

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "finite_checks", "init",
           "set_finite_checks", "__version__"]
