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
rewrites the checksum file; safety against hostile files comes from never unpickling and from
checking everything read before using it:

- no link is followed: ``last``, a checkpoint folder and every entry in it are refused when
  they are symbolic links, and ``last`` must name a plain folder beside it, so nothing read
  lies outside the run folder (and no content of what a link points at reaches a message);
- the data files must be regular files (a FIFO would hang the reader); ``state.json`` is at
  most 256 MB and nested at most 64 deep (:mod:`rnnkit.train.record_schema`);
- ``format_version`` must be the integer 1 or 2; a checkpoint without ``checksums.sha256`` is
  read only when it says format 1 (written before checksums);
- the task metadata is checked against its task's schema (:func:`task_checkpoint` with the
  task's config classes), and :func:`build_checked` builds a model only after a dry build on
  PyTorch's meta device (no memory) matches the tensor names and shapes of ``model.safetensors``,
  read from its header: a checkpoint cannot ask for more memory than its weights occupy.

Every refusal is a CheckpointError of one line naming the file and, for a malformed record, the
field; it describes what it found by kind and size, never by content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from rnnkit.errors import CheckpointError
from rnnkit.train.record_schema import (
    MAX_JSON_BYTES,
    blame,
    check,
    check_task_meta,
    describe,
    key_name,
    read_json,
    refuse_link,
)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no checksums.sha256
CHECKSUMS = "checksums.sha256"
DATA_FILES = ("model.safetensors", "state.safetensors", "state.json")
FILES = DATA_FILES + (CHECKSUMS,)
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S+)$")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # a checkpoint folder: `last` names one
MAX_CHECKSUMS_BYTES = 64 * 2**10
MAX_POINTER_BYTES = 256
STATE_KEYS = ("format_version", "state", "averaged_from")  # the top level of state.json
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


_INT_KEY = re.compile(r"-?[0-9]{1,18}")


