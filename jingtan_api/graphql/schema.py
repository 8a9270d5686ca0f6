"""Assembles the one GraphQL schema from the domains' fragments (and, later, plugins' contributions)."""

import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.tools import merge_types
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.schema import AccountsMutation
from jingtan_api.accounts.types import Account, LedgerEntry, LedgerTransaction, can_read_account
from jingtan_api.audit import service as audit_service
from jingtan_api.audit.schema import AuditQuery
from jingtan_api.audit.types import AuditLogEntry
from jingtan_api.auth import service as auth_service
from jingtan_api.auth.schema import AuthMutation, AuthQuery
from jingtan_api.auth.types import ApiToken
from jingtan_api.context import Context
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.graphql.cost import QueryCost
from jingtan_api.graphql.errors import JingtanMaskErrors
from jingtan_api.graphql.relay import Node, from_global_id, parse_pk
from jingtan_api.offers.schema import NODE_RESOLVERS as OFFERS_NODE_RESOLVERS
from jingtan_api.offers.schema import TYPES as OFFERS_TYPES
from jingtan_api.offers.schema import OffersMutation, OffersQuery
from jingtan_api.settings import Settings
from jingtan_api.users import service as users_service
from jingtan_api.users.schema import UsersMutation, UsersQuery
from jingtan_api.users.types import User

MAX_NODES = 100
_NAMES = NameConverter()


class JingtanSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Unexpected errors are logged (once, with the request id) by JingtanMaskErrors; expected ones
        (validation, domain errors) are answers, not incidents."""


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


class SchemaAssemblyError(Exception):
    pass


def _check_unique_fields(name: str, fragments: Sequence[type]) -> None:
    seen: dict[str, str] = {}
    for fragment in fragments:
        for field in fragment.__strawberry_definition__.fields:
            graphql_name = _NAMES.get_graphql_name(field)
            if graphql_name in seen:
                raise SchemaAssemblyError(
                    f"{name}.{graphql_name} is contributed twice: by {seen[graphql_name]} and {fragment.__name__}"
                )
            seen[graphql_name] = fragment.__name__


def merge_fragments(name: str, fragments: Sequence[type]) -> type:
    """``merge_types`` only warns on duplicate field names (the first wins); refuse them instead."""
    _check_unique_fields(name, fragments)
    return merge_types(name, tuple(fragments))


# --- node(id:) ---------------------------------------------------------------------------------------


async def _users(info: Info, pks: list[int]) -> dict[int, Any]:
    viewer = info.context.viewer
    rows = await info.context.read(users_service.users_by_ids, [p for p in pks if viewer.can_see_user(p)])
    return {pk: User.from_row(r) for pk, r in rows.items()}


async def _accounts(info: Info, pks: list[int]) -> dict[int, Any]:
    rows = await info.context.read(ledger.accounts_by_ids, pks)
    return {pk: Account.from_row(r) for pk, r in rows.items() if can_read_account(info, r)}


async def _entries(info: Info, pks: list[int]) -> dict[int, Any]:
    rows = await info.context.read(ledger.entries_by_ids, pks)
    return {pk: LedgerEntry.from_row(r) for pk, r in rows.items() if can_read_account(info, r)}


async def _transactions(info: Info, pks: list[int]) -> dict[int, Any]:
    viewer = info.context.viewer
    if not (viewer.is_admin and "ledger:read" in viewer.scopes):
        return {}
    rows = await info.context.read(ledger.transactions_by_ids, pks)
    return {pk: LedgerTransaction.from_row(r) for pk, r in rows.items()}


async def _api_tokens(info: Info, pks: list[int]) -> dict[int, Any]:
    viewer = info.context.viewer
    if viewer.user_id is None:
        return {}
    from sqlalchemy import select

    async def fetch(conn):
        t = auth_service.AT
        return {r.id: dict(r._mapping) for r in await conn.execute(select(t).where(t.c.id.in_(pks)))}

    rows = await info.context.read(fetch)
    return {
        pk: ApiToken.from_row(r)
        for pk, r in rows.items()
        if viewer.can_see_user(r["user_id"])
    }


async def _audit(info: Info, pks: list[int]) -> dict[int, Any]:
    viewer = info.context.viewer
    if not (viewer.is_admin and "audit:read" in viewer.scopes):
        return {}
    rows = await info.context.read(audit_service.by_ids, pks)
    return {pk: AuditLogEntry.from_row(r) for pk, r in rows.items()}


CORE_NODE_RESOLVERS = {
    "User": _users,
    "Account": _accounts,
    "LedgerEntry": _entries,
    "LedgerTransaction": _transactions,
    "ApiToken": _api_tokens,
    "AuditLogEntry": _audit,
    **OFFERS_NODE_RESOLVERS,
}


async def resolve_nodes(info: Info, ids: Sequence[str]) -> list[Node | None]:
    """Objects the viewer may see, in order; unknown, malformed and foreign IDs give null."""
    resolvers = info.context.services.extras["node_resolvers"]
    wanted: dict[str, set[int]] = {}
    parsed: list[tuple[str, int] | None] = []
    for gid in ids:
        try:
            type_name, raw = from_global_id(gid)
        except NotFound:
            parsed.append(None)
            continue
        pk = parse_pk(raw)
        if type_name not in resolvers or pk is None:
            parsed.append(None)
            continue
        parsed.append((type_name, pk))
        wanted.setdefault(type_name, set()).add(pk)
    found: dict[str, dict[int, Any]] = {}
    for type_name, pks in wanted.items():
        found[type_name] = await resolvers[type_name](info, sorted(pks))
    return [found[p[0]].get(p[1]) if p else None for p in parsed]


@strawberry.type
class NodeQuery:
    @strawberry.field(description="Fetch any object by global ID; null when unknown or not visible to you.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await resolve_nodes(info, [id]))[0]

    @strawberry.field(description=f"Fetch up to {MAX_NODES} objects by global ID, in order.")
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise ValidationFailed(f"At most {MAX_NODES} ids / 最多 {MAX_NODES} 个 ID", field="ids")
        return await resolve_nodes(info, ids)


CORE_QUERY_FRAGMENTS: tuple[type, ...] = (
    NodeQuery,
    UsersQuery,
    AuthQuery,
    AuditQuery,
    OffersQuery,
)
CORE_MUTATION_FRAGMENTS: tuple[type, ...] = (
    UsersMutation,
    AuthMutation,
    AccountsMutation,
    OffersMutation,
)
CORE_TYPES: tuple[type, ...] = (
    User,
    Account,
    LedgerEntry,
    LedgerTransaction,
    ApiToken,
    AuditLogEntry,
    *OFFERS_TYPES,
)


@functools.cache
def core_type_names() -> frozenset[str]:
    """GraphQL type names the core owns (plugins may not reuse them)."""
    from jingtan_api.actions.schema import ActionsQuery, ReviewMutation
    from jingtan_api.actions.types import Action

    schema = strawberry.Schema(
        query=merge_fragments("Query", (*CORE_QUERY_FRAGMENTS, ActionsQuery)),
        mutation=merge_fragments("Mutation", (*CORE_MUTATION_FRAGMENTS, ReviewMutation)),
        types=[*CORE_TYPES, Action],
    )
    names = set(schema._schema.type_map)
    return frozenset(names | {"ActionInput", "SubmitActionInput", "SubmitActionPayload", "Mutation", "Query"})


def build_schema(
    settings: Settings,
    *,
    query_fragments: Iterable[type] = (),
    mutation_fragments: Iterable[type] = (),
    types: Iterable[type] = (),
) -> strawberry.Schema:
    query = merge_fragments("Query", (*CORE_QUERY_FRAGMENTS, *query_fragments))
    mutation = merge_fragments("Mutation", (*CORE_MUTATION_FRAGMENTS, *mutation_fragments))
    gql = settings.graphql
    # QueryDepthLimiter and MaxAliasesLimiter create a new validation-rule CLASS per instance. Built per
    # request (as factories), they made every request's rule tuple unique, so ValidationCache never hit
    # and every request paid full graphql-core validation (~40% of a small query's CPU in bench/).
    # Build their rules once and add the same classes on every request.
    limit_rules = [
        *QueryDepthLimiter(max_depth=gql.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=gql.max_aliases).validation_rules,
    ]
    cost_cache: dict = {}
    # Factories, not instances: strawberry builds fresh extensions per request (the parser and
    # validation caches are module-level LRU caches shared by all of them).
    extensions: list[Any] = [
        JingtanMaskErrors,
        lambda: ParserCache(maxsize=1000),
        lambda: ValidationCache(maxsize=1000),
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=gql.max_tokens),
        lambda: QueryCost(max_cost=gql.max_cost, default_page_size=gql.default_page_size, cache=cost_cache),
        SharedReads,
    ]
    if not settings.introspection_enabled:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    config = StrawberryConfig(
        batching_config={"max_operations": gql.max_batch_operations} if gql.batching else None,
    )
    return JingtanSchema(
        query=query,
        mutation=mutation,
        types=[*CORE_TYPES, *types],
        extensions=extensions,
        config=config,
    )


__all__ = ["build_schema", "merge_fragments", "CORE_NODE_RESOLVERS", "GraphQLError"]
