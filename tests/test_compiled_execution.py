"""Compiled execution (jingtan_api/graphql/compiled.py) against graphql-core, the oracle.

On the demo data (``jingtan seed-demo``), every query of schema/operations/ and a hypothesis-generated
corpus of selections (fragments, aliases, variables, @skip/@include, nulls, nested lists, Node, fields
that need a viewer asked anonymously) run through both paths — the app's plan cache switched off, then on
— with the same database and viewer, and must answer the same ``data`` and ``errors`` (message, path,
extensions.code).

Errors are compared as a sorted list: the same errors, each as often. Their order in the response is the
order in which the resolvers failed, and for resolvers running concurrently (two async fields, two
DataLoader batches) that is the event loop's scheduling, not something the GraphQL spec or graphql-core
fixes — graphql-core's own order changes with a database's latency. Compiled execution schedules with
callbacks instead of a task per field, so concurrent failures may be listed in another order.
"""

import asyncio
import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    parse,
)
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from jingtan_api.app import create_app
from jingtan_api.demo import DEMO_PASSWORD, seed_demo
from jingtan_api.errors import NotFound
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.testing import GraphQLClient, make_settings

OPERATIONS_DIR = Path(__file__).resolve().parent.parent / "schema" / "operations"
EXAMPLES = 40


@pytest.fixture
def settings_overrides() -> dict:
    return {"graphql": {"compiled_execution": True}}


def _query_operations() -> list[tuple[str, str]]:
    found = []
    for path in sorted(OPERATIONS_DIR.glob("*/*.graphql")):
        text = path.read_text(encoding="utf-8")
        document = parse(text)
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if ops and all(o.operation is OperationType.QUERY for o in ops):
            found.append((f"{path.parent.name}/{path.stem}", text))
    return found


QUERIES = _query_operations()


def _wire(body: dict) -> tuple[Any, list]:
    errors = [
        (e.get("message"), e.get("path"), (e.get("extensions") or {}).get("code"))
        for e in body.get("errors") or ()
    ]
    return body.get("data"), sorted(errors, key=repr)


async def _login(gql: GraphQLClient, identifier: str) -> str:
    data = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
        {"i": {"identifier": identifier, "password": DEMO_PASSWORD}},
    )
    return data["login"]["tokens"]["accessToken"]


class World:
    """The demo data, its viewers and some IDs, and a way to run one request through both paths."""

    def __init__(self, app: Any, gql: GraphQLClient) -> None:
        self.app = app
        self.gql = gql
        self.plans = app.state.schema.execution_context_class.plans
        self.schema = app.state.schema._schema
        self.viewers: dict[str, str | None] = {"anonymous": None}
        self.ids: list[str] = []

    async def setup(self) -> None:
        assert await seed_demo(self.app.state.services, if_empty=True) == 0
        for name, identifier in (
            ("admin", "admin@demo.jingtan.org"),
            ("member", "13800138001"),
            ("merchant", "cafe@demo.jingtan.org"),
        ):
            self.viewers[name] = await _login(self.gql, identifier)
        data = await self.gql.ok(
            "{ offers(first: 10) { nodes { id merchant { id } } } users(first: 10) { nodes { id } } }",
            token=self.viewers["admin"],
        )
        offers = data["offers"]["nodes"]
        self.ids = sorted(
            {o["id"] for o in offers}
            | {o["merchant"]["id"] for o in offers}
            | {u["id"] for u in data["users"]["nodes"]}
        )
        self.ids.append("bm90OmFuaWQ=")  # not a global ID of any type

    async def both(self, query: str, variables: dict | None, viewer: str) -> tuple[Any, Any]:
        token = self.viewers[viewer]
        self.plans.enabled = False
        oracle = await self.gql(query, variables, token=token or "")
        self.plans.enabled = True
        compiled = await self.gql(query, variables, token=token or "")
        return _wire(oracle), _wire(compiled)


@pytest.fixture
async def world(app, gql) -> World:
    w = World(app, gql)
    await w.setup()
    return w


# --- values for arguments and variables ------------------------------------------------------------------

