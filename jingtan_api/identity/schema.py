"""Query and Mutation fields of the identity domain, and its fields on ``User`` (docs/identity.md)."""

from datetime import datetime

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.identity import privacy, service
from jingtan_api.identity.codes import CodeSent
from jingtan_api.identity.types import (
    AcceptConsentInput,
    AcceptConsentPayload,
    AccountDeletionPayload,
    AccountDeletionRequest,
    AuthSession,
    CodeSessionPayload,
    CompleteAccountDeletionInput,
    ConfirmAccountDeletionInput,
    ConfirmPhoneChangeInput,
    Consent,
    ContactChannel,
    DataExport,
    DeletionStatus,
    EndSessionInput,
    EndSessionPayload,
    LoginWithCodeInput,
    RequestCodeInput,
    RequestCodePayload,
    RequestContactVerificationInput,
    RequestDataExportPayload,
    RequestPhoneChangeInput,
    ResetPasswordInput,
    VerifyContactInput,
    VerifyContactPayload,
)
from jingtan_api.plugins.api import Channel
from jingtan_api.users.schema import _as_viewer, _session_payload, client_address, device_name
from jingtan_api.users.service import consents_of_users, users_by_ids
from jingtan_api.users.types import User, require_personal, users_loader


def _code_payload(sent: CodeSent) -> RequestCodePayload:
    return RequestCodePayload(channel=ContactChannel(sent.channel.value), expires_at=sent.expires_at,
                              resend_after_seconds=sent.resend_after_seconds)


def _member(info: Info) -> int:
    """The viewer, in an interactive session: API tokens cannot manage identity, sessions or privacy."""
    ctx = info.context
    user_id = ctx.viewer.require_user()
    if ctx.viewer.api_token_id is not None:
        raise PermissionDenied("API tokens cannot do this / API 令牌不能执行此操作")
    return user_id


async def _fresh_user(info: Info, user_id: int) -> User:
    rows = await info.context.read(users_by_ids, [user_id])
    return User.from_row(rows[user_id])


def _consent(info: Info, rows: dict | None) -> Consent:
    cfg = info.context.settings.identity
    rows = rows or {}
    terms, privacy_row = rows.get("TERMS"), rows.get("PRIVACY")
    accepted = max((r["accepted_at"] for r in (terms, privacy_row) if r), default=None)
    return Consent(terms_version=terms["version"] if terms else None,
                   privacy_version=privacy_row["version"] if privacy_row else None, accepted_at=accepted,
                   current_terms_version=cfg.terms_version, current_privacy_version=cfg.privacy_version)


@strawberry.type(description="Versions of the legal documents in force. / 现行协议版本。")
class LegalDocuments:
    terms_version: str = strawberry.field(description="Terms of service version.")
    privacy_version: str = strawberry.field(description="Privacy notice version.")


@strawberry.type
class IdentityQuery:
    @strawberry.field(description="Versions of the terms and privacy notice in force. / 现行协议版本。")
    def legal_documents(self, info: Info) -> LegalDocuments:
        cfg = info.context.settings.identity
        return LegalDocuments(terms_version=cfg.terms_version, privacy_version=cfg.privacy_version)

    @strawberry.field(description="Account deletion requests, newest first (admins). / 注销申请队列（管理员）。")
    async def account_deletion_requests(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: DeletionStatus | None = None,
    ) -> Connection[AccountDeletionRequest]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        value = status.value if status else None
        page = await ctx.read(privacy.deletion_requests_page, args, status=value)
        return build_connection(page, AccountDeletionRequest.from_row,
                                count=lambda: ctx.read(privacy.count_deletion_requests, status=value))


