"""GraphQL types for API tokens."""

from datetime import datetime

import strawberry
from strawberry.types import Info

from jingtan_api.auth import service
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError


@strawberry.type(description="A server-to-server API token (the secret is shown only at creation). / API 令牌。")
class ApiToken(Node):
    name: str = strawberry.field(description="Name given at creation.")
    prefix: str = strawberry.field(description="Public part of the token, to recognise it in lists.")
    scopes: list[str] = strawberry.field(description="What the token may do.")
    created_at: datetime = strawberry.field(description="Creation time.")
    expires_at: datetime | None = strawberry.field(description="Expiry, if any.")
    last_used_at: datetime | None = strawberry.field(description="Last use (minute precision).")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")

    @classmethod
    def from_row(cls, row: dict) -> "ApiToken":
        return cls(
            pk=row["id"],
            name=row["name"],
            prefix=row["prefix"],
            scopes=row["scopes"].split(),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )


async def api_tokens_of(info: Info, user_id: int) -> list[ApiToken]:
    ctx = info.context
    rows = await ctx.loader("api_tokens", lambda ids: ctx.read(service.tokens_of_users, ids)).load(user_id)
    return [ApiToken.from_row(r) for r in rows or []]


ApiTokenErrorCode = error_code_enum(
    "ApiTokenErrorCode", (), description="Codes of API-token mutations' userErrors. / API 令牌错误代码。"
)
ApiTokenError = user_error_type(
    "ApiTokenError", ApiTokenErrorCode, description="Why createApiToken or revokeApiToken failed. / API 令牌错误。"
)


@strawberry.input(description="Create an API token. / 创建 API 令牌。")
class CreateApiTokenInput:
    name: str = strawberry.field(description="What the token is for, 1-100 characters.")
    scopes: list[str] = strawberry.field(description="Scopes, e.g. [\"account:read\"]; see `apiScopes`.")
    expires_at: datetime | None = strawberry.field(default=None, description="Optional expiry.")
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="Owner (admins only); default the viewer."
    )


@strawberry.input(description="Revoke an API token. / 吊销 API 令牌。")
class RevokeApiTokenInput:
    id: strawberry.ID = strawberry.field(description="Global ID of the token.")


@strawberry.type(description="Result of `createApiToken`.")
class CreateApiTokenPayload:
    api_token: ApiToken | None = strawberry.field(default=None, description="The token's record.")
    secret: str | None = strawberry.field(
        default=None, description="The token to send as `Authorization: Bearer …`; shown only once."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[ApiTokenError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `revokeApiToken`.")
class RevokeApiTokenPayload:
    api_token: ApiToken | None = strawberry.field(default=None, description="The revoked token.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[ApiTokenError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="A scope an API token may carry.")
class ApiScope:
    name: str = strawberry.field(description="Scope name.")
    description: str = strawberry.field(description="What it allows.")
