"""GraphQL types of retirements: the public, verifiable record (no login needed), its items, the pool,
inputs, payloads and ``RetirementErrorCode``."""

import json
from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args, to_global_id
from jingtan_api.organisations.types import Organisation, organisations_loader
from jingtan_api.retirements import service


@strawberry.enum(description="How a retirement was paid. / 支付方式。")
class RetirementPaymentMethod(Enum):
    POINTS = strawberry.enum_value("POINTS", description="From the company's points account. / 组织积分支付。")
    OFF_PLATFORM = strawberry.enum_value("OFF_PLATFORM", description="Paid outside the platform, recorded by an admin. / 线下支付。")


@strawberry.type(description="Grams retired under one methodology (action type and rules version). / 方法学及克数。")
class RetirementMethodology:
    code: str = strawberry.field(description="Action type code, e.g. transit. / 行为类别代码。")
    version: str = strawberry.field(description="Rules version of the actions. / 规则版本。")
    grams: int = strawberry.field(description="Grams CO2e under it. / 克数。")


@strawberry.type(description="A range [gramFrom, gramTo) of one approved action's CO2e, consumed by a retirement. / 注销明细。")
class RetirementItem(Node):
    action_id: strawberry.ID = strawberry.field(description="Global ID of the action. / 行为 ID。")
    gram_from: int = strawberry.field(description="First gram of the range (0-based). / 起始克。")
    gram_to: int = strawberry.field(description="End of the range (exclusive). / 结束克（不含）。")
    grams: int = strawberry.field(description="gramTo − gramFrom. / 克数。")
    action_type_code: str = strawberry.field(description="The action's type. / 行为类别。")
    methodology_version: str = strawberry.field(description="The action's rules version. / 规则版本。")
    occurred_from: datetime = strawberry.field(description="When the action started. / 行为开始时间。")
    occurred_to: datetime = strawberry.field(description="When it ended. / 行为结束时间。")

    @classmethod
    def from_row(cls, row: dict) -> "RetirementItem":
        return cls(pk=row["id"], action_id=strawberry.ID(to_global_id("Action", row["action_id"])),
                   gram_from=int(row["gram_from"]), gram_to=int(row["gram_to"]),
                   grams=int(row["gram_to"]) - int(row["gram_from"]), action_type_code=row["plugin_code"],
                   methodology_version=row["plugin_version"], occurred_from=row["occurred_from"],
                   occurred_to=row["occurred_to"])


@strawberry.type(description="A public, verifiable retirement of verified reductions (碳中和/抵消记录). / 减排量注销记录。")
class Retirement(Node):
    code: str = strawberry.field(description="Public reference, e.g. JTR-2026-7K3F9Q2MXW. / 公开编号。")
    grams: int = strawberry.field(description="Grams CO2e retired. / 注销克数。")
    purpose_zh: str = strawberry.field(description="What it offsets (Chinese). / 用途。")
    purpose_en: str = strawberry.field(description="What it offsets (English). / 用途（英文）。")
    period_start: date = strawberry.field(description="Reporting period claimed against: first day. / 期间开始。")
    period_end: date = strawberry.field(description="Reporting period: last day. / 期间结束。")
    reductions_from: datetime = strawberry.field(description="Earliest start of the consumed actions. / 减排发生起始。")
    reductions_to: datetime = strawberry.field(description="Latest end of the consumed actions. / 减排发生截止。")
    methodologies: list[RetirementMethodology] = strawberry.field(description="Grams per methodology. / 方法学。")
    payment_method: RetirementPaymentMethod = strawberry.field(description="How it was paid. / 支付方式。")
    points_paid: int = strawberry.field(description="Points paid (0 for off-platform payments). / 支付积分。")
    digest: str = strawberry.field(description="SHA-256 of the canonical record, recomputable from it (docs/community.md). / 校验摘要。")
    created_at: datetime = strawberry.field(description="When it was retired. / 注销时间。")
    _organisation_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "Retirement":
        return cls(
            pk=row["id"], code=row["code"], grams=int(row["grams"]), purpose_zh=row["purpose_zh"],
            purpose_en=row["purpose_en"], period_start=row["period_start"], period_end=row["period_end"],
            reductions_from=row["reductions_from"], reductions_to=row["reductions_to"],
            methodologies=[RetirementMethodology(**m) for m in json.loads(row["methodologies"])],
            payment_method=RetirementPaymentMethod(row["payment_method"]), points_paid=int(row["points_paid"]),
            digest=row["digest"], created_at=row["created_at"], _organisation_id=row["organisation_id"],
        )

    @strawberry.field(description="The company that retired it. / 注销企业。")
    async def organisation(self, info: Info) -> Organisation | None:
        row = await organisations_loader(info).load(self._organisation_id)
        return Organisation.from_row(row) if row else None

    @strawberry.field(description="The exact action-gram ranges it consumed. / 注销明细。")
    async def items(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[RetirementItem]:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.items_page, self.pk, args)
        return build_connection(page, RetirementItem.from_row, count=lambda: ctx.read(service.items_count, self.pk))


