"""Configs are dataclasses with defaults, overridden by a TOML or YAML file, then by flags."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any, Collection, Optional, Sequence

from rnnkit.errors import RnnkitError


class ConfigError(RnnkitError, ValueError):
    """A config file or value is malformed; the message names it."""


def _field_type(cls, field: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


# Upper bounds of the sizes a flag or config file may ask for: generous for any real run, and
# they stop a typo (an extra zero or three) from asking for terabytes.
MAX_UNITS = 65_536  # hidden and embedding sizes
MAX_LAYERS = 100  # stacked recurrent layers
MAX_BATCH = 65_536  # sequences, windows or pairs per batch
MAX_LENGTH = 1_000_000  # time steps: BPTT windows, horizons, seasons, generated lengths
MAX_VOCAB = 10_000_000  # vocabulary entries
MAX_SEED = 2**32 - 1  # what NumPy's legacy seeding takes


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a setting allows: numbers with a lower bound ``ge`` (>=) or ``gt`` (>) and an
    upper bound ``le`` (<=) or ``lt`` (<), each optional, or one of ``choices``.  NaN and
    infinities are refused for every float, bounded or not."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[tuple] = None

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None or self.le is not None and self.lt is not None:
            raise TypeError("a range takes one lower bound (ge or gt) and one upper bound (le or lt)")
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise TypeError("a range is either bounds or choices, not both")

    @property
    def low(self) -> Optional[float]:
        return self.ge if self.ge is not None else self.gt

    @property
    def high(self) -> Optional[float]:
        return self.le if self.le is not None else self.lt

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ``one of lstm, gru, rnn``; "" for no range."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        low, high = self.low, self.high
        if low is not None and high is not None:
            return (f"in {'[' if self.ge is not None else '('}{_number(low)}, "
                    f"{_number(high)}{']' if self.le is not None else ')'}")
        if low is not None:
            return f">= {_number(low)}" if self.ge is not None else f"> {_number(low)}"
        if high is not None:
            return f"<= {_number(high)}" if self.le is not None else f"< {_number(high)}"
        return ""

    def problem(self, value: Any) -> Optional[str]:
        """None when ``value`` is allowed, else what is wrong with it: ``must be >= 1, got 0``."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number{' ' + self.describe() if self.describe() else ''}, got {value}"
        if self.choices is not None:
            ok = value in self.choices
        else:
            ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                  and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if ok else f"must be {self.describe()}, got {value!r}"


def setting(default: Any, help: str, *, ge: Optional[float] = None, gt: Optional[float] = None,
            le: Optional[float] = None, lt: Optional[float] = None, choices: Optional[Sequence] = None) -> Any:
    """A config field: its default, the help text of its ``--flag``, and the values it allows
    (a :class:`Range`: bounds ``ge``/``gt`` below, ``le``/``lt`` above, or ``choices``), which
    the flag's parser and :func:`build` check for flags and config files alike."""
    metadata: dict[str, Any] = {"help": help}
    if any(bound is not None for bound in (ge, gt, le, lt, choices)):
        metadata["range"] = Range(ge, gt, le, lt, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata=metadata)


def _inherited(cls, name: str, key: str) -> Any:
    """Metadata ``key`` of field ``name`` from the nearest class in the MRO of ``cls`` that
    gives it, so a subclass that only changes a default keeps its base's help and range."""
    for klass in cls.__mro__:
        field = getattr(klass, "__dataclass_fields__", {}).get(name)
        if field is not None and field.metadata.get(key):
            return field.metadata[key]
    return None


def field_help(cls, name: str) -> str:
    """The help of field ``name`` of dataclass ``cls`` (a subclass keeps its base's)."""
    return _inherited(cls, name, "help") or ""


def field_range(cls, name: str) -> Optional[Range]:
    """The :class:`Range` of field ``name`` of dataclass ``cls`` (a subclass keeps its base's)."""
    return _inherited(cls, name, "range")


def bounded(kind: type, *, ge: Optional[float] = None, gt: Optional[float] = None, le: Optional[float] = None,
            lt: Optional[float] = None, choices: Optional[Sequence] = None):
    """An argparse ``type=`` that parses ``kind`` and refuses values outside the range, e.g.
    ``bounded(int, ge=1)``, ``bounded(float, gt=0, le=1)``: the error reads
    ``argument --top-k: must be >= 1, got 0``.  Floats are refused when not finite."""
    return _checked(kind, Range(ge, gt, le, lt, tuple(choices) if choices is not None else None))


def _checked(kind: type, allowed: Optional[Range]):
    allowed = allowed or Range()

    def parse(text: str):
        value = kind(text)  # a ValueError is argparse's "invalid int value: 'x'"
        problem = allowed.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__
    return parse


def check_settings(config):
    """``config`` (a config dataclass instance) when every field is inside its declared
    range; else a :class:`ConfigError` naming the field: ``lr must be > 0, got 0``."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or isinstance(value, bool):
            continue
        problem = (field_range(type(config), field.name) or Range()).problem(value)
        if problem:
            raise ConfigError(f"{field.name} {problem}")
    return config


_STATES_DEFAULT = re.compile(r"\bdefault:", re.IGNORECASE)


def flag_help(cls, field: dataclasses.Field) -> str:
    """The field's help, then ``(default: X)`` unless the help already states the default or
    the default is None (no value); escaped for argparse, which formats help with ``%``."""
    text = field_help(cls, field.name)
    default = field.default
    if default is not dataclasses.MISSING and default is not None and not _STATES_DEFAULT.search(text):
        text = f"{text} (default: {default})" if text else f"(default: {default})"
    allowed = field_range(cls, field.name)
    if allowed is not None and not (allowed.choices is not None and _names_all(text, allowed.choices)):
        text = f"{text} ({allowed.describe()})"
    return text.replace("%", "%%")


def _names_all(text: str, choices: tuple) -> bool:
    """Whether a help such as ``lstm | gru | rnn`` already lists every choice."""
    return all(re.search(rf"(?<!\w){re.escape(str(c))}(?!\w)", text) for c in choices)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, title: str, skip: Collection[str] = (),
                        description: Optional[str] = None) -> None:
    """One ``--field-name`` flag per field of ``cls`` (except the names in ``skip``), default
    None (meaning: not given); the help is the field's ``setting(..., help)`` text, its
    default and its range, which the flag's ``type=`` checks (:func:`bounded`)."""
    group = parser.add_argument_group(title, description)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = _field_type(cls, field)
        flag = "--" + field.name.replace("_", "-")
        help_text = flag_help(cls, field)
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            allowed = field_range(cls, field.name)
            parse = _checked(kind, allowed) if allowed is not None or kind is float else kind
            group.add_argument(flag, dest=field.name, type=parse, default=None, metavar=kind.__name__.upper(),
                               help=help_text)


def load_config_file(path: str) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        raw = p.read_bytes()
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "expected a TOML or YAML config") from None
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
    then flags that were given; each value of the right type and inside the field's range."""
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
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise ConfigError(
                    f"{source}: {section}.{field.name} must be {kind.__name__}, got {value!r}"
                )
            problem = (field_range(cls, field.name) or Range()).problem(value) if kind is not bool else None
            if problem:
                raise ConfigError(f"{source}: {section}.{field.name} {problem}")
            values[field.name] = value
    return cls(**values)


def unknown_sections(file_values: dict, known: set[str], source: str) -> Optional[str]:
    for key, value in file_values.items():
        if isinstance(value, dict) and key not in known:
            raise ConfigError(f"{source}: unknown section [{key}]; known: {', '.join(sorted(known))}")
    return None
