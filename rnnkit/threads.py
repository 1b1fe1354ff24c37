"""How many CPU threads PyTorch uses for rnnkit's commands, on idle and on busy machines.

PyTorch's CPU operations (and rnnkit's fused kernels) split work over an OpenMP team of
``torch.get_num_threads()`` threads, by default one per CPU.  Each parallel region ends at a
barrier, so a step is as slow as its slowest thread: when another process keeps a CPU busy,
the thread that shares that CPU is descheduled for whole time slices and every step waits for
it.  On a 2-core machine with one busy process that made training 20x slower with two threads,
while one thread lost only its share of the CPU (docs/benchmarks.md, "Busy machines").

:func:`configure` sets the thread count.  ``"auto"``, the default of ``rnnkit train`` and
``rnnkit evaluate``: at the start, one thread per CPU that other processes leave free
(:func:`auto_threads`); while training, the count follows the load (:class:`Adapt`): down to
what is free within seconds of another process taking a CPU, back up once the CPUs have been
free for a while.  The thread count is what can change at run time: OpenMP reads
``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when PyTorch is imported (measured:
``OMP_WAIT_POLICY=PASSIVE`` also avoids the collapse, but must be in the environment before
the process starts).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Union

logger = logging.getLogger(__name__)

Threads = Union[int, str, None]
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (a
    container's ``--cpus``) where there is one."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU quota in CPUs (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):  # no cgroup v2 quota here: try v1
        return _cgroup_v1_quota(root)


def _cgroup_v1_quota(root: Path) -> float | None:
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _running_here() -> int:
    """Threads of this process that are running or ready to run now."""
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.rindex(")") + 2:].startswith("R"):
            running += 1
    return running


def other_load(samples: int = 5, interval: float = 0.01) -> float:
    """How many CPUs other processes keep busy right now: the median over ``samples`` reads of
    the runnable threads of the whole machine (``/proc/loadavg``) less this process's own; where
    there is no /proc, the one-minute load average.  Scaled to this process's share of the
    machine when its affinity or quota is smaller than the machine."""
    counts = []
    for i in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            counts = []
            break
        counts.append(max(0, running - _running_here()))
        if i + 1 < samples:
            time.sleep(interval)
    if counts:
        load = float(statistics.median(counts))
    else:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    machine = os.cpu_count() or 1
    return load * min(1.0, usable_cpus() / machine)


def auto_threads(load: float | None = None) -> tuple[int, str]:
    """The policy's thread count and the reason, in words: one thread per CPU that other
    processes leave free now (``load``: how many CPUs they keep busy, default
    :func:`other_load`), at least one and at most PyTorch's own count.  ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` in the environment win: then the count is PyTorch's, as they set it."""
    import torch

    for name in THREAD_ENV:
        if os.environ.get(name):
            return torch.get_num_threads(), f"{name}={os.environ[name]}"
    cpus = usable_cpus()
    busy = other_load() if load is None else load
    return _fit(free_cpus(cpus, busy), cpus), f"{cpus} CPUs, {busy:g} busy with other processes"


def free_cpus(cpus: int, busy: float) -> int:
    """CPUs left when other processes keep ``busy`` of ``cpus`` busy (rounded)."""
    return math.floor(cpus - busy + 0.5)


def _fit(threads: int, cpus: int) -> int:
    return max(1, min(_default_threads(cpus), threads))


class Adapt:
    """Re-decides the thread count of "auto" while a run goes on, as an optimizer step hook
    (``torch.optim`` calls it in the training loop's thread, the thread whose count
    ``torch.set_num_threads`` sets).  Every ``interval`` seconds it counts the CPUs that other
    processes leave free (:func:`other_load`, three reads); it drops threads as soon as two
    counts in a row are below the current one (a busy CPU costs a team of threads many times
    its share) and adds them only when the last ``window`` counts all allow it (one thread too
    few costs at most its share)."""

    def __init__(self, interval: float = 2.0, window: int = 5):
        self.interval, self.cpus = interval, usable_cpus()
        self.free: deque[int] = deque(maxlen=window)
        self.next_check = time.monotonic() + interval
        self.changes: list[tuple[float, int]] = []  # (time.monotonic(), new count)

    def __call__(self, *args) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + self.interval
        self.check(free_cpus(self.cpus, other_load(samples=3, interval=0.0)))
        return None

    def check(self, free: int) -> int:
        """Record one count of free CPUs; set and return the thread count it leads to."""
        import torch

        self.free.append(free)
        current = torch.get_num_threads()
        recent = list(self.free)
        target = current
        if len(recent) >= 2 and max(recent[-2:]) < current:
            target = _fit(max(recent[-2:]), self.cpus)
        elif len(recent) == self.free.maxlen and min(recent) > current:
            target = _fit(min(recent), self.cpus)
        if target != current:
            torch.set_num_threads(target)
            self.changes.append((time.monotonic(), target))
            logger.info(f"rnnkit: {target} CPU thread{'s' if target > 1 else ''} from now on "
                        f"({self.cpus - free} of {self.cpus} CPUs busy with other processes)")
        return target


_adapting: list = []  # (hook handle, Adapt) of the one that runs, if any


def adapting() -> Adapt | None:
    """The :class:`Adapt` that :func:`configure` installed (its ``changes`` say what it did)."""
    return _adapting[-1][1] if _adapting else None


def stop_adapting() -> None:
    """Remove the hook that :func:`configure` with ``adapt=True`` installed, if any."""
    while _adapting:
        _adapting.pop()[0].remove()


_initial_threads: list[int] = []


def _default_threads(cpus: int) -> int:
    """PyTorch's own thread count (before any configure call changed it), at most ``cpus``."""
    import torch

    if not _initial_threads:
        _initial_threads.append(torch.get_num_threads())
    return max(1, min(cpus, _initial_threads[0]))


