"""Checks every input value passes before a resolver (or a plugin, or the database) sees it.

* ``DateTime`` (:data:`SCALARS`, strawberry's ``scalar_map``): ISO 8601 as before, but the instant must lie
  between :data:`MIN_DATETIME` and :data:`MAX_DATETIME` (UTC), so converting it to UTC or to any time zone
  cannot overflow Python's ``datetime`` (``0001-01-01T00:00:00+14:00`` is a day before year 1 in UTC).
  Refused with ``BAD_USER_INPUT`` during variable coercion / validation, for every field of that type
  (plugins' input fields included).
* :class:`RefuseNulCharacters`: a NUL character (U+0000) in any string — a variable's value (at any depth,
  keys included) or a literal in the document — refuses the operation with ``BAD_USER_INPUT`` before it
  runs. PostgreSQL cannot store NUL in text (asyncpg refuses it) and SQLite would store it silently, so
  the API refuses it on both.
"""

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

BAD_USER_INPUT = {"code": "BAD_USER_INPUT"}

# One day inside Python's datetime range at both ends: UTC offsets are less than a day.
MIN_DATETIME = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
MAX_DATETIME = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)

_OUT_OF_RANGE = (
    "DateTime must be between 0001-01-02T00:00:00Z and 9999-12-30T23:59:59Z / 时间须在 0001-01-02 至 9999-12-30（UTC）之间"
)


def parse_datetime(value: object) -> dt.datetime:
    """strawberry's ``DateTime`` parsing, then the range check (naive values are checked as they are:
    whoever accepts them decides their zone, and refuses them when it needs one)."""
    parsed = DateTimeDefinition.parse_value(value)
    assert isinstance(parsed, dt.datetime)
    try:
        instant = parsed.astimezone(dt.UTC) if parsed.utcoffset() is not None else parsed.replace(tzinfo=dt.UTC)
    except OverflowError:
        raise GraphQLError(_OUT_OF_RANGE, extensions=BAD_USER_INPUT) from None
    if not MIN_DATETIME <= instant <= MAX_DATETIME:
        raise GraphQLError(_OUT_OF_RANGE, extensions=BAD_USER_INPUT)
    return parsed


BoundedDateTime = ScalarDefinition(
    name="DateTime",
    description=(
        "Date with time, ISO 8601 (e.g. 2026-06-01T08:00:00+08:00), between 0001-01-02 and 9999-12-30 UTC. "
        "/ ISO 8601 时间（0001-01-02 至 9999-12-30 UTC）。"
    ),
    specified_by_url=None,
    serialize=DateTimeDefinition.serialize,
    parse_value=parse_datetime,
    parse_literal=None,
    origin=dt.datetime,
)

SCALARS: dict[object, ScalarDefinition] = {dt.datetime: BoundedDateTime}


# --- NUL characters ------------------------------------------------------------------------------------


def _nul_path(value: Any) -> list[str | int] | None:
    """Where the first string containing NUL is in a JSON value (keys count), or None. Iterative, so
    deeply nested variables cannot exhaust the stack."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return list(path)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return [*path, key]
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
    return None


def _print_path(path: list[str | int]) -> str:
    out = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier() and part.isascii():
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")  # escapes the NUL itself
    return "".join(out)


def _nul_error(where: str, nodes: Any = None) -> GraphQLError:
    return GraphQLError(
        f"{where} contains a NUL character (\\u0000), which text cannot hold / {where} 含有空字符 (\\u0000)，无法保存",
        nodes,
        extensions=BAD_USER_INPUT,
    )


class _NulLiterals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[StringValueNode] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.found.append(node)


class RefuseNulCharacters(SchemaExtension):
    """Refuses an operation whose variables or string literals contain NUL (``BAD_USER_INPUT``).

    Runs in ``on_validate`` after the cached validation (``assemble.DocumentChecks``, listed before it), like
    ``QueryCost``: a refused operation never reaches a resolver."""

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and not ctx.pre_execution_errors:
            errors = []
            path = _nul_path(ctx.variables or {})
            if path is not None:
                name, *rest = path
                name = name if isinstance(name, str) and name.isidentifier() and name.isascii() else "?"
                errors.append(_nul_error(f"Variable '${name}'" + (f" at {_print_path(rest)}" if rest else "")))
            # A literal can only hold NUL through an escape (\u0000, \u{0}) or a raw NUL character.
            query = ctx.query or ""
            if "\\u" in query or "\x00" in query:
                literals = _NulLiterals()
                visit(ctx.graphql_document, literals)
                errors.extend(_nul_error("A string literal", node) for node in literals.found)
            if errors:
                ctx.pre_execution_errors = errors
        yield
