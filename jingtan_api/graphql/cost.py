"""Query cost (Shopify/GitHub style), objects per answer and execution time.

Static cost, computed after validation and before execution:

* a field returning an object (or a list of objects) costs 1 plus its selection;
* a connection field (a type named ``…Connection``) costs 1 plus ``first``/``last`` (or the default page
  size) times its selection, so ``entries(first: 100) { edges { node { id } } }`` costs 1 + 100 × 2;
* a list field with a list argument (``nodes(ids: […])``) costs 1 plus, per entry, 1 plus its selection;
* variables that are not sent count with their default value (``query Q($n: Int = 100)``);
* scalar and enum fields cost nothing; introspection fields cost nothing.

An operation whose cost exceeds ``graphql.max_cost`` is refused with ``QUERY_TOO_COMPLEX`` before any
resolver runs. Over HTTP the requested cost is then charged to the client's rate-limit bucket (see
``QueryCost``), and ``LimitedExecutionContext`` counts the objects answered (the actual cost) and aborts
at ``limits.max_objects`` or ``limits.execution_timeout_seconds``. Every response reports
``extensions.cost = {requestedQueryCost, actualQueryCost, throttleStatus?}``.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import AbortController, AbortedGraphQLExecutionError, OperationType
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from jingtan_api.limits import BucketState, RequestLimits, rate_limit_headers
from jingtan_api.settings import BucketSettings


def _argument_value(value: ValueNode, variables: dict[str, Any]) -> Any:
    if isinstance(value, VariableNode):
        return variables.get(value.name.value)
    return value_from_ast_untyped(value, variables)


def _page_size(field: FieldNode, variables: dict[str, Any], default: int) -> int:
    size = None
    for arg in field.arguments or ():
        if arg.name.value in ("first", "last"):
            raw = _argument_value(arg.value, variables)
            if type(raw) is int:
                size = raw
    return max(0, size) if size is not None else default


def _has_list_argument(field: FieldNode, variables: dict[str, Any]) -> bool:
    return any(isinstance(_argument_value(arg.value, variables), list) for arg in field.arguments or ())


def _list_length(field: FieldNode, variables: dict[str, Any]) -> int:
    """The longest list argument of a field that returns a list (``nodes(ids: […])``): one result per entry."""
    longest = 1
    for arg in field.arguments or ():
        raw = _argument_value(arg.value, variables)
        if isinstance(raw, list):
            longest = max(longest, len(raw))
    return longest


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
            elif is_list_type(get_nullable_type(field_def.type)):
                # Each entry is an object (1) with its selection.
                total += 1 + _list_length(selection, variables) * (1 + child) if _has_list_argument(selection, variables) else 1 + child
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
    # A variable that is not sent takes its default value (``query Q($n: Int = 100)``).
    effective: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            effective[definition.variable.name.value] = value_from_ast_untyped(definition.default_value)
    effective.update(variables or {})
    return _selection_cost(schema, operation.selection_set, root, fragments, effective, default_page)


CACHE_SIZE = 1000


def _cache_key(query: str | None, operation_name: str | None, variables: dict[str, Any]) -> tuple:
    # Only integer variables (page sizes) and the lengths of list variables can change a cost; any other
    # value counts as absent (a variable's default is part of the query text).
    sizes = tuple(
        sorted(
            (k, v if type(v) is int else ("len", len(v)))
            for k, v in variables.items()
            if type(v) is int or isinstance(v, list)
        )
    )
    return (query, operation_name, sizes)


# Root mutation fields with their own, stricter buckets: (bucket setting, charged to "address"/"client"/"all").
MUTATION_BUCKETS: dict[str, tuple[tuple[str, str], ...]] = {
    "login": (("login", "address"),),
    "register": (("registration", "address"), ("registration_global", "all")),
    "submitAction": (("submit_action", "client"),),
}


def _root_field_counts(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str] = frozenset()
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for selection in selection_set.selections:
        inner: dict[str, int] = {}
        if isinstance(selection, FieldNode):
            inner = {selection.name.value: 1}
        elif isinstance(selection, InlineFragmentNode):
            inner = _root_field_counts(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                inner = _root_field_counts(fragment.selection_set, fragments, seen | {selection.name.value})
        for name, n in inner.items():
            counts[name] = counts.get(name, 0) + n
    return counts


def limit_error(message: str, *, code: str, **extensions: Any) -> GraphQLError:
    """A request-level refusal: a GraphQL error with ``extensions.code`` (a code of ``ERROR_CODES``)."""
    return GraphQLError(message, extensions={"code": code, **extensions})


def rate_limited_error(bucket: str, retry_after: int) -> GraphQLError:
    return limit_error(
        f"Rate limit of {bucket} reached: retry in {retry_after} s / 请求过于频繁，请 {retry_after} 秒后重试",
        code="RATE_LIMITED",
        retryAfter=retry_after,
        bucket=bucket,
    )


class QueryCost(SchemaExtension):
    """Static cost before execution (``QUERY_TOO_COMPLEX`` above ``max_cost``), then, when the request
    carries ``RequestLimits`` (HTTP requests do), the rate limits: the mutation's own buckets and the
    client's query bucket are charged the requested cost before anything runs (``RATE_LIMITED`` with
    ``retryAfter`` when they do not hold enough); afterwards the difference between the requested and the
    actual cost (objects answered) is given back, as Shopify does.

    ``cache`` (one dict per schema) remembers costs by (query text, operation, sizes in the variables):
    walking the document costs about as much as executing a small query."""

    def __init__(self, *, max_cost: int, default_page_size: int, cache: dict | None = None) -> None:
        super().__init__()
        self.max_cost = max_cost
        self.default_page_size = default_page_size
        self.cache = cache
        self.cost: int | None = None
        self.actual: int | None = None
        self.throttle: BucketState | None = None

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
        # Runs after the cached validation (assemble.DocumentChecks, listed before us) and before strawberry checks
        # for pre-execution errors, so an over-limit operation never reaches a resolver.
        ctx = self.execution_context
        if ctx.graphql_document is not None and not ctx.pre_execution_errors:
            self.cost = self._operation_cost()
            ctx.jingtan_query_cost = self.cost  # read by observability.graphql (metrics, slow log)
            if self.cost > self.max_cost:
                ctx.pre_execution_errors = [
                    limit_error(
                        f"Query cost {self.cost} exceeds the limit of {self.max_cost}: ask for smaller pages / "
                        f"查询过于复杂（{self.cost} > {self.max_cost}），请减少分页数量",
                        code="QUERY_TOO_COMPLEX",
                        cost=self.cost,
                        limit=self.max_cost,
                    )
                ]
        yield

    def _mutation_charges(self) -> list[tuple[str, str, int]]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is None:
            return []
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if ctx.operation_name:
            operations = [o for o in operations if o.name and o.name.value == ctx.operation_name]
        if not operations or operations[0].operation != OperationType.MUTATION:
            return []
        charges = []
        for name, count in _root_field_counts(operations[0].selection_set, fragments).items():
            for bucket, charged in MUTATION_BUCKETS.get(name, ()):
                charges.append((bucket, charged, count))
        return charges

    async def _charge(self, limits: RequestLimits, cost: int) -> GraphQLError | None:
        cfg = limits.settings
        spent: list[tuple[str, float, BucketSettings]] = []
        who = {"address": limits.address, "client": limits.client, "all": "all"}
        for name, charged, count in self._mutation_charges():
            bucket: BucketSettings = getattr(cfg, name)
            key = f"{name}:{who[charged]}"
            state = await limits.buckets.spend(key, count, bucket)
            if not state.allowed:
                await _give_back(limits, spent)
                self.throttle = await limits.buckets.peek(f"query:{limits.client}", cfg.query)
                return rate_limited_error(name, state.retry_after(count))
            spent.append((key, count, bucket))
        charge = min(cost, cfg.query.maximum)
        state = await limits.buckets.spend(f"query:{limits.client}", charge, cfg.query)
        self.throttle = state
        if not state.allowed:
            await _give_back(limits, spent)
            return rate_limited_error("query", state.retry_after(charge))
        return None

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        limits: RequestLimits | None = getattr(ctx.context, "limits", None)
        if limits is None or self.cost is None:
            yield
            return
        rate_limiting = limits.settings.rate_limiting
        before = limits.objects
        refused = await self._charge(limits, self.cost) if rate_limiting else None
        if refused is not None:
            # strawberry skips execution when an extension already set the result.
            ctx.result = GraphQLExecutionResult(data=None, errors=[refused])
        yield
        if refused is not None:
            self.actual = 0
            if self.throttle is not None:
                _set_headers(limits, self.throttle, retry_after=(refused.extensions or {}).get("retryAfter", 1))
            return
        self.actual = limits.objects - before
        if rate_limiting:
            cfg = limits.settings.query
            unused = min(self.cost, cfg.maximum) - min(self.actual, cfg.maximum)
            self.throttle = await limits.buckets.spend(f"query:{limits.client}", -max(0, unused), cfg)
            _set_headers(limits, self.throttle)

    def _subscription(self) -> bool:
        try:
            return self.execution_context.operation_type.value == OperationType.SUBSCRIPTION.value
        except RuntimeError:  # no operation could be chosen
            return False

    def get_results(self) -> dict[str, Any]:
        if self.cost is None or self._subscription():
            return {}  # a subscription's pushes are not requests: no cost report on each of them
        cost: dict[str, Any] = {"requestedQueryCost": self.cost, "actualQueryCost": self.actual}
        if self.throttle is not None:
            cost["throttleStatus"] = {
                "maximumAvailable": self.throttle.maximum,
                "currentlyAvailable": round(self.throttle.available, 1),
                "restoreRate": self.throttle.restore_rate,
            }
        return {"cost": cost}


async def _give_back(limits: RequestLimits, spent: list[tuple[str, float, BucketSettings]]) -> None:
    for key, count, bucket in spent:
        await limits.buckets.spend(key, -count, bucket)


def _set_headers(limits: RequestLimits, state: BucketState, *, retry_after: int | None = None) -> None:
    if limits.headers is not None:
        for name, value in rate_limit_headers(state, retry_after=retry_after).items():
            limits.headers[name] = value


class LimitedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Counts the objects of the answer while executing and aborts the operation (graphql-core's abort
    signal: in-flight resolvers are cancelled) when they exceed ``limits.max_objects``
    (``RESULT_TOO_LARGE``) or when it runs longer than ``limits.execution_timeout_seconds`` (``TIMEOUT``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits: RequestLimits | None = getattr(self.context_value, "limits", None)
        self._controller: AbortController | None = None
        self._reason: GraphQLError | None = None
        if self._limits is not None and self.abort_signal is None:
            self._controller = AbortController()
            self.abort_signal = self._controller.signal

    def _abort(self, error: GraphQLError) -> None:
        if self._controller is not None and self._reason is None:
            self._reason = error
            self._controller.abort(error)

    def complete_object_value(self, *args: Any, **kwargs: Any) -> Any:
        self._count_object()
        return super().complete_object_value(*args, **kwargs)

    def _count_object(self) -> None:
        """One more object in the answer (also called by compiled execution, jingtan_api.graphql.compiled)."""
        limits = self._limits
        if limits is not None:
            limits.objects += 1
            if limits.objects > limits.settings.max_objects and self._reason is None:
                maximum = limits.settings.max_objects
                self._abort(
                    limit_error(
                        f"The answer would contain more than {maximum} objects: ask for less / "
                        f"结果超过 {maximum} 个对象，请减少查询内容",
                        code="RESULT_TOO_LARGE",
                        limit=maximum,
                    )
                )

    def _run_operation(self, *args: Any, **kwargs: Any) -> Any:
        """The operation itself (graphql-core's; compiled execution overrides it)."""
        return super().execute_operation(*args, **kwargs)

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        if self._limits is None or self._controller is None:
            return self._run_operation(*args, **kwargs)
        seconds = self._limits.settings.execution_timeout_seconds
        timer = asyncio.get_running_loop().call_later(seconds, self._time_out, seconds)
        try:
            result = self._run_operation(*args, **kwargs)
        except AbortedGraphQLExecutionError:
            timer.cancel()
            return self._aborted_result()
        if not self.is_awaitable(result):
            timer.cancel()
            return result

        async def settle() -> Any:
            try:
                return await result
            except AbortedGraphQLExecutionError:
                return self._aborted_result()
            finally:
                timer.cancel()

        return settle()

    def _time_out(self, seconds: float) -> None:
        # The error is built only when the timer fires (it used to be built for every operation).
        self._abort(
            limit_error(
                f"The operation took longer than {seconds:g} s and was stopped / 执行超过 {seconds:g} 秒，已中止",
                code="TIMEOUT",
                limit=seconds,
            )
        )

    def _aborted_result(self) -> GraphQLExecutionResult:
        assert self._reason is not None
        return GraphQLExecutionResult(data=None, errors=[self._reason])
