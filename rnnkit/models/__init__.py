"""Recurrent layers and cells, drop-in for their torch.nn namesakes."""

from rnnkit.models.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.models.rnn import GRU, LAYERS, LSTM, RNN, RNNBase

__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "LAYERS"]