SCALAR_VALUES: dict[str, list[Any]] = {
    "Int": [0, 1, 3, -1],
    "Float": [31.23, 0.0, 121.47],
    "String": ["上海", "2026-11", "x"],
    "Boolean": [True, False],
    "Date": ["2026-01-01", "2026-12-31"],
    "DateTime": ["2026-06-01T08:00:00+08:00"],
    "Long": [0, 10],
    "JSON": [{}],
}


def _value(type_: Any, name: str, ids: list[str], pick: Any) -> Any:
    """A value for an input of this type; ``pick(options)`` chooses (first, or drawn by hypothesis)."""
    nullable = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(nullable, GraphQLList):
        return [_value(nullable.of_type, name, ids, pick)]
    if isinstance(nullable, GraphQLEnumType):
        return pick(sorted(nullable.values))
    if isinstance(nullable, GraphQLInputObjectType):
        return {
            fname: _value(f.type, fname, ids, pick)
            for fname, f in nullable.fields.items()
            if isinstance(f.type, GraphQLNonNull) and f.default_value is Undefined
        }
    assert isinstance(nullable, GraphQLScalarType)
    if nullable.name == "ID":
        return pick(ids)
    if name in ("from", "to"):
        return "2026-01-01" if name == "from" else "2026-12-31"
    if name == "latitude":
        return 31.23
    if name == "longitude":
        return 121.47
    return pick(SCALAR_VALUES.get(nullable.name, ["x"]))


def _operation_variables(world: World, text: str) -> dict:
    from graphql import type_from_ast

    document = parse(text)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    variables = {}
    for definition in operation.variable_definitions or ():
        type_ = type_from_ast(world.schema, definition.type)
        if isinstance(type_, GraphQLNonNull) and definition.default_value is None:
            variables[definition.variable.name.value] = _value(
                type_, definition.variable.name.value, world.ids, lambda options: options[0]
            )
    return variables


# --- (a) every query operation -----------------------------------------------------------------------------


async def test_every_query_operation_answers_the_same_on_both_paths(world):
    assert len(QUERIES) > 30
    before = (world.plans.compiled_runs, world.plans.fallbacks)
    compared = 0
    for name, text in QUERIES:
        variables = _operation_variables(world, text)
        for viewer in world.viewers:
            oracle, compiled = await world.both(text, variables, viewer)
            assert compiled == oracle, (name, viewer)
            compared += 1
            # Each operation is run twice per viewer on the compiled side: the plan is reused.
            oracle_again, compiled_again = await world.both(text, variables, viewer)
            assert compiled_again == oracle_again == oracle, (name, viewer)
    runs = world.plans.compiled_runs - before[0]
    # Every query that reached execution ran compiled: none fell back to graphql-core. (Requests refused
    # before execution — an unknown ID's type, a too-complex page — never create an execution context.)
    assert world.plans.fallbacks == before[1]
    assert 2 * len(QUERIES) <= runs <= 2 * compared


async def test_catalogue_page_is_identical_and_answered(world, operation):
    oracle, compiled = await world.both(operation("member/Catalogue"), {"first": 20}, "member")
    assert compiled == oracle
    data, errors = compiled
    assert errors == []
    assert len(data["offers"]["edges"]) == 4
    assert {e["node"]["merchant"]["nameEn"] for e in data["offers"]["edges"]} >= {"Green Leaf Café"}


# --- (b) a generated corpus --------------------------------------------------------------------------------

ROOTS = (
    "node",
    "nodes",
    "offers",
    "offer",
    "viewer",
    "users",
    "merchants",
    "merchant",
    "organisations",
    "campaigns",
    "leaderboard",
    "retirementPool",
    "platformImpact",
    "actionTypes",
    "reviewQueue",
    "medalCatalogue",
)


