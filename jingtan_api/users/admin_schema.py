"""Admin fields of the users domain: ``users(search:)``, ``suspendUser``, ``reactivateUser`` and
``User.status`` (see ``users/admin.py`` for the rules). Registered as its own domain module."""

from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import error_code_enum, payload_mutation, user_error_type
from jingtan_api.graphql.relay import Connection, UserError, build_connection, decode_id, page_args
from jingtan_api.users import admin
from jingtan_api.users.service import users_by_ids
from jingtan_api.users.types import Role, User, require_personal, users_loader


@strawberry.enum(description="Status of a user's login. / 用户状态。")
class UserStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Can log in and act. / 正常。")
    SUSPENDED = strawberry.enum_value("SUSPENDED", description="Suspended by an admin: no login, tokens refused. / 已停用。")
    DISABLED = strawberry.enum_value("DISABLED", description="Any other inactive state. / 其他停用状态。")


def _status(value: str) -> UserStatus:
    try:
        return UserStatus(value)
    except ValueError:
        return UserStatus.DISABLED


@strawberry.enum(description="How `users(search:)` compares. / 搜索匹配方式。")
class UserSearchMatch(Enum):
    EXACT = strawberry.enum_value("EXACT", description="Whole e-mail, phone or display name. / 完全匹配。")
    PREFIX = strawberry.enum_value("PREFIX", description="Beginning of e-mail, phone or display name. / 前缀匹配。")


@strawberry.type
class UserStatusField:
    """Fields of ``User`` from user administration."""

    @strawberry.field(description="Login status (only the user and admins). / 账户状态（仅本人与管理员）。")
    async def status(self: User, info: Info) -> UserStatus:
        require_personal(info, self)
        row = await users_loader(info).load(self.pk)
        return _status(row["status"] if row else "DISABLED")


@strawberry.type
class UsersAdminQuery:
    @strawberry.field(
        description="Find users by phone, e-mail or display name (admins), newest first. / 按手机号、邮箱或昵称查找用户（管理员）。"
    )
    async def users(
        self,
        info: Info,
        search: Annotated[str | None, strawberry.argument(description="Phone, e-mail or name (1-100 characters).")] = None,
        match: UserSearchMatch = UserSearchMatch.PREFIX,
        role: Role | None = None,
        status: UserStatus | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[User]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        filters = {"search": search, "match": match.value, "role": role.value if role else None,
                   "status": status.value if status else None}
        page = await ctx.read(admin.search_page, args, **filters)
        return build_connection(page, User.from_row, count=lambda: ctx.read(admin.search_count, **filters))


UserAdminErrorCode = error_code_enum(
    "UserAdminErrorCode", ("INVALID_STATUS_TRANSITION",),
    description="Codes of suspendUser / reactivateUser errors. / 用户管理错误代码。",
)
UserAdminError = user_error_type(
    "UserAdminError", UserAdminErrorCode, description="Why suspending or reactivating a user failed. / 用户管理错误。"
)


@strawberry.input(description="Suspend or reactivate a user (admin). / 停用或恢复用户。")
class UserStatusInput:
    user_id: strawberry.ID = strawberry.field(description="Global ID of the user. / 用户 ID。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.type(description="Result of `suspendUser` / `reactivateUser`. / 结果。")
class UserStatusPayload:
    user: User | None = strawberry.field(default=None, description="The user after the change. / 用户。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why nothing changed. / 错误。")
    errors: list[UserAdminError] = strawberry.field(default_factory=list, description="The same errors, typed. / 错误。")


async def _change(info: Info, input: UserStatusInput, *, suspend: bool) -> UserStatusPayload:
    ctx = info.context
    actor = ctx.viewer.require_role(ADMIN, scope="users:write")
    user_id = decode_id(input.user_id, "User", field="userId")
    await admin.set_status(ctx.services, actor_user_id=actor, user_id=user_id, suspend=suspend, reason=input.reason,
                           now=ctx.now(), request_id=ctx.request_id)
    rows = await ctx.read(users_by_ids, [user_id])
    return UserStatusPayload(user=User.from_row(rows[user_id]))


@strawberry.type
class UsersAdminMutation:
    @payload_mutation(
        description="Suspend a user (admin; audited): no login, sessions ended, tokens refused. / 停用用户（管理员）。"
    )
    async def suspend_user(self, info: Info, input: UserStatusInput) -> UserStatusPayload:
        return await _change(info, input, suspend=True)

    @payload_mutation(description="Reactivate a suspended user (admin; audited). / 恢复用户（管理员）。")
    async def reactivate_user(self, info: Info, input: UserStatusInput) -> UserStatusPayload:
        return await _change(info, input, suspend=False)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="users_admin", query=[UsersAdminQuery], mutation=[UsersAdminMutation], types=[UserStatusPayload],
        extends={"User": [UserStatusField]},
    )
