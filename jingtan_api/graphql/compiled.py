"""Compiled execution of validated query operations (issue #15).

graphql-core executes every field generically: it collects the selection set again for every object,
looks the field definition up, builds a ``GraphQLResolveInfo``, coerces the arguments and dispatches the
completion on the return type, per field and per row. For a query operation this module does that work
once and keeps it as a *plan*, keyed by the operation node (one per parsed document: ``ParserCache``
hands the same document to every request with the same text) and the values of the variables that
``@skip``/``@include`` read:

* per selection: response key, field definition, the resolver — or, for a strawberry field without a
  resolver, extension or permission class, the attribute it reads (no ``Info`` is built then);
* arguments without variables, coerced once; arguments with variables coerced per request exactly as
  graphql-core does (``get_argument_values``);
* the completion of the return type: non-null, list, leaf (the type's own ``coerce_output_value``),
  object (``is_type_of`` kept), abstract (``resolve_type`` and graphql-core's own runtime-type checks);
  sub-selections are collected with graphql-core's ``collect_subfields`` the first time a type is met
  and kept in the plan.

Execution keeps graphql-core's semantics while doing less per field:

* each object type's selection set is completed by a generated function (``_generate``): leaf fields read
  from an attribute or a ``self``-only resolver are checked and stored inline, everything else calls
  the general code, which also takes over any value the inline check does not accept;
* completion returns values or asyncio futures chained by done-callbacks — no coroutine and task per
  field, object and list; a DataLoader's future (``jingtan_api.context.mapped``) is used as it is;
* real resolvers are called with a real ``GraphQLResolveInfo`` (strawberry's wrappers, permissions and
  DataLoaders behave the same); errors are located and propagated through non-null fields by the
  executor's own ``handle_field_error`` into its ``collected_errors``; every object counts toward
  ``LimitedExecutionContext``'s ``max_objects``, and the operation is raced once against the abort
  signal (the same ``RESULT_TOO_LARGE`` / ``TIMEOUT`` answers; running resolver tasks are cancelled).

Falls back to graphql-core for anything else: mutations and subscriptions, documents with ``@defer`` or
``@stream``, introspection fields other than ``__typename``, fragment variables, field middleware
(resolver-level extensions, e.g. the tracing observer), and async-iterable list results (that subtree).

graphql-core stays the oracle: tests/test_compiled_execution.py runs every query of schema/operations/
and a hypothesis-generated corpus through both paths and requires the same ``data`` and ``errors``.
"""

from asyncio import Future, Task, ensure_future, get_running_loop
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from keyword import iskeyword
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetails, collect_fields
from graphql.execution.executor import invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, inspect, is_iterable
from strawberry.types.field import StrawberryField

from jingtan_api.futures import settle_from
from jingtan_api.graphql.cost import LimitedExecutionContext

PLAN_CACHE_SIZE = 1000
# Plans kept per operation for different @skip/@include variable values.
MAX_VARIANTS = 32
_UNSUPPORTED_DIRECTIVES = frozenset({"defer", "stream"})
_IMMUTABLE = (str, int, float, bool, type(None))


class PlanCache:
    """The plans of one schema, with counters (read by tests and ``bench/``)."""

    def __init__(self, *, enabled: bool = True, maxsize: int = PLAN_CACHE_SIZE) -> None:
        self.enabled = enabled
        self.maxsize = maxsize
        # id(operation node) -> [(variable key, plan or None when unsupported)]
        self._plans: dict[int, tuple[OperationDefinitionNode, dict[tuple, Plan | None]]] = {}
        self._shapes: dict[int, tuple[OperationDefinitionNode, tuple[str, ...] | None]] = {}
        self.built = 0
        self.compiled_runs = 0
        self.fallbacks = 0

    def clear(self) -> None:
        self._plans.clear()
        self._shapes.clear()


