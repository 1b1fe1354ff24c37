"""Checkpoints: safetensors for tensors, JSON for everything else — nothing is pickled, so
loading a checkpoint never executes code from it.

A checkpoint is a folder ``checkpoints/step_<step, 8 digits>`` (``step_00001965`` after step
1965), or ``checkpoints/best``, holding

- ``model.safetensors``   the model's weights,
- ``state.safetensors``   optimizer tensors, RNG states, a carried recurrent state,
- ``state.json``          format version, step, config, vocabulary, scalars of the
                          optimizer/scheduler, Python and NumPy RNG states.

It is written into a temporary folder and renamed into place, and ``checkpoints/last`` (a
one-line file naming the newest folder) is replaced atomically afterwards, so a write killed
at any moment leaves the previous checkpoint complete and named by ``last``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from rnnkit.errors import CheckpointError

FORMAT_VERSION = 1
FILES = ("model.safetensors", "state.safetensors", "state.json")


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


def save_checkpoint(root: Path, name: str, model: torch.nn.Module, state: dict, keep: int = 2) -> Path:
    """Write checkpoint ``root/name`` atomically and point ``root/last`` at it.

    ``state`` may nest dicts/lists of tensors and JSON values.  Older ``step_*`` folders beyond
    the newest ``keep`` are removed (other names, such as ``best``, are kept).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors: dict = {}
        meta = _split_tensors(state, "state", tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        with open(tmp / "state.json", "w", encoding="utf-8") as handle:
            json.dump({"format_version": FORMAT_VERSION, "state": meta}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = _install(tmp, root / name)
    _write_pointer(root / "last", name)
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def copy_checkpoint(root: Path, source: str, name: str) -> Path:
    """Copy checkpoint ``root/source`` to ``root/name`` (e.g. "best") atomically, leaving
    ``last`` alone: a file copy, not a second serialization."""
    root = Path(root)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for file in FILES:
            shutil.copy2(root / source / file, tmp / file)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _install(tmp, root / name)


def _install(tmp: Path, final: Path) -> Path:
    """Move a completely written temporary folder into place under its final name."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _write_pointer(path: Path, name: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run folder, a ``checkpoints`` folder or a checkpoint folder."""
    path = Path(path)
    for root in (path / "checkpoints", path):
        pointer = root / "last"
        if pointer.is_file():
            path = root / pointer.read_text(encoding="utf-8").strip()
            break
    missing = [f for f in FILES if not (path / f).is_file()] if path.is_dir() else list(FILES)
    if len(missing) == len(FILES):
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or a checkpoint folder)")
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return path


def read_state(path: str | Path) -> dict:
    """The ``state`` dict of a checkpoint folder (tensors restored), without the model."""
    path = resolve_checkpoint(path)
    try:
        with open(path / "state.json", encoding="utf-8") as handle:
            data = json.load(handle)
        tensors = load_file(str(path / "state.safetensors"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {data.get('format_version')!r}, this rnnkit reads {FORMAT_VERSION}"
        )
    return _join_tensors(data["state"], tensors)


def load_weights(model: torch.nn.Module, path: str | Path, device: Optional[torch.device] = None) -> None:
    """Load a checkpoint's weights into ``model`` (strict: names and shapes must match)."""
    path = resolve_checkpoint(path)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False,
                                         device=str(device) if device else "cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit this model ({exc})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")


def task_checkpoint(run: str | Path, task: str, checkpoint: str = "best",
                    label: Optional[str] = None) -> tuple[Path, dict]:
    """The checkpoint folder of a trained run ("best" when it exists, else "last") and its
    task metadata, refusing a run of another task."""
    run = Path(run)
    where = run / "checkpoints" / "best" if checkpoint == "best" else None
    if where is None or not where.is_dir():
        where = resolve_checkpoint(run)
    meta = read_state(where).get("task", {})
    if meta.get("task") != task:
        raise CheckpointError(f"{where}: not a {label or task} checkpoint (task {meta.get('task')!r})")
    return where, meta


def newest_run(root: str | Path, prefix: str, command: str) -> Path:
    """The most recently trained ``<prefix>*`` run folder under ``root`` (for commands whose
    ``--run`` is optional); ``command`` names what makes such runs, for the error."""
    candidates = [p for p in Path(root).glob(f"{prefix}*") if (p / "checkpoints" / "last").is_file()]
    if not candidates:
        raise CheckpointError(f"no {prefix} run under {root}/; pass --run RUN (a folder of {command})")
    return max(candidates, key=lambda p: (p / "checkpoints" / "last").stat().st_mtime)
