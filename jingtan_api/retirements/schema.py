"""Query and Mutation fields of retirements, and ``Organisation.retirements``."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.organisations.types import Organisation, actor_of
from jingtan_api.retirements import service
from jingtan_api.retirements.types import (
    PoolMethodology,
    RecordOffPlatformRetirementInput,
    RetireActionInput,
    RetireReductionsInput,
    Retirement,
    RetirementPayload,
    RetirementPool,
)


def _wants(actions: list[RetireActionInput] | None) -> list[service.Want]:
    return [service.Want(decode_id(a.action_id, "Action", field="actions"), a.grams) for a in actions or []]


async def _retirements(info: Info, pks: list[int]) -> dict[int, Retirement]:
    rows = await info.context.read(service.retirements_by_ids, pks)
    return {pk: Retirement.from_row(r) for pk, r in rows.items()}


@strawberry.type
class RetirementsQuery:
    @strawberry.field(description="A retirement by its public code; anyone, no login. / 按编号查询注销记录（无需登录）。")
    async def retirement(self, info: Info, code: str) -> Retirement | None:
        row = await info.context.read(service.retirement_by_code, code)
        return Retirement.from_row(row) if row else None

    @strawberry.field(description="All retirements, newest first (public). / 注销记录列表。")
    async def retirements(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Retirement]:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.retirements_page, args)
        return build_connection(page, Retirement.from_row, count=lambda: ctx.read(service.retirements_count))

    @strawberry.field(description="The pool of approved CO2e and what can still be retired (public). / 可注销减排量。")
    async def retirement_pool(self, info: Info) -> RetirementPool:
        rows = await info.context.read(service.pool)
        return RetirementPool(
            approved_grams=sum(p.approved_grams for p in rows), retired_grams=sum(p.retired_grams for p in rows),
            available_grams=sum(p.available_grams for p in rows),
            by_methodology=[PoolMethodology(code=p.code, version=p.version, approved_grams=p.approved_grams,
                                            available_grams=p.available_grams) for p in rows],
            points_per_kg=info.context.settings.community.retirement_points_per_kg,
        )


@strawberry.type
class RetirementsMutation:
    @payload_mutation(description="Retire verified reductions for a company, paid from its points account (its admins; idempotent). / 企业注销减排量。")
    async def retire_reductions(self, info: Info, input: RetireReductionsInput) -> RetirementPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = decode_id(input.organisation_id, "Organisation", field="organisationId")
        wants = _wants(input.actions)
        s = ctx.settings
        result = await ctx.db.write(lambda conn: service.retire(
            conn, actor=actor, org_id=org_id, grams=input.grams, wants=wants, purpose_zh=input.purpose_zh,
            purpose_en=input.purpose_en, period_start=input.period_start, period_end=input.period_end,
            payment_method=service.POINTS, idempotency_key=input.idempotency_key,
            points_per_kg=s.community.retirement_points_per_kg, max_grams=s.community.max_retirement_grams,
            lot_expiry_days=s.points.lot_expiry_days, request_id=ctx.request_id, now=ctx.now()))
        return await _payload(info, result)

    @payload_mutation(description="Record a retirement paid outside the platform (platform admin; idempotent). / 登记线下支付的注销。")
    async def record_off_platform_retirement(self, info: Info, input: RecordOffPlatformRetirementInput) -> RetirementPayload:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:write")
        actor = actor_of(info)
        org_id = decode_id(input.organisation_id, "Organisation", field="organisationId")
        wants = _wants(input.actions)
        s = ctx.settings
        result = await ctx.db.write(lambda conn: service.retire(
            conn, actor=actor, org_id=org_id, grams=input.grams, wants=wants, purpose_zh=input.purpose_zh,
            purpose_en=input.purpose_en, period_start=input.period_start, period_end=input.period_end,
            payment_method=service.OFF_PLATFORM, payment_reference=input.payment_reference,
            payment_amount_fen=input.payment_amount_fen, idempotency_key=input.idempotency_key,
            points_per_kg=s.community.retirement_points_per_kg, max_grams=s.community.max_retirement_grams,
            lot_expiry_days=s.points.lot_expiry_days, request_id=ctx.request_id, now=ctx.now()))
        return await _payload(info, result)


async def _payload(info: Info, result: service.RetirementResult) -> RetirementPayload:
    row = (await info.context.read(service.retirements_by_ids, [result.retirement_id]))[result.retirement_id]
    return RetirementPayload(retirement=Retirement.from_row(row), replayed=result.replayed)


@strawberry.type
class OrganisationRetirements:
    """Fields of ``Organisation`` from retirements."""

    @strawberry.field(description="The organisation's retirements, newest first (public). / 组织的注销记录。")
    async def retirements(
        self: Organisation, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Retirement]:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.retirements_page, args, org_id=self.pk)
        return build_connection(page, Retirement.from_row, count=lambda: ctx.read(service.retirements_count, org_id=self.pk))


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="retirements",
        query=[RetirementsQuery],
        mutation=[RetirementsMutation],
        types=[Retirement],
        nodes={"Retirement": _retirements},
        extends={"Organisation": [OrganisationRetirements]},
    )