@dataclass(eq=False)
class FieldPlan:
    response_key: str
    parent_type: GraphQLObjectType
    field_def: GraphQLField
    field_details_list: list[FieldDetails]
    nodes: list[FieldNode]
    return_type: GraphQLOutputType
    resolve: Callable[..., Any]
    # A strawberry field without a resolver: ``getter(source, attribute)`` and no Info.
    getter: Callable[[Any, str], Any] | None = None
    attribute: str = ""
    typename: bool = False
    static_args: dict[str, Any] | None = None
    needs_info: bool = True
    # A strawberry resolver taking only ``self`` (and perhaps an Info): called as ``direct(source)`` or
    # ``direct(source, <direct_info>=Info)``, without strawberry's argument conversion and wrappers.
    direct: Callable[..., Any] | None = None
    direct_info: str | None = None
    definition: Any = None
    info_class: Any = None
    # Sub-selections per runtime object type, collected the first time the type is met.
    subplans: dict[str, list["FieldPlan"]] = field(default_factory=dict)
    # The generated function completing those sub-selections (``_generate``), per runtime object type.
    subfns: dict[str, Callable[..., Any]] = field(default_factory=dict)


@dataclass(eq=False)
class Plan:
    operation: OperationDefinitionNode
    root_type: GraphQLObjectType
    root_fields: list[FieldPlan]
    root_fn: Callable[..., Any] | None = None


# --- what the plan supports -----------------------------------------------------------------------------


def _walk_selections(selection_set: SelectionSetNode | None, out: list[Any]) -> None:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        out.append(selection)
        _walk_selections(getattr(selection, "selection_set", None), out)


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


