"""Checkpoints: safetensors for tensors, JSON for everything else — nothing is pickled, so
loading a checkpoint never executes code from it.

A checkpoint is a folder ``checkpoints/step_<step, 8 digits>`` (``step_00001965`` after step
1965), or ``checkpoints/best``, holding

- ``model.safetensors``   the model's weights,
- ``state.safetensors``   optimizer tensors, RNG states, a carried recurrent state,
- ``state.json``          format version, step, config, vocabulary, scalars of the
                          optimizer/scheduler, Python and NumPy RNG states,
- ``checksums.sha256``    the SHA-256 of the three files above, in the format of
                          ``sha256sum`` (so ``sha256sum -c checksums.sha256`` checks a copy).

Durability: each file is written into a temporary folder and flushed to disk (fsync), the
folder is renamed into place and the parent folder flushed, then ``checkpoints/last`` (a
one-line file naming the newest folder) is replaced atomically the same way.  A process
killed at any moment (``kill -9``) therefore leaves the previous checkpoint complete and
named by ``last``; leftovers of an interrupted write (``.tmp-*``, ``.old-*``) are removed by
the next save.

Integrity: reading verifies each file against ``checksums.sha256`` before parsing it, so a
truncated, corrupted or edited file is refused with a CheckpointError naming the file.  The
checksums catch accidents (a full disk, a copy cut short, bit rot), not a forger who also
rewrites the checksum file; safety against hostile files comes from never unpickling.
Format 1 (before checksums) is still read, without verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from rnnkit.errors import CheckpointError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no checksums.sha256
CHECKSUMS = "checksums.sha256"
DATA_FILES = ("model.safetensors", "state.safetensors", "state.json")
FILES = DATA_FILES + (CHECKSUMS,)
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S+)$")
_WRITE_ERRORS = (OSError, SafetensorError)  # safetensors reports I/O failures as SafetensorError


def _split_tensors(obj: Any, prefix: str, tensors: dict) -> Any:
    """Replace every tensor inside ``obj`` (dicts, lists, tuples) by a reference
    ``{"__tensor__": key}`` and collect it in ``tensors``; return the JSON-able rest."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()} | (
            {"__int_keys__": True} if obj and all(isinstance(k, int) for k in obj) else {}
        )
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"state.json refers to a tensor {key!r} that state.safetensors lacks")
            return tensors[key]
        int_keys = obj.get("__int_keys__", False)
        return {
            (int(k) if int_keys else k): _join_tensors(v, tensors)
            for k, v in obj.items()
            if k != "__int_keys__"
        }
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


# ------------------------------------------------------------------------------- writing
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seal(folder: Path, names=DATA_FILES) -> None:
    """Flush the written files to disk, then write their checksums (last, flushed too)."""
    lines = []
    for name in names:
        _fsync_file(folder / name)
        lines.append(f"{_sha256(folder / name)}  {name}\n")
    with open(folder / CHECKSUMS, "w", encoding="ascii") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(folder)


def _pointed(root: Path) -> Optional[str]:
    pointer = root / "last"
    return pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def _write_failed(root: Path, name: str, exc: BaseException) -> CheckpointError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    previous = _pointed(root) if root.is_dir() else None
    kept = f"the previous checkpoint {root / previous} is intact" if previous else "no earlier checkpoint exists"
    return CheckpointError(f"{root / name}: cannot write the checkpoint ({reason}); {kept}")