def _join_tensors(obj: Any, tensors: dict, file: Path, at: str = "state") -> Any:
    """The inverse of :func:`_split_tensors`, refusing (naming ``file`` and the field) a tensor
    reference that is malformed or names no tensor of ``state.safetensors`` and integer keys
    that are not integers.  ``obj`` is nested at most 64 deep (:func:`read_json`)."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if len(obj) != 1 or not isinstance(key, str):
                raise CheckpointError(f"{file}: {at}: expected a tensor reference {{\"__tensor__\": name}}, got "
                                      f"{describe(obj)}")
            if key not in tensors:
                shown = repr(key) if re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", key) else f"of {len(key)} characters"
                raise CheckpointError(f"{file}: {at}: refers to a tensor {shown} that state.safetensors lacks")
            return tensors[key]
        int_keys = obj.get("__int_keys__", False)
        if int_keys is not False and int_keys is not True:
            raise CheckpointError(f"{file}: {at}.__int_keys__: expected true, got {describe(int_keys)}")
        out = {}
        for k, v in obj.items():
            if k == "__int_keys__":
                continue
            if int_keys and not _INT_KEY.fullmatch(k):
                raise CheckpointError(f"{file}: {at}: expected integer keys (__int_keys__), got a key of "
                                      f"{len(k)} characters that is not one")
            out[int(k) if int_keys else k] = _join_tensors(v, tensors, file, f"{at}.{key_name(k)}")
        return out
    if isinstance(obj, list):
        return [_join_tensors(v, tensors, file, f"{at}[{i}]") for i, v in enumerate(obj)]
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
    """The checkpoint ``root/last`` names, None when there is none or it is not a plain name."""
    try:
        return _read_pointer(root / "last") if os.path.lexists(root / "last") else None
    except CheckpointError:
        return None


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
            refuse_link(root / source / file, " (copying a checkpoint)")
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
        if aside.is_symlink():  # never written by rnnkit: neither followed nor put in place
            aside.unlink()
        elif final.exists():
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
def _read_pointer(pointer: Path) -> str:
    """The checkpoint name in ``pointer`` (a ``last`` file): one plain folder name, from a
    regular file of a few bytes, never through a link; no content is ever shown."""
    refuse_link(pointer, " (the pointer file is a one-line file naming a checkpoint folder)")
    try:
        info = os.lstat(pointer)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{pointer}: not a regular file (expected a one-line file naming a checkpoint "
                                  "folder)")
        if info.st_size > MAX_POINTER_BYTES:
            raise CheckpointError(f"{pointer}: {info.st_size} bytes; expected the name of a checkpoint folder "
                                  f"(at most {MAX_POINTER_BYTES} bytes)")
        fd = os.open(pointer, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_POINTER_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{pointer}: unreadable pointer file ({exc.strerror})") from None
    name = data.decode("ascii", errors="replace").strip()
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise CheckpointError(f"{pointer}: expected the name of a checkpoint folder (one line of letters, digits, "
                              f"'_', '-' and '.'), got {len(data)} bytes that are not one")
    return name


def _check_folder(path: Path) -> None:
    """Refuse a checkpoint folder that is a link or holds one, or whose data files are not
    regular files, or whose ``state.json`` is larger than a state may be."""
    refuse_link(path, " (a checkpoint folder)")
    if not path.is_dir():
        return
    try:
        entries = {entry.name: entry.stat(follow_symlinks=False) for entry in os.scandir(path)}
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint folder ({exc.strerror})") from None
    for name, info in entries.items():
        if stat.S_ISLNK(info.st_mode):
            shown = name if name.isprintable() else ascii(name)
            raise CheckpointError(f"{path / shown}: a symbolic link in a checkpoint folder; rnnkit never writes "
                                  "one there, so it is not followed")
    for name in FILES:
        if name in entries and not stat.S_ISREG(entries[name].st_mode):
            raise CheckpointError(f"{path / name}: not a regular file")
    if "state.json" in entries and entries["state.json"].st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path / 'state.json'}: {entries['state.json'].st_size} bytes, more than the "
                              f"{MAX_JSON_BYTES} a checkpoint state may have")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder, a ``checkpoints`` folder or a checkpoint folder;
    refusing links (the ``checkpoints`` folder, ``last``, the checkpoint folder and what it
    holds) and a ``last`` that names anything but a folder beside it."""
    path = Path(path)
    for root in (path / "checkpoints", path):
        if root != path:
            refuse_link(root, " (the checkpoints folder)")
        pointer = root / "last"
        if os.path.lexists(pointer):
            name = _read_pointer(pointer)
            path = root / name
            if not os.path.lexists(path) and (root / f".old-{name}").is_dir():
                path = root / f".old-{name}"  # killed while replacing a same-named checkpoint
            break
    _check_folder(path)
    missing = [f for f in DATA_FILES if not (path / f).is_file()] if path.is_dir() else list(DATA_FILES)
    if len(missing) == len(DATA_FILES):
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or a checkpoint folder)")
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return path


def _checksums(path: Path) -> Optional[dict]:
    """{file: sha256} of a checkpoint folder; None for a format-1 checkpoint (no checksums)."""
    file = path / CHECKSUMS
    if not os.path.lexists(file):
        if _read_json(path)["format_version"] == 1:
            return None
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {CHECKSUMS} (only format 1 checkpoints, "
                              "written before checksums, have none)")
    refuse_link(file)
    try:
        if file.stat().st_size > MAX_CHECKSUMS_BYTES:
            raise CheckpointError(f"{file}: {file.stat().st_size} bytes, more than a checksum file may have")
        text = file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not ASCII text at byte {exc.start}"
        raise CheckpointError(f"{file}: unreadable checksum file ({reason})") from None
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _CHECKSUM_LINE.match(line)
        if not match:
            raise CheckpointError(f"{file}:{number}: expected '<sha256 hex>  <file name>', got a line of "
                                  f"{len(line)} characters that is not one")
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
    """The top level of ``path/state.json``: {"format_version": 1 or 2, "state": {...}} (and
    "averaged_from" for an average), read within the limits of :func:`read_json`."""
    file = path / "state.json"
    data = read_json(file, "checkpoint state")
    if not isinstance(data, dict) or not isinstance(data.get("state"), dict):
        raise CheckpointError(f"{file}: not an rnnkit checkpoint state (expected an object with 'state')")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{file}: format_version: expected an integer "
                              f"({' or '.join(map(str, READABLE_VERSIONS))}), got {describe(version)}")
    if version not in READABLE_VERSIONS:
        shown = version if abs(version) < 10**6 else "beyond any"
        raise CheckpointError(
            f"{file}: checkpoint format {shown}, this rnnkit reads formats {', '.join(map(str, READABLE_VERSIONS))}"
        )
    unknown = [key for key in data if key not in STATE_KEYS]
    if unknown:
        raise CheckpointError(f"{file}: {key_name(unknown[0])}: unknown key (expected only {', '.join(STATE_KEYS)})")
    check(file, data.get("averaged_from", []), [str], "averaged_from")
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
    return _join_tensors(data["state"], tensors, path / "state.json")


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
        raise CheckpointError(f"{path}: weights do not fit this model (missing {missing}, "
                              f"{len(unexpected)} tensors the model does not have)")