def operation_shape(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> tuple[str, ...] | None:
    """The variables ``@skip``/``@include`` read (the plan depends on their values), or None when the
    operation needs graphql-core (not a query, ``@defer``/``@stream``, introspection, fragment variables)."""
    if operation.operation is not OperationType.QUERY:
        return None
    selections: list[Any] = []
    _walk_selections(operation.selection_set, selections)
    for fragment in fragments.values():
        if fragment.variable_definitions:
            return None
        _walk_selections(fragment.selection_set, selections)
    names: set[str] = set()
    for node in (operation, *selections):
        if (
            isinstance(node, FieldNode)
            and node.name.value.startswith("__")
            and node.name.value != "__typename"
        ):
            return None
        for directive in getattr(node, "directives", None) or ():
            name = directive.name.value
            if name in _UNSUPPORTED_DIRECTIVES:
                return None
            if name in ("skip", "include"):
                for arg in directive.arguments or ():
                    if isinstance(arg.value, VariableNode):
                        names.add(arg.value.name.value)
    return tuple(sorted(names))


def _basic_attribute(field_def: GraphQLField) -> tuple[Callable[[Any, str], Any], str] | None:
    """(getter, attribute) when strawberry would only read an attribute for this field."""
    resolve = field_def.resolve
    if resolve is None or not getattr(resolve, "_is_default", False):
        return None
    definition = field_def.extensions.get("strawberry-definition")
    if (
        not isinstance(definition, StrawberryField)
        or type(definition).get_result is not StrawberryField.get_result
    ):
        return None
    if definition.base_resolver is not None or definition.extensions:
        return None
    return definition.default_resolver, definition.python_name


def _direct_resolver(field_def: GraphQLField) -> tuple[Callable[..., Any], str | None, Any] | None:
    """(function, name of its Info parameter or None, definition) for a strawberry resolver that takes
    only ``self`` (and optionally an Info) and has no arguments, extensions or permission classes:
    strawberry would call it as ``wrapped_func(source[, info=Info])`` after converting no arguments."""
    definition = field_def.extensions.get("strawberry-definition")
    if (
        field_def.args
        or not isinstance(definition, StrawberryField)
        or type(definition).get_result is not StrawberryField.get_result
        or definition.extensions
        or definition.is_subscription
    ):
        return None
    resolver = definition.base_resolver
    if resolver is None or resolver.is_async or resolver.arguments:
        return None
    if resolver.self_parameter is None or resolver.root_parameter is not None or resolver.parent_parameter is not None:
        return None
    info = resolver.info_parameter
    expected = {resolver.self_parameter.name, *((info.name,) if info is not None else ())}
    if set(resolver.signature.parameters) != expected or not callable(resolver.wrapped_func):
        return None
    return resolver.wrapped_func, (info.name if info is not None else None), definition


def _needs_info(return_type: GraphQLOutputType) -> bool:
    named = return_type
    while hasattr(named, "of_type"):
        named = named.of_type  # type: ignore[attr-defined]
    if is_abstract_type(named):
        return True
    return bool(is_object_type(named) and named.is_type_of)  # type: ignore[union-attr]


_NON_NULL, _LIST, _LEAF, _OBJECT, _ABSTRACT = "non-null", "list", "leaf", "object", "abstract"
# Completion kind by the Python class of an output type (strawberry subclasses some of graphql-core's).
_KINDS: dict[type, str] = {}


def _kind(return_type: Any) -> str:
    if is_non_null_type(return_type):
        kind = _NON_NULL
    elif is_list_type(return_type):
        kind = _LIST
    elif is_leaf_type(return_type):
        kind = _LEAF
    elif is_object_type(return_type):
        kind = _OBJECT
    elif is_abstract_type(return_type):
        kind = _ABSTRACT
    else:  # pragma: no cover - graphql-core has no other output types
        raise TypeError(f"Cannot complete value of unexpected output type: '{inspect(return_type)}'.")
    _KINDS[type(return_type)] = kind
    return kind


class CompiledExecutionContext(LimitedExecutionContext):
    """``LimitedExecutionContext`` that runs query operations from a cached plan.

    ``plans`` is set per schema by :func:`compiled_execution_context`; with ``plans.enabled`` off (or
    anything the plan does not support) it is graphql-core's execution."""

    plans: PlanCache = PlanCache(enabled=False)

    # --- planning ----------------------------------------------------------------------------------

    def _plan(self) -> Plan | None:
        plans = self.plans
        if not plans.enabled:
            return None
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return None
        operation = self.operation
        key = id(operation)
        shape_entry = plans._shapes.get(key)
        if shape_entry is None or shape_entry[0] is not operation:
            if len(plans._shapes) >= plans.maxsize:
                plans.clear()
            shape_entry = (operation, operation_shape(operation, self.fragment_definitions))
            plans._shapes[key] = shape_entry
            plans._plans.pop(key, None)
        shape = shape_entry[1]
        if shape is None:
            return None
        coerced = self.variable_values.coerced
        variant = tuple(coerced.get(name) for name in shape)
        entry = plans._plans.get(key)
        if entry is None or entry[0] is not operation:
            entry = (operation, {})
            plans._plans[key] = entry
        if variant in entry[1]:
            return entry[1][variant]
        if len(entry[1]) >= MAX_VARIANTS:
            entry[1].clear()
        plan = self._build_plan()
        entry[1][variant] = plan
        plans.built += 1
        return plan

    @property
    def _direct_ok(self) -> bool:
        # Strawberry's field exception handlers wrap resolvers; with any configured, no direct calls.
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        converter = getattr(strawberry_schema, "schema_converter", None)
        return strawberry_schema is not None and not getattr(converter, "_exception_handler_specs", None)

    @property
    def _info_class(self) -> Any:
        return self.schema._strawberry_schema.config.info_class  # type: ignore[attr-defined]

    def _build_plan(self) -> Plan | None:
        root_type = self.schema.get_root_type(self.operation.operation)
        if root_type is None:
            return None
        try:
            grouped, _defer, _forbidden = collect_fields(
                self.schema,
                self.fragments,
                self.variable_values,
                root_type,
                self.operation,
                self.hide_suggestions,
            )
        except RecursionError:
            return None
        fields = self._field_plans(root_type, grouped)
        if fields is None:
            return None
        return Plan(self.operation, root_type, fields, _generate(root_type, fields))

    def _field_plans(self, parent_type: GraphQLObjectType, grouped: Any) -> list[FieldPlan] | None:
        plans: list[FieldPlan] = []
        for response_key, field_details_list in grouped.items():
            first = field_details_list[0]
            if first.fragment_variable_values is not None:
                return None
            node = first.node
            field_def = self.schema.get_field(parent_type, node.name.value)
            if field_def is None:
                continue
            plan = FieldPlan(
                response_key=response_key,
                parent_type=parent_type,
                field_def=field_def,
                field_details_list=field_details_list,
                nodes=[d.node for d in field_details_list],
                return_type=field_def.type,
                resolve=field_def.resolve or self.field_resolver,
                typename=node.name.value == "__typename",
            )
            basic = _basic_attribute(field_def)
            if basic is not None and not field_def.args:
                plan.getter, plan.attribute = basic
            elif self._direct_ok and not plan.typename:
                direct = _direct_resolver(field_def)
                if direct is not None:
                    plan.direct, plan.direct_info, plan.definition = direct
                    plan.info_class = self._info_class
            if not field_def.args and not node.arguments:
                plan.static_args = {}
            elif not any(_has_variable(arg.value) for arg in node.arguments or ()):
                try:
                    args = get_argument_values(
                        field_def, node, self.variable_values, None, self.hide_suggestions
                    )
                except Exception:  # noqa: BLE001 - graphql-core raises it per execution: do the same
                    args = None
                if args is not None and all(isinstance(v, _IMMUTABLE) for v in args.values()):
                    plan.static_args = args
            cheap = plan.typename or plan.getter is not None or plan.direct is not None
            plan.needs_info = not cheap or _needs_info(field_def.type)
            plans.append(plan)
        return plans

    def _subplans(self, plan: FieldPlan, runtime_type: GraphQLObjectType) -> list[FieldPlan]:
        found = plan.subplans.get(runtime_type.name)
        if found is None:
            grouped, _defer, _forbidden = self.collect_subfields(runtime_type, plan.field_details_list)
            built = self._field_plans(runtime_type, grouped)
            if built is None:  # pragma: no cover - fragment variables are refused when planning
                raise GraphQLError("Fragment variables are not supported by compiled execution.")
            plan.subplans[runtime_type.name] = found = built
        return found

    def _subfn(self, plan: FieldPlan, runtime_type: GraphQLObjectType) -> Callable[..., Any]:
        fn = plan.subfns.get(runtime_type.name)
        if fn is None:
            fn = plan.subfns[runtime_type.name] = _generate(runtime_type, self._subplans(plan, runtime_type))
        return fn

    # --- execution ---------------------------------------------------------------------------------
    #
    # Every ``_execute_*`` / ``_complete*`` method returns either the completed value or an asyncio
    # ``Future`` of it — never a coroutine. A resolver's awaitable is turned into a future once (a
    # DataLoader's ``load`` already is one; a coroutine becomes one task, as graphql-core makes one per
    # awaited field), and what follows is chained by done-callbacks (``_then``) instead of a coroutine
    # and a task per field, object and list: a 20-offer catalogue page ran ~200 tasks per request that
    # way. Errors go through graphql-core's ``handle_field_error`` exactly where its ``await`` would
    # catch them; null propagation arrives as the exception of a future. The operation's abort (time
    # or object limit) is raced once at the top, and then the resolver tasks still running are
    # cancelled (graphql-core races every awaitable against the signal instead).

    def _abort(self, error: GraphQLError) -> None:
        super()._abort(error)
        tasks, self._tasks = getattr(self, "_tasks", []), []
        for task in tasks:
            if not task.done():
                task.cancel()

    def _run_operation(self, *args: Any, **kwargs: Any) -> Any:
        # Called by LimitedExecutionContext.execute_operation, inside its timer and abort handling.
        plan = self._plan()
        if plan is None:
            if self.plans.enabled:
                self.plans.fallbacks += 1
            return super()._run_operation(*args, **kwargs)
        self.plans.compiled_runs += 1
        self._tasks: list[Task[Any]] = []
        self._loop = get_running_loop()
        abort_signal = self.abort_signal
        if abort_signal is not None and abort_signal.aborted:
            self.run_async_work_finished_hook()
            raise self.abort_error()
        try:
            assert plan.root_fn is not None
            result = plan.root_fn(self, self.root_value, None)
            if isinstance(result, Future):

                async def await_result() -> Any:
                    try:
                        data = await result
                    except GraphQLError as error:
                        self.collected_errors.add(error, None)
                        return self.build_response(None)
                    except Exception:
                        await self.cancel_incremental_work()
                        self.run_async_work_finished_hook()
                        raise
                    return self.build_response(data)

                if abort_signal is None:
                    return await_result()
                return self.with_aborted_execution_error(await_result())
            data = result
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.finish(self.build_response(None))
        return self.finish(self.build_response(data))

    # --- futures -----------------------------------------------------------------------------------

    def _future(self, awaitable: Any) -> Future[Any]:
        if isinstance(awaitable, Future):
            return awaitable
        task = ensure_future(awaitable)
        self._tasks.append(task)
        return task

    def _then(
        self, source: Future[Any], ok: Callable[[Any], Any], err: Callable[[Exception], Any] | None
    ) -> Future[Any]:
        """A future of ``ok(value of source)``; an exception of ``source`` or of ``ok`` (or of a future
        ``ok`` returns) goes to ``err`` (its value, or what it raises, settles the future)."""
        out: Future[Any] = self._loop.create_future()
        settle_from(source, out, ok, err)
        return out

    def _gather(self, container: Any, keys: list[Any]) -> Future[Any]:
        """A future of ``container`` once every future at ``keys`` in it has settled and been replaced
        by its value; the first failure fails it (siblings settle in the background; their errors are
        dropped by ``collected_errors`` under the nulled position, as graphql-core's are)."""
        out: Future[Any] = self._loop.create_future()
        remaining = len(keys)

        def make(key: Any) -> Callable[[Future[Any]], None]:
            def done(fut: Future[Any]) -> None:
                nonlocal remaining
                if out.done():
                    if not fut.cancelled():
                        fut.exception()  # retrieved: no "never retrieved" warning
                    return
                if fut.cancelled():
                    out.cancel()
                    return
                error = fut.exception()
                if error is not None:
                    out.set_exception(error)
                    return
                container[key] = fut.result()
                remaining -= 1
                if not remaining:
                    out.set_result(container)

            return done

        for key in keys:
            container[key].add_done_callback(make(key))
        return out

    @staticmethod
    def _orphan(futures: list[Any]) -> None:
        """Futures nobody will read (a sibling field failed): settle them quietly, as graphql-core's
        ``settle_in_background`` does (their errors are not reported: the position is nulled)."""
        for fut in futures:
            if isinstance(fut, Future):
                fut.add_done_callback(_retrieve)

    # --- fields ------------------------------------------------------------------------------------

    def _execute_fields(
        self, plans: list[FieldPlan], parent_type: GraphQLObjectType, source: Any, path: Path | None
    ) -> Any:
        results: dict[str, Any] = {}
        pending: list[str] | None = None
        parent_name = parent_type.name
        try:
            for plan in plans:
                key = plan.response_key
                result = self._execute_field(plan, parent_type, source, Path(path, key, parent_name))
                results[key] = result
                if isinstance(result, Future):
                    if pending is None:
                        pending = [key]
                    else:
                        pending.append(key)
        except BaseException:
            if pending:
                self._orphan([results[k] for k in pending])
            raise
        if pending is None:
            return results
        return self._gather(results, pending)

    def _execute_field(self, plan: FieldPlan, parent_type: GraphQLObjectType, source: Any, path: Path) -> Any:
        info: GraphQLResolveInfo | None = None
        try:
            if plan.typename:
                result: Any = parent_type.name
            elif plan.getter is not None:
                result = plan.getter(source, plan.attribute)
            elif plan.direct is not None:
                if plan.direct_info is None:
                    result = plan.direct(source)
                else:
                    info = self.build_resolve_info(plan.field_def, plan.nodes, parent_type, path)
                    result = plan.direct(source, **{plan.direct_info: self._strawberry_info(plan, info)})
            else:
                info = self.build_resolve_info(plan.field_def, plan.nodes, parent_type, path)
                args = plan.static_args
                if args is None:
                    args = get_argument_values(
                        plan.field_def, plan.nodes[0], self.variable_values, None, self.hide_suggestions
                    )
                result = plan.resolve(source, info, **args)
        except Exception as raw_error:
            self.handle_field_error(raw_error, plan.return_type, plan.field_details_list, path)
            return None
        return self._finish_field(plan, parent_type, path, info, result)

    def _finish_field(
        self, plan: FieldPlan, parent_type: GraphQLObjectType, path: Path, info: Any, result: Any
    ) -> Any:
        """The completion of a resolved field value (or future of it), errors handled."""
        return_type = plan.return_type
        try:
            if plan.needs_info and info is None:
                info = self.build_resolve_info(plan.field_def, plan.nodes, parent_type, path)
            if isinstance(result, Future) and result.done() and not result.cancelled() and result.exception() is None:
                # A DataLoader's future of a key already loaded: its value now, no callback hop.
                result = result.result()
            if isinstance(result, Future) or self.is_awaitable(result):
                return self._then(
                    self._future(result),
                    lambda value: self._complete(plan, return_type, info, path, value),
                    lambda error: self._field_error(error, plan, return_type, path),
                )
            completed = self._complete(plan, return_type, info, path, result)
            if isinstance(completed, Future):
                return self._then(completed, _same, lambda error: self._field_error(error, plan, return_type, path))
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, plan.field_details_list, path)
            return None
        return completed

    # Called by generated field functions (``_generate``) off their fast path.
    def _g_finish(self, plan: FieldPlan, parent_type: GraphQLObjectType, path: Path | None, value: Any) -> Any:
        return self._finish_field(plan, parent_type, Path(path, plan.response_key, parent_type.name), None, value)

    def _g_raised(self, plan: FieldPlan, parent_type: GraphQLObjectType, path: Path | None, error: Exception) -> None:
        self.handle_field_error(
            error, plan.return_type, plan.field_details_list, Path(path, plan.response_key, parent_type.name)
        )
        return None

    def _g_field(self, plan: FieldPlan, parent_type: GraphQLObjectType, source: Any, path: Path | None) -> Any:
        return self._execute_field(plan, parent_type, source, Path(path, plan.response_key, parent_type.name))

    def _strawberry_info(self, plan: FieldPlan, info: GraphQLResolveInfo) -> Any:
        return plan.info_class(_raw_info=info, _field=plan.definition)

    def _field_error(self, error: Exception, plan: FieldPlan, return_type: Any, path: Path) -> None:
        self.handle_field_error(error, return_type, plan.field_details_list, path)
        return None

    # --- completion --------------------------------------------------------------------------------

    def _complete(self, plan: FieldPlan, return_type: Any, info: Any, path: Path, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        kind = _KINDS.get(type(return_type))
        if kind is None:
            kind = _kind(return_type)
        if kind is _NON_NULL:
            completed = self._complete(plan, return_type.of_type, info, path, result)
            if isinstance(completed, Future):
                return self._then(completed, lambda value: self._non_null(plan, value), None)
            return self._non_null(plan, completed)
        if result is None or result is Undefined:
            return None
        if kind is _LEAF:
            coerced = leaf_serializer(return_type)(result)
            if coerced is Undefined or coerced is None:
                raise TypeError(
                    f"Expected `{inspect(return_type)}.coerce_output_value({inspect(result)})`"
                    f" to return non-nullable value, returned: {inspect(coerced)}"
                )
            return coerced
        if kind is _LIST:
            return self._complete_list(plan, return_type.of_type, info, path, result)
        if kind is _OBJECT:
            return self._complete_object(plan, return_type, info, path, result)
        return self._complete_abstract(plan, return_type, info, path, result)

    @staticmethod
    def _non_null(plan: FieldPlan, completed: Any) -> Any:
        if completed is None:
            raise TypeError(
                f"Cannot return null for non-nullable field {plan.parent_type}.{plan.nodes[0].name.value}."
            )
        return completed

    def _complete_list(self, plan: FieldPlan, item_type: Any, info: Any, path: Path, result: Any) -> Any:
        if self.is_async_iterable(result):
            # Rare: graphql-core completes this subtree (it needs an Info of its own).
            if info is None:
                info = self.build_resolve_info(plan.field_def, plan.nodes, plan.parent_type, path)
            from graphql import GraphQLList

            return self._future(
                _awaited(self.complete_list_value(
                    GraphQLList(item_type), plan.field_details_list, info, path, result, None
                ))
            )
        if not is_iterable(result):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{plan.parent_type}.{plan.nodes[0].name.value}'."
            )
        completed_results: list[Any] = []
        append = completed_results.append
        pending: list[int] | None = None
        index = 0
        for item in result:
            item_path = path.add_key(index, None)
            if isinstance(item, Future) or self.is_awaitable(item):
                completed_item: Any = self._then(
                    self._future(item),
                    lambda value, item_path=item_path: self._complete(plan, item_type, info, item_path, value),
                    lambda error, item_path=item_path: self._item_error(error, plan, item_type, item_path),
                )
            else:
                try:
                    completed_item = self._complete(plan, item_type, info, item_path, item)
                    if isinstance(completed_item, Future):
                        completed_item = self._then(
                            completed_item, _same,
                            lambda error, item_path=item_path: self._item_error(error, plan, item_type, item_path),
                        )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, plan.field_details_list, item_path)
                    completed_item = None
            append(completed_item)
            if isinstance(completed_item, Future):
                if pending is None:
                    pending = [index]
                else:
                    pending.append(index)
            index += 1
        if pending is None:
            return completed_results
        return self._gather(completed_results, pending)

    def _item_error(self, error: Exception, plan: FieldPlan, item_type: Any, item_path: Path) -> None:
        self.handle_field_error(error, item_type, plan.field_details_list, item_path)
        return None

    def _complete_object(
        self, plan: FieldPlan, return_type: GraphQLObjectType, info: Any, path: Path, result: Any
    ) -> Any:
        self._count_object()
        if return_type.is_type_of:
            is_type_of = return_type.is_type_of(result, info)
            if isinstance(is_type_of, Future) or self.is_awaitable(is_type_of):

                def checked(value: Any) -> Any:
                    if not value:
                        raise invalid_return_type_error(return_type, result, plan.field_details_list)
                    return self._subfn(plan, return_type)(self, result, path)

                return self._then(self._future(is_type_of), checked, None)
            if not is_type_of:
                raise invalid_return_type_error(return_type, result, plan.field_details_list)
        return self._subfn(plan, return_type)(self, result, path)

    def _complete_abstract(
        self, plan: FieldPlan, return_type: Any, info: Any, path: Path, result: Any
    ) -> Any:
        resolve_type_fn = return_type.resolve_type or self.type_resolver
        runtime_type = resolve_type_fn(result, info, return_type)

        def complete(name: Any) -> Any:
            valid = self.ensure_valid_runtime_type(name, return_type, plan.field_details_list, info, result)
            return self._complete_object(plan, valid, info, path, result)

        if isinstance(runtime_type, Future) or self.is_awaitable(runtime_type):
            return self._then(self._future(runtime_type), complete, None)
        return complete(runtime_type)