def _write_checkpoint(root: Path, name: str, fill, point_last: bool = False) -> Path:
    """Create checkpoint ``root/name`` atomically: ``fill(folder)`` writes the files into a
    temporary folder, which is then moved into place (and ``last`` pointed at it).  A failed
    write raises CheckpointError and leaves what was there before as it was."""
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        fill(tmp)
        final = _install(tmp, root / name)
        tmp = None
        if point_last:
            _write_pointer(root / "last", name)
    except _WRITE_ERRORS as exc:
        raise _write_failed(root, name, exc) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def save_checkpoint(root: Path, name: str, model: torch.nn.Module, state: dict, keep: int = 2) -> Path:
    """Write checkpoint ``root/name`` atomically and point ``root/last`` at it.

    ``state`` may nest dicts/lists of tensors and JSON values.  Older ``step_*`` folders beyond
    the newest ``keep`` are removed (other names, such as ``best``, are kept).  A failed write
    (a full disk, a folder turned read-only) raises CheckpointError and leaves the previous
    checkpoint and ``last`` as they were.
    """
    root = Path(root)

    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        tensors: dict = {}
        meta = _split_tensors(state, "state", tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        with open(tmp / "state.json", "w", encoding="utf-8") as handle:
            json.dump({"format_version": FORMAT_VERSION, "state": meta}, handle, indent=1)
        _seal(tmp)

    final = _write_checkpoint(root, name, fill, point_last=True)
    remove_leftovers(root)
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def copy_checkpoint(root: Path, source: str, name: str) -> Path:
    """Copy checkpoint ``root/source`` to ``root/name`` (e.g. "best") atomically, leaving
    ``last`` alone: a file copy, not a second serialization."""
    root = Path(root)

    def fill(tmp: Path) -> None:
        for file in FILES:
            if (root / source / file).is_file():
                shutil.copy2(root / source / file, tmp / file)
                _fsync_file(tmp / file)
        _fsync_dir(tmp)

    return _write_checkpoint(root, name, fill)


def _install(tmp: Path, final: Path) -> Path:
    """Move a completely written temporary folder into place under its final name.

    A folder of the same name (a checkpoint saved twice at one step, or ``best``) is first
    renamed aside to ``.old-<name>`` and removed only after the new one is in place, so a
    kill in between leaves one complete copy that :func:`resolve_checkpoint` finds."""
    aside = final.with_name(f".old-{final.name}")
    if final.exists():
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(final, aside)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return final


def _write_pointer(path: Path, name: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def remove_leftovers(root: str | Path) -> None:
    """Tidy what a killed write left in a checkpoints folder: temporary folders are removed; a
    checkpoint renamed aside (``.old-<name>``) goes back to its name if the new one never
    arrived, else it is removed.  Only for a folder no other process is writing to."""
    root = Path(root)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for aside in root.glob(".old-*"):
        final = root / aside.name[len(".old-"):]
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, final)


def check_writable(root: str | Path, need_bytes: int = 0) -> None:
    """Refuse, before any training, a checkpoint folder that cannot be created or written, or
    whose disk has less than ``need_bytes`` free (CheckpointError with the reason)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=root)
        try:
            os.write(fd, b"rnnkit")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        raise CheckpointError(f"{root}: cannot write checkpoints here ({exc.strerror or exc}); "
                              "choose another run folder") from None
    if free < need_bytes:
        raise CheckpointError(f"{root}: {free / 2**20:.1f} MiB free on this disk, but a checkpoint needs about "
                              f"{need_bytes / 2**20:.1f} MiB; free some space or choose another run folder")


# ------------------------------------------------------------------------------- reading
def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder, a ``checkpoints`` folder or a checkpoint folder."""
    path = Path(path)
    for root in (path / "checkpoints", path):
        pointer = root / "last"
        if pointer.is_file():
            try:
                name = pointer.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{pointer}: unreadable pointer file ({exc})") from None
            if not name or name in (".", "..") or "/" in name or "\\" in name or "\n" in name:
                raise CheckpointError(f"{pointer}: expected the name of a checkpoint folder, got {name[:60]!r}")
            path = root / name
            if not path.exists() and (root / f".old-{name}").is_dir():
                path = root / f".old-{name}"  # killed while replacing a same-named checkpoint
            break
    missing = [f for f in DATA_FILES if not (path / f).is_file()] if path.is_dir() else list(DATA_FILES)
    if len(missing) == len(DATA_FILES):
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or a checkpoint folder)")
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return path


