"""What the JSON records of a run may hold, and the checks every loader runs on them first.

A run folder's records (a checkpoint's ``state.json``, ``config.json``, a forecast run's
``forecast.json``) are read as hostile until checked, because a run folder is something people
download and share: each is read with :func:`read_json` (a regular file, not a link, at most
:data:`MAX_JSON_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep), then checked against its
schema here before any loader indexes it, builds a vocabulary or allocates a model.  The
schema of a config section is its dataclass: the fields (no other key), the types of their
annotations and the ranges of their ``setting(..., ge=, le=, choices=)``; a model config's
integers are sizes, at most :data:`MAX_SIZE`.

Every refusal is one CheckpointError line ``<file>: <field>: expected ..., got ...`` whose
"got" says the kind and size of what was there (``a string of 12 characters``), never the
value: no content of a file, or of what a link pointed at, reaches a message or a log.

A schema is plain data: ``str``, ``bool``, ``int`` (within +-2**53), ``float`` (finite);
``[spec]`` a list; ``{"key": spec}`` an object with exactly those keys (:class:`Obj` for
optional and extra keys); a config dataclass; or :class:`Number`, :class:`Choice`,
:class:`Maybe`, :class:`MapOf`, :class:`Check`, :class:`Given`.
"""

from __future__ import annotations

import abc
import base64
import binascii
import dataclasses
import functools
import json
import math
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any, Callable, Optional

from rnnkit.data.text import LEVELS, UNK
from rnnkit.data.vocab import SPECIALS
from rnnkit.errors import CheckpointError
from rnnkit.settings import field_range

MAX_JSON_BYTES = 256 * 2**20  # state.json, config.json, forecast.json
MAX_JSON_DEPTH = 64  # nested objects and lists; rnnkit writes fewer than 10
MAX_SIZE = 10**6  # every integer of a model config (sizes, layers), bounded before any allocation
MAX_INT = 2**53  # any other integer: what JSON carries exactly
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_RUN_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


