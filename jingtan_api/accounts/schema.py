"""Ledger fields: admin grant / revoke."""

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service
from jingtan_api.accounts.types import AdjustPointsInput, AdjustPointsPayload, Account, LedgerTransaction, accounts_loader
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import DomainError
from jingtan_api.graphql.relay import decode_id, user_errors_from


async def _adjust(info: Info, input: AdjustPointsInput, direction: str) -> AdjustPointsPayload:
    ctx = info.context
    try:
        actor = ctx.viewer.require_role(ADMIN, scope="points:write")
        user_id = decode_id(input.user_id, "User", field="userId")
        cfg = ctx.settings.points
        tx_id, replayed = await ctx.db.write(
            lambda conn: service.adjust_points(
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
        )
    except DomainError as exc:
        return AdjustPointsPayload(user_errors=user_errors_from(exc))
    tx = (await ctx.read(service.transactions_by_ids, [tx_id]))[tx_id]
    account = (await ctx.read(service.accounts_by_user_ids, [user_id]))[user_id]
    accounts_loader(info).prime(user_id, account, force=True)
    return AdjustPointsPayload(
        transaction=LedgerTransaction.from_row(tx), account=Account.from_row(account), replayed=replayed
    )


@strawberry.type
class AccountsMutation:
    @strawberry.mutation(description="Grant points to a member (admin; audit-logged; idempotent). / 发放积分。")
    async def grant_points(self, info: Info, input: AdjustPointsInput) -> AdjustPointsPayload:
        return await _adjust(info, input, service.GRANT)

    @strawberry.mutation(description="Take points back from a member (admin; audit-logged; idempotent). / 扣回积分。")
    async def revoke_points(self, info: Info, input: AdjustPointsInput) -> AdjustPointsPayload:
        return await _adjust(info, input, service.REVOKE)