class QueryBuilder:
    """Builds one query text from hypothesis draws."""

    def __init__(self, world: World, draw: Any) -> None:
        self.world = world
        self.draw = draw
        self.counter = 0
        self.fragments: list[str] = []
        self.variables: dict[str, Any] = {}
        self.declarations: list[str] = []

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def _fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _literal(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, list):
            return "[" + ", ".join(self._literal(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {self._literal(v)}" for k, v in value.items()) + "}"
        return str(value)

    def _arguments(self, field_def: Any) -> str | None:
        parts = []
        for name, arg in field_def.args.items():
            required = isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
            if name in ("first", "last"):
                if self.draw(st.booleans()):
                    n = self.draw(st.integers(min_value=0, max_value=4))
                    if self.draw(st.booleans()):
                        var = self._fresh("n")
                        self.declarations.append(f"${var}: Int")
                        self.variables[var] = n
                        parts.append(f"{name}: ${var}")
                    else:
                        parts.append(f"{name}: {n}")
                continue
            if not required and not self.draw(st.integers(0, 4)) == 0:
                continue
            named = get_named_type(arg.type)
            if isinstance(named, GraphQLInputObjectType) and not required:
                continue
            value = _value(arg.type, name, self.world.ids, self.pick)
            if isinstance(named, GraphQLEnumType) and not isinstance(value, list):
                parts.append(f"{name}: {value}")
            elif isinstance(named, GraphQLEnumType):
                parts.append(f"{name}: [{', '.join(value)}]")
            elif isinstance(named, GraphQLInputObjectType):
                var = self._fresh("v")
                self.declarations.append(f"${var}: {arg.type}")
                self.variables[var] = value
                parts.append(f"{name}: ${var}")
            else:
                parts.append(f"{name}: {self._literal(value)}")
        return f"({', '.join(parts)})" if parts else ""

    def _directive(self) -> str:
        choice = self.draw(st.integers(0, 5))
        if choice == 0:
            var = self._fresh("b")
            self.declarations.append(f"${var}: Boolean!")
            self.variables[var] = self.draw(st.booleans())
            return f" @{self.pick(['skip', 'include'])}(if: ${var})"
        if choice == 1:
            return f" @{self.pick(['skip', 'include'])}(if: {self.pick(['true', 'false'])})"
        return ""

    def selection(self, type_: Any, depth: int) -> str:
        if isinstance(type_, GraphQLInterfaceType | GraphQLUnionType):
            possible = sorted(self.world.schema.get_possible_types(type_), key=lambda t: t.name)
            parts = ["__typename"]
            if isinstance(type_, GraphQLInterfaceType):
                parts.append(self._fields(type_, depth, at_least=1))
            for runtime in self.draw(st.lists(st.sampled_from(possible), max_size=2, unique=True)):
                parts.append(f"... on {runtime.name} {{ {self._fields(runtime, depth, at_least=1)} }}")
            return " ".join(parts)
        body = self._fields(type_, depth, at_least=1)
        style = self.draw(st.integers(0, 4))
        if style == 0:
            name = self._fresh("F")
            self.fragments.append(f"fragment {name} on {type_.name} {{ {body} }}")
            return f"...{name}{self._directive()}"
        if style == 1:
            return f"... on {type_.name}{self._directive()} {{ {body} }}"
        return body

    def _fields(self, type_: Any, depth: int, at_least: int = 1) -> str:
        fields = sorted(type_.fields.items())
        chosen = self.draw(
            st.lists(st.sampled_from(fields), min_size=at_least, max_size=4, unique_by=lambda f: f[0])
        )
        parts = []
        for name, field_def in chosen:
            named = get_named_type(field_def.type)
            nested = isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType)
            if nested and depth <= 0:
                parts.append("__typename")
                continue
            args = self._arguments(field_def)
            if args is None:
                continue
            alias = f"{self._fresh('a')}: " if self.draw(st.integers(0, 3)) == 0 else ""
            text = f"{alias}{name}{args}{self._directive()}"
            if nested:
                text += " { " + self.selection(named, depth - 1) + " }"
            parts.append(text)
        return " ".join(parts) or "__typename"

    def query(self) -> str:
        query_type = self.world.schema.query_type
        roots = [r for r in ROOTS if r in query_type.fields]
        chosen = self.draw(st.lists(st.sampled_from(roots), min_size=1, max_size=3, unique=True))
        parts = []
        for root in chosen:
            field_def = query_type.fields[root]
            args = self._arguments(field_def) or ""
            named = get_named_type(field_def.type)
            text = f"{self._fresh('r')}: {root}{args}"
            if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLUnionType):
                text += " { " + self.selection(named, 3) + " }"
            parts.append(text)
        declared = f"({', '.join(self.declarations)})" if self.declarations else ""
        return "\n".join([f"query Q{declared} {{ {' '.join(parts)} }}", *self.fragments])