# ------------------------------------------------------------------------------- reading
def describe(value: Any) -> str:
    """What a JSON value is, without its content: ``a string of 12 characters``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return f"a string of {_count(len(value), 'character')}"
    if isinstance(value, list):
        return f"a list of {_count(len(value), 'item')}"
    if isinstance(value, dict):
        return f"an object of {_count(len(value), 'key')}"
    return f"a {type(value).__name__}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def key_name(key: Any) -> str:
    """A key as a message may show it: itself when it looks like a field name, else its kind."""
    return key if isinstance(key, str) and _KEY.fullmatch(key) else f"<a key of {len(str(key))} characters>"


def refuse_link(path: Path, what: str = "") -> None:
    """CheckpointError when ``path`` is a symbolic link (rnnkit never writes one in a run)."""
    if os.path.islink(path):
        raise CheckpointError(f"{path}: a symbolic link; rnnkit never writes links in a run{what}, so it is "
                              "not followed")


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def read_json(file: str | Path, what: str = "record", limit: int = MAX_JSON_BYTES, missing: str = "") -> Any:
    """The JSON value of ``file``: a regular file (not a link), at most ``limit`` bytes, UTF-8,
    nested at most :data:`MAX_JSON_DEPTH` deep; else CheckpointError naming the file (and
    saying ``missing`` when there is none)."""
    file = Path(file)
    try:
        info = os.lstat(file)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing{'; ' + missing if missing else ''}") from None
    except OSError as exc:
        raise CheckpointError(f"{file}: unreadable {what} ({exc.strerror})") from None
    refuse_link(file)
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{file}: not a regular file")
    if info.st_size > limit:
        raise CheckpointError(f"{file}: {info.st_size} bytes, more than the {limit} a {what} may have")
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise CheckpointError(f"{file}: unreadable {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise CheckpointError(f"{file}: more than the {limit} bytes a {what} may have")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{file}: unreadable {what} (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: unreadable {what} (not JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno})") from None
    except RecursionError:
        raise CheckpointError(f"{file}: unreadable {what} (nested deeper than {MAX_JSON_DEPTH} levels)") from None
    except ValueError:  # an integer of thousands of digits
        raise CheckpointError(f"{file}: unreadable {what} (a number too long to read)") from None
    if isinstance(value, (dict, list)) and _too_deep(value, MAX_JSON_DEPTH):
        raise CheckpointError(f"{file}: unreadable {what} (nested deeper than {MAX_JSON_DEPTH} levels)")
    return value


def run_path(run: str | Path, relative: str) -> Path:
    """``run/relative`` for a relative path a run's record names (checked by the schema to be
    plain: no ``..``, no leading ``/`` or ``.``), refusing a link on the way or a path that
    resolves outside the run folder."""
    run = Path(run)
    path = run
    for part in relative.split("/"):
        path = path / part
        refuse_link(path)
    if not path.resolve().is_relative_to(run.resolve()):
        raise CheckpointError(f"{path}: outside the run folder {run}")
    return path


# ------------------------------------------------------------------------------- schemas
class _Bad(Exception):
    """A value that does not fit its schema: where (a field path) and what was expected."""

    def __init__(self, at: str, text: str) -> None:
        super().__init__(at, text)
        self.at, self.text = at, text


def _at(at: str, key: Any) -> str:
    name = f"[{key}]" if isinstance(key, int) else key_name(key)
    return f"{at}{name}" if isinstance(key, int) or not at else f"{at}.{name}"


class Spec(abc.ABC):
    what = "a value"

    @abc.abstractmethod
    def check(self, value: Any, at: str) -> None:
        """Raise :class:`_Bad` naming ``at`` when ``value`` does not fit."""

    def bad(self, value: Any, at: str, detail: str = "") -> _Bad:
        return _Bad(at, f"expected {self.what}, got {describe(value)}{detail}")


class Number(Spec):
    """An integer (``kind`` int; booleans are not) or a number (``kind`` float; integers too)
    within the bounds given (``ge``/``gt`` below, ``le``/``lt`` above); finite unless ``finite``
    is False."""

    def __init__(self, kind: type = float, ge=None, gt=None, le=None, lt=None, finite: bool = True) -> None:
        self.kind, self.ge, self.gt, self.le, self.lt, self.finite = kind, ge, gt, le, lt, finite
        bounds = [f">= {ge}" if ge not in (None, -MAX_INT) else "", f"> {gt}" if gt is not None else "",
                  f"<= {le}" if le not in (None, MAX_INT) else "", f"< {lt}" if lt is not None else ""]
        text = " and ".join(b for b in bounds if b) or ("within +-2**53" if MAX_INT in (le, -(ge or 0)) else "")
        self.what = ("an integer" if kind is int else "a finite number" if finite else "a number") + (
            f" {text}" if text else "")

    def check(self, value: Any, at: str) -> None:
        ok_type = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            raise self.bad(value, at)
        if isinstance(value, float) and not math.isfinite(value):
            if self.finite:
                raise self.bad(value, at)
            return
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)):
            raise self.bad(value, at, " outside that range")


class Choice(Spec):
    def __init__(self, *values: Any) -> None:
        self.values = values
        self.what = "one of " + ", ".join(str(v) for v in values)

    def check(self, value: Any, at: str) -> None:
        if isinstance(value, bool) != any(isinstance(v, bool) for v in self.values) or value not in self.values:
            raise self.bad(value, at)


class _Type(Spec):
    def __init__(self, kind: type, what: str) -> None:
        self.kind, self.what = kind, what

    def check(self, value: Any, at: str) -> None:
        if not isinstance(value, self.kind):
            raise self.bad(value, at)


class Maybe(Spec):
    """null or ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = as_spec(spec)
        self.what = f"null or {self.spec.what}"

    def check(self, value: Any, at: str) -> None:
        if value is not None:
            self.spec.check(value, at)


class ListOf(Spec):
    def __init__(self, spec: Any) -> None:
        self.spec = as_spec(spec)
        self.what = f"a list, each item {self.spec.what}"

    def check(self, value: Any, at: str) -> None:
        if not isinstance(value, list):
            raise self.bad(value, at)
        for i, item in enumerate(value):
            self.spec.check(item, _at(at, i))


