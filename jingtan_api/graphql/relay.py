"""Relay building blocks: global IDs, the ``Node`` interface, cursor connections.

Global IDs are ``base64("TypeName:pk")`` as in the Relay spec examples. Cursors are opaque keyset
positions, never offsets, so a page costs the same at entry 1,000,000 as at entry 10: ``base64("c:<id>")``
for lists ordered by id, ``base64('["<scope>", <sort values>..., <id>]')`` for compound keys (``Keyset``).

The connection toolkit: a resolver checks its arguments with :func:`page_args` (giving ``PageArgs``), the
service reads the page with ``db.keyset_page`` (giving a ``Page``: rows, keys, has_next, has_previous) and
a count function with the same filters, and :func:`build_connection` turns both into a ``Connection``.
"""

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, overload

import orjson
import strawberry
from strawberry.types import Info

from jingtan_api.db import Key, Page, PageArgs
from jingtan_api.errors import NotFound, ValidationFailed

T = TypeVar("T")


def to_global_id(type_name: str, pk: int | str) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


MAX_PK = 2**31 - 1  # primary keys are 32-bit INTEGER columns


def from_global_id(gid: str, *, field: str = "id") -> tuple[str, str]:
    try:
        type_name, sep, pk = base64.b64decode(str(gid).encode(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotFound("Not a valid ID / ID 无效", field=field) from None
    # Only the canonical spelling is an ID: extra padding or other encodings of the same text are not.
    if not sep or not type_name or not pk or to_global_id(type_name, pk) != gid:
        raise NotFound("Not a valid ID / ID 无效", field=field)
    return type_name, pk


def parse_pk(raw: str) -> int | None:
    """The primary key in a global ID: ASCII digits, no sign or leading zero, within the column's range.
    (``str.isdigit`` accepts "²" and "١", which ``int()`` rejects or reads as another number.)"""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or (len(raw) > 1 and raw[0] == "0"):
        return None
    pk = int(raw)
    return pk if pk <= MAX_PK else None


def decode_id(gid: str, expected: str | tuple[str, ...], *, field: str = "id") -> int:
    """Primary key of a global ID of the expected type; NOT_FOUND otherwise (never a 500)."""
    type_name, raw = from_global_id(gid, field=field)
    allowed = (expected,) if isinstance(expected, str) else expected
    pk = parse_pk(raw)
    if type_name not in allowed or pk is None:
        raise NotFound("No such object / 对象不存在", field=field)
    return pk


@strawberry.interface(description="An object with a global ID (Relay). / 具有全局 ID 的对象。")
class Node:
    pk: strawberry.Private[int]

    @strawberry.field(description="Global ID of the object. / 对象的全局 ID。")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id(self.__class__.__strawberry_definition__.name, self.pk))


@strawberry.type(description="Pagination state of a connection. / 分页信息。")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items after endCursor.")
    has_previous_page: bool = strawberry.field(description="More items before startCursor.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last edge.")


@strawberry.type(description="An edge of a connection: a node and its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque cursor of this node.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of items with cursors (Relay cursor connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="Edges of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination state.")
    _count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="Items in the whole list with its filters (counted only when asked).")
    async def total_count(self) -> int:
        return await self._count()

    @strawberry.field(description="The nodes of this page (shortcut for edges.node).")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


# --- cursors -----------------------------------------------------------------------------------------

MAX_CURSOR_LENGTH = 512  # characters of a cursor; longer ones are refused before decoding
MAX_CURSOR_TEXT = 200  # characters of a text sort value
_PART_TYPES = (int, datetime, str)


@dataclass(frozen=True)
class Keyset:
    """What the cursors of a connection hold: the row's key in the connection's order (its sort values
    of types ``parts``, then its id). One codec for every connection:

    * ``Keyset()`` (ID_KEYSET, lists ordered by id): ``base64("c:<id>")``, the cursors clients hold;
    * ``Keyset(scope, parts)``: ``base64`` of the compact JSON array ``[scope, v1, ..., id]`` (datetimes as
      ISO 8601 with offset), e.g. ``["POINTS_ASC", 120, 42]``. The scope names the list or its sort order:
      a cursor of another scope is refused.
    """

    scope: str | None = None
    parts: tuple[type, ...] = ()

    def __post_init__(self) -> None:
        if self.parts and self.scope is None:
            raise ValueError("a compound keyset needs a scope")
        if any(p not in _PART_TYPES for p in self.parts):
            raise ValueError(f"cursor parts must be of {_PART_TYPES}, not {self.parts}")


ID_KEYSET = Keyset()


def encode_cursor(key: Key | int | str, keyset: Keyset = ID_KEYSET) -> str:
    """The cursor of a row's key (a bare id is the key of an id keyset)."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) != len(keyset.parts) + 1:
        raise ValueError(f"key {key!r} does not fit {keyset}")
    if keyset.scope is None:
        raw = f"c:{key[0]}"
    else:
        values = [keyset.scope, *(v.isoformat() if isinstance(v, datetime) else v for v in key)]
        # orjson writes what json.dumps(separators=(",", ":")) writes for ASCII text and 64-bit integers,
        # ten times faster; anything else goes through json (non-ASCII escaped), so a key always has one
        # cursor.
        try:
            data = orjson.dumps(values)
        except TypeError:
            data = b""
        if not data or not data.isascii():
            data = json.dumps(values, separators=(",", ":")).encode()
        return base64.b64encode(data).decode()
    return base64.b64encode(raw.encode()).decode()


def _invalid(field: str, message: str = "Invalid cursor / 游标无效") -> ValidationFailed:
    return ValidationFailed(message, code="INVALID_CURSOR", field=field)


def _part(kind: type, value: Any) -> Any:
    """A sort value read from a cursor, or None when it is not a valid value of ``kind``."""
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and -MAX_PK <= value <= MAX_PK
        return value if ok else None
    if not isinstance(value, str) or not value or len(value) > MAX_CURSOR_TEXT or "\x00" in value:
        return None
    if kind is str:
        return value
    try:
        moment = datetime.fromisoformat(value)
        # Naive times are refused; converting to UTC also refuses ones that overflow (year 1 at +05:00).
        return moment.astimezone(UTC) if moment.utcoffset() is not None else None
    except (ValueError, OverflowError):
        return None


def decode_cursor(cursor: str | None, *, field: str, keyset: Keyset = ID_KEYSET) -> Key | None:
    """The key in a cursor of ``keyset``; INVALID_CURSOR (a ValidationFailed on ``field``, never a 500)
    when it is malformed, too long, of another keyset or scope, or out of range (ids above 2^31-1,
    datetimes without offset)."""
    if cursor is None:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _invalid(field)
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid(field) from None
    if keyset.scope is None:
        # An id cursor; a compound one (another list or order) starts with "[" and is refused here.
        pk = parse_pk(raw[2:]) if raw.startswith("c:") else None
        if pk is None:
            raise _invalid(field)
        return (pk,)
    try:
        items = json.loads(raw) if raw.startswith("[") else None
    except ValueError:
        items = None
    if not isinstance(items, list) or not items:
        raise _invalid(field)
    if items[0] != keyset.scope:
        raise _invalid(field, "This cursor belongs to another list or sort order / 游标与列表或排序方式不符")
    if len(items) != len(keyset.parts) + 2:
        raise _invalid(field)
    values = [_part(kind, value) for kind, value in zip(keyset.parts, items[1:-1], strict=True)]
    pk = _part(int, items[-1])
    if pk is None or pk < 0 or any(v is None for v in values):
        raise _invalid(field)
    return (*values, pk)


# --- connection arguments and results ----------------------------------------------------------------


def page_args(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    keyset: Keyset = ID_KEYSET,
) -> PageArgs:
    """The one check of every connection's first/after/last/before: not both first and last, sizes in
    at most the max page size (PAGE_SIZE_EXCEEDED) and not negative
    (PAGE_SIZE_INVALID; 0 asks for totalCount only), cursors of the connection's keyset (INVALID_CURSOR); neither
    size given means the first default-size page."""
    settings = info.context.settings.graphql
    if first is not None and last is not None:
        raise ValidationFailed("Use either first or last, not both / first 与 last 不能同时使用", field="first")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise ValidationFailed(
                f"{name} must be between 1 and {settings.max_page_size} (0 asks for totalCount only), not {value} "
                f"/ {name} 须在 1 到 {settings.max_page_size} 之间（0 仅返回 totalCount），不能为 {value}",
                code="PAGE_SIZE_INVALID",
                field=name,
            )
        if value is not None and value > settings.max_page_size:
            raise ValidationFailed(
                f"{name} must be between 1 and {settings.max_page_size}, not {value} "
                f"/ {name} 须在 1 到 {settings.max_page_size} 之间，不能为 {value}",
                code="PAGE_SIZE_EXCEEDED",
                field=name,
            )
    if first is None and last is None:
        first = settings.default_page_size
    return PageArgs(
        first=first,
        after=decode_cursor(after, field="after", keyset=keyset),
        last=last,
        before=decode_cursor(before, field="before", keyset=keyset),
    )


C = TypeVar("C", bound=Connection[Any])


@overload
def build_connection(
    page: Page, node: Callable[[dict], T], *, count: Callable[[], Awaitable[int]], keyset: Keyset = ...
) -> Connection[T]: ...


@overload
def build_connection(
    page: Page, node: Callable[[dict], Any], *, count: Callable[[], Awaitable[int]], keyset: Keyset = ..., type_: type[C]
) -> C: ...


def build_connection(
    page: Page,
    node: Callable[[dict], Any],
    *,
    count: Callable[[], Awaitable[int]],
    keyset: Keyset = ID_KEYSET,
    type_: type[Connection[Any]] = Connection,
) -> Connection[Any]:
    """A service's page (rows, their keys, has_next/has_previous) as a connection: ``node`` turns a row
    into the node, ``keyset`` the keys into cursors, ``count`` (same filters, no page) gives totalCount
    when it is asked for; ``type_`` is a concrete subclass when the SDL names one."""
    edges = [Edge(cursor=encode_cursor(k, keyset), node=node(r)) for r, k in zip(page.rows, page.keys, strict=True)]
    return type_(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        _count=count,
    )


def selects(info: Info, path: tuple[str, ...], names: frozenset[str]) -> bool:
    """Whether the field being resolved selects any field of ``names`` below ``path`` (field names from
    this field down, e.g. ``("edges", "node")``), through fragments and inline fragments. ``@skip`` and
    ``@include`` are not evaluated: a field they may leave out counts as selected (for prefetching, a
    superset is safe)."""
    raw = info._raw_info
    return _selects([n.selection_set for n in raw.field_nodes], path, names, raw.fragments)


def _selects(selection_sets: list[Any], path: tuple[str, ...], names: frozenset[str], fragments: dict) -> bool:
    wanted = names if not path else frozenset((path[0],))
    below: list[Any] = []
    stack = [s for s in selection_sets if s is not None]
    seen: set[str] = set()
    while stack:
        for selection in stack.pop().selections:
            kind = selection.kind
            if kind == "field":
                if selection.name.value in wanted:
                    if not path:
                        return True
                    below.append(selection.selection_set)
            elif kind == "inline_fragment":
                stack.append(selection.selection_set)
            elif kind == "fragment_spread":
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    seen.add(name)
                    stack.append(fragment.selection_set)
    return bool(below) and _selects(below, path[1:], names, fragments)


@strawberry.type(description="An expected failure of a mutation, meant to be shown to the user.")
class UserError:
    message: str = strawberry.field(description="Human-readable message (zh / en).")
    code: str = strawberry.field(description="Stable machine-readable code, e.g. INSUFFICIENT_POINTS.")
    field: list[str] | None = strawberry.field(
        default=None, description="Path of the input field at fault, e.g. [\"input\", \"amount\"]."
    )
