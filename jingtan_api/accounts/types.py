"""GraphQL types of accounts and the ledger."""

from datetime import datetime, timedelta
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import PermissionDenied, ValidationFailed
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.users.types import User, user_by_id


@strawberry.enum(description="Kind of points account. / 账户类型。")
class AccountKind(Enum):
    MEMBER = "MEMBER"
    MERCHANT = "MERCHANT"
    ISSUANCE = "ISSUANCE"
    EXPIRED = "EXPIRED"
    CAMPAIGN = "CAMPAIGN"


@strawberry.enum(description="Why points moved. / 积分变动类型。")
class LedgerTransactionKind(Enum):
    GRANT = strawberry.enum_value("GRANT", description="Manual grant by an admin. / 管理员发放。")
    REVOKE = strawberry.enum_value("REVOKE", description="Manual revocation by an admin. / 管理员扣回。")
    EXPIRY = strawberry.enum_value("EXPIRY", description="Points expired. / 积分过期。")
    REDEMPTION = strawberry.enum_value("REDEMPTION", description="Points spent on a merchant offer. / 兑换优惠。")
    REFUND = strawberry.enum_value("REFUND", description="A cancelled or expired redemption refunded. / 兑换退还。")
    ACTION_CREDIT = strawberry.enum_value(
        "ACTION_CREDIT", description="Points for a verified low-carbon action. / 低碳行为奖励。"
    )
    CAMPAIGN_FUNDING = strawberry.enum_value(
        "CAMPAIGN_FUNDING", description="A merchant funded a campaign budget. / 商户充值活动预算。"
    )
    CAMPAIGN_BONUS = strawberry.enum_value(
        "CAMPAIGN_BONUS", description="Promotional bonus of a merchant campaign (no CO2e). / 商户活动奖励（不含减排量）。"
    )
    CAMPAIGN_REFUND = strawberry.enum_value(
        "CAMPAIGN_REFUND", description="Unspent campaign budget returned to the merchant. / 活动剩余预算退回。"
    )
    HOUSEHOLD_POOL_TRANSFER = strawberry.enum_value(
        "HOUSEHOLD_POOL_TRANSFER", description="Points moved between a member and their household's pool. / 家庭积分池转移。"
    )
    DONATION = strawberry.enum_value("DONATION", description="Points donated to an organisation. / 向组织捐赠积分。")
    RETIREMENT = strawberry.enum_value(
        "RETIREMENT", description="Points spent retiring verified reductions. / 注销减排量。"
    )
    CHALLENGE_REWARD = strawberry.enum_value(
        "CHALLENGE_REWARD", description="Reward of a settled challenge (no CO2e). / 挑战奖励（不含减排量）。"
    )
    EVENT_REWARD = strawberry.enum_value(
        "EVENT_REWARD", description="Reward for taking part in a volunteer event (no CO2e). / 志愿活动奖励（不含减排量）。"
    )
    REFERRAL_BONUS = strawberry.enum_value(
        "REFERRAL_BONUS", description="Bonus for a member a volunteer brought in (no CO2e). / 推荐奖励（不含减排量）。"
    )
    COMMISSION = strawberry.enum_value(
        "COMMISSION", description="A volunteer's commission on a merchant's redemptions (no CO2e). / 志愿者佣金。"
    )
    COMMISSION_REVERSAL = strawberry.enum_value(
        "COMMISSION_REVERSAL", description="A commission taken back with its refunded redemption. / 佣金冲回。"
    )
    PAYOUT_REQUEST = strawberry.enum_value(
        "PAYOUT_REQUEST", description="A volunteer's earnings moved out for payout. / 志愿者提现。"
    )
    ACCOUNT_DELETION = strawberry.enum_value(
        "ACCOUNT_DELETION", description="The balance of a deleted account expired or donated. / 注销账户余额处理。"
    )


def can_read_account(info: Info, row: dict) -> bool:
    viewer = info.context.viewer
    if viewer.user_id is None or "account:read" not in viewer.scopes:
        return False
    return row["user_id"] == viewer.user_id or ADMIN in viewer.roles


@strawberry.type(description="Points that expire at one moment. / 即将过期的积分。")
class ExpiringPoints:
    points: int = strawberry.field(description="How many points. / 积分数。")
    expires_at: datetime = strawberry.field(description="When they expire. / 过期时间。")


@strawberry.type(description="A balanced set of ledger entries. / 一笔记账交易。")
class LedgerTransaction(Node):
    kind: LedgerTransactionKind = strawberry.field(description="Why points moved.")
    memo: str = strawberry.field(description="Reason or description. / 说明。")
    created_at: datetime = strawberry.field(description="When it was posted. / 记账时间。")

    @classmethod
    def from_row(cls, row: dict) -> "LedgerTransaction":
        return cls(pk=row["id"], kind=LedgerTransactionKind(row["kind"]), memo=row["memo"], created_at=row["created_at"])

    @strawberry.field(description="All entries of the transaction (admins only); they sum to zero.")
    async def entries(self, info: Info) -> list["LedgerEntry"]:
        info.context.viewer.require_role(ADMIN, scope="ledger:read")
        ctx = info.context
        rows = await ctx.loader("tx_entries", lambda ids: ctx.read(service.entries_for_transactions, ids)).load(self.pk)
        txs = {self.pk: {"kind": self.kind.value, "memo": self.memo}}
        return [LedgerEntry.from_row({**r, **txs[self.pk]}) for r in rows or []]