class MapOf(Spec):
    """An object of any string keys, each value a ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = as_spec(spec)
        self.what = f"an object, each value {self.spec.what}"

    def check(self, value: Any, at: str) -> None:
        if not isinstance(value, dict):
            raise self.bad(value, at)
        for key, item in value.items():
            self.spec.check(item, _at(at, key))


class Obj(Spec):
    """An object with the ``required`` keys, perhaps the ``optional`` ones, and no other key
    unless ``extra`` (a record whose other keys no loader reads)."""

    def __init__(self, required: dict, optional: Optional[dict] = None, extra: bool = False) -> None:
        self.required = {k: as_spec(v) for k, v in required.items()}
        self.optional = {k: as_spec(v) for k, v in (optional or {}).items()}
        self.extra = extra
        self.what = "an object with " + ", ".join(self.required) if self.required else "an object"

    def check(self, value: Any, at: str) -> None:
        if not isinstance(value, dict):
            raise self.bad(value, at)
        for key, spec in self.required.items():
            if key not in value:
                raise _Bad(_at(at, key), f"missing (expected {spec.what})")
        known = {**self.required, **self.optional}
        for key, item in value.items():
            if key in known:
                known[key].check(item, _at(at, key))
            elif not self.extra:
                raise _Bad(_at(at, key), f"unknown key (expected only {', '.join(known)})")


class Check(Spec):
    """``spec``, and then ``test(value)`` true: ``what`` says what that means."""

    def __init__(self, spec: Any, test: Callable[[Any], bool], what: str) -> None:
        self.spec, self.test, self.what = as_spec(spec), test, what

    def check(self, value: Any, at: str) -> None:
        self.spec.check(value, at)
        if not self.test(value):
            raise _Bad(at, f"expected {self.what}")


def blame(make: Callable[[dict], Any], values: dict) -> Optional[str]:
    """The key of ``values`` whose removal (its default instead) lets ``make(values)`` succeed:
    the setting to name when ``make`` refuses them; None when no single one does."""
    for key in values:
        try:
            make({k: v for k, v in values.items() if k != key})
        except Exception:  # noqa: BLE001 - any failure means this key alone is not the cause
            continue
        return key
    return None


class Config(Spec):
    """A config dataclass as JSON: keys among its fields (missing ones take their defaults),
    each of its annotated type and inside its ``setting`` range; with ``sized`` (a model
    config) every integer also within 0..:data:`MAX_SIZE`.  ``overrides``: field -> schema."""

    def __init__(self, cls: type, sized: bool = False, **overrides: Any) -> None:
        self.cls, self.sized = cls, sized
        self.fields = _field_specs(cls, sized)
        self.fields.update({k: as_spec(v) for k, v in overrides.items()})
        self.what = f"an object of {cls.__name__} settings"

    def check(self, value: Any, at: str) -> None:
        if not isinstance(value, dict):
            raise self.bad(value, at)
        for key, item in value.items():
            if key not in self.fields:
                raise _Bad(_at(at, key), f"not a setting of {self.cls.__name__} (it has {', '.join(self.fields)})")
            self.fields[key].check(item, _at(at, key))
        for field in dataclasses.fields(self.cls):
            if field.init and field.name not in value and field.default is dataclasses.MISSING \
                    and field.default_factory is dataclasses.MISSING:
                raise _Bad(_at(at, field.name), f"missing (expected {self.fields[field.name].what})")
        try:
            self.cls(**value)
        except Exception as exc:  # noqa: BLE001 - the dataclass's own checks, whatever they raise
            culprit = blame(lambda values: self.cls(**values), value)
            raise _Bad(_at(at, culprit) if culprit else at,
                       f"not valid {self.cls.__name__} settings ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=None)
def _field_specs_cached(cls: type, sized: bool) -> tuple:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _hint_spec(cls, f.name, hints[f.name], sized)) for f in dataclasses.fields(cls) if f.init)


def _field_specs(cls: type, sized: bool) -> dict:
    return dict(_field_specs_cached(cls, sized))


def _hint_spec(cls: type, name: str, hint: Any, sized: bool) -> Spec:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return Maybe(_hint_spec(cls, name, args[0], sized))
    if hint is list or typing.get_origin(hint) is list:
        return ListOf(args[0] if args else Number(float))
    allowed = field_range(cls, name)
    if allowed is not None and allowed.choices is not None:
        return Choice(*allowed.choices)
    bounds = {k: getattr(allowed, k) for k in ("ge", "gt", "le", "lt")} if allowed is not None else {}
    if hint is bool:
        return as_spec(bool)
    if hint is str:
        return as_spec(str)
    if hint is int:  # the setting's range, and within 0..MAX_SIZE (a model config) or +-MAX_INT
        low, high = (0, MAX_SIZE) if sized else (-MAX_INT, MAX_INT)
        ge, gt, le, lt = (bounds.get(k) for k in ("ge", "gt", "le", "lt"))
        return Number(int, ge=max(low, ge) if ge is not None else None if gt is not None and gt >= low else low,
                      gt=gt, le=min(high, le) if le is not None else None if lt is not None and lt <= high else high,
                      lt=lt)
    if hint is float:
        return Number(float, **bounds)
    raise TypeError(f"{cls.__name__}.{name}: no schema for a field of type {hint}")


class Given(Spec):
    """In a schema table: the config dataclass the caller passes under this key (``sized``: a
    model config), with ``overrides`` of some fields' schemas."""

    def __init__(self, sized: bool = False, **overrides: Any) -> None:
        self.sized, self.overrides = sized, overrides

    def check(self, value: Any, at: str) -> None:
        # check() replaces every Given by the Config of its class before checking anything
        raise TypeError(f"{at or 'a schema'}: no config class was given for this Given(); pass it to check()")


