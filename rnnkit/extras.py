"""The optional dependencies (the extras of ``pyproject.toml``), checked when a command starts,
so that a missing one stops it before its work and not after (BLEU after the first epoch of
translation, the figures after every experiment of ``rnnkit lab``)."""

from __future__ import annotations

import importlib
from typing import Sequence


def require(modules: str | Sequence[str], extra: str, what: str, hint: str = "") -> None:
    """Import each of ``modules``; if any cannot be imported, raise ImportError naming them and
    the extra that installs them, e.g. ``rnnkit train translate needs sacrebleu: pip install
    'rnnkit[translate]'`` (``hint``, when given, follows in parentheses)."""
    names = [modules] if isinstance(modules, str) else list(modules)
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        message = f"{what} needs {' and '.join(missing)}: pip install 'rnnkit[{extra}]'"
        raise ImportError(message + (f" ({hint})" if hint else ""))
