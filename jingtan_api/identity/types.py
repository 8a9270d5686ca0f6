"""GraphQL types of the identity domain (codes, sessions, consent, data export, account deletion)."""

from datetime import datetime
from enum import Enum

import strawberry

from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError
from jingtan_api.users.types import AuthTokens, User


@strawberry.enum(description="Where a one-time code goes. / 验证码渠道。")
class ContactChannel(Enum):
    SMS = "SMS"
    EMAIL = "EMAIL"


@strawberry.enum(description="What happens to the balance of a deleted account. / 注销后余额处理方式。")
class BalanceChoice(Enum):
    EXPIRE = "EXPIRE"
    DONATE = "DONATE"


@strawberry.enum(description="State of an account deletion request. / 注销申请状态。")
class DeletionStatus(Enum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"


@strawberry.enum(description="State of a data export. / 数据导出状态。")
class DataExportStatus(Enum):
    READY = "READY"
    DOWNLOADED = "DOWNLOADED"
    EXPIRED = "EXPIRED"


IdentityErrorCode = error_code_enum(
    "IdentityErrorCode",
    ("INVALID_EMAIL", "INVALID_PHONE", "WEAK_PASSWORD", "INVALID_CODE", "CODE_EXPIRED", "CODE_ALREADY_USED",
     "TOO_MANY_ATTEMPTS", "SEND_FAILED", "CONTACT_TAKEN", "ALREADY_VERIFIED", "NO_CONTACT", "SAME_PHONE",
     "CONSENT_VERSION_OUTDATED", "PENDING_REDEMPTIONS", "DELETION_PENDING", "NO_DELETION_PENDING", "NOT_DUE",
     "INSUFFICIENT_POINTS"),
    description="Codes of the identity and privacy mutations' userErrors. / 身份与隐私错误代码。",
)
IdentityError = user_error_type(
    "IdentityError", IdentityErrorCode,
    description="Why a code, verification, session, consent, export or deletion mutation failed. / 身份与隐私错误。",
)


def _errors():
    return strawberry.field(default_factory=list, description="Why it failed.")


def _typed_errors():
    return strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of a code request: the same whether or not an account holds the "
                 "identifier. / 验证码请求结果。")
