"""Ledger fields: admin grant / revoke, and the ``balanceChanged`` subscription."""

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service
from jingtan_api.accounts.types import (
    Account,
    AdjustPointsInput,
    AdjustPointsPayload,
    LedgerEntry,
    LedgerTransaction,
    account_of_user,
    accounts_loader,
    can_read_account,
)
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import decode_id
from jingtan_api.live.transport import events as live_events
from jingtan_api.users.types import User, require_personal


async def _adjust(info: Info, input: AdjustPointsInput, direction: str) -> AdjustPointsPayload:
    ctx = info.context
    actor = ctx.viewer.require_role(ADMIN, scope="points:write")
    user_id = decode_id(input.user_id, "User", field="userId")
    cfg = ctx.settings.points

    async def write(conn):
        tx_id, replayed = await service.adjust_points(
            conn,
            direction=direction,
            actor_user_id=actor,
            user_id=user_id,
            amount=input.amount,
            reason=input.reason,
            idempotency_key=input.idempotency_key,
            max_amount=cfg.max_single_amount,
            lot_expiry_days=cfg.lot_expiry_days,
            now=ctx.now(),
            request_id=ctx.request_id,
        )
        # Read the results in the same transaction: two fewer transactions per grant, and the
        # payload shows exactly the state this write produced.
        tx = (await service.transactions_by_ids(conn, [tx_id]))[tx_id]
        account = (await service.accounts_by_user_ids(conn, [user_id]))[user_id]
        return tx, account, replayed

    tx, account, replayed = await ctx.db.write(write)
    accounts_loader(info).prime(user_id, account, force=True)
    return AdjustPointsPayload(
        transaction=LedgerTransaction.from_row(tx), account=Account.from_row(account), replayed=replayed
    )


@strawberry.type
class AccountsMutation:
    @payload_mutation(description="Grant points to a member (admin; audit-logged; idempotent). / 发放积分。")
    async def grant_points(self, info: Info, input: AdjustPointsInput) -> AdjustPointsPayload:
        return await _adjust(info, input, service.GRANT)

    @payload_mutation(description="Take points back from a member (admin; audit-logged; idempotent). / 扣回积分。")
    async def revoke_points(self, info: Info, input: AdjustPointsInput) -> AdjustPointsPayload:
        return await _adjust(info, input, service.REVOKE)


@strawberry.type
class UserAccount:
    """Fields of ``User`` from the ledger."""

    @strawberry.field(description="The user's points account (only the user and admins). / 积分账户。")
    async def account(self: User, info: Info) -> Account | None:
        require_personal(info, self)
        return await account_of_user(info, self.pk)


@strawberry.type
class AccountsSubscription:
    @strawberry.subscription(description="The viewer's points account, each time a committed ledger transaction changed "
                             "its balance (credits, redemptions, refunds, expiry, grants). / 积分余额变动时推送我的账户。")
    async def balance_changed(self, info: Info) -> AsyncGenerator[Account, None]:
        viewer = info.context.viewer
        user_id = viewer.require_user()
        viewer.require_any_scope("account:read", "offers:redeem", "actions:write")
        async for _ in live_events(info, [f"user:{user_id}"], ["ledger.posted"]):
            account = await account_of_user(info, user_id)
            if account is not None:
                yield account


async def _account_nodes(info: Info, pks: list[int]) -> dict[int, Account]:
    rows = await info.context.read(service.accounts_by_ids, pks)
    return {pk: Account.from_row(r) for pk, r in rows.items() if can_read_account(info, r)}


async def _entry_nodes(info: Info, pks: list[int]) -> dict[int, LedgerEntry]:
    rows = await info.context.read(service.entries_by_ids, pks)
    return {pk: LedgerEntry.from_row(r) for pk, r in rows.items() if can_read_account(info, r)}


async def _transaction_nodes(info: Info, pks: list[int]) -> dict[int, LedgerTransaction]:
    viewer = info.context.viewer
    if not (viewer.is_admin and "ledger:read" in viewer.scopes):
        return {}
    rows = await info.context.read(service.transactions_by_ids, pks)
    return {pk: LedgerTransaction.from_row(r) for pk, r in rows.items()}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="accounts",
        mutation=[AccountsMutation],
        subscription=[AccountsSubscription],
        types=[Account, LedgerEntry, LedgerTransaction],
        nodes={"Account": _account_nodes, "LedgerEntry": _entry_nodes, "LedgerTransaction": _transaction_nodes},
        extends={"User": [UserAccount]},
    )
