"""The engine: step math (``steps``), the reference loop (``reference``), explicit BPTT
(``bptt``) and the backend switch (``layer``)."""

from rnnkit.engine.layer import BACKENDS, run_layer

__all__ = ["BACKENDS", "run_layer"]