@strawberry.type(description="One line of an account statement. / 账户明细。")
class LedgerEntry(Node):
    amount: int = strawberry.field(description="Points added (positive) or taken (negative). / 变动积分。")
    balance_after: int = strawberry.field(description="Balance after this entry. / 变动后余额。")
    created_at: datetime = strawberry.field(description="When it was posted. / 时间。")
    kind: LedgerTransactionKind = strawberry.field(description="Why points moved. / 类型。")
    memo: str = strawberry.field(description="Reason or description. / 说明。")
    transaction_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "LedgerEntry":
        return cls(
            pk=row["id"],
            amount=row["amount"],
            balance_after=row["balance_after"],
            created_at=row["created_at"],
            kind=LedgerTransactionKind(row["kind"]),
            memo=row["memo"],
            transaction_pk=row["transaction_id"],
        )

    @strawberry.field(description="The transaction this entry belongs to.")
    async def transaction(self, info: Info) -> LedgerTransaction:
        ctx = info.context
        row = await ctx.loader("transactions", lambda ids: ctx.read(service.transactions_by_ids, ids)).load(
            self.transaction_pk
        )
        return LedgerTransaction.from_row(row)


@strawberry.type(description="A points account. / 积分账户。")
class Account(Node):
    kind: AccountKind = strawberry.field(description="Kind of account. / 账户类型。")
    balance: int = strawberry.field(description="Current balance in points. / 当前积分余额。")
    created_at: datetime = strawberry.field(description="Opening time. / 开户时间。")
    user_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict) -> "Account":
        return cls(
            pk=row["id"],
            kind=AccountKind(row["kind"]),
            balance=row["balance"],
            created_at=row["created_at"],
            user_pk=row["user_id"],
        )

    def _require_readable(self, info: Info) -> None:
        """The statement needs `account:read` (an Account may also appear in a payload, e.g. after a
        redemption made with an `offers:redeem`-only token, which shows the balance but not the entries)."""
        if not can_read_account(info, {"user_id": self.user_pk}):
            raise PermissionDenied()

    @strawberry.field(description="Owner of a member account. / 账户所有者。")
    async def owner(self, info: Info) -> User | None:
        return await user_by_id(info, self.user_pk)

    @strawberry.field(description="Points expiring within `days` days (default: configured horizon), soonest first. / 即将过期的积分。")
    async def expiring_soon(self, info: Info, days: int | None = None) -> list[ExpiringPoints]:
        self._require_readable(info)
        ctx = info.context
        horizon = days if days is not None else ctx.settings.points.expiring_soon_days
        if not 1 <= horizon <= 3650:
            raise ValidationFailed("days must be between 1 and 3650 / 天数须在 1 到 3650 之间", field="days")
        rows = await ctx.read(
            service.expiring_soon, self.pk, now=ctx.now(), horizon=timedelta(days=horizon)
        )
        return [ExpiringPoints(points=r.points, expires_at=r.expires_at) for r in rows]

    @strawberry.field(description="Statement entries, newest first (cursor connection). / 账户明细。")
    async def entries(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[LedgerEntry]:
        self._require_readable(info)
        ctx = info.context
        page = await ctx.read(service.entries_page, self.pk, page_args(info, first, after, last, before))
        return build_connection(page, LedgerEntry.from_row, count=lambda: ctx.read(service.count_entries, self.pk))


def accounts_loader(info: Info):
    ctx = info.context
    return ctx.loader("accounts_by_user", lambda ids: ctx.read(service.accounts_by_user_ids, ids))


async def account_of_user(info: Info, user_id: int) -> Account | None:
    row = await accounts_loader(info).load(user_id)
    if row is None:
        return None
    if not can_read_account(info, row):
        raise PermissionDenied()
    return Account.from_row(row)


LedgerErrorCode = error_code_enum(
    "LedgerErrorCode", ("INSUFFICIENT_POINTS", "IDEMPOTENCY_KEY_REUSED"),
    description="Codes of ledger mutations' userErrors. / 积分账务错误代码。",
)
LedgerError = user_error_type(
    "LedgerError", LedgerErrorCode, description="Why a ledger mutation failed (grantPoints, revokePoints). / 积分账务错误。"
)


@strawberry.input(description="Grant or revoke points (admin). / 发放或扣回积分（管理员）。")
class AdjustPointsInput:
    user_id: strawberry.ID = strawberry.field(description="Global ID of the member.")
    amount: int = strawberry.field(description="Whole points, greater than zero. / 积分（正整数）。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")
    idempotency_key: str = strawberry.field(
        description="Client-chosen unique key; a retry with the same key and input returns the first result."
    )


@strawberry.type(description="Result of `grantPoints` / `revokePoints`.")
class AdjustPointsPayload:
    transaction: LedgerTransaction | None = strawberry.field(default=None, description="The posted transaction.")
    account: Account | None = strawberry.field(default=None, description="The member's account after it.")
    replayed: bool = strawberry.field(default=False, description="True when an earlier identical request's result was returned.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[LedgerError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
