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

Execution keeps graphql-core's semantics: real resolvers are called with a real ``GraphQLResolveInfo``
(strawberry's wrappers, permissions and DataLoaders behave the same), sibling fields' awaitables are
awaited together (so DataLoader batches are the same), errors are located and propagated through
non-null fields by the executor's own ``handle_field_error`` into its ``collected_errors``, awaitables
are raced against the abort signal, and every object counts toward ``LimitedExecutionContext``'s
``max_objects`` (the same ``RESULT_TOO_LARGE`` / ``TIMEOUT`` answers).

Falls back to graphql-core for anything else: mutations and subscriptions, documents with ``@defer`` or
``@stream``, introspection fields other than ``__typename``, fragment variables, field middleware
(resolver-level extensions, e.g. the tracing observer), and async-iterable list results (that subtree).

graphql-core stays the oracle: tests/test_compiled_execution.py runs every query of schema/operations/
and a hypothesis-generated corpus through both paths and requires the same ``data`` and ``errors``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
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
from graphql.pyutils import Path, Undefined, gather_with_cancel, inspect, is_iterable
from strawberry.types.field import StrawberryField

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
    # Sub-selections per runtime object type, collected the first time the type is met.
    subplans: dict[str, list["FieldPlan"]] = field(default_factory=dict)


@dataclass(eq=False)
class Plan:
    operation: OperationDefinitionNode
    root_type: GraphQLObjectType
    root_fields: list[FieldPlan]


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
        return Plan(self.operation, root_type, fields)

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
            plan.needs_info = not (plan.typename or plan.getter is not None) or _needs_info(field_def.type)
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

    # --- execution ---------------------------------------------------------------------------------

    def _run_operation(self, *args: Any, **kwargs: Any) -> Any:
        # Called by LimitedExecutionContext.execute_operation, inside its timer and abort handling.
        plan = self._plan()
        if plan is None:
            if self.plans.enabled:
                self.plans.fallbacks += 1
            return super()._run_operation(*args, **kwargs)
        self.plans.compiled_runs += 1
        abort_signal = self.abort_signal
        if abort_signal is not None and abort_signal.aborted:
            self.run_async_work_finished_hook()
            raise self.abort_error()
        try:
            result = self._execute_fields(plan.root_fields, plan.root_type, self.root_value, None)
            if self.is_awaitable(result):

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

    def _execute_fields(
        self, plans: list[FieldPlan], parent_type: GraphQLObjectType, source: Any, path: Path | None
    ) -> Any:
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        parent_name = parent_type.name
        try:
            for plan in plans:
                key = plan.response_key
                result = self._execute_field(plan, parent_type, source, Path(path, key, parent_name))
                results[key] = result
                if is_awaitable(result):
                    awaitable_fields.append(key)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[f] for f in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                name = awaitable_fields[0]
                results[name] = await results[name]
            else:
                awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _execute_field(self, plan: FieldPlan, parent_type: GraphQLObjectType, source: Any, path: Path) -> Any:
        info: GraphQLResolveInfo | None = None
        return_type = plan.return_type
        try:
            if plan.typename:
                result: Any = parent_type.name
            elif plan.getter is not None:
                result = plan.getter(source, plan.attribute)
            else:
                info = self.build_resolve_info(plan.field_def, plan.nodes, parent_type, path)
                args = plan.static_args
                if args is None:
                    args = get_argument_values(
                        plan.field_def, plan.nodes[0], self.variable_values, None, self.hide_suggestions
                    )
                result = plan.resolve(source, info, **args)
            if plan.needs_info and info is None:
                info = self.build_resolve_info(plan.field_def, plan.nodes, parent_type, path)
            if self.is_awaitable(result):
                return self._complete_awaitable(plan, return_type, info, path, result)
            completed = self._complete(plan, return_type, info, path, result)
            if self.is_awaitable(completed):

                async def await_completed() -> Any:
                    try:
                        return await completed
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, return_type, plan.field_details_list, path)
                        return None

                return await_completed()
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, plan.field_details_list, path)
            return None
        return completed

    async def _complete_awaitable(
        self, plan: FieldPlan, return_type: GraphQLOutputType, info: Any, path: Path, result: Any
    ) -> Any:
        try:
            resolved = await self.with_abort_signal(result)
            completed = self._complete(plan, return_type, info, path, resolved)
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, plan.field_details_list, path)
            return None
        return completed

    def _complete(self, plan: FieldPlan, return_type: Any, info: Any, path: Path, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        kind = _KINDS.get(type(return_type))
        if kind is None:
            kind = _kind(return_type)
        if kind is _NON_NULL:
            completed = self._complete(plan, return_type.of_type, info, path, result)
            if completed is None:
                raise TypeError(
                    f"Cannot return null for non-nullable field {plan.parent_type}.{plan.nodes[0].name.value}."
                )
            return completed
        if result is None or result is Undefined:
            return None
        if kind is _LEAF:
            coerced = return_type.coerce_output_value(result)
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

    def _complete_list(self, plan: FieldPlan, item_type: Any, info: Any, path: Path, result: Any) -> Any:
        if self.is_async_iterable(result):
            # Rare: graphql-core completes this subtree (it needs an Info of its own).
            if info is None:
                info = self.build_resolve_info(plan.field_def, plan.nodes, plan.parent_type, path)
            from graphql import GraphQLList

            return self.complete_list_value(
                GraphQLList(item_type), plan.field_details_list, info, path, result, None
            )
        if not is_iterable(result):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{plan.parent_type}.{plan.nodes[0].name.value}'."
            )
        is_awaitable = self.is_awaitable
        completed_results: list[Any] = []
        append = completed_results.append
        awaitable_indices: list[int] = []
        iterator = iter(result)
        index = 0
        try:
            for item in iterator:
                item_path = path.add_key(index, None)
                if is_awaitable(item):
                    append(self._complete_awaitable(plan, item_type, info, item_path, item))
                    awaitable_indices.append(index)
                else:
                    try:
                        completed_item = self._complete(plan, item_type, info, item_path, item)
                        if is_awaitable(completed_item):
                            append(self._await_item(plan, item_type, item_path, completed_item))
                            awaitable_indices.append(index)
                        else:
                            append(completed_item)
                    except Exception as raw_error:
                        self.handle_field_error(raw_error, item_type, plan.field_details_list, item_path)
                        append(None)
                index += 1
        except Exception:
            pending = [completed_results[i] for i in awaitable_indices]
            pending.extend(item for item in iterator if is_awaitable(item))
            if pending:
                self.settle_in_background(pending)
            raise
        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            if len(awaitable_indices) == 1:
                i = awaitable_indices[0]
                completed_results[i] = await completed_results[i]
            else:
                awaited = await gather_with_cancel(*(completed_results[i] for i in awaitable_indices))
                for i, value in zip(awaitable_indices, awaited, strict=True):
                    completed_results[i] = value
            return completed_results

        return get_completed_results()

    async def _await_item(self, plan: FieldPlan, item_type: Any, item_path: Path, completed: Any) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, plan.field_details_list, item_path)
            return None

    def _complete_object(
        self, plan: FieldPlan, return_type: GraphQLObjectType, info: Any, path: Path, result: Any
    ) -> Any:
        self._count_object()
        if return_type.is_type_of:
            is_type_of = return_type.is_type_of(result, info)
            if self.is_awaitable(is_type_of):

                async def execute_subfields_async() -> Any:
                    if not await self.with_abort_signal(is_type_of):
                        raise invalid_return_type_error(return_type, result, plan.field_details_list)
                    sub = self._execute_fields(self._subplans(plan, return_type), return_type, result, path)
                    return await sub if self.is_awaitable(sub) else sub

                return execute_subfields_async()
            if not is_type_of:
                raise invalid_return_type_error(return_type, result, plan.field_details_list)
        return self._execute_fields(self._subplans(plan, return_type), return_type, result, path)

    def _complete_abstract(
        self, plan: FieldPlan, return_type: Any, info: Any, path: Path, result: Any
    ) -> Any:
        resolve_type_fn = return_type.resolve_type or self.type_resolver
        runtime_type = resolve_type_fn(result, info, return_type)
        if self.is_awaitable(runtime_type):

            async def await_complete_object_value() -> Any:
                name = await self.with_abort_signal(runtime_type)
                valid = self.ensure_valid_runtime_type(
                    name, return_type, plan.field_details_list, info, result
                )
                value = self._complete_object(plan, valid, info, path, result)
                return await value if self.is_awaitable(value) else value

            return await_complete_object_value()
        valid = self.ensure_valid_runtime_type(
            runtime_type, return_type, plan.field_details_list, info, result
        )
        return self._complete_object(plan, valid, info, path, result)


def compiled_execution_context(enabled: bool) -> type[CompiledExecutionContext]:
    """An execution-context class with its own plan cache (one per schema)."""
    return type(
        "CompiledExecutionContext", (CompiledExecutionContext,), {"plans": PlanCache(enabled=enabled)}
    )
