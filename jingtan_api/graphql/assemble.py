"""The one place that assembles the GraphQL schema.

Every domain contributes through the ``jingtan_register_domain`` hook (``jingtan_api.graphql.domain``):
the core's domains are registered on the app's plugin manager first, in the order of ``CORE_DOMAINS``,
then come the enabled plugins' contributions, through the same path (datasette registers its built-ins
through its own hooks the same way). Adding a domain = a package whose ``schema.py`` implements the hook,
and one line in ``CORE_DOMAINS``.

``Query``, ``Mutation`` and the shared object types (``User``, ``Merchant``, ``Account``, ...) get the
fields that domains contribute through :meth:`JingtanSchema.get_fields`, per schema: the Python classes
are never changed, so apps with different plugin sets (or an extra test domain) live side by side, and
``node(id:)`` returns objects of the very type the schema publishes.
"""

import functools
import importlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    MaxAliasesLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document
from strawberry.schema.name_converter import NameConverter
from strawberry.types import ExecutionContext, Info
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

from jingtan_api.context import Context
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.graphql.compiled import compiled_execution_context
from jingtan_api.graphql.cost import QueryCost
from jingtan_api.observability.graphql import observer_factory
from jingtan_api.graphql.directives import DirectiveLimit
from jingtan_api.graphql.domain import Domain, NodeLookup
from jingtan_api.graphql.errors import JingtanMaskErrors
from jingtan_api.graphql.hooks import CachedExtensionsRunner
from jingtan_api.graphql.relay import Node, from_global_id, parse_pk
from jingtan_api.graphql.sanitize import SCALARS, RefuseNulCharacters
from jingtan_api.plugins.manager import PluginHost
from jingtan_api.settings import ConfigurationError, Settings

# The core's domains, in schema order. Each module implements ``jingtan_register_domain``.
CORE_DOMAINS: tuple[str, ...] = (
    "jingtan_api.users.schema",
    "jingtan_api.users.admin_schema",
    "jingtan_api.auth.schema",
    "jingtan_api.audit.schema",
    "jingtan_api.accounts.schema",
    "jingtan_api.merchants.schema",
    "jingtan_api.offers.schema",
    "jingtan_api.redemptions.schema",
    "jingtan_api.actions.schema",
    "jingtan_api.volunteers.schema",
    "jingtan_api.identity.schema",
    "jingtan_api.households.schema",
    "jingtan_api.organisations.schema",
    "jingtan_api.retirements.schema",
    "jingtan_api.campaigns.schema",
    "jingtan_api.media.schema",
    "jingtan_api.methodologies.schema",
    "jingtan_api.impact.schema",
    "jingtan_api.challenges.schema",
    "jingtan_api.notifications.schema",
    "jingtan_api.webhooks.schema",
)

MAX_NODES = 100
_NAMES = NameConverter()


class SchemaAssemblyError(ConfigurationError):
    """Two contributions clash (a field contributed twice, a type extended that does not exist)."""