def _checksums(path: Path) -> Optional[dict]:
    """{file: sha256} of a checkpoint folder; None for a format-1 checkpoint (no checksums)."""
    file = path / CHECKSUMS
    if not file.is_file():
        version = _read_json(path).get("format_version")
        if version == 1:
            return None
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {CHECKSUMS}")
    try:
        text = file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable checksum file ({exc})") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _CHECKSUM_LINE.match(line)
        if not match:
            raise CheckpointError(f"{file}:{number}: expected '<sha256 hex>  <file name>', got {line[:80]!r}")
        sums[match.group(2)] = match.group(1)
    missing = [name for name in DATA_FILES if name not in sums]
    if missing:
        raise CheckpointError(f"{file}: no checksum for {', '.join(missing)}")
    return sums


def _verify(path: Path, names: tuple, sums: Optional[dict]) -> None:
    if sums is None:
        return
    for name in names:
        actual = _sha256(path / name)
        if actual != sums[name]:
            raise CheckpointError(
                f"{path / name}: checksum mismatch, the file is truncated, corrupted or was changed after "
                f"it was written (expected sha256 {sums[name][:16]}..., got {actual[:16]}...)"
            )


def _read_json(path: Path) -> dict:
    file = path / "state.json"
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{file}: unreadable checkpoint state ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
        raise CheckpointError(f"{file}: not an rnnkit checkpoint state (expected an object with 'state')")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{file}: checkpoint format {version!r}, this rnnkit reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    return data


def read_state(path: str | Path) -> dict:
    """The ``state`` dict of a checkpoint folder (tensors restored), without the model; the
    files are checked against their checksums first."""
    path = resolve_checkpoint(path)
    _verify(path, ("state.json", "state.safetensors"), _checksums(path))
    data = _read_json(path)
    try:
        tensors = load_file(str(path / "state.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{path / 'state.safetensors'}: unreadable tensors ({exc})") from None
    return _join_tensors(data["state"], tensors)


def load_weights(model: torch.nn.Module, path: str | Path, device: Optional[torch.device] = None) -> None:
    """Load a checkpoint's weights into ``model`` (strict: names and shapes must match), after
    checking the file against its checksum."""
    path = resolve_checkpoint(path)
    _verify(path, ("model.safetensors",), _checksums(path))
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False,
                                         device=str(device) if device else "cpu")
    except SafetensorError as exc:
        raise CheckpointError(f"{path / 'model.safetensors'}: unreadable weights ({exc})") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit this model ({exc})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")


def _named_checkpoint(root: Path, name: str) -> Path:
    """Checkpoint ``root/name``, or a clear error listing the ones there are."""
    where = root / name
    if not (where / "model.safetensors").is_file():
        names = sorted(p.name for p in root.glob("*") if (p / "model.safetensors").is_file()) if root.is_dir() else []
        raise CheckpointError(f"{where}: no such checkpoint; {root} holds {', '.join(names) or 'none'}")
    return where


# Task names that checkpoints written before the task packages carry, and the name of each now.
OLD_TASK_NAMES = {"tagging": "tag", "translation": "translate"}


def task_name(meta: dict) -> Optional[str]:
    """The task a checkpoint's task metadata names, old names mapped to today's."""
    name = meta.get("task") if isinstance(meta, dict) else None
    return OLD_TASK_NAMES.get(name, name) if isinstance(name, str) else None


def task_checkpoint(run: str | Path, task: str, checkpoint: str = "best",
                    label: Optional[str] = None) -> tuple[Path, dict]:
    """The checkpoint folder of a trained run and its task metadata, refusing a run of another
    task: ``checkpoint`` "best" (when it exists, else the last), "last", or the name of any
    checkpoint in ``run/checkpoints`` (a ``step_*`` folder, an average)."""
    run = Path(run)
    where = None
    if checkpoint == "best":
        where = run / "checkpoints" / "best"
        if not where.is_dir() and (run / "checkpoints" / ".old-best").is_dir():
            where = run / "checkpoints" / ".old-best"  # killed while replacing it
    elif checkpoint != "last":
        where = _named_checkpoint(run / "checkpoints", checkpoint)
    if where is None or not where.is_dir():
        where = resolve_checkpoint(run)
    meta = read_state(where).get("task", {})
    if task_name(meta) != task:
        raise CheckpointError(f"{where}: not a {label or task} checkpoint (task {meta.get('task')!r})")
    return where, meta


