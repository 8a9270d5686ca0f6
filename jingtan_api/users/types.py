"""GraphQL types of the users domain. ``User`` has the user's own fields; other domains add theirs
(``account``, ``actions``, ``merchant``, ...) from their own packages (``jingtan_api.graphql.assemble``)."""

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError
from jingtan_api.users import service


@strawberry.enum(description="Role of a user. / 用户角色。")
class Role(Enum):
    MEMBER = "MEMBER"
    MERCHANT = "MERCHANT"
    ADMIN = "ADMIN"
    EXPERT = strawberry.enum_value("EXPERT", description="Expert committee member: reviews methodologies. / 专家委员会成员。")


def users_loader(info: Info):
    ctx = info.context
    return ctx.loader("users", lambda ids: ctx.read(service.users_by_ids, ids))


async def user_by_id(info: Info, user_id: int | None) -> "User | None":
    """A user's public profile through the request's loader (null when unknown)."""
    if user_id is None:
        return None
    row = await users_loader(info).load(user_id)
    return User.from_row(row) if row else None


def require_personal(info: Info, user: "User") -> None:
    """Personal fields of a user (contacts, roles, and the account, actions, tokens ... that other
    domains add to ``User``) are for the user and admins only."""
    if not info.context.viewer.can_see_user(user.pk):
        raise PermissionDenied()


@strawberry.type(description="A person with a login (member, merchant staff or admin). / 用户。")
class User(Node):
    display_name: str = strawberry.field(description="Name shown to others. / 昵称。")
    created_at: datetime = strawberry.field(description="When the user registered. / 注册时间。")
    _email: strawberry.Private[str | None]
    _phone: strawberry.Private[str | None]
    _roles: strawberry.Private[frozenset[str]]

    @classmethod
    def from_row(cls, row: dict) -> "User":
        return cls(
            pk=row["id"],
            display_name=row["display_name"],
            created_at=row["created_at"],
            _email=row["email"],
            _phone=row["phone"],
            _roles=service.roles_of_str(row["roles"]),
        )

    @strawberry.field(description="Email address (only the user and admins). / 邮箱（仅本人与管理员可见）。")
    def email(self, info: Info) -> str | None:
        require_personal(info, self)
        return self._email

    @strawberry.field(description="Phone number in E.164 (only the user and admins). / 手机号（仅本人与管理员可见）。")
    def phone(self, info: Info) -> str | None:
        require_personal(info, self)
        return self._phone

    @strawberry.field(description="Roles of the user (only the user and admins). / 角色。")
    def roles(self, info: Info) -> list[Role]:
        require_personal(info, self)
        return [Role(r) for r in sorted(self._roles)]


@strawberry.type(description="Tokens of a logged-in session. / 登录令牌。")
class AuthTokens:
    access_token: str = strawberry.field(description="JWT to send as `Authorization: Bearer …`.")
    access_token_expires_at: datetime = strawberry.field(description="Expiry of the access token.")
    refresh_token: str = strawberry.field(description="One-time token for `refreshToken`; rotates on use.")
    refresh_token_expires_at: datetime = strawberry.field(description="Expiry of the refresh token.")
    token_type: str = strawberry.field(default="Bearer", description="Always `Bearer`.")


AuthErrorCode = error_code_enum(
    "AuthErrorCode",
    ("ALREADY_REGISTERED", "INVALID_EMAIL", "INVALID_PHONE", "WEAK_PASSWORD", "INVALID_CREDENTIALS", "ACCOUNT_DISABLED",
     "INVALID_REFRESH_TOKEN", "REFRESH_TOKEN_REUSED"),
    description="Codes of registration, session, password and role mutations' userErrors. / 注册与登录错误代码。",
)
AuthError = user_error_type(
    "AuthError", AuthErrorCode,
    description="Why register, login, refreshToken, logout, changePassword or setUserRoles failed. / 注册与登录错误。",
)


@strawberry.input(description="Register a member with an email or a phone number. / 注册。")
class RegisterInput:
    email: str | None = strawberry.field(default=None, description="Email address. / 邮箱。")
    phone: str | None = strawberry.field(
        default=None, description="Mainland mobile (13800138000 or +8613800138000) or E.164. / 手机号。"
    )
    password: str = strawberry.field(description="At least 8 characters mixing letters, digits or symbols.")
    display_name: str = strawberry.field(description="1-64 characters. / 昵称。")
    referral_code: str | None = strawberry.field(
        default=None, description="A volunteer's referral code, if one brought you. / 志愿者推荐码（选填）。"
    )
    device_id: str | None = strawberry.field(
        default=None, description="The app's stable device identifier, up to 64 characters (kept hashed). / 设备标识（选填）。"
    )
    device_name: str | None = strawberry.field(
        default=None, description="Name of this device for the list of sessions (default: the User-Agent). / 设备名称。"
    )


@strawberry.input(description="Log in with an email or phone number and a password. / 登录。")
class LoginInput:
    identifier: str = strawberry.field(description="Email or phone number. / 邮箱或手机号。")
    password: str = strawberry.field(description="Password. / 密码。")
    device_name: str | None = strawberry.field(
        default=None, description="Name of this device for the list of sessions (default: the User-Agent). / 设备名称。"
    )


@strawberry.input(description="Exchange a refresh token for a new token pair. / 刷新令牌。")
class RefreshTokenInput:
    refresh_token: str = strawberry.field(description="The refresh token from login or the last refresh.")


@strawberry.input(description="End a session. / 退出登录。")
class LogoutInput:
    refresh_token: str | None = strawberry.field(default=None, description="Refresh token of the session to end.")
    all_sessions: bool = strawberry.field(default=False, description="End every session of the viewer.")


@strawberry.input(description="Change the viewer's password; other sessions are signed out. / 修改密码。")
class ChangePasswordInput:
    current_password: str = strawberry.field(description="Current password.")
    new_password: str = strawberry.field(description="New password.")


@strawberry.input(description="Set a user's roles (admin). / 设置用户角色（管理员）。")
class SetUserRolesInput:
    user_id: strawberry.ID = strawberry.field(description="Global ID of the user.")
    roles: list[Role] = strawberry.field(description="The complete new set of roles.")
    reason: str = strawberry.field(description="Why, for the audit log. / 原因。")


@strawberry.type(description="Result of `register`.")
class RegisterPayload:
    user: User | None = strawberry.field(default=None, description="The new user.")
    tokens: AuthTokens | None = strawberry.field(default=None, description="A session for the new user.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[AuthError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `login`, `refreshToken` and `changePassword`.")
class AuthPayload:
    tokens: AuthTokens | None = strawberry.field(default=None, description="The new session tokens.")
    user: User | None = strawberry.field(default=None, description="The logged-in user.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[AuthError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `logout`.")
class LogoutPayload:
    ok: bool = strawberry.field(default=False, description="True when the session(s) ended.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[AuthError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `setUserRoles`.")
class SetUserRolesPayload:
    user: User | None = strawberry.field(default=None, description="The user with the new roles.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[AuthError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