def as_spec(spec: Any) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if spec is str:
        return _Type(str, "a string")
    if spec is bool:
        return _Type(bool, "a boolean")
    if spec is int:
        return Number(int, ge=-MAX_INT, le=MAX_INT)
    if spec is float:
        return Number(float)
    if isinstance(spec, list) and len(spec) == 1:
        return ListOf(spec[0])
    if isinstance(spec, dict):
        return Obj(spec)
    if dataclasses.is_dataclass(spec) and isinstance(spec, type):
        return Config(spec)
    raise TypeError(f"not a schema: {spec!r}")


def _given(schema: Any, configs: dict, key: str = "") -> Any:
    """``schema`` with each :class:`Given` replaced by a :class:`Config` of the class passed
    under its key."""
    if isinstance(schema, Given):
        if key not in configs:
            raise TypeError(f"this schema needs the config class of {key!r}")
        return Config(configs[key], schema.sized, **schema.overrides)
    if isinstance(schema, Obj):
        return Obj({k: _given(v, configs, k) for k, v in schema.required.items()},
                   {k: _given(v, configs, k) for k, v in schema.optional.items()}, schema.extra)
    return schema


def check(file: str | Path, value: Any, schema: Any, at: str = "", **configs: type) -> Any:
    """``value`` (read from ``file``) when it fits ``schema`` (whose :class:`Given` keys take
    the config classes ``configs``); else CheckpointError ``file: field: expected ...``."""
    try:
        as_spec(_given(as_spec(schema), configs)).check(value, at)
    except _Bad as bad:
        raise CheckpointError(f"{file}: {bad.at + ': ' if bad.at else ''}{bad.text}") from None
    return value


def read_record(file: str | Path, schema: Any, what: str = "record", missing: str = "", **configs: type) -> Any:
    """:func:`read_json` of ``file``, checked against ``schema`` (see :func:`check`)."""
    return check(file, read_json(file, what, missing=missing), schema, **configs)


# ------------------------------------------------------------------------------- the schemas
def _distinct(items: list) -> bool:
    return len(set(items)) == len(items)


def _subword_model(text: str) -> bool:
    """Whether ``text`` is a sentencepiece model in base64 (parsed when sentencepiece is
    installed; without it the tokenizer itself says that it needs it)."""
    try:
        proto = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        import sentencepiece
    except ImportError:
        return True
    try:
        sentencepiece.SentencePieceProcessor(model_proto=proto)
    except (RuntimeError, ValueError, TypeError, OSError):
        return False
    return True


LM_VOCAB = {"itos": Check([str], lambda v: _distinct(v) and UNK in v, f"a list of distinct tokens with {UNK}"),
            "level": Choice(*LEVELS)}
TOKEN_VOCAB = {"itos": Check([str], lambda v: tuple(v[:4]) == SPECIALS and _distinct(v),
                             f"a list of distinct tokens starting with {' '.join(SPECIALS)}")}