def parse_threads(text: str) -> Threads:
    """``--threads`` values: a count >= 1, "auto" or "torch" (PyTorch's own setting)."""
    text = text.strip().lower()
    if text in ("auto", "torch"):
        return text
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"threads must be a count >= 1, 'auto' or 'torch'; got {text!r}") from None
    if count < 1:
        raise ValueError(f"threads must be a count >= 1, 'auto' or 'torch'; got {count}")
    return count


def configure(threads: Threads = "auto", adapt: bool = False, announce: bool = True) -> int:
    """Set PyTorch's CPU thread count: a number, ``"auto"`` (:func:`auto_threads`) or None /
    ``"torch"`` (leave PyTorch's setting).  Logs the choice and returns the count in use.  With
    ``"auto"`` and ``adapt``, the count follows the machine's load during training (see
    :class:`Adapt`; installed on every ``torch.optim`` optimizer until :func:`stop_adapting`
    or the next configure call).  ``announce=False`` logs the choice at DEBUG level only (for
    commands whose standard output is data, such as ``rnnkit evaluate``)."""
    import torch

    stop_adapting()
    if isinstance(threads, str):
        threads = parse_threads(threads)
    if threads is None or threads == "torch":
        return torch.get_num_threads()
    if threads == "auto":
        count, why = auto_threads()
        if count != torch.get_num_threads():
            torch.set_num_threads(count)
        follows = adapt and not any(os.environ.get(name) for name in THREAD_ENV)
        if follows:
            from torch.optim.optimizer import register_optimizer_step_pre_hook

            adapt_hook = Adapt()
            _adapting.append((register_optimizer_step_pre_hook(adapt_hook), adapt_hook))
        logger.log(logging.INFO if announce else logging.DEBUG,
                   f"rnnkit: {count} CPU thread{'s' if count > 1 else ''} ({why}"
                   f"{', following the load' if follows else ''}; --threads N to choose)")
        return count
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a count >= 1, 'auto', 'torch' or None; got {threads!r}")
    _default_threads(usable_cpus())  # remember PyTorch's own count before changing it
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def policy(threads: Threads = "auto", adapt: bool = False, announce: bool = True):
    """:func:`configure` for the duration of a ``with`` block (a command run in-process, a
    test): afterwards no hook is left and PyTorch's thread count is what it was."""
    import torch

    before = torch.get_num_threads()
    try:
        yield configure(threads, adapt=adapt, announce=announce)
    finally:
        stop_adapting()
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