class SharedReads(SchemaExtension):
    """A query operation sent alone runs all its reads in one read transaction (``Context.read``)."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        share = (
            isinstance(ctx, Context)
            and ctx.single_operation
            and self.execution_context.operation_type is OperationType.QUERY
        )
        if share:
            ctx.begin_shared_reads()
        try:
            yield
        finally:
            if share:
                await ctx.end_shared_reads()


# --- node(id:) ---------------------------------------------------------------------------------------


async def resolve_nodes(info: Info, ids: Sequence[str]) -> list[Node | None]:
    """Objects the viewer may see, in order; unknown, malformed and foreign IDs give null."""
    lookups: Mapping[str, NodeLookup] = info.schema.node_lookups
    wanted: dict[str, set[int]] = {}
    parsed: list[tuple[str, int] | None] = []
    for gid in ids:
        try:
            type_name, raw = from_global_id(gid)
        except NotFound:
            parsed.append(None)
            continue
        pk = parse_pk(raw)
        if type_name not in lookups or pk is None:
            parsed.append(None)
            continue
        parsed.append((type_name, pk))
        wanted.setdefault(type_name, set()).add(pk)
    found: dict[str, Mapping[int, Any]] = {}
    for type_name, pks in wanted.items():
        found[type_name] = await lookups[type_name](info, sorted(pks))
    return [found[p[0]].get(p[1]) if p else None for p in parsed]


@strawberry.type(name="Query", description="Everything you can read. / 查询入口。")
class Query:
    @strawberry.field(description="Fetch any object by global ID; null when unknown or not visible to you.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await resolve_nodes(info, [id]))[0]

    @strawberry.field(description=f"Fetch up to {MAX_NODES} objects by global ID, in order.")
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise ValidationFailed(f"At most {MAX_NODES} ids / 最多 {MAX_NODES} 个 ID", field="ids")
        return await resolve_nodes(info, ids)


@strawberry.type(name="Mutation", description="Everything you can change. / 变更入口。")
class Mutation:
    """Its fields all come from the domains."""


@strawberry.type(name="Subscription", description="Events pushed over WebSocket (graphql-transport-ws). / 实时推送（WebSocket 订阅）。")
class Subscription:
    """Its fields all come from the domains."""


# --- collecting the contributions ----------------------------------------------------------------------


def register_core_domains(host: PluginHost, modules: Sequence[str | ModuleType] = CORE_DOMAINS) -> None:
    """Register the core's domain modules on the app's plugin manager (once)."""
    for item in modules:
        module = importlib.import_module(item) if isinstance(item, str) else item
        if not host.pm.is_registered(module):
            host.pm.register(module, name=module.__name__)


def collect_domains(host: PluginHost, reserved_type_names: frozenset[str] = frozenset()) -> list[Domain]:
    """Every registered domain's contribution, in registration order (core first)."""
    domains: list[Domain] = []
    args = {"host": host, "reserved_type_names": reserved_type_names}
    impls = host.pm.hook.jingtan_register_domain.get_hookimpls()
    core = {name: i for i, name in enumerate(CORE_DOMAINS)}
    # The core's domains first, in CORE_DOMAINS order, then plugins' in registration order (the plugins
    # were registered on the manager before the core's modules, at load time).
    impls = sorted(impls, key=lambda impl: core.get(impl.plugin_name, len(core)))
    for impl in impls:
        try:
            domain = impl.function(*(args[a] for a in impl.argnames))
        except Exception as exc:  # noqa: BLE001 - one line naming the plugin stops startup
            raise ConfigurationError(
                f"plugin {impl.plugin_name!r}: jingtan_register_domain failed: {type(exc).__name__}: {exc}"
            ) from None
        if domain is None:
            continue
        if not isinstance(domain, Domain):
            raise ConfigurationError(f"plugin {impl.plugin_name!r}: jingtan_register_domain returned {domain!r}, not a Domain")
        domains.append(domain)
    return domains


def _fields_of(fragment: type) -> list[StrawberryField]:
    definition = getattr(fragment, "__strawberry_definition__", None)
    if not isinstance(definition, StrawberryObjectDefinition):
        raise SchemaAssemblyError(f"{fragment!r} is not a @strawberry.type fragment")
    return list(definition.fields)


class Assembly:
    """The fields every shared type gets, the extra types and the node lookups of one schema."""

    def __init__(self, domains: Sequence[Domain]) -> None:
        self.fields: dict[str, list[StrawberryField]] = {}
        self.owners: dict[tuple[str, str], str] = {}
        self.types: list[type] = []
        self.node_lookups: dict[str, NodeLookup] = {}
        for domain in domains:
            roots = (("Query", domain.query), ("Mutation", domain.mutation), ("Subscription", domain.subscription))
            for type_name, fragments in (*roots, *domain.extends.items()):
                for fragment in fragments:
                    self._add(type_name, fragment, domain.name)
            self.types.extend(t for t in domain.types if t not in self.types)
            for type_name, lookup in domain.nodes.items():
                if type_name in self.node_lookups:
                    raise SchemaAssemblyError(f"node lookup for {type_name} is contributed twice (by {domain.name})")
                self.node_lookups[type_name] = lookup

    def _add(self, type_name: str, fragment: type, domain: str) -> None:
        for f in _fields_of(fragment):
            key = (type_name, _NAMES.get_graphql_name(f))
            if key in self.owners:
                raise SchemaAssemblyError(
                    f"{type_name}.{key[1]} is contributed twice: by {self.owners[key]} and {domain} ({fragment.__name__})"
                )
            self.owners[key] = f"{domain} ({fragment.__name__})"
            self.fields.setdefault(type_name, []).append(f)

    def check(self, schema: "JingtanSchema") -> None:
        """Every extended type exists, and no contributed field shadows one of the type's own."""
        for type_name, fields in self.fields.items():
            if type_name in ("Query", "Mutation", "Subscription"):
                continue
            definition = schema.get_type_by_name(type_name)
            if not isinstance(definition, StrawberryObjectDefinition):
                raise SchemaAssemblyError(f"fields contributed to {type_name}, which is not an object type of the schema")
            own = {_NAMES.get_graphql_name(f) for f in definition.fields}
            for f in fields:
                if _NAMES.get_graphql_name(f) in own:
                    raise SchemaAssemblyError(f"{type_name}.{_NAMES.get_graphql_name(f)} already exists; a domain cannot replace it")


