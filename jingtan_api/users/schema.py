"""Query and Mutation fields of the users domain (registration, sessions, roles)."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN, Viewer, scopes_for_roles
from jingtan_api.errors import PermissionDenied, Unauthenticated
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import decode_id
from jingtan_api.users import service
from jingtan_api.users.service import Session, users_by_ids
from jingtan_api.users.types import (
    AuthPayload,
    AuthTokens,
    ChangePasswordInput,
    LoginInput,
    LogoutInput,
    LogoutPayload,
    RefreshTokenInput,
    RegisterInput,
    RegisterPayload,
    SetUserRolesInput,
    SetUserRolesPayload,
    User,
    users_loader,
)


def client_address(info: Info) -> str:
    request = info.context.request
    if request is None:
        return "local"
    if info.context.settings.auth.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return (request.client.host if request.client else "unknown")[:64]


def device_name(info: Info, given: str | None) -> str:
    """The session's device name: what the client says, else its User-Agent."""
    if given and given.strip():
        return given
    request = info.context.request
    return (request.headers.get("user-agent") or "") if request is not None else ""


async def _session_payload(info: Info, session: Session) -> AuthPayload:
    row = await users_loader(info).load(session.user_id)
    pair = session.pair
    return AuthPayload(
        tokens=AuthTokens(
            access_token=pair.access_token,
            access_token_expires_at=pair.access_expires_at,
            refresh_token=pair.refresh_token,
            refresh_token_expires_at=pair.refresh_expires_at,
        ),
        user=User.from_row(row),
    )


async def _as_viewer(info: Info, session: Session) -> None:
    """Resolvers after login in the same operation see the new user as the viewer."""
    info.context.viewer = Viewer(user_id=session.user_id, roles=session.roles, scopes=scopes_for_roles(session.roles))


@strawberry.type
class UsersQuery:
    @strawberry.field(
        description="The logged-in user; null when anonymous, an UNAUTHENTICATED error when the token sent "
        "is expired, invalid or revoked. / 当前登录用户。"
    )
    async def viewer(self, info: Info) -> User | None:
        viewer = info.context.viewer
        if viewer.user_id is None:
            if viewer.auth_error:
                viewer.require_user()  # raises UNAUTHENTICATED with the reason
            return None
        row = await users_loader(info).load(viewer.user_id)
        if row is None or row["status"] != "ACTIVE":
            # A valid token of a user who was disabled (or no longer exists) since it was issued.
            raise Unauthenticated(
                "This token was revoked or the account is disabled / 令牌已吊销或账户已停用", reason="REVOKED_TOKEN"
            )
        return User.from_row(row)


@strawberry.type
class UsersMutation:
    @payload_mutation(description="Register a member account; returns a session. / 注册会员。")
    async def register(self, info: Info, input: RegisterInput) -> RegisterPayload:
        ctx = info.context
        session = await service.register_session(
            ctx.services,
            email=input.email,
            phone=input.phone,
            password=input.password,
            display_name=input.display_name,
            now=ctx.now(),
            signals={"client_address": client_address(info), "device_id": input.device_id,
                     "referral_code": input.referral_code},
            device_name=device_name(info, input.device_name),
            address=client_address(info),
        )
        await _as_viewer(info, session)
        payload = await _session_payload(info, session)
        return RegisterPayload(user=payload.user, tokens=payload.tokens)

    @payload_mutation(description="Log in; rate-limited per account and per client address. / 登录。")
    async def login(self, info: Info, input: LoginInput) -> AuthPayload:
        ctx = info.context
        session = await service.login(
            ctx.services,
            identifier=input.identifier, password=input.password, address=client_address(info), now=ctx.now(),
            device_name=device_name(info, input.device_name),
        )
        await _as_viewer(info, session)
        return await _session_payload(info, session)

    @payload_mutation(description="Rotate a refresh token into a new token pair. / 刷新令牌。")
    async def refresh_token(self, info: Info, input: RefreshTokenInput) -> AuthPayload:
        ctx = info.context
        session = await service.refresh(
            ctx.services, refresh_token=input.refresh_token, now=ctx.now(), address=client_address(info)
        )
        await _as_viewer(info, session)
        return await _session_payload(info, session)

    @payload_mutation(description="End this session (or all of the viewer's sessions). / 退出登录。")
    async def logout(self, info: Info, input: LogoutInput) -> LogoutPayload:
        ctx = info.context
        if input.all_sessions and ctx.viewer.api_token_id is not None:
            raise PermissionDenied("API tokens cannot end login sessions / API 令牌不能注销登录会话")
        await service.logout(
            ctx.services,
            user_id=ctx.viewer.user_id,
            refresh_token=input.refresh_token,
            all_sessions=input.all_sessions,
            now=ctx.now(),
        )
        return LogoutPayload(ok=True)

    @payload_mutation(description="Change the viewer's password and sign out other sessions. / 修改密码。")
    async def change_password(self, info: Info, input: ChangePasswordInput) -> AuthPayload:
        ctx = info.context
        user_id = ctx.viewer.require_user()
        if ctx.viewer.api_token_id is not None:
            raise PermissionDenied("API tokens cannot change passwords / API 令牌不能修改密码")
        session = await service.change_password(
            ctx.services,
            user_id=user_id,
            current=input.current_password,
            new=input.new_password,
            address=client_address(info),
            now=ctx.now(),
        )
        return await _session_payload(info, session)

    @payload_mutation(description="Set a user's roles (admin; audit-logged). / 设置用户角色（管理员）。")
    async def set_user_roles(self, info: Info, input: SetUserRolesInput) -> SetUserRolesPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="users:write")
        user_id = decode_id(input.user_id, "User", field="userId")
        await service.set_roles(
            ctx.services,
            actor_user_id=actor,
            user_id=user_id,
            roles=frozenset(r.value for r in input.roles),
            reason=input.reason,
            request_id=ctx.request_id,
            now=ctx.now(),
        )
        # Read the row afresh: the request's loader may hold the roles from before the change (and
        # DataLoader.clear raises KeyError for a key it never loaded).
        rows = await ctx.read(users_by_ids, [user_id])
        return SetUserRolesPayload(user=User.from_row(rows[user_id]))



async def _user_nodes(info: Info, pks: list[int]) -> dict[int, User]:
    viewer = info.context.viewer
    rows = await info.context.read(users_by_ids, [p for p in pks if viewer.can_see_user(p)])
    return {pk: User.from_row(r) for pk, r in rows.items()}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(name="users", query=[UsersQuery], mutation=[UsersMutation], types=[User], nodes={"User": _user_nodes})