@strawberry.type
class IdentityMutation:
    @payload_mutation(description="Send a code to the viewer's phone or email to verify it. / 获取验证码。")
    async def request_contact_verification(self, info: Info, input: RequestContactVerificationInput) -> RequestCodePayload:
        ctx = info.context
        sent = await service.request_contact_verification(
            ctx.services, user_id=_member(info), channel=Channel(input.channel.value),
            address=client_address(info), now=ctx.now())
        return _code_payload(sent)

    @payload_mutation(description="Verify the viewer's phone or email with the code. / 验证手机号或邮箱。")
    async def verify_contact(self, info: Info, input: VerifyContactInput) -> VerifyContactPayload:
        ctx = info.context
        user_id = _member(info)
        await service.verify_contact(ctx.services, user_id=user_id, channel=Channel(input.channel.value),
                                     code=input.code, request_id=ctx.request_id, now=ctx.now())
        return VerifyContactPayload(user=await _fresh_user(info, user_id))

    @payload_mutation(description="Send a code to a new phone number for the viewer's account. / 更换手机号。")
    async def request_phone_change(self, info: Info, input: RequestPhoneChangeInput) -> RequestCodePayload:
        ctx = info.context
        sent = await service.request_phone_change(ctx.services, user_id=_member(info), new_phone=input.new_phone,
                                                  address=client_address(info), now=ctx.now())
        return _code_payload(sent)

    @payload_mutation(description="Move the viewer's account to the new number (verified); the old number is "
                      "notified. / 确认更换手机号。")
    async def confirm_phone_change(self, info: Info, input: ConfirmPhoneChangeInput) -> VerifyContactPayload:
        ctx = info.context
        user_id = _member(info)
        await service.confirm_phone_change(ctx.services, user_id=user_id, new_phone=input.new_phone, code=input.code,
                                           request_id=ctx.request_id, now=ctx.now())
        return VerifyContactPayload(user=await _fresh_user(info, user_id))

    @payload_mutation(description="Send a login code; the answer is the same for unknown accounts. / 获取登录验证码。")
    async def request_login_code(self, info: Info, input: RequestCodeInput) -> RequestCodePayload:
        ctx = info.context
        sent = await service.request_login_code(ctx.services, identifier=input.identifier,
                                                address=client_address(info), now=ctx.now())
        return _code_payload(sent)

    @payload_mutation(description="Log in with a one-time code. / 验证码登录。")
    async def login_with_code(self, info: Info, input: LoginWithCodeInput) -> CodeSessionPayload:
        ctx = info.context
        session = await service.login_with_code(
            ctx.services, identifier=input.identifier, code=input.code, address=client_address(info),
            device_name=device_name(info, input.device_name), request_id=ctx.request_id, now=ctx.now())
        await _as_viewer(info, session)
        payload = await _session_payload(info, session)
        return CodeSessionPayload(tokens=payload.tokens, user=payload.user)

    @payload_mutation(description="Send a password reset code; the answer is the same for unknown accounts. / "
                      "获取重置密码验证码。")
    async def request_password_reset(self, info: Info, input: RequestCodeInput) -> RequestCodePayload:
        ctx = info.context
        sent = await service.request_password_reset(ctx.services, identifier=input.identifier,
                                                    address=client_address(info), now=ctx.now())
        return _code_payload(sent)

    @payload_mutation(description="Set a new password with a reset code; every other session ends. / 重置密码。")
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> CodeSessionPayload:
        ctx = info.context
        session = await service.reset_password(
            ctx.services, identifier=input.identifier, code=input.code, new_password=input.new_password,
            address=client_address(info), device_name=device_name(info, input.device_name),
            request_id=ctx.request_id, now=ctx.now())
        await _as_viewer(info, session)
        payload = await _session_payload(info, session)
        return CodeSessionPayload(tokens=payload.tokens, user=payload.user)

    @payload_mutation(description="End one of the viewer's sessions (its refresh token stops at once). / 结束会话。")
    async def end_session(self, info: Info, input: EndSessionInput) -> EndSessionPayload:
        ctx = info.context
        user_id = _member(info)
        session_id = decode_id(input.id, "AuthSession")
        row = await ctx.db.write(lambda conn: service.end_session(
            conn, user_id=user_id, session_id=session_id, request_id=ctx.request_id, now=ctx.now()))
        return EndSessionPayload(session=AuthSession.from_row(row))

    @payload_mutation(description="Accept the terms and privacy notice in force. / 同意现行协议。")
    async def accept_consent(self, info: Info, input: AcceptConsentInput) -> AcceptConsentPayload:
        ctx = info.context
        user_id = _member(info)
        await ctx.db.write(lambda conn: service.accept_consent(
            ctx.services, conn, user_id=user_id, terms_version=input.terms_version,
            privacy_version=input.privacy_version, request_id=ctx.request_id, now=ctx.now()))
        rows = await ctx.read(consents_of_users, [user_id])
        return AcceptConsentPayload(consent=_consent(info, rows.get(user_id)))

    @payload_mutation(description="Make a copy of the viewer's data, downloadable once through a signed link. / "
                      "导出个人数据。")
    async def request_data_export(self, info: Info) -> RequestDataExportPayload:
        ctx = info.context
        user_id = _member(info)
        row, url = await ctx.db.write(lambda conn: privacy.request_data_export(
            ctx.services, conn, user_id=user_id, request_id=ctx.request_id, now=ctx.now()))
        return RequestDataExportPayload(export=DataExport.from_row(row), download_url=url)

    @payload_mutation(description="Send a code to confirm deleting the viewer's account. / 申请注销账户。")
    async def request_account_deletion(self, info: Info) -> RequestCodePayload:
        ctx = info.context
        sent = await privacy.request_account_deletion(ctx.services, user_id=_member(info),
                                                      address=client_address(info), now=ctx.now())
        return _code_payload(sent)

    @payload_mutation(description="Schedule the viewer's account deletion after the cooling-off period. / 确认注销。")
    async def confirm_account_deletion(self, info: Info, input: ConfirmAccountDeletionInput) -> AccountDeletionPayload:
        ctx = info.context
        row = await privacy.confirm_account_deletion(
            ctx.services, user_id=_member(info), code=input.code, balance_choice=input.balance_choice.value,
            request_id=ctx.request_id, now=ctx.now())
        return AccountDeletionPayload(request=AccountDeletionRequest.from_row(row))

    @payload_mutation(description="Cancel the viewer's scheduled account deletion. / 撤销注销申请。")
    async def cancel_account_deletion(self, info: Info) -> AccountDeletionPayload:
        ctx = info.context
        user_id = _member(info)
        row = await ctx.db.write(lambda conn: privacy.cancel_account_deletion(
            conn, user_id=user_id, request_id=ctx.request_id, now=ctx.now()))
        return AccountDeletionPayload(request=AccountDeletionRequest.from_row(row))

    @payload_mutation(description="Carry out a deletion request whose cooling-off period has ended (admins). / "
                      "执行注销（管理员）。")
    async def complete_account_deletion(self, info: Info, input: CompleteAccountDeletionInput) -> AccountDeletionPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="users:write")
        request_pk = decode_id(input.id, "AccountDeletionRequest")
        row = await ctx.db.write(lambda conn: privacy.complete_deletion(
            ctx.settings, conn, request_pk=request_pk, actor_user_id=actor, request_id=ctx.request_id, now=ctx.now()))
        return AccountDeletionPayload(request=AccountDeletionRequest.from_row(row))


