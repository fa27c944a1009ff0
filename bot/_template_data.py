"""What a template receives: data, never live objects.

Plugins pass ORM rows, pydantic models and dataclasses to templates. A template written by a group
admin must not be able to call their methods (`draw.sqlmodel_update(...)` rewrote a lottery's seed), so
every variable is copied into plain values and read-only views before rendering: fields and properties
are read once, methods are not carried over, and nothing a template touches leads back to the original.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
from collections.abc import Mapping, Set
from datetime import date, time, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

_IMMUTABLE = (str, int, float, complex, bool, type(None), bytes, Decimal, Fraction, date, time, timedelta, tzinfo,
              enum.Enum, range)
_MAX_DEPTH = 12
# Classes whose properties are machinery, not data (`model_extra`, `model_fields_set`...).
_MACHINERY = ("pydantic", "sqlmodel", "sqlalchemy", "builtins", "enum", "abc", "typing")


class View:
    """A read-only snapshot of an object's public fields and properties, for templates.

    `{{ draw.prize }}` and `{{ draw["prize"] }}` both read a field; there are no methods to call."""

    __slots__ = ("_fields", "_kind", "_text")

    def __init__(self, kind: str, fields: dict[str, Any], text: str | None = None) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_text", text)

    def __getattr__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if name.startswith("_") or name not in fields:
            raise AttributeError(f"{object.__getattribute__(self, '_kind')} has no attribute {name!r}")
        return fields[name]

    def __getitem__(self, name: str) -> Any:
        fields = object.__getattribute__(self, "_fields")
        if not isinstance(name, str) or name not in fields:
            raise KeyError(name)
        return fields[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("template data is read-only")

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, View) and (self._kind, self._fields) == (other._kind, other._fields)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self._text if self._text is not None else repr(self)

    def __repr__(self) -> str:
        return f"{self._kind}({', '.join(f'{k}={v!r}' for k, v in self._fields.items())})"


def template_data(value: Any) -> Any:
    """`value` as plain data: immutable values as they are, containers copied, objects as `View`s."""
    return _data(value, 0)


def _data(value: Any, depth: int) -> Any:
    if isinstance(value, _IMMUTABLE):
        return value
    if depth > _MAX_DEPTH:
        raise TypeError(f"template data nested deeper than {_MAX_DEPTH} levels (a cycle between objects?)")
    deeper = depth + 1
    if isinstance(value, Mapping):
        return {key: _data(item, deeper) for key, item in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_data(item, deeper) for item in value)
    if isinstance(value, list | tuple):  # named tuples become views, keeping their field names
        if isinstance(value, tuple):
            return View(type(value).__name__, {k: _data(getattr(value, k), deeper) for k in value._fields})
        return [_data(item, deeper) for item in value]
    if isinstance(value, Set):
        return frozenset(_data(item, deeper) for item in value)
    if isinstance(value, View):
        return value
    if isinstance(value, types.FunctionType | functools.partial) or (
            isinstance(value, types.BuiltinFunctionType) and isinstance(value.__self__, types.ModuleType | None)):
        return value  # a helper the plugin hands over on purpose; it is the plugin's code, not an object's method
    if callable(value):
        raise TypeError(f"templates receive data, not methods or classes: got {type(value).__name__} (call it in "
                        "the plugin and pass the result)")
    return View(type(value).__name__, {name: _data(item, deeper) for name, item in _public_fields(value)},
                _own_text(value))


def _public_fields(obj: Any) -> list[tuple[str, Any]]:
    cls = type(obj)
    names: list[str] = []
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, Mapping):  # pydantic and SQLModel: declared fields only, not the ORM state
        names += list(model_fields)
        names += list(getattr(cls, "model_computed_fields", None) or {})
    elif dataclasses.is_dataclass(obj):
        names += [f.name for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__"):
        names += list(vars(obj))
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _MACHINERY:
            continue
        names += [name for name, attr in vars(klass).items() if isinstance(attr, property | functools.cached_property)]
    found = []
    for name in dict.fromkeys(names):
        if name.startswith("_"):
            continue
        try:
            item = getattr(obj, name)
        except Exception:  # a property that cannot be computed for this object is just absent
            continue
        if not callable(item) or isinstance(item, _IMMUTABLE):
            found.append((name, item))
    return found


def _own_text(obj: Any) -> str | None:
    """`str(obj)` if the class defines a meaning for it (not the default or a generated repr)."""
    for klass in type(obj).__mro__:
        if "__str__" in vars(klass):
            return None if klass.__module__.split(".")[0] in _MACHINERY else str(obj)
    return None