def _same(value: Any) -> Any:
    return value


def _retrieve(fut: Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


# --- generated field functions -----------------------------------------------------------------------
#
# For each object type met in a plan, one Python function completes its selection set: leaf fields read
# by attribute (or by a resolver taking only ``self``) are checked and stored inline — no Path, Info,
# completion dispatch or future per field — and everything else (resolvers with Info or arguments,
# objects, lists, abstract types) is a call to ``ctx._g_field``, which is ``_execute_field``. A value the
# inline check does not accept (None for a non-null field, a wrong type, a serialiser that refuses, an
# exception) is completed by the general code (``_g_finish`` / ``_g_raised``), so errors and null
# propagation stay graphql-core's. Reading an attribute or calling such a resolver happens once either
# way; only the cheap checks are doubled on the slow path.

# Leaf types whose serialiser returns the value itself when it has this exact Python type.
_IDENTITY_LEAVES: dict[Any, str] = {
    GraphQLString: "type(v) is str",
    GraphQLID: "type(v) is str",
    GraphQLBoolean: "type(v) is bool",
    GraphQLInt: "type(v) is int and -2147483648 <= v <= 2147483647",
}


_SERIALIZERS: dict[int, tuple[Any, Any]] = {}


def leaf_serializer(named: Any) -> Any:
    """The function turning a resolved value into a leaf type's output: ``named.coerce_output_value``,
    except for strawberry's enum types, whose ``coerce_output_value`` scans every value of the enum
    (``CustomGraphQLEnumType``): the same answer from one dict lookup (the first value wins, as in that
    scan; anything else goes to the type's own method)."""
    known = _SERIALIZERS.get(id(named))
    if known is not None and known[0] is named:
        return known[1]
    serialize = named.coerce_output_value
    cls = getattr(named, "wrapped_cls", None)
    if isinstance(named, GraphQLEnumType) and isinstance(cls, type):
        names: dict[Any, str] = {}
        for name, value in named.values.items():
            try:
                names.setdefault(value.value, name)
            except TypeError:  # an unhashable value: keep the type's own scan
                names = {}
                break
        if names:
            slow = serialize

            def serialize(value: Any, _names: dict = names, _cls: type = cls, _slow: Any = slow) -> Any:
                if isinstance(value, _cls):
                    try:
                        return _names[value.value]
                    except (KeyError, TypeError):
                        return _slow(value)
                return _slow(value)

    _SERIALIZERS[id(named)] = (named, serialize)
    return serialize


def _leaf(return_type: Any) -> tuple[bool, Any] | None:
    non_null = is_non_null_type(return_type)
    named = return_type.of_type if non_null else return_type
    return (non_null, named) if is_leaf_type(named) else None


def _generate(parent_type: GraphQLObjectType, plans: list[FieldPlan]) -> Callable[..., Any]:
    ns: dict[str, Any] = {"Future": Future, "Undefined": Undefined, "T": parent_type}
    body: list[str] = []

    def track(indent: str, key: str) -> list[str]:
        return [
            f"{indent}if isinstance(r, Future):",
            f"{indent}    if pending is None:",
            f"{indent}        pending = []",
            f"{indent}    pending.append({key})",
        ]

    for i, plan in enumerate(plans):
        key = repr(plan.response_key)
        ns[f"p{i}"] = plan
        if plan.typename:
            body.append(f"        results[{key}] = {parent_type.name!r}")
            continue
        leaf = _leaf(plan.return_type)
        fetch = None
        if leaf is not None and not plan.needs_info:
            if plan.getter is getattr and plan.attribute.isidentifier() and not iskeyword(plan.attribute):
                fetch = f"src.{plan.attribute}"
            elif plan.getter is not None:
                ns[f"g{i}"], ns[f"a{i}"] = plan.getter, plan.attribute
                fetch = f"g{i}(src, a{i})"
            elif plan.direct is not None and plan.direct_info is None:
                ns[f"d{i}"] = plan.direct
                fetch = f"d{i}(src)"
        if fetch is None or leaf is None:
            body.append(f"        r = ctx._g_field(p{i}, T, src, path)")
            body += track("        ", key)
            body.append(f"        results[{key}] = r")
            continue
        non_null, named = leaf
        body += [
            "        try:",
            f"            v = {fetch}",
            "        except Exception as e:",
            f"            r = ctx._g_raised(p{i}, T, path, e)",
            "        else:",
        ]
        slow = [f"                r = ctx._g_finish(p{i}, T, path, v)", *track("                ", key)]
        check = _IDENTITY_LEAVES.get(named)
        if check is not None:
            body += [f"            if {check if non_null else f'v is None or {check}'}:", "                r = v",
                     "            else:", *slow]
        else:
            ns[f"s{i}"] = leaf_serializer(named)
            body += [
                "            r = Undefined",
                "            if v is not None and not isinstance(v, Exception):",
                "                try:",
                f"                    r = s{i}(v)",
                "                except Exception:",
                "                    r = Undefined",
            ]
            if not non_null:
                body += ["            elif v is None:", "                r = None"]
            body += ["            if r is Undefined or (r is None and v is not None):", *slow]
        body.append(f"        results[{key}] = r")
    source = "\n".join([
        "def fields(ctx, src, path):",
        "    results = {}",
        "    pending = None",
        "    try:",
        *(body or ["        pass"]),
        "    except BaseException:",
        "        if pending:",
        "            ctx._orphan([results[k] for k in pending])",
        "        raise",
        "    if pending is None:",
        "        return results",
        "    return ctx._gather(results, pending)",
    ])
    code = compile(source, f"<compiled fields of {parent_type.name}>", "exec")
    exec(code, ns)  # noqa: S102 - generated from the plan above, no user text in it (keys are repr()'d)
    fn = ns["fields"]
    fn.source = source  # type: ignore[attr-defined] - read by tests and when debugging
    return fn


async def _awaited(value: Any) -> Any:
    return await value if isawaitable(value) else value


def compiled_execution_context(enabled: bool) -> type[CompiledExecutionContext]:
    """An execution-context class with its own plan cache (one per schema)."""
    return type(
        "CompiledExecutionContext", (CompiledExecutionContext,), {"plans": PlanCache(enabled=enabled)}
    )
