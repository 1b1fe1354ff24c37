"""Input checks shared by the layers and cells.  Every message says what was expected and
what was received, so a shape bug is found from the message alone."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from rnnkit.errors import NonFiniteInput

# NaN/inf checks on what users pass to layers and cells: on the CPU one sum over the input; on
# other devices one device-side assertion that never waits for the device (check_finite).
# Switch them off with RNNKIT_CHECK_FINITE=0 or ``rnnkit.finite_checks(False)``.
_FINITE = {"enabled": os.environ.get("RNNKIT_CHECK_FINITE", "1") != "0"}


def set_finite_checks(enabled: bool) -> bool:
    """Turn the NaN/inf checks of layer and cell inputs on or off; returns the old setting."""
    previous = _FINITE["enabled"]
    _FINITE["enabled"] = bool(enabled)
    return previous


@contextlib.contextmanager
def finite_checks(enabled: bool) -> Iterator[None]:
    """``with rnnkit.finite_checks(False): ...`` runs a block without the NaN/inf checks."""
    previous = set_finite_checks(enabled)
    try:
        yield
    finally:
        set_finite_checks(previous)


def _tracing() -> bool:
    """Under tracing or compilation a data-dependent check would break the graph: skip it."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _syncs_host(value: Tensor) -> bool:
    """Whether reading ``value`` from Python (``.item()``, ``bool()``) would make the host
    wait for the device: everywhere but on the CPU."""
    return not value.is_cpu


def check_finite(name: str, value: Tensor, owner: str, axes: Sequence[Optional[str]],
                 lengths: Optional[Tensor] = None) -> None:
    """Refuse NaN and infinity in ``value``.

    On the CPU: raise NonFiniteInput naming the first NaN/inf entry of ``value`` by ``axes``,
    one name per dimension (("t", "b", "d") for a time-first input; None leaves a dimension
    unnamed).  Padding past ``lengths`` is checked too: it enters the input projection of all
    steps, and although outputs past a sequence's end are masked, NaN there still reaches the
    weights' gradients (0 * NaN = NaN).

    On other devices (:func:`_syncs_host`) the check is ``torch._assert_async`` on
    ``isfinite(value).all()``: queued on the device, it never makes the host wait.  On CUDA a
    failure does not raise here: it surfaces at the next synchronization (``.item()``, a copy
    to the CPU, ``torch.cuda.synchronize()``) as a RuntimeError "device-side assert
    triggered", whose text may not carry this function's message, and it leaves the CUDA
    context unusable: the process must be restarted.  To find where the NaN entered, run the
    same input on the CPU (the message then names the entry), or with
    ``CUDA_LAUNCH_BLOCKING=1``, which raises at the failing call; ``RNNKIT_CHECK_FINITE=0``
    switches the checks off."""
    # (the common path asks little: it runs for every layer call)
    if not _FINITE["enabled"] or value.is_meta or _tracing() or value.numel() == 0:
        return
    if value.requires_grad:
        value = value.detach()
    if _syncs_host(value):
        torch._assert_async(
            torch.isfinite(value).all(),
            f"{owner}: {name} contains NaN or infinity; expected finite values (a device-side "
            "check: run the same input on the CPU to have the entry named, or set "
            "RNNKIT_CHECK_FINITE=0 to switch the checks off)",
        )
        return
    # NaN or inf anywhere makes the sum NaN or inf, and a sum is one vectorized pass (several
    # times faster than isfinite().all()); a sum that overflowed from finite values goes on
    # to the exact check below, which then finds nothing.
    if math.isfinite(value.sum().item()):
        return
    bad = (~torch.isfinite(value)).nonzero()  # (K, value.dim())
    if bad.numel() == 0:
        return
    first = bad[0].tolist()
    where = ", ".join(f"{axis}={i}" for axis, i in zip(axes, first) if axis)
    entry = float(value[tuple(first)])
    kind = "NaN" if entry != entry else ("+inf" if entry > 0 else "-inf")
    note = ""
    if lengths is not None and first[0] >= int(lengths[first[1]]):
        note = (f", in the padding past sequence {first[1]}'s length {int(lengths[first[1]])} "
                "(pad with zeros: padding enters the input projection and the weight gradients)")
    raise NonFiniteInput(
        f"{owner}: {name} contains {kind} at ({where}){note}; expected finite values "
        f"({bad.shape[0]} non-finite entr{'y' if bad.shape[0] == 1 else 'ies'} in all)"
    )


def check_tensor(name: str, value, owner: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_float_like(name: str, value: Tensor, ref: Tensor, owner: str, any_float: bool = False) -> None:
    """``value`` must share dtype and device with the parameter ``ref`` (with ``any_float``,
    any floating dtype: what autocast may have lowered)."""
    if value.dtype != ref.dtype and not (any_float and value.is_floating_point()):
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
    if _tracing():
        # Under torch.compile / export / jit.trace the values are not known while tracing;
        # the operators check them when they run (rnnkit.engine.bptt.common.Steps.build).
        return lengths
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise ValueError(
            f"{owner}: lengths must lie in [1, {steps}] (the input has {steps} steps), "
            f"got min {low} and max {high}"
        )
    if low == steps:
        return None
    return lengths
