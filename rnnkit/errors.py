"""The project's own error types: each names what was wrong and where."""


class RnnkitError(Exception):
    """Base class of rnnkit's errors that the CLI reports as one line."""


class DataError(RnnkitError, ValueError):
    """A data file is missing, unreadable or malformed; the message names the file (and line)."""


class CheckpointError(RnnkitError):
    """A checkpoint is missing, incomplete or not an rnnkit checkpoint."""


class TrainingDiverged(RnnkitError):
    """The loss became NaN or infinite; the message names the step."""


class NonFiniteInput(RnnkitError, ValueError):
    """A recurrent layer or cell received NaN or infinity; the message names where (t, b)."""
