"""What a template receives: data, never live objects.

Plugins pass ORM rows, pydantic models and dataclasses to templates. A template written by a group
admin must not be able to call their methods (`draw.sqlmodel_update(...)` rewrote a lottery's seed), so
every variable becomes plain values (containers copied) and read-only views before rendering: a view
reads fields and properties and nothing else, so no method is reachable and nothing can be assigned.
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
    """A read-only view of an object's public fields and properties, for templates.

    `{{ draw.prize }}` and `{{ draw["prize"] }}` both read a field, converted on the way out (objects
    inside become views too); there are no methods to call, and the object itself is out of reach
    (the sandbox refuses every `_` name)."""

    __slots__ = ("_names", "_obj")

    def __init__(self, obj: Any) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_names", _readable_names(type(obj)))

    def __getattr__(self, name: str) -> Any:
        obj = object.__getattribute__(self, "_obj")
        if name.startswith("_") or (name not in object.__getattribute__(self, "_names")
                                    and name not in getattr(obj, "__dict__", ())):
            raise AttributeError(f"{_kind(self)} has no attribute {name!r}")
        value = getattr(obj, name)
        if callable(value) and not isinstance(value, _IMMUTABLE):
            raise AttributeError(f"{_kind(self)} has no attribute {name!r}")
        return _data(value, 0)

    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str):
            raise KeyError(name)
        try:
            return self.__getattr__(name)
        except AttributeError:
            raise KeyError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("template data is read-only")

    def __contains__(self, name: object) -> bool:
        return name in object.__getattribute__(self, "_names")

    def __eq__(self, other: object) -> bool:
        mine = object.__getattribute__(self, "_obj")
        return isinstance(other, View) and mine == object.__getattribute__(other, "_obj")

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        text = _own_text(object.__getattribute__(self, "_obj"))
        return text if text is not None else f"<{_kind(self)}>"

    def __repr__(self) -> str:
        return f"<{_kind(self)}>"


def _kind(view: View) -> str:
    return type(object.__getattribute__(view, "_obj")).__name__


def template_data(value: Any) -> Any:
    """`value` as template data: immutable values as they are, containers copied, objects as `View`s."""
    return _data(value, 0)


def _data(value: Any, depth: int) -> Any:
    if isinstance(value, (*_IMMUTABLE, View)):
        return value
    if depth > _MAX_DEPTH:
        raise TypeError(f"template data nested deeper than {_MAX_DEPTH} levels")
    deeper = depth + 1
    if isinstance(value, Mapping):
        return {key: _data(item, deeper) for key, item in value.items()}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_data(item, deeper) for item in value)
    if isinstance(value, list):
        return [_data(item, deeper) for item in value]
    if isinstance(value, Set):
        return frozenset(_data(item, deeper) for item in value)
    if isinstance(value, types.FunctionType | functools.partial) or (
            isinstance(value, types.BuiltinFunctionType) and isinstance(value.__self__, types.ModuleType | None)):
        return value  # a helper the plugin hands over on purpose; it is the plugin's code, not an object's method
    if callable(value):
        raise TypeError(f"templates receive data, not methods or classes: got {type(value).__name__} (call it in "
                        "the plugin and pass the result)")
    return View(value)  # named tuples too: their fields by name


@functools.cache
def _readable_names(cls: type) -> frozenset[str]:
    names: list[str] = []
    model_fields = getattr(cls, "model_fields", None)
    if isinstance(model_fields, Mapping):  # pydantic and SQLModel: declared fields only, not the ORM state
        names += list(model_fields)
        names += list(getattr(cls, "model_computed_fields", None) or {})
    elif dataclasses.is_dataclass(cls):
        names += [f.name for f in dataclasses.fields(cls)]
    names += list(getattr(cls, "_fields", ()))  # named tuples
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _MACHINERY:
            continue
        names += [name for name, attr in vars(klass).items() if isinstance(attr, property | functools.cached_property)]
        names += [name for name in getattr(klass, "__annotations__", {}) if not callable(vars(klass).get(name))]
    return frozenset(name for name in names if not name.startswith("_"))


def _own_text(obj: Any) -> str | None:
    """`str(obj)` if the class defines a meaning for it (not the default or a generated repr)."""
    for klass in type(obj).__mro__:
        if "__str__" in vars(klass):
            return None if klass.__module__.split(".")[0] in _MACHINERY else str(obj)
    return None
