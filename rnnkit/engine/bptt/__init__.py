"""Explicit backpropagation through time: one ``torch.autograd.Function`` per cell kind."""

from rnnkit.engine.bptt.gru import GRUFunction
from rnnkit.engine.bptt.lstm import LSTMFunction
from rnnkit.engine.bptt.rnn import RNNFunction

__all__ = ["RNNFunction", "LSTMFunction", "GRUFunction"]
