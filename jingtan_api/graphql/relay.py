"""Relay building blocks: global IDs, the ``Node`` interface, cursor connections.

Global IDs are ``base64("TypeName:pk")`` as in the Relay spec examples. Cursors are opaque
``base64("c:<key>")`` strings over a keyset (usually the row id), never offsets, so a page costs the same
at entry 1,000,000 as at entry 10.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry
from strawberry.types import Info

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
    _count: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="Total number of items (counted only when asked for).")
    async def total_count(self) -> int | None:
        return await self._count() if self._count is not None else None

    @strawberry.field(description="The nodes of this page (shortcut for edges.node).")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def encode_cursor(key: int | str) -> str:
    return base64.b64encode(f"c:{key}".encode()).decode()


def decode_cursor(cursor: str | None, *, field: str) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    digits = raw[2:]
    if (
        not raw.startswith("c:")
        or not (digits.isascii() and digits.isdigit())
        or len(digits) > 10
        or int(digits) > MAX_PK  # keys are 32-bit ids; a larger value would fail in PostgreSQL
    ):
        raise ValidationFailed("Invalid cursor / 游标无效", code="INVALID_CURSOR", field=field)
    return int(digits)


def page_args(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> tuple[int | None, int | None, int | None, int | None]:
    """Validate Relay arguments; returns (first, after_key, last, before_key)."""
    settings = info.context.settings.graphql
    if first is not None and last is not None:
        raise ValidationFailed("Use either first or last, not both / first 与 last 不能同时使用", field="first")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= settings.max_page_size:
            raise ValidationFailed(
                f"{name} must be between 0 and {settings.max_page_size} / 每页数量须在 0 到 {settings.max_page_size} 之间",
                code="PAGE_SIZE_EXCEEDED",
                field=name,
            )
    if first is None and last is None:
        first = settings.default_page_size
    return first, decode_cursor(after, field="after"), last, decode_cursor(before, field="before")


def build_connection(
    nodes: list[T],
    keys: list[int],
    *,
    has_next: bool,
    has_previous: bool,
    count: Callable[[], Awaitable[int]] | None = None,
) -> Connection[T]:
    edges = [Edge(cursor=encode_cursor(k), node=n) for n, k in zip(nodes, keys, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        _count=count,
    )


@strawberry.type(description="An expected failure of a mutation, meant to be shown to the user.")
class UserError:
    message: str = strawberry.field(description="Human-readable message (zh / en).")
    code: str = strawberry.field(description="Stable machine-readable code, e.g. INSUFFICIENT_POINTS.")
    field: list[str] | None = strawberry.field(
        default=None, description="Path of the input field at fault, e.g. [\"input\", \"amount\"]."
    )