def newest_run(root: str | Path, prefix: str, command: str) -> Path:
    """The most recently trained ``<prefix>*`` run folder under ``root`` (for commands whose
    ``--run`` is optional); ``command`` names what makes such runs, for the error."""
    candidates = [p for p in Path(root).glob(f"{prefix}*") if (p / "checkpoints" / "last").is_file()]
    if not candidates:
        raise CheckpointError(f"no {prefix} run under {root}/; pass --run RUN (a folder of {command})")
    return max(candidates, key=lambda p: (p / "checkpoints" / "last").stat().st_mtime)


def run_task(run: str | Path) -> Optional[str]:
    """The task a run folder was trained for (its last checkpoint's ``task`` name), or None
    when it holds no readable checkpoint."""
    try:
        return task_name(read_state(run).get("task", {}))
    except (CheckpointError, OSError):
        return None


def average_checkpoints(root: str | Path, names: list[str], name: str = "average") -> Path:
    """Write checkpoint ``root/name`` whose weights are the element-wise mean of the weights of
    checkpoints ``root/<names>`` (checkpoint averaging: Vaswani et al. 2017; Popel & Bojar 2018,
    "Training Tips for the Transformer Model").  The training state (task metadata, optimizer,
    ...) is the last named checkpoint's, with ``averaged_from`` added; ``last`` is left alone.
    The checkpoints must hold the same tensors (names, shapes, dtypes); integer tensors must be
    equal in all of them."""
    root = Path(root)
    if len(names) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(names)}: {names}")
    if name in names or name in ("last", "best") or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name[0] == ".":
        raise CheckpointError(f"cannot write the average as {name!r}: choose a new plain name (not last or best, "
                              "not one of the averaged checkpoints)")
    folders = [_named_checkpoint(root, n) for n in names]
    total: dict = {}
    dtypes: dict = {}
    for folder in folders:
        _verify(folder, DATA_FILES, _checksums(folder))
        try:
            weights = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError, SafetensorError) as exc:
            raise CheckpointError(f"{folder / 'model.safetensors'}: unreadable weights ({exc})") from None
        if total and set(weights) != set(total):
            raise CheckpointError(f"{folder}: holds other tensors than {folders[0]} "
                                  f"(differing: {sorted(set(weights) ^ set(total))[:5]})")
        for key, tensor in weights.items():
            if key not in total:
                total[key] = tensor.double() if tensor.is_floating_point() else tensor
                dtypes[key] = tensor.dtype
                continue
            first = total[key]
            if tuple(tensor.shape) != tuple(first.shape):
                raise CheckpointError(f"{folder}: tensor {key} has shape {tuple(tensor.shape)}, "
                                      f"expected {tuple(first.shape)} as in {folders[0]}")
            if tensor.is_floating_point():
                first.add_(tensor.double())
            elif not torch.equal(tensor, first):
                raise CheckpointError(f"{folder}: integer tensor {key} differs from {folders[0]}'s; cannot average it")
    averaged = {k: (v / len(folders)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    data = _read_json(folders[-1])
    data["format_version"] = FORMAT_VERSION  # sealed with checksums below
    data["averaged_from"] = list(names)

    def fill(tmp: Path) -> None:
        save_file(averaged, str(tmp / "model.safetensors"))
        shutil.copy2(folders[-1] / "state.safetensors", tmp / "state.safetensors")
        with open(tmp / "state.json", "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        _seal(tmp)

    return _write_checkpoint(root, name, fill)