@strawberry.type(description="The platform's pool of approved CO2e and what is retired of it. / 减排量池。")
class RetirementPool:
    approved_grams: int = strawberry.field(description="Grams on approved actions. / 已核证克数。")
    retired_grams: int = strawberry.field(description="Grams retired. / 已注销克数。")
    available_grams: int = strawberry.field(description="Grams that can still be retired. / 可注销克数。")
    by_methodology: list["PoolMethodology"] = strawberry.field(description="Per methodology. / 按方法学。")
    points_per_kg: int = strawberry.field(description="Price in points of one kg (0: off-platform only). / 每千克积分价格。")


@strawberry.type(description="The pool under one methodology. / 方法学池。")
class PoolMethodology:
    code: str = strawberry.field(description="Action type code. / 行为类别。")
    version: str = strawberry.field(description="Rules version. / 规则版本。")
    approved_grams: int = strawberry.field(description="Approved grams. / 已核证克数。")
    available_grams: int = strawberry.field(description="Grams that can still be retired. / 可注销克数。")


@strawberry.input(description="Grams of one named action to retire. / 指定行为。")
class RetireActionInput:
    action_id: strawberry.ID = strawberry.field(description="An approved action. / 行为。")
    grams: int | None = strawberry.field(default=None, description="Grams to take (default: all it has left). / 克数。")


@strawberry.input(description="Retire verified reductions for a company (its admins; paid in points). / 注销减排量。")
class RetireReductionsInput:
    organisation_id: strawberry.ID = strawberry.field(description="The company organisation. / 企业。")
    grams: int | None = strawberry.field(default=None, description="Grams to take from the pool, oldest actions first (or give actions). / 克数。")
    actions: list[RetireActionInput] | None = strawberry.field(default=None, description="Exact actions to retire (or give grams). / 指定行为。")
    purpose_zh: str = strawberry.field(description='What it offsets, 3-300 characters, e.g. "2026年办公用电". / 用途。')
    purpose_en: str = strawberry.field(default="", description='English purpose, e.g. "2026 office electricity". / 英文用途。')
    period_start: date = strawberry.field(description="Reporting period: first day. / 期间开始。")
    period_end: date = strawberry.field(description="Reporting period: last day. / 期间结束。")
    idempotency_key: str = strawberry.field(description="Same key, same input: the first result again. / 幂等键。")


@strawberry.input(description="Record a retirement paid off-platform (platform admin). / 登记线下支付的注销。")
class RecordOffPlatformRetirementInput:
    organisation_id: strawberry.ID = strawberry.field(description="The company organisation. / 企业。")
    grams: int | None = strawberry.field(default=None, description="Grams to take from the pool (or give actions). / 克数。")
    actions: list[RetireActionInput] | None = strawberry.field(default=None, description="Exact actions (or give grams). / 指定行为。")
    purpose_zh: str = strawberry.field(description="What it offsets. / 用途。")
    purpose_en: str = strawberry.field(default="", description="English purpose. / 英文用途。")
    period_start: date = strawberry.field(description="Reporting period: first day. / 期间开始。")
    period_end: date = strawberry.field(description="Reporting period: last day. / 期间结束。")
    payment_reference: str = strawberry.field(description="Invoice or transfer number of the payment. / 支付凭证号。")
    payment_amount_fen: int | None = strawberry.field(default=None, description="Amount paid, in fen (分). / 金额（分）。")
    idempotency_key: str = strawberry.field(description="Same key, same input: the first result again. / 幂等键。")


RetirementErrorCode = error_code_enum(
    "RetirementErrorCode",
    ("INSUFFICIENT_POOL", "ALREADY_RETIRED", "ACTION_NOT_RETIRABLE", "NOT_A_COMPANY", "RETIREMENT_NOT_PAYABLE",
     "INVALID_PERIOD", "ORGANISATION_CLOSED", "ORGANISATION_NOT_ACTIVE", "INSUFFICIENT_POINTS", "IDEMPOTENCY_KEY_REUSED"),
    description="Codes of the retirement mutations' errors. / 注销错误代码。",
)
RetirementError = user_error_type("RetirementError", RetirementErrorCode, description="Why a retirement failed. / 注销错误。")


@strawberry.type(description="Result of retirements. / 注销结果。")
class RetirementPayload:
    retirement: Retirement | None = strawberry.field(default=None, description="The public record. / 注销记录。")
    replayed: bool = strawberry.field(default=False, description="True when the key was seen: nothing retired again. / 是否重放。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[RetirementError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
