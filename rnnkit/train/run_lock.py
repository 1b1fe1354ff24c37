"""An exclusive lock on a run folder while a process trains in it.

Two trainings in one folder would overwrite each other's checkpoints and records, so the
second is refused, naming the holder.  The lock is ``fcntl.flock`` on ``RUN/.lock``: the
operating system releases it when its process ends, however it ends (``kill -9`` too), so a
dead holder never blocks a new training; the file only says who holds it (pid, host, since
when) for the message.  A process may take the lock of a folder it already holds (a resume
after a training in the same Python session).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from rnnkit.errors import RnnkitError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: no locking
    fcntl = None

LOCK_FILE = ".lock"
_held: dict[Path, list] = {}  # folder -> [open lock file, how many holders in this process]


class RunLockedError(RnnkitError):
    """Another process trains in this run folder."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:200]
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        return f"pid {int(fields['pid'])} on {fields['host'][:64]} since {fields['since'][:32]}"
    except (OSError, KeyError, ValueError):
        return "a process whose details could not be read"


def acquire(run_dir: str | Path) -> Path:
    """Hold the lock of ``run_dir`` (created if missing) or raise :class:`RunLockedError`."""
    folder = Path(run_dir).resolve()
    if folder in _held:
        _held[folder][1] += 1
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if path.is_symlink():
        raise RunLockedError(f"{path}: is a symbolic link; refusing to use it as the run's lock")
    handle = open(path, "a+", encoding="ascii")
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RunLockedError(f"{folder} is in use by another training ({_holder(path)}); wait for it to "
                                 f"finish or choose another --run") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid={os.getpid()} host={socket.gethostname()} since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    handle.flush()
    _held[folder] = [handle, 1]
    return folder


def release(folder: Path, every: bool = False) -> None:
    """Give back one hold on ``folder``'s lock (as returned by :func:`acquire`), or with
    ``every`` all of this process's holds (the training in it is over)."""
    entry = _held.get(folder)
    if entry is None:
        return
    entry[1] = 0 if every else entry[1] - 1
    if entry[1] <= 0:
        del _held[folder]
        entry[0].close()  # closing the file releases the flock
