"""rnnkit: recurrent sequence models on PyTorch with their own cells and explicit BPTT."""

from rnnkit import init
from rnnkit.models import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "init", "__version__"]