@strawberry.type
class UserIdentity:
    """Fields of ``User`` from the identity domain (only the user and admins)."""

    @strawberry.field(description="When the phone number was verified (null: not verified). / 手机验证时间。")
    async def phone_verified_at(self: User, info: Info) -> datetime | None:
        require_personal(info, self)
        row = await users_loader(info).load(self.pk)
        return row["phone_verified_at"] if row else None

    @strawberry.field(description="When the email was verified (null: not verified). / 邮箱验证时间。")
    async def email_verified_at(self: User, info: Info) -> datetime | None:
        require_personal(info, self)
        row = await users_loader(info).load(self.pk)
        return row["email_verified_at"] if row else None

    @strawberry.field(description="Active login sessions, newest first. / 登录会话。")
    async def sessions(
        self: User, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[AuthSession]:
        require_personal(info, self)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        now = ctx.now()
        page = await ctx.read(service.sessions_page, self.pk, args, now=now)
        return build_connection(page, AuthSession.from_row, count=lambda: ctx.read(service.count_sessions, self.pk, now=now))

    @strawberry.field(description="Accepted versions of the terms and privacy notice. / 协议同意记录。")
    async def consent(self: User, info: Info) -> Consent:
        require_personal(info, self)
        ctx = info.context
        rows = await ctx.loader("consents", lambda ids: ctx.read(consents_of_users, ids)).load(self.pk)
        return _consent(info, rows)

    @strawberry.field(description="The user's data exports, newest first. / 数据导出记录。")
    async def data_exports(self: User, info: Info) -> list[DataExport]:
        require_personal(info, self)
        ctx = info.context
        rows = await ctx.loader("data_exports", lambda ids: ctx.read(privacy.exports_of_users, ids)).load(self.pk)
        return [DataExport.from_row(r) for r in rows or []]

    @strawberry.field(description="The user's newest account deletion request, if any. / 最近的注销申请。")
    async def account_deletion_request(self: User, info: Info) -> AccountDeletionRequest | None:
        require_personal(info, self)
        ctx = info.context
        row = await ctx.loader("deletion_requests", lambda ids: ctx.read(privacy.deletion_requests_of_users, ids)).load(self.pk)
        return AccountDeletionRequest.from_row(row) if row else None


async def _session_nodes(info: Info, pks: list[int]) -> dict[int, AuthSession]:
    viewer = info.context.viewer
    if viewer.user_id is None:
        return {}
    rows = await info.context.read(service.sessions_by_ids, pks)
    return {pk: AuthSession.from_row(r) for pk, r in rows.items() if viewer.can_see_user(r["user_id"])}


async def _deletion_nodes(info: Info, pks: list[int]) -> dict[int, AccountDeletionRequest]:
    viewer = info.context.viewer
    if viewer.user_id is None:
        return {}
    rows = await info.context.read(privacy.deletion_requests_by_ids, pks)
    return {pk: AccountDeletionRequest.from_row(r) for pk, r in rows.items() if viewer.can_see_user(r["user_id"])}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="identity",
        query=[IdentityQuery],
        mutation=[IdentityMutation],
        types=[AuthSession, AccountDeletionRequest, DataExport],
        nodes={"AuthSession": _session_nodes, "AccountDeletionRequest": _deletion_nodes},
        extends={"User": [UserIdentity]},
    )
