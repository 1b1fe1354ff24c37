"""Configs are dataclasses with defaults, overridden by a TOML or YAML file, then by flags."""

from __future__ import annotations

import argparse
import dataclasses
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


def setting(default: Any, help: str) -> Any:
    """A config field: its default, and the help text of its ``--flag``."""
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(cls, name: str) -> str:
    """The help of field ``name`` of dataclass ``cls``: from the nearest class in its MRO
    that gives one, so a subclass that only changes a default keeps its base's help."""
    for klass in cls.__mro__:
        field = getattr(klass, "__dataclass_fields__", {}).get(name)
        if field is not None and field.metadata.get("help"):
            return field.metadata["help"]
    return ""


_STATES_DEFAULT = re.compile(r"\bdefault:", re.IGNORECASE)


def flag_help(cls, field: dataclasses.Field) -> str:
    """The field's help, then ``(default: X)`` unless the help already states the default or
    the default is None (no value); escaped for argparse, which formats help with ``%``."""
    text = field_help(cls, field.name)
    default = field.default
    if default is not dataclasses.MISSING and default is not None and not _STATES_DEFAULT.search(text):
        text = f"{text} (default: {default})" if text else f"(default: {default})"
    return text.replace("%", "%%")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str) -> None:
    """One ``--field-name`` flag per field of ``cls``, default None (meaning: not given); the
    help is the field's ``setting(..., help)`` text and its default."""
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        flag = "--" + field.name.replace("_", "-")
        help_text = flag_help(cls, field)
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
