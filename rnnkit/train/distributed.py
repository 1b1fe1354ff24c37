"""Data-parallel training under ``torchrun``: one process per device, gradients averaged.

``torchrun`` starts the processes and tells each one who it is through the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``).  Without those
variables (or with ``WORLD_SIZE=1``) nothing here does anything: there is no process group,
``rank()`` is 0 and ``world_size()`` is 1, and training runs exactly as in one process.

With ``WORLD_SIZE > 1`` the Trainer calls :func:`init`: the process group uses gloo on the
CPU and NCCL on CUDA (each process on ``cuda:LOCAL_RANK``).  The rest of this module are the
few collective operations the Trainer needs (sums, a broadcast from rank 0, a gather, a
barrier) and the helpers that cut a global batch into per-rank parts:
:func:`shard_slice` (a rank's contiguous block of ``n`` items) and :func:`split_state` /
:func:`join_states` (a carried recurrent state, batch in dimension 1, cut into the same
blocks and put back together).
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)

# Rank 0 evaluates while the others wait in a collective: allow long validations.
TIMEOUT = timedelta(minutes=60)


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the job: the process group's size, else torchrun's ``WORLD_SIZE``, else 1."""
    if _initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 .. world_size - 1); 0 outside torchrun."""
    if _initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its node (its GPU index); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else 0


def is_main() -> bool:
    """True on rank 0, the process that logs, evaluates and writes checkpoints."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the job's process group when launched by torchrun with more than one process
    (gloo on CPU, NCCL on CUDA); returns the device this process trains on: ``device``
    itself, or ``cuda:LOCAL_RANK`` for CUDA.  Without torchrun: returns ``device``, no-op."""
    if world_size() <= 1:
        return device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not _initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)  # env:// rendezvous set up by torchrun
        if dist.get_rank() == 0:
            logger.info(f"{dist.get_world_size()} processes ({backend}): each global batch is split across them")
    return device


def backend() -> str:
    """The process group's backend ("gloo", "nccl"), or "none" in one process."""
    return dist.get_backend() if _initialized() else "none"


def destroy() -> None:
    """Leave the process group (if there is one)."""
    if _initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where tensors of a collective live: NCCL only moves CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64); ``values`` itself in one process."""
    if not _initialized():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled: only for objects this job made itself)."""
    if not _initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank; tensors should be on the CPU."""
    if not _initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here."""
    if not _initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else ``model``.
    The wrapper broadcasts rank 0's weights, so every rank starts from the same model."""
    if world_size() <= 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise): for
    calling methods other than ``forward``."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# ------------------------------------------------------------------------------ sharding
def shard_slice(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous block of ``n`` items cut into ``world`` blocks as evenly as
    possible (the first ``n % world`` ranks get one more).  Empty when ``n < world`` and
    ``rank >= n``.  ``shard_slice(10, 1, 4)`` is ``slice(3, 6)``."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank {rank}, world {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def check_global_batch(batch_size: int, world: int, unit: str) -> None:
    """A global batch of ``batch_size`` ``unit`` must give every one of ``world`` processes
    at least one; say so clearly when it cannot."""
    if batch_size < world:
        raise ValueError(
            f"batch_size is the global batch, split over the {world} processes; {batch_size} {unit} "
            f"cannot give each process one: use --batch-size >= {world} or fewer processes"
        )


def split_state(state, rank: int, world: int):
    """Rank ``rank``'s block of a carried recurrent state (a tensor or a tuple of tensors with
    the batch in dimension 1, like an RNN's ``hx``); None stays None."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(split_state(s, rank, world) for s in state)
    return state[:, shard_slice(state.shape[1], rank, world)].contiguous()


def join_states(states: Sequence):
    """The global carried state from the ranks' blocks (in rank order); None if any is None."""
    if any(s is None for s in states):
        return None
    first = states[0]
    if isinstance(first, (tuple, list)):
        return tuple(join_states([s[i] for s in states]) for i in range(len(first)))
    return torch.cat(list(states), dim=1)


def to_cpu(state):
    """A carried state moved to the CPU (for gathering and saving)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(to_cpu(s) for s in state)
    return state.detach().cpu()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (to fill a cache, say), the other ranks after it; needs
    :func:`init` first.  No effect in one process."""
    if _initialized() and not is_main():
        barrier()
    yield
    if _initialized() and is_main():
        barrier()


@contextlib.contextmanager
def main_process_output() -> Iterator[None]:
    """Inside this block, ranks other than 0 log only warnings and errors (rank 0 reports the
    run's progress for all of them); no effect in one process."""
    if is_main():
        yield
        return
    logger = logging.getLogger("rnnkit")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


__all__ = [
    "all_gather", "all_reduce_sum", "backend", "barrier", "broadcast", "check_global_batch", "destroy", "init",
    "is_main", "join_states", "local_rank", "main_first", "main_process_output", "rank", "shard_slice", "split_state",
    "to_cpu", "unwrap", "world_size", "wrap",
]