class RequestCodePayload:
    channel: ContactChannel | None = strawberry.field(default=None, description="Where the code went.")
    expires_at: datetime | None = strawberry.field(default=None, description="When the code expires.")
    resend_after_seconds: int | None = strawberry.field(default=None, description="Wait this long before asking again.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="Result of verifyContact and confirmPhoneChange.")
class VerifyContactPayload:
    user: User | None = strawberry.field(default=None, description="The user with the verified contact.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="Result of loginWithCode and resetPassword.")
class CodeSessionPayload:
    tokens: AuthTokens | None = strawberry.field(default=None, description="The new session tokens.")
    user: User | None = strawberry.field(default=None, description="The logged-in user.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="A login session (one refresh-token family) on one device. / 登录会话。")
class AuthSession(Node):
    device_name: str = strawberry.field(description="Name the client gave, or its User-Agent. / 设备名称。")
    address: str = strawberry.field(description="Client address of the last use. / 最近使用的地址。")
    created_at: datetime = strawberry.field(description="First use (login). / 首次使用。")
    last_used_at: datetime = strawberry.field(description="Last use (login or token refresh). / 最近使用。")
    expires_at: datetime = strawberry.field(description="When it ends unless refreshed. / 过期时间。")

    @classmethod
    def from_row(cls, row: dict) -> "AuthSession":
        return cls(pk=row["id"], device_name=row["device_name"], address=row["address"], created_at=row["created_at"],
                   last_used_at=row["last_used_at"], expires_at=row["expires_at"])


AuthSessionConnection = Connection[AuthSession]


@strawberry.type(description="Result of endSession.")
class EndSessionPayload:
    session: AuthSession | None = strawberry.field(default=None, description="The ended session.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="Versions of the terms and privacy notice in force and accepted. / 协议版本。")
class Consent:
    terms_version: str | None = strawberry.field(description="Terms version the member accepted last.")
    privacy_version: str | None = strawberry.field(description="Privacy notice version the member accepted last.")
    accepted_at: datetime | None = strawberry.field(description="When they last accepted.")
    current_terms_version: str = strawberry.field(description="Terms version in force.")
    current_privacy_version: str = strawberry.field(description="Privacy notice version in force.")

    @strawberry.field(description="True when a new version must be accepted (acceptConsent). / 需重新同意。")
    def needs_acceptance(self) -> bool:
        return self.terms_version != self.current_terms_version or self.privacy_version != self.current_privacy_version


@strawberry.type(description="Result of acceptConsent.")
class AcceptConsentPayload:
    consent: Consent | None = strawberry.field(default=None, description="What is accepted now.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="A copy of the member's data (PIPL). / 个人数据副本。")
class DataExport(Node):
    status: DataExportStatus = strawberry.field(description="READY until downloaded once or expired.")
    created_at: datetime = strawberry.field(description="When it was made.")
    expires_at: datetime = strawberry.field(description="When its link stops working.")
    downloaded_at: datetime | None = strawberry.field(description="When it was downloaded.")
    size_bytes: int = strawberry.field(description="Size of the ZIP archive.")

    @classmethod
    def from_row(cls, row: dict) -> "DataExport":
        return cls(pk=row["id"], status=DataExportStatus(row["status"]), created_at=row["created_at"],
                   expires_at=row["expires_at"], downloaded_at=row["downloaded_at"], size_bytes=row["size_bytes"])


@strawberry.type(description="Result of requestDataExport.")
class RequestDataExportPayload:
    export: DataExport | None = strawberry.field(default=None, description="The export.")
    download_url: str | None = strawberry.field(
        default=None, description="Signed link to the ZIP (data.json, statement.csv); works once, until expiresAt."
    )
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.type(description="A request to delete an account (PIPL). / 账户注销申请。")
class AccountDeletionRequest(Node):
    status: DeletionStatus = strawberry.field(description="SCHEDULED, CANCELLED or COMPLETED.")
    balance_choice: BalanceChoice = strawberry.field(description="What happens to the balance.")
    created_at: datetime = strawberry.field(description="When it was confirmed.")
    due_at: datetime = strawberry.field(description="End of the cooling-off period.")
    cancelled_at: datetime | None = strawberry.field(description="When it was cancelled.")
    completed_at: datetime | None = strawberry.field(description="When the account was anonymised.")
    points_disposed: int = strawberry.field(description="Points expired or donated at completion.")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "AccountDeletionRequest":
        return cls(pk=row["id"], status=DeletionStatus(row["status"]), balance_choice=BalanceChoice(row["balance_choice"]),
                   created_at=row["created_at"], due_at=row["due_at"], cancelled_at=row["cancelled_at"],
                   completed_at=row["completed_at"], points_disposed=row["points_disposed"], _user_id=row["user_id"])


AccountDeletionRequestConnection = Connection[AccountDeletionRequest]


@strawberry.type(description="Result of the account deletion mutations.")
class AccountDeletionPayload:
    request: AccountDeletionRequest | None = strawberry.field(default=None, description="The request.")
    user_errors: list[UserError] = _errors()
    errors: list[IdentityError] = _typed_errors()


@strawberry.input(description="Ask for a code to verify the viewer's phone or email. / 获取验证码。")
class RequestContactVerificationInput:
    channel: ContactChannel = strawberry.field(description="SMS: the phone; EMAIL: the email address.")


@strawberry.input(description="Verify the viewer's phone or email with the code. / 验证联系方式。")
class VerifyContactInput:
    channel: ContactChannel = strawberry.field(description="Which contact.")
    code: str = strawberry.field(description="The 6-digit code.")


@strawberry.input(description="Ask for a code to move the account to a new phone number. / 更换手机号。")
class RequestPhoneChangeInput:
    new_phone: str = strawberry.field(description="The new number.")


@strawberry.input(description="Move the account to the new number with the code sent to it. / 确认更换手机号。")
class ConfirmPhoneChangeInput:
    new_phone: str = strawberry.field(description="The new number.")
    code: str = strawberry.field(description="The code sent to the new number.")


@strawberry.input(description="Ask for a one-time code to an email or phone number. / 获取验证码。")
class RequestCodeInput:
    identifier: str = strawberry.field(description="Email or phone number. / 邮箱或手机号。")


@strawberry.input(description="Log in with a one-time code. / 验证码登录。")
class LoginWithCodeInput:
    identifier: str = strawberry.field(description="Email or phone number the code was sent to.")
    code: str = strawberry.field(description="The 6-digit code.")
    device_name: str | None = strawberry.field(default=None, description="Name of this device for the sessions list.")


@strawberry.input(description="Set a new password with a reset code; other sessions end. / 重置密码。")
class ResetPasswordInput:
    identifier: str = strawberry.field(description="Email or phone number the code was sent to.")
    code: str = strawberry.field(description="The 6-digit code.")
    new_password: str = strawberry.field(description="The new password.")
    device_name: str | None = strawberry.field(default=None, description="Name of this device for the sessions list.")


@strawberry.input(description="End one of the viewer's sessions. / 结束会话。")
class EndSessionInput:
    id: strawberry.ID = strawberry.field(description="Global ID of the AuthSession.")


@strawberry.input(description="Accept the versions of the terms and privacy notice in force. / 同意协议。")
class AcceptConsentInput:
    terms_version: str = strawberry.field(description="Must be the current terms version.")
    privacy_version: str = strawberry.field(description="Must be the current privacy notice version.")


@strawberry.input(description="Confirm the deletion of the viewer's account with the code. / 确认注销。")
class ConfirmAccountDeletionInput:
    code: str = strawberry.field(description="The code sent by requestAccountDeletion.")
    balance_choice: BalanceChoice = strawberry.field(description="EXPIRE the balance or DONATE it.")


@strawberry.input(description="Carry out a due deletion request (admins). / 执行注销（管理员）。")
class CompleteAccountDeletionInput:
    id: strawberry.ID = strawberry.field(description="Global ID of the AccountDeletionRequest.")
