"""Static query cost (Shopify/GitHub style), computed after validation and before execution.

* a field returning an object (or a list of objects) costs 1 plus its selection;
* a connection field (a type named ``…Connection``) costs 1 plus ``first``/``last`` (or the default page
  size) times its selection, so ``entries(first: 100) { edges { node { id } } }`` costs 1 + 100 × 2;
* scalar and enum fields cost nothing; introspection fields cost nothing.

An operation whose cost exceeds ``graphql.max_cost`` is refused with ``QUERY_TOO_COMPLEX`` before any
resolver runs. Every response reports ``extensions.cost = {requested, limit}``.
"""

from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)
from strawberry.extensions import SchemaExtension


def _page_size(field: FieldNode, variables: dict[str, Any], default: int) -> int:
    size = None
    for arg in field.arguments or ():
        if arg.name.value not in ("first", "last"):
            continue
        value = arg.value
        if isinstance(value, IntValueNode):
            size = int(value.value)
        elif isinstance(value, VariableNode):
            raw = variables.get(value.name.value)
            size = raw if isinstance(raw, int) else None
    return max(0, size) if size is not None else default


def _selection_cost(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode | None,
    parent: Any,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    default_page: int,
    seen: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                continue
            field_def = parent.fields.get(name)
            if field_def is None:
                continue
            named = get_named_type(field_def.type)
            if is_leaf_type(named):
                continue
            child = _selection_cost(schema, selection.selection_set, named, fragments, variables, default_page, seen)
            if named.name.endswith("Connection"):
                total += 1 + _page_size(selection, variables, default_page) * child
            else:
                total += 1 + child
        elif isinstance(selection, InlineFragmentNode):
            target = schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
            total += _selection_cost(schema, selection.selection_set, target, fragments, variables, default_page, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in seen:
                continue
            target = schema.get_type(fragment.type_condition.name.value)
            total += _selection_cost(
                schema, fragment.selection_set, target, fragments, variables, default_page, seen | {name}
            )
    return total


def operation_cost(
    schema: GraphQLSchema, document: Any, operation_name: str | None, variables: dict[str, Any], default_page: int
) -> int:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        return 0
    operation = operations[0]
    root = schema.get_root_type(operation.operation)
    return _selection_cost(schema, operation.selection_set, root, fragments, variables or {}, default_page)


CACHE_SIZE = 1000


def _cache_key(query: str | None, operation_name: str | None, variables: dict[str, Any]) -> tuple:
    # Only integer variables can change a cost (page sizes); any other value counts as absent.
    ints = tuple(sorted((k, v) for k, v in variables.items() if type(v) is int))
    return (query, operation_name, ints)


class QueryCost(SchemaExtension):
    """``cache`` (one dict per schema) remembers costs by (query text, operation, integer variables):
    walking the document costs about as much as executing a small query."""

    def __init__(self, *, max_cost: int, default_page_size: int, cache: dict | None = None) -> None:
        super().__init__()
        self.max_cost = max_cost
        self.default_page_size = default_page_size
        self.cache = cache
        self.cost: int | None = None

    def _operation_cost(self) -> int:
        ctx = self.execution_context
        variables = ctx.variables or {}
        key = _cache_key(ctx.query, ctx.operation_name, variables) if self.cache is not None and ctx.query else None
        if key is not None:
            cost = self.cache.get(key)
            if cost is not None:
                return cost
        cost = operation_cost(
            ctx.schema._schema, ctx.graphql_document, ctx.operation_name, variables, self.default_page_size
        )
        if key is not None:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            self.cache[key] = cost
        return cost

    def on_validate(self) -> Iterator[None]:
        # Runs after ValidationCache has validated (it is listed before us) and before strawberry checks
        # for pre-execution errors, so an over-limit operation never reaches a resolver.
        ctx = self.execution_context
        if ctx.graphql_document is not None and not ctx.pre_execution_errors:
            self.cost = self._operation_cost()
            if self.cost > self.max_cost:
                ctx.pre_execution_errors = [
                    GraphQLError(
                        f"Query cost {self.cost} exceeds the limit of {self.max_cost}: ask for smaller pages / "
                        f"查询过于复杂（{self.cost} > {self.max_cost}），请减少分页数量",
                        extensions={"code": "QUERY_TOO_COMPLEX", "cost": self.cost, "limit": self.max_cost},
                    )
                ]
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "limit": self.max_cost}}