def _corpus(world: World) -> list[tuple[str, dict, str]]:
    corpus: list[tuple[str, dict, str]] = []

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def collect(data: Any) -> None:
        builder = QueryBuilder(world, data.draw)
        text = builder.query()
        viewer = data.draw(st.sampled_from(sorted(world.viewers)))
        corpus.append((text, builder.variables, viewer))

    collect()
    return corpus


async def test_generated_selections_answer_the_same_on_both_paths(world):
    corpus = _corpus(world)
    assert len(corpus) >= EXAMPLES // 2
    before = world.plans.compiled_runs
    answered = errored = 0
    for text, variables, viewer in corpus:
        oracle, compiled = await world.both(text, variables, viewer)
        assert compiled == oracle, (text, variables, viewer)
        answered += bool(oracle[0])
        errored += bool(oracle[1])
    # The corpus reaches the compiled path, with answers and with errors (auth failures, bad IDs...).
    assert world.plans.compiled_runs > before
    assert answered and errored


async def test_errors_nulls_and_abstract_types_on_both_paths(world):
    """Hand-picked shapes the corpus may miss: a null propagating through non-null fields, Node with
    fragments on several types, a field needing a viewer asked anonymously, a list of nodes with holes."""
    ids = world.ids
    cases = [
        ("{ viewer { id displayName account { balance } } }", {}, "anonymous"),
        ("{ users(first: 2) { nodes { id } } }", {}, "member"),
        (
            "query($ids: [ID!]!, $x: Boolean!) { nodes(ids: $ids) { __typename id"
            " ... on Offer { titleZh merchant @include(if: $x) { nameZh } } ...M } }"
            " fragment M on Merchant { nameEn offers(first: 1) { totalCount } }",
            {"ids": ids, "x": True},
            "member",
        ),
        (
            "query($x: Boolean!) { offers(first: 2) { nodes { id @skip(if: $x) t: titleEn } } }",
            {"x": True},
            "member",
        ),
        (
            "query($x: Boolean!) { offers(first: 2) { nodes { id @skip(if: $x) t: titleEn } } }",
            {"x": False},
            "member",
        ),
        ('{ node(id: "bm90OmFuaWQ=") { id } offers(first: -1) { totalCount } }', {}, "admin"),
    ]
    answers = []
    for text, variables, viewer in cases:
        oracle, compiled = await world.both(text, variables, viewer)
        assert compiled == oracle, text
        answers.append(compiled)
    # The cases do exercise what they say: an auth failure with its path, nodes of several types, a skip.
    assert any(code for _m, _p, code in answers[1][1])
    assert len({n["__typename"] for n in answers[2][0]["nodes"] if n}) >= 2
    assert answers[3][0]["offers"]["nodes"][0].keys() == {"t"}
    assert answers[4][0]["offers"]["nodes"][0].keys() == {"id", "t"}


# --- (c) production mode uses it, the setting turns it off ---------------------------------------------------


@pytest.mark.parametrize("flag, expected", [(None, True), (False, False)])
async def test_production_mode_runs_compiled_unless_turned_off(db_url, clock, flag, expected):
    graphql = {} if flag is None else {"compiled_execution": flag}
    settings = make_settings(db_url, mode="production", secret_key="k" * 40, graphql=graphql)
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        plans = application.state.schema.execution_context_class.plans
        assert plans.enabled is expected
        client = GraphQLClient(application)
        try:
            body = await client("{ offers(first: 3) { totalCount nodes { id } } }")
        finally:
            await client.aclose()
        assert body["data"] == {"offers": {"totalCount": 0, "nodes": []}}
        assert plans.compiled_runs == (1 if expected else 0)


async def test_development_mode_defaults_to_graphql_core(db_url, clock):
    application = create_app(make_settings(db_url), clock=clock)
    async with application.router.lifespan_context(application):
        plans = application.state.schema.execution_context_class.plans
        assert plans.enabled is False
        client = GraphQLClient(application)
        try:
            await client("{ offers(first: 1) { totalCount } }")
        finally:
            await client.aclose()
        assert plans.compiled_runs == 0


