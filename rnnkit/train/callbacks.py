"""Callbacks: code that watches or steers the Trainer's loop without subclassing it.

A callback overrides any of these methods; the Trainer calls them in this order::

    on_fit_start(trainer)
      on_step_start(trainer, batch)   before the forward pass of each optimizer step
      on_after_backward(trainer)      gradients computed, not yet clipped or applied
      on_step_end(trainer, loss)      after the optimizer step
      on_validation_end(trainer, metrics)
    on_fit_end(trainer, summary)      also after Ctrl-C or a diverged loss
"""

from __future__ import annotations


class Callback:
    def on_fit_start(self, trainer) -> None:
        pass

    def on_step_start(self, trainer, batch) -> None:
        pass

    def on_after_backward(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, loss: float) -> None:
        pass

    def on_validation_end(self, trainer, metrics: dict) -> None:
        pass

    def on_fit_end(self, trainer, summary: dict) -> None:
        pass
