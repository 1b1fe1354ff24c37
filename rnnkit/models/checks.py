"""Input checks shared by the layers and cells.  Every message says what was expected and
what was received, so a shape bug is found from the message alone."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor


def check_tensor(name: str, value, owner: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_float_like(name: str, value: Tensor, ref: Tensor, owner: str) -> None:
    """``value`` must share dtype and device with the parameter ``ref``."""
    if value.dtype != ref.dtype:
        raise TypeError(
            f"{owner}: {name} dtype must match the parameters' dtype. "
            f"Expected {ref.dtype}, got {value.dtype}"
        )
    if value.device != ref.device:
        raise ValueError(
            f"{owner}: {name} must be on the parameters' device. "
            f"Expected {ref.device}, got {value.device}"
        )


def check_shape(name: str, value: Tensor, expected: Sequence[int], owner: str) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(
            f"{owner}: Expected {name} size {tuple(expected)}, got {tuple(value.shape)}"
        )


def normalize_lengths(
    lengths: Union[Tensor, Sequence[int], None], batch: int, steps: int, owner: str
) -> Optional[Tensor]:
    """Validate ``lengths`` and return them as a CPU int64 tensor of shape (B,), or None when
    every sequence has the full ``steps`` length (the fast path needs no masking)."""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{owner}: lengths must hold integers, got dtype {lengths.dtype}")
        lengths = lengths.detach().to("cpu", torch.int64)
    else:
        try:
            lengths = torch.as_tensor(list(lengths), dtype=torch.int64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{owner}: lengths must be a sequence of integers ({exc})") from None
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(
            f"{owner}: Expected lengths of shape ({batch},) (one per sequence), "
            f"got {tuple(lengths.shape)}"
        )
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise ValueError(
            f"{owner}: lengths must lie in [1, {steps}] (the input has {steps} steps), "
            f"got min {low} and max {high}"
        )
    if low == steps:
        return None
    return lengths