class _ExecutionContext(ExecutionContext):
    """strawberry's execution context, with the operation's definition and type looked up once per document:
    strawberry, its extensions and ours read ``operation_name`` / ``operation_type`` about ten times per
    request, and each read walked the document's definitions again."""

    def _get_first_operation(self) -> Any:
        document = self.graphql_document
        cached = self.__dict__.get("_jt_first")
        if cached is not None and cached[0] is document:
            return cached[1]
        operation = super()._get_first_operation()
        self.__dict__["_jt_first"] = (document, operation)
        return operation

    @property
    def operation_type(self) -> OperationType:
        document = self.graphql_document
        cached = self.__dict__.get("_jt_type")
        if cached is not None and cached[0] is document:
            return cached[1]
        operation_type = ExecutionContext.operation_type.fget(self)  # type: ignore[attr-defined]
        self.__dict__["_jt_type"] = (document, operation_type)
        return operation_type


class JingtanSchema(strawberry.Schema):
    """A strawberry schema whose object types also get the fields domains contribute to them."""

    def __init__(self, assembly: Assembly, **kwargs: Any) -> None:
        self.assembly = assembly
        self.node_lookups: Mapping[str, NodeLookup] = assembly.node_lookups
        subscription = Subscription if assembly.fields.get("Subscription") else None
        super().__init__(query=Query, mutation=Mutation, subscription=subscription, types=assembly.types, **kwargs)
        assembly.check(self)

    # strawberry caches these two lookups with ``functools.lru_cache`` on the class, keyed by the schema:
    # the last 128 lookups of the process kept their schemas alive. One cache per schema instead.
    def get_type_by_name(self, name: str) -> Any:
        cache = self.__dict__.setdefault("_jt_types_by_name", {})
        if name not in cache:
            cache[name] = strawberry.Schema.get_type_by_name.__wrapped__(self, name)  # type: ignore[attr-defined]
        return cache[name]

    def get_directive_by_name(self, graphql_name: str) -> Any:
        cache = self.__dict__.setdefault("_jt_directives_by_name", {})
        if graphql_name not in cache:
            cache[graphql_name] = strawberry.Schema.get_directive_by_name.__wrapped__(self, graphql_name)  # type: ignore[attr-defined]
        return cache[graphql_name]

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        extra = self.assembly.fields.get(type_definition.name)
        return [*type_definition.fields, *extra] if extra else type_definition.fields

    async def execute(self, query, variable_values=None, context_value=None, root_value=None, operation_name=None,
                      allowed_operation_types=None, operation_extensions=None):
        """One result per operation: never a subscription (those stream over WebSocket, ``subscribe``).
        strawberry's HTTP view allows subscriptions for its multipart transport, which Jingtan does not
        serve; a subscription sent over HTTP is refused as an invalid operation type (400, BAD_REQUEST)."""
        if allowed_operation_types is not None:
            allowed_operation_types = set(allowed_operation_types) - {OperationType.SUBSCRIPTION}
        return await super().execute(query, variable_values, context_value, root_value, operation_name,
                                     allowed_operation_types, operation_extensions)

    def _create_execution_context(self, query, allowed_operation_types, variable_values=None, context_value=None,
                                  root_value=None, operation_name=None, operation_extensions=None) -> ExecutionContext:
        return _ExecutionContext(
            query=query,
            schema=self,
            allowed_operations=allowed_operation_types,
            context=context_value,
            root_value=root_value,
            variables=variable_values,
            provided_operation_name=operation_name,
            operation_extensions=operation_extensions,
        )

    def create_extensions_runner(self, execution_context, extensions) -> CachedExtensionsRunner:
        """strawberry's runner with each extension class's hooks looked up once (graphql.hooks)."""
        return CachedExtensionsRunner(execution_context=execution_context, extensions=extensions)

    def process_errors(self, errors, execution_context=None) -> None:
        """Unexpected errors are logged (once, with the request id) by JingtanMaskErrors; expected ones
        (validation, domain errors) are answers, not incidents."""


