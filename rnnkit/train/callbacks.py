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
    """Every hook does nothing by default; override the ones you need."""

    def on_fit_start(self, trainer) -> None:
        """Before the first step (also when resuming)."""

    def on_step_start(self, trainer, batch) -> None:
        """Before the forward pass of an optimizer step on ``batch``."""

    def on_after_backward(self, trainer) -> None:
        """Gradients are computed and not yet clipped or applied."""

    def on_step_end(self, trainer, loss: float) -> None:
        """After the optimizer step; ``loss`` is the step's training loss."""

    def on_validation_end(self, trainer, metrics: dict) -> None:
        """After each validation; may set ``trainer.should_stop``."""

    def on_fit_end(self, trainer, summary: dict) -> None:
        """Always last, also after Ctrl-C or a diverged loss; ``summary`` as fit returns."""
