"""Builds strawberry input types from plugins' pydantic input models (at startup, per app).

No ``from __future__ import annotations`` here: the classes are created at runtime and strawberry
resolves their annotations as objects.
"""

import dataclasses
import datetime as dt
import decimal
import enum
import types
import typing
from typing import Any

import pydantic
import strawberry
from pydantic import BaseModel
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.utils.str_converters import to_camel_case

from jingtan_api.settings import ConfigurationError

_SCALARS = {
    pydantic.AwareDatetime: dt.datetime,
    pydantic.NaiveDatetime: dt.datetime,
    pydantic.PastDatetime: dt.datetime,
    pydantic.FutureDatetime: dt.datetime,
    pydantic.PastDate: dt.date,
    pydantic.FutureDate: dt.date,
    int: int, float: float, str: str, bool: bool, dt.datetime: dt.datetime, dt.date: dt.date, decimal.Decimal: decimal.Decimal}


class InputBuilder:
    """Converts pydantic models to strawberry inputs, remembering every GraphQL type name it creates
    (so collisions between plugins are detected) and how to turn parsed values back into dicts."""

    def __init__(self, reserved_names: set[str]) -> None:
        self.reserved = set(reserved_names)
        self.owner: dict[str, str] = {}
        self._enums: dict[type, Any] = {}

    def _claim(self, name: str, plugin: str) -> None:
        if name in self.reserved:
            raise ConfigurationError(f"plugin {plugin!r}: GraphQL type name {name!r} is already used by the core")
        if name in self.owner:
            raise ConfigurationError(
                f"plugin {plugin!r}: GraphQL type name {name!r} is already used by plugin {self.owner[name]!r}"
            )
        self.owner[name] = plugin

    def _convert(self, annotation: Any, plugin: str, prefix: str) -> Any:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            return self._convert(typing.get_args(annotation)[0], plugin, prefix)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                raise ConfigurationError(f"plugin {plugin!r}: unsupported union {annotation!r} in input model")
            return self._convert(args[0], plugin, prefix) | None
        if origin in (list, tuple, typing.Sequence):
            (arg, *_) = typing.get_args(annotation) or (str,)
            return list[self._convert(arg, plugin, prefix)]
        if annotation in _SCALARS:
            return _SCALARS[annotation]
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            if annotation not in self._enums:
                self._claim(annotation.__name__, plugin)
                copy = enum.Enum(annotation.__name__, {m.name: m.value for m in annotation})
                copy.__doc__ = annotation.__doc__
                self._enums[annotation] = strawberry.enum(copy, description=(annotation.__doc__ or annotation.__name__).strip())
            return self._enums[annotation]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.build(
                annotation, f"{prefix}{annotation.__name__}", plugin, description=annotation.__doc__, prefix=prefix
            )
        raise ConfigurationError(f"plugin {plugin!r}: unsupported type {annotation!r} in input model")

    def _default(self, finfo: Any, tp: Any) -> tuple[Any, Any]:
        """The GraphQL default of an optional field and its type. Plain values (numbers, strings, booleans,
        None) and enum members are shown in the SDL; any other default (a Decimal, a list, a nested model,
        a ``default_factory``) cannot be written there, so the field is nullable without a default and,
        when omitted, left out of the dict given to pydantic, which then applies the model's own default."""
        default = finfo.default
        if isinstance(default, enum.Enum) and type(default) in self._enums:
            return self._enums[type(default)][default.name], tp
        if default is None:
            return None, tp | None
        if isinstance(default, int | float | str | bool) and not isinstance(default, enum.Enum):
            return default, tp
        return strawberry.UNSET, tp | None

    def build(
        self, model: type[BaseModel], name: str, plugin: str, *, description: str | None = None, prefix: str | None = None
    ) -> type:
        self._claim(name, plugin)
        prefix = name if prefix is None else prefix
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {}
        required, optional = [], []
        for fname, finfo in model.model_fields.items():
            tp = self._convert(finfo.annotation, plugin, prefix)
            desc = finfo.description or fname
            if finfo.is_required():
                required.append((fname, tp, strawberry.field(description=desc)))
            else:
                default, tp = self._default(finfo, tp)
                optional.append((fname, tp, strawberry.field(default=default, description=desc)))
        for fname, tp, f in [*required, *optional]:
            annotations[fname] = tp
            namespace[fname] = f
        namespace["__annotations__"] = annotations
        namespace["__module__"] = __name__
        cls = type(name, (), namespace)
        return strawberry.input(cls, name=name, description=(description or name).strip())


def to_plain(value: Any) -> Any:
    """A parsed strawberry input (nested) -> plain dict/list/enum-value structure for pydantic."""
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    definition = getattr(type(value), "__strawberry_definition__", None)
    if isinstance(definition, StrawberryObjectDefinition) and dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is strawberry.UNSET:
                continue
            out[f.name] = to_plain(v)
        return out
    return value


def graphql_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The pydantic JSON Schema of ``model`` with property names as the GraphQL input spells them
    (camelCase, strawberry's ``auto_camel_case``), in ``properties`` and ``required`` of every object schema
    (nested models under ``$defs`` included), so a form generator can post what it renders."""
    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out[key] = {to_camel_case(name): walk(sub) for name, sub in value.items()}
            elif key == "required" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[key] = [to_camel_case(v) for v in value]
            else:
                out[key] = walk(value)
        return out

    return walk(model.model_json_schema())