TAG_VOCABULARIES = Obj({"words": TOKEN_VOCAB, "chars": TOKEN_VOCAB, "lower": bool,
                        "tags": Check([str], _distinct, "a list of distinct tags")},
                       {"counts": Maybe(MapOf(Number(int, ge=0, le=MAX_INT)))})
CLASSIFY_VOCAB = {"words": TOKEN_VOCAB, "chars": TOKEN_VOCAB, "lower": bool,
                  "labels": Check([str], lambda v: len(v) >= 2 and _distinct(v),
                                  "a list of at least 2 distinct labels")}
TOKENIZER = Check(Obj({"kind": Choice("word", "subword"), "lower": bool}, {"model": str}),
                  lambda t: ("model" in t) == (t["kind"] == "subword") and (t["kind"] == "word"
                                                                           or _subword_model(t["model"])),
                  "a word tokenizer, or a subword tokenizer with its sentencepiece model in base64")
NORMALIZER = {"mean": [float], "std": Check([float], lambda v: all(x > 0 for x in v), "a list of positive numbers")}
SIZE = Number(int, ge=1, le=MAX_SIZE)


def _same_sizes(meta: dict) -> bool:
    return len(meta["normalizer"]["mean"]) == len(meta["normalizer"]["std"]) == meta["input_size"]


# Each task's metadata in a checkpoint's state.json ("task": task.meta()): the required keys,
# the optional ones, and checks across keys ((field, test, what)).  Given(): the config
# dataclass the task's loader passes for that key.
TASK_META: dict[str, tuple[dict, dict, list]] = {
    "lm": ({"vocab": LM_VOCAB, "model": Given(sized=True), "data": Given()}, {}, []),
    "tag": ({"vocab": TAG_VOCABULARIES, "model": Given(sized=True), "data": Given()}, {}, []),
    "translate": ({"src_vocab": TOKEN_VOCAB, "tgt_vocab": TOKEN_VOCAB, "src_tokenizer": TOKENIZER,
                   "tgt_tokenizer": TOKENIZER, "model": Given(sized=True), "data": Given()}, {}, []),
    "speech": ({"input_size": SIZE, "normalizer": NORMALIZER, "model": Given(sized=True), "data": Given()}, {},
               [("normalizer", _same_sizes, "as many means and deviations as input_size")]),
    "forecast": ({"input_size": SIZE, "outputs": SIZE, "model": Given(sized=True)},
                 {"transform": Given(), "kind": Choice("global"), "horizon": SIZE, "period": SIZE, "window": SIZE,
                  "log": bool}, []),
    "classify": ({"vocab": CLASSIFY_VOCAB, "model": Given(sized=True), "data": Given()}, {}, []),
}
COMMON_META = {"task": str}, {"seed": int, "source": str}

RUN_PATH = Check(str, lambda p: bool(_RUN_PATH.fullmatch(p)) and ".." not in p.split("/"),
                 "a plain relative path inside the run folder")
# config.json of every run: the three config sections (the task's own dataclasses)
RUN_CONFIG = Obj({"data": Given(), "model": Given(sized=True), "train": Given()}, {"task": str})
# forecast.json: the keys its loader reads; the rest is the run's report
FORECAST_RECORD = Obj({"members": Check([RUN_PATH], bool, "a non-empty list of member folders"),
                       "transform": Given()},
                      {"series": Maybe(RUN_PATH), "test": MapOf(MapOf(Maybe(Number(float, finite=False))))},
                      extra=True)


def check_task_meta(where: str | Path, meta: Any, task: str, **configs: type) -> dict:
    """The task metadata ``meta`` of checkpoint ``where`` when it fits the schema of ``task``
    (:data:`TASK_META`; ``configs``: the task's config classes by key, e.g. ``model=`` and
    ``data=``); else CheckpointError naming ``state.json`` and the field."""
    required, optional, across = TASK_META[task]
    file = Path(where) / "state.json"
    schema = Obj({**COMMON_META[0], **required}, {**COMMON_META[1], **optional})
    check(file, meta, schema, "task", **configs)
    for key, test, what in across:
        if not test(meta):
            raise CheckpointError(f"{file}: task.{key}: expected {what}")
    return meta