class DocumentChecks(DirectiveLimit):
    """strawberry's ``ParserCache``, then ``DirectiveLimit`` and ``ValidationCache``, as one extension:
    their hooks in the same order (parse from the cache; in validation, the directive limit and then the
    cached validation), with one extension object per request instead of three."""

    def __init__(self, *, parse: Any, validate: Any, max_directives: int, max_per_location: int) -> None:
        super().__init__(max_directives=max_directives, max_per_location=max_per_location)
        self.parse = parse
        self.validate = validate

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.graphql_document = self.parse(ctx.query, **ctx.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        self.check_directives()
        ctx = self.execution_context
        ctx.pre_execution_errors = self.validate(ctx.schema._schema, ctx.graphql_document, ctx.validation_rules)
        yield


class DocumentRules(SchemaExtension):
    """strawberry's ``AddValidationRules`` and ``MaxTokensLimiter`` as one extension: the same rules added
    (the depth and alias limits, and no introspection where it is off) and the same token limit."""

    def __init__(self, *, rules: tuple[Any, ...], max_tokens: int) -> None:
        self.rules = rules
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        ctx.validation_rules = ctx.validation_rules + self.rules
        ctx.parse_options["max_tokens"] = self.max_tokens
        yield


def _extensions(settings: Settings) -> list[Any]:
    gql = settings.graphql
    # QueryDepthLimiter and MaxAliasesLimiter create a new validation-rule CLASS per instance. Built per
    # request (as factories), they made every request's rule tuple unique, so ValidationCache never hit
    # and every request paid full graphql-core validation (~40% of a small query's CPU in bench/).
    # Build their rules once and add the same classes on every request.
    rules = (
        *QueryDepthLimiter(max_depth=gql.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=gql.max_aliases).validation_rules,
        *(() if settings.introspection_enabled else (NoSchemaIntrospectionCustomRule,)),
    )
    cost_cache: dict = {}
    # Parsing: strawberry's module-level LRU cache (shared by every request and schema with the same
    # size; it holds documents only). Validation: an LRU cache of this schema's own, as
    # ValidationCache(maxsize=1000) keeps it but not module-level — strawberry's is keyed by
    # (schema, document, rules) and kept every schema of the process alive (a test run builds thousands).
    parse = ParserCache(maxsize=1000).cached_parse_document
    validate = functools.lru_cache(maxsize=1000)(validate_document)
    # Factories, not instances: strawberry builds fresh extensions per request. Fewer extensions, fewer
    # hooks to run per request: DocumentChecks and DocumentRules each stand for strawberry extensions
    # that used to be listed separately (same hooks, same order).
    return [
        observer_factory(settings),  # first: its time and span cover every other step (observability/)
        JingtanMaskErrors,
        lambda: DocumentChecks(
            parse=parse, validate=validate,
            max_directives=gql.max_directives, max_per_location=gql.max_directives_per_location,
        ),  # must validate before RefuseNulCharacters and QueryCost look at the document
        RefuseNulCharacters,
        lambda: DocumentRules(rules=rules, max_tokens=gql.max_tokens),
        lambda: QueryCost(max_cost=gql.max_cost, default_page_size=gql.default_page_size, cache=cost_cache),
        SharedReads,
    ]


def build_schema(settings: Settings, host: PluginHost) -> JingtanSchema:
    """The app's schema: the core domains and the enabled plugins' contributions."""
    register_core_domains(host)
    gql = settings.graphql
    return JingtanSchema(
        Assembly(collect_domains(host, core_type_names())),
        extensions=_extensions(settings),
        # LimitedExecutionContext with a plan cache of its own; graphql-core's execution when the setting is off.
        execution_context_class=compiled_execution_context(settings.compiled_execution_enabled),
        config=StrawberryConfig(
            scalar_map=SCALARS,
            batching_config={"max_operations": gql.max_batch_operations} if gql.batching else None,
        ),
    )


@functools.cache
def core_type_names() -> frozenset[str]:
    """GraphQL type names the core owns, which plugins' input types may not reuse: the schema of the
    core domains with no action type enabled, plus the names the actions domain builds per app.
    (Built once per process; passed to the domains as ``reserved_type_names``.)"""
    host = PluginHost()
    register_core_domains(host)
    schema = JingtanSchema(Assembly(collect_domains(host)))
    return frozenset(set(schema._schema.type_map) | {"ActionInput", "SubmitActionInput", "SubmitActionPayload"})