def _weight_shapes(weights: Path) -> dict:
    """{name: shape} of the tensors of a safetensors file, from its header (no tensor is read)."""
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{weights}: unreadable weights ({type(exc).__name__})") from None


def _declared_sizes(value: Any, at: str, out: list) -> list:
    """(field, number) of every integer and every list length in task metadata ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            _declared_sizes(item, f"{at}.{key_name(key)}", out)
    elif isinstance(value, list):
        out.append((at, len(value)))
    elif isinstance(value, int) and not isinstance(value, bool):
        out.append((at, value))
    return out


def _suspects(meta: dict, expected: tuple, actual: tuple) -> str:
    """The metadata fields whose numbers make ``expected`` differ from ``actual``: the ones
    equal to a differing dimension (else to a half, third or quarter of one: gates, directions)."""
    dims = {e for e, a in zip(expected, actual) if e != a} if len(expected) == len(actual) else set(expected)
    sizes = _declared_sizes(meta, "task", [])
    for factor in (1, 2, 3, 4):
        found = [field for field, n in sizes if n and n * factor in dims]
        if found:
            return " or ".join(dict.fromkeys(found[:3]))
    return "task.model"


def build_checked(where: str | Path, meta: dict, build) -> torch.nn.Module:
    """``build(meta["model"])``, the model of checkpoint ``where`` whose task metadata ``meta``
    was checked (:func:`task_checkpoint` with config classes), built for real only after a dry
    build on PyTorch's meta device (no memory) shows that it has exactly the tensors, by name
    and shape, of the checkpoint's ``model.safetensors`` (read from its header, after its
    checksum).  So the settings in ``state.json`` cannot ask for more memory than the weights
    occupy on disk; a disagreement is a CheckpointError naming the field."""
    where = Path(where)
    file, weights = where / "state.json", where / "model.safetensors"
    _verify(where, ("model.safetensors",), _checksums(where))
    config = meta["model"]
    try:
        with torch.device("meta"):
            dry = build(dict(config))
    except Exception as exc:  # noqa: BLE001 - whatever the model's own checks raise
        culprit = blame(lambda values: _dry_build(build, values), config)
        raise CheckpointError(f"{file}: task.model{'.' + culprit if culprit else ''}: these settings do not make "
                              f"a model ({type(exc).__name__})") from None
    declared = dry.state_dict(keep_vars=True)
    actual = _weight_shapes(weights)
    aliases: dict = {}  # tied weights (one tensor, several names) are stored once
    for name, tensor in declared.items():
        aliases.setdefault(id(tensor), []).append(name)
    missing = [names[0] for names in aliases.values() if not any(n in actual for n in names)]
    if missing:
        raise CheckpointError(f"{file}: task.model: declares a model with {len(missing)} tensors that "
                              f"{weights.name} lacks ({', '.join(missing[:3])})")
    unexpected = [name for name in actual if name not in declared]
    if unexpected:
        raise CheckpointError(f"{file}: task.model: declares a model without {len(unexpected)} of the tensors "
                              f"of {weights.name}")
    for name, tensor in declared.items():
        if name in actual and tuple(tensor.shape) != actual[name]:
            raise CheckpointError(f"{file}: {_suspects(meta, tuple(tensor.shape), actual[name])}: declares a model "
                                  f"whose {name} has shape {tuple(tensor.shape)}, but {weights.name} holds "
                                  f"{actual[name]}")
    return build(dict(config))


def _dry_build(build, values: dict) -> None:
    with torch.device("meta"):
        build(values)


def _plain_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise CheckpointError(f"{what}: expected the plain name of a checkpoint folder (letters, digits, '_', '-', "
                              "'.'), not a path")
    return name


def _named_checkpoint(root: Path, name: str) -> Path:
    """Checkpoint ``root/name``, or a clear error listing the ones there are."""
    where = root / _plain_name(name, f"{root}: checkpoint {name[:60]!r}")
    if not (where / "model.safetensors").is_file():
        names = sorted(p.name for p in root.glob("*") if (p / "model.safetensors").is_file()) if root.is_dir() else []
        raise CheckpointError(f"{where}: no such checkpoint; {root} holds {', '.join(names) or 'none'}")
    _check_folder(where)
    return where


# Task names that checkpoints written before the task packages carry, and the name of each now.
OLD_TASK_NAMES = {"tagging": "tag", "translation": "translate"}


def task_name(meta: dict) -> Optional[str]:
    """The task a checkpoint's task metadata names, old names mapped to today's."""
    name = meta.get("task") if isinstance(meta, dict) else None
    return OLD_TASK_NAMES.get(name, name) if isinstance(name, str) else None


def task_checkpoint(run: str | Path, task: str, checkpoint: str = "best",
                    label: Optional[str] = None, **configs: type) -> tuple[Path, dict]:
    """The checkpoint folder of a trained run and its task metadata, refusing a run of another
    task: ``checkpoint`` "best" (when it exists, else the last), "last", or the name of any
    checkpoint in ``run/checkpoints`` (a ``step_*`` folder, an average).  With ``configs`` (the
    task's config classes by metadata key: ``model=``, ``data=``, ...) the metadata is checked
    against the task's schema (:func:`~rnnkit.train.record_schema.check_task_meta`)."""
    run = Path(run)
    refuse_link(run / "checkpoints", " (the checkpoints folder)")
    where = None
    if checkpoint == "best":
        where = run / "checkpoints" / "best"
        if not where.is_dir() and (run / "checkpoints" / ".old-best").is_dir():
            where = run / "checkpoints" / ".old-best"  # killed while replacing it
    elif checkpoint != "last":
        where = _named_checkpoint(run / "checkpoints", checkpoint)
    if where is None or not (where.is_dir() or where.is_symlink()):
        where = resolve_checkpoint(run)
    meta = read_state(where).get("task", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where / 'state.json'}: task: expected an object (the task metadata), got "
                              f"{describe(meta)}")
    if task_name(meta) != task:
        found = meta.get("task")
        plain = isinstance(found, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", found)
        shown = repr(found) if plain else describe(found)
        raise CheckpointError(f"{where}: not a {label or task} checkpoint (task {shown})")
    if configs:
        check_task_meta(where, meta, task, **configs)
    return where, meta


def newest_run(root: str | Path, prefix: str, command: str) -> Path:
    """The most recently trained ``<prefix>*`` run folder under ``root`` (for commands whose
    ``--run`` is optional); ``command`` names what makes such runs, for the error."""
    def finished(run: Path) -> Optional[Path]:
        """What marks a trained run: its last checkpoint, or an ensemble's record (forecasting)."""
        for marker in (run / "checkpoints" / "last", run / "forecast.json"):
            if marker.is_file() and not marker.is_symlink():
                return marker
        return None

    candidates = [(marker.stat().st_mtime, run) for run in Path(root).glob(f"{prefix}-*")
                  if (marker := finished(run)) is not None]
    if not candidates:
        raise CheckpointError(f"no {prefix} run under {root}/; pass --run RUN (a folder of {command})")
    return max(candidates)[1]


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
