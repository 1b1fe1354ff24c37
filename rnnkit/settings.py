"""Configs are dataclasses with defaults, overridden by a TOML or YAML file, then by flags."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any, Optional

from rnnkit.errors import RnnkitError


class ConfigError(RnnkitError, ValueError):
    """A config file or value is malformed; the message names it."""


def _field_type(cls, field: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


@functools.lru_cache(maxsize=None)
def field_comments(cls) -> dict[str, str]:
    """The comment written after each field of a dataclass (``name: type = default  # text``),
    read from its source; empty when the source is not available."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            match = _FIELD_COMMENT.match(line)
            if match:
                comments[match.group(1)] = match.group(2).replace("%", "%%")  # argparse formats help with %
    return comments


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    """One ``--field-name`` flag per field of ``cls``, default None (meaning: not given); the
    help is the comment written after the field in its dataclass, and the default."""
    group = parser.add_argument_group(title)
    comments = field_comments(cls)
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        flag = "--" + field.name.replace("_", "-")
        text = f"{comments[field.name]} " if field.name in comments else ""
        help_text = f"{text}(default: {field.default})"
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=None, metavar=kind.__name__.upper(),
                               help=help_text)


def load_config_file(path: str) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{p}: YAML configs need PyYAML (pip install pyyaml)") from None
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{p}: config files must end in .toml, .yaml or .yml")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{p}: not a valid config file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a table of settings at the top level")
    return data


def build(cls, file_values: dict, flags: argparse.Namespace, section: str, source: str = "config"):
    """An instance of ``cls``: defaults, then ``file_values[section]`` (or top-level keys),
    then flags that were given."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    table = file_values.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    flat = {k: v for k, v in file_values.items() if k in names and not isinstance(v, dict)}
    for key, value in {**flat, **table}.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown setting {section}.{key}; known: {', '.join(sorted(names))}")
        values[key] = value
    for name in names:
        given = getattr(flags, name, None)
        if given is not None:
            values[name] = given
    for field in dataclasses.fields(cls):
        if field.name in values and values[field.name] is not None:
            kind = _field_type(cls, field)
            value = values[field.name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind):
                raise ConfigError(
                    f"{source}: {section}.{field.name} must be {kind.__name__}, got {value!r}"
                )
            values[field.name] = value
    return cls(**values)


def unknown_sections(file_values: dict, known: set[str], source: str) -> Optional[str]:
    for key, value in file_values.items():
        if isinstance(value, dict) and key not in known:
            raise ConfigError(f"{source}: unknown section [{key}]; known: {', '.join(sorted(known))}")
    return None
