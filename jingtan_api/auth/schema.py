"""API token fields."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth import service, tokens
from jingtan_api.auth.permissions import SCOPES
from jingtan_api.auth.types import (
    ApiScope,
    ApiToken,
    CreateApiTokenInput,
    CreateApiTokenPayload,
    RevokeApiTokenInput,
    RevokeApiTokenPayload,
)
from jingtan_api.auth.types import api_tokens_of
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import decode_id
from jingtan_api.users.types import User, require_personal


@strawberry.type
class AuthQuery:
    @strawberry.field(description="Scopes an API token may carry. / API 令牌权限范围。")
    def api_scopes(self) -> list[ApiScope]:
        return [ApiScope(name=k, description=v) for k, v in SCOPES.items()]


@strawberry.type
class AuthMutation:
    @payload_mutation(description="Create an API token; the secret is returned once. / 创建 API 令牌。")
    async def create_api_token(self, info: Info, input: CreateApiTokenInput) -> CreateApiTokenPayload:
        ctx = info.context
        owner = decode_id(input.user_id, "User", field="userId") if input.user_id else None
        row, secret = await ctx.db.write(
            lambda conn: service.create_api_token(
                conn,
                viewer=ctx.viewer,
                owner_user_id=owner,
                name=input.name,
                scopes=input.scopes,
                expires_at=input.expires_at,
                now=ctx.now(),
                request_id=ctx.request_id,
            )
        )
        return CreateApiTokenPayload(api_token=ApiToken.from_row(row), secret=secret)

    @payload_mutation(description="Revoke an API token at once. / 吊销 API 令牌。")
    async def revoke_api_token(self, info: Info, input: RevokeApiTokenInput) -> RevokeApiTokenPayload:
        ctx = info.context
        ctx.viewer.require_user()
        token_id = decode_id(input.id, "ApiToken")
        row = await ctx.db.write(
            lambda conn: tokens.revoke_api_token(conn, token_id, viewer=ctx.viewer, now=ctx.now())
        )
        return RevokeApiTokenPayload(api_token=ApiToken.from_row(row))


@strawberry.type
class UserApiTokens:
    """Fields of ``User`` from the auth domain."""

    @strawberry.field(description="API tokens owned by the user (only the user and admins). / API 令牌。")
    async def api_tokens(self: User, info: Info) -> list[ApiToken]:
        require_personal(info, self)
        return await api_tokens_of(info, self.pk)


async def _api_token_nodes(info: Info, pks: list[int]) -> dict[int, ApiToken]:
    viewer = info.context.viewer
    if viewer.user_id is None:
        return {}
    rows = await info.context.read(service.api_tokens_by_ids, pks)
    return {pk: ApiToken.from_row(r) for pk, r in rows.items() if viewer.can_see_user(r["user_id"])}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="auth",
        query=[AuthQuery],
        mutation=[AuthMutation],
        types=[ApiToken],
        nodes={"ApiToken": _api_token_nodes},
        extends={"User": [UserApiTokens]},
    )