# --- (d) a domain that misbehaves on purpose: null propagation, list items, abstract types, errors ---------


@strawberry.enum(name="OddColour", description="A colour. / 颜色。")
class Colour(enum.Enum):
    RED = "RED"
    GREEN = "GREEN"


@strawberry.interface(name="OddShape", description="A shape. / 形状。")
class Shape:
    name: str


@strawberry.type(name="OddCircle", description="A circle. / 圆。")
class Circle(Shape):
    radius: int


@strawberry.type(name="OddSquare", description="A square. / 正方形。")
class Square(Shape):
    side: int

    @strawberry.field(description="Fails. / 出错。")
    def broken(self) -> int:
        raise NotFound("No side / 无边", field="side")


HANG_CANCELLED: list[bool] = []


@strawberry.type(name="OddLeaves", description="Leaf attributes of every Python type. / 各类叶子值。")
class Leaves:
    text: str
    maybe_text: str | None
    count: int
    maybe_count: int | None
    flag: bool
    ident: strawberry.ID
    when: datetime | None
    colour: Colour | None
    ratio: float | None

    @strawberry.field(description="A resolver on self only. / 仅 self 的解析器。")
    def label(self) -> str:
        if self.count == 2:
            raise NotFound("Two / 二", field="count")
        return self.text  # wrong types pass through to the serialiser

    @strawberry.field(description="Another, nullable. / 可空。")
    def maybe_label(self) -> str | None:
        return self.maybe_text


# Each row puts a value of another Python type (or None, or out of range) into one attribute, so the
# generated field functions leave their fast path for it; graphql-core's answer is the reference.
_WHEN = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
LEAF_ROWS: list[dict[str, Any]] = [
    {},
    {"text": 5, "maybe_text": 7.5, "count": True, "maybe_count": "3", "flag": 0, "ident": 12},
    {"text": None},
    {"count": 2**40},
    {"maybe_count": 2**31, "flag": "yes"},
    {"ident": None, "when": "not a date"},
    {"colour": "BLUE", "ratio": float("inf")},
    {"count": 2, "maybe_text": None, "when": None, "colour": None, "ratio": None, "maybe_count": None},
    {"text": True, "ratio": 1},
]


def _leaves(row: dict[str, Any]) -> Leaves:
    values = {"text": "t", "maybe_text": "m", "count": 1, "maybe_count": 4, "flag": True, "ident": "i",
              "when": _WHEN, "colour": Colour.RED, "ratio": 0.5, **row}
    return Leaves(**values)


@strawberry.type(name="OddItem", description="An item. / 条目。")
class Item:
    n: int

    @strawberry.field(description="n, or an error for odd n. / 奇数出错。")
    def strict(self) -> int:
        if self.n % 2:
            raise NotFound(f"Odd {self.n} / 奇数", field="n")
        return self.n

    @strawberry.field(description="n, or null (for a non-null field) when n is 3. / 3 时返回 null。")
    async def late(self) -> int:
        await asyncio.sleep(0)
        return None if self.n == 3 else self.n  # type: ignore[return-value]

    @strawberry.field(description="The next item, down to 0. / 下一个。")
    async def child(self) -> "Item | None":
        await asyncio.sleep(0)
        return Item(n=self.n - 1) if self.n > 0 else None

    @strawberry.field(description="Unexpected failure at n = 2. / 意外错误。")
    def boom(self) -> str | None:
        if self.n == 2:
            raise RuntimeError("boom")
        return str(self.n)

    @strawberry.field(description="A colour, an invalid one at n = 1. / 颜色。")
    def colour(self) -> Colour:
        return "PURPLE" if self.n == 1 else Colour.GREEN  # type: ignore[return-value]


@strawberry.type(
    name="Oddities", description="Misbehaving fields for the compiled-execution oracle. / 测试用。"
)
class Oddities:
    @strawberry.field(description="Null for a non-null field. / 非空字段返回 null。")
    def null_for_non_null(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field(description="Leaves of odd types (nullable items). / 叶子值。")
    def leaves(self) -> list[Leaves | None]:
        return [_leaves(row) for row in LEAF_ROWS]

    @strawberry.field(description="The same, non-null items. / 非空条目。")
    def strict_leaves(self) -> list[Leaves]:
        return [_leaves(row) for row in LEAF_ROWS[:2]] + [_leaves({"flag": None})]

    @strawberry.field(description="Items 0..4 (non-null items). / 条目。")
    def items(self) -> list[Item]:
        return [Item(n=i) for i in range(5)]

    @strawberry.field(description="Items 0..4 (nullable items). / 条目。")
    async def maybe_items(self) -> list[Item | None]:
        return [Item(n=i) if i != 4 else None for i in range(5)]

    @strawberry.field(description="Nested lists with nulls. / 嵌套列表。")
    def matrix(self) -> list[list[int | None] | None]:
        return [[1, None, 3], None, []]

    @strawberry.field(description="A string where a list is expected. / 非列表。")
    def not_a_list(self) -> list[int] | None:
        return "abc"  # type: ignore[return-value]

    @strawberry.field(description="Shapes. / 形状。")
    def shapes(self) -> list[Shape]:
        return [Circle(name="c", radius=2), Square(name="s", side=3)]

    @strawberry.field(description="A union. / 联合类型。")
    def either(self) -> list[Circle | Item]:
        return [Circle(name="c", radius=1), Item(n=3)]

    @strawberry.field(description="Awaitable list items, one failing. / 可等待的条目。")
    def awaitable_items(self) -> list[int | None]:
        async def value(n: int) -> int:
            await asyncio.sleep(0)
            if n == 2:
                raise NotFound("No 2 / 无 2", field="n")
            return n

        return [value(n) for n in range(4)]  # type: ignore[misc]

    @strawberry.field(description="An item where a circle is expected (is_type_of). / 类型错误。")
    def wrong_circle(self) -> Circle | None:
        return Item(n=1)  # type: ignore[return-value]

    @strawberry.field(description="A circle where an item is expected. / 类型错误。")
    def wrong_type(self) -> Item | None:
        return Circle(name="c", radius=1)  # type: ignore[return-value]

    @strawberry.field(description="Never answers; records its cancellation. / 永不返回。")
    async def hang(self) -> int | None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            HANG_CANCELLED.append(True)
            raise
        return None

    @strawberry.field(description="An item with an argument. / 带参数。")
    def item(self, n: int = 2) -> Item:
        return Item(n=n)


@strawberry.type
class OdditiesQuery:
    @strawberry.field(description="Misbehaving fields. / 测试用。")
    def oddities(self) -> Oddities:
        return Oddities()


def oddities_plugin() -> Any:
    class Plugin:
        @hookimpl
        def jingtan_register_domain(self) -> Domain:
            return Domain(name="oddities", query=[OdditiesQuery], types=[Circle, Square, Leaves])

    return Plugin()


ODD_CASES = [
    "{ oddities { nullForNonNull } }",
    "{ o: oddities { items { n strict } } }",
    "{ oddities { maybeItems { n strict late } } }",
    "{ oddities { maybeItems { n late child { n late child { n child { late } } } } } }",
    "{ oddities { items { n boom colour } } }",
    "{ oddities { maybeItems { colour } matrix notAList } }",
    "{ oddities { shapes { __typename name ... on OddCircle { radius } ... on OddSquare { side broken } } } }",
    "{ oddities { either { __typename ... on OddCircle { name } ... on OddItem { n strict } } } }",
    "query($n: Int!, $s: Boolean!) { oddities { item(n: $n) { n strict late @skip(if: $s) } x: item { n } } }",
    "{ oddities { items { child { child { strict } } } maybeItems { ...I } } } fragment I on OddItem { late boom }",
    "{ oddities { awaitableItems wrongType { n } wrongCircle { radius } } }",
    "{ oddities { leaves { text maybeText count maybeCount flag ident when colour ratio label maybeLabel __typename } } }",
    "{ oddities { leaves { t: text t2: text, ...L } } } fragment L on OddLeaves { label count }",
    "{ oddities { strictLeaves { text flag } leaves { maybeText } } }",
]


@pytest.fixture
async def odd_world(settings, clock) -> Any:
    application = create_app(settings, clock=clock, plugins=[("oddities", oddities_plugin())])
    async with application.router.lifespan_context(application):
        client = GraphQLClient(application)
        w = World(application, client)
        w.viewers = {"anonymous": None}
        try:
            yield w
        finally:
            await client.aclose()


async def test_misbehaving_fields_fail_the_same_way_on_both_paths(odd_world):
    before = odd_world.plans.compiled_runs
    codes = set()
    for text in ODD_CASES:
        for variables in ({"n": 3, "s": False}, {"n": 4, "s": True}) if "$n" in text else ({},):
            oracle, compiled = await odd_world.both(text, variables, "anonymous")
            assert compiled == oracle, text
            assert oracle[1] or variables.get("n") == 4, text  # each case raises something
            codes |= {code for _m, _p, code in oracle[1]}
    assert odd_world.plans.compiled_runs - before == len(ODD_CASES) + 1
    assert {"NOT_FOUND", "INTERNAL_SERVER_ERROR"} <= codes


@pytest.mark.parametrize(
    "query, too_large",
    [("{ oddities { items { n child { n } } } }", True), ("{ oddities { item { n } } }", False)],
)
async def test_object_limit_is_the_same_on_both_paths(db_url, clock, query, too_large):
    settings = make_settings(db_url, limits={"max_objects": 6}, graphql={"compiled_execution": True})
    application = create_app(settings, clock=clock, plugins=[("oddities", oddities_plugin())])
    async with application.router.lifespan_context(application):
        client = GraphQLClient(application)
        world = World(application, client)
        try:
            oracle, compiled = await world.both(query, {}, "anonymous")
        finally:
            await client.aclose()
    assert compiled == oracle
    assert (oracle[1] == [(oracle[1][0][0], None, "RESULT_TOO_LARGE")]) if too_large else oracle[1] == []
    assert world.plans.compiled_runs == 1


async def test_timeout_is_the_same_on_both_paths_and_cancels_the_resolver(db_url, clock):
    settings = make_settings(db_url, limits={"execution_timeout_seconds": 0.2}, graphql={"compiled_execution": True})
    application = create_app(settings, clock=clock, plugins=[("oddities", oddities_plugin())])
    HANG_CANCELLED.clear()
    async with application.router.lifespan_context(application):
        client = GraphQLClient(application)
        world = World(application, client)
        try:
            oracle, compiled = await world.both("{ oddities { hang items { n } } }", {}, "anonymous")
            await asyncio.sleep(0.05)  # the cancelled task runs its except clause
        finally:
            await client.aclose()
    assert compiled == oracle
    assert oracle == (None, [(oracle[1][0][0], None, "TIMEOUT")])
    assert world.plans.compiled_runs == 1
    assert HANG_CANCELLED == [True, True]  # graphql-core's path and the compiled one both cancelled it


def test_the_enum_serializer_answers_as_the_types_own_method(db_url, clock):
    """``leaf_serializer`` (one dict lookup for strawberry's enums) gives what each enum type's own
    ``coerce_output_value`` gives, for every member of every enum of the schema, for raw values and for
    a value the enum does not have (the same error)."""
    from graphql import GraphQLEnumType

    from jingtan_api.graphql.compiled import leaf_serializer

    schema = create_app(make_settings(db_url), clock=clock).state.schema._schema
    enums = [t for t in schema.type_map.values() if isinstance(t, GraphQLEnumType) and not t.name.startswith("__")]
    assert len(enums) > 10
    checked = 0
    for enum_type in enums:
        fast = leaf_serializer(enum_type)
        cls = getattr(enum_type, "wrapped_cls", None)
        members = list(cls) if isinstance(cls, type) and issubclass(cls, enum.Enum) else []
        for member in members:
            assert fast(member) == enum_type.coerce_output_value(member)
            checked += 1
        for value in [v.value for v in enum_type.values.values()] + ["NO_SUCH_VALUE_X"]:
            try:
                expected: Any = enum_type.coerce_output_value(value)
            except Exception as error:  # noqa: BLE001 - the same error class either way
                with pytest.raises(type(error)):
                    fast(value)
            else:
                assert fast(value) == expected
    assert checked > 50
