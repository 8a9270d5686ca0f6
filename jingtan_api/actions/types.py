"""GraphQL types of actions (static part; the @oneOf ``ActionInput`` is built per app in schema.py)."""

import json
import weakref
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.types import LedgerTransaction
from jingtan_api.actions.inputs import graphql_json_schema
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError
from jingtan_api.plugins.manager import LoadedActionType, PluginHost
from jingtan_api.users.types import User, user_by_id


@strawberry.enum(description="Status of an action. / 行为状态。")
class ActionStatus(Enum):
    APPROVED = strawberry.enum_value("APPROVED", description="Verified; points credited. / 已通过，积分已发放。")
    REJECTED = strawberry.enum_value("REJECTED", description="Refused; see reasons. / 未通过，见原因。")
    NEEDS_REVIEW = strawberry.enum_value("NEEDS_REVIEW", description="Waiting for an admin. / 待人工审核。")
    PENDING_METHODOLOGY = strawberry.enum_value(
        "PENDING_METHODOLOGY",
        description="Verified; waiting for the expert committee to approve its methodology version, nothing credited "
        "yet. / 已核验，等待方法学版本批准。",
    )


@strawberry.enum(description="Decision of a review. / 审核决定。")
class ReviewDecision(Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


@strawberry.type(description="An emission factor and where it comes from. / 排放因子及其来源。")
class EmissionFactor:
    id: str = strawberry.field(description="Stable factor id, e.g. transit.metro. / 因子编号。")
    value: str = strawberry.field(description="Value as a decimal string (exact). / 数值（十进制字符串）。")
    unit: str = strawberry.field(description="Unit of the value, e.g. gCO2e/pkm. / 单位。")
    source: str = strawberry.field(description="Publication the value comes from. / 来源。")
    year: int | None = strawberry.field(description="Reference year. / 年份。")
    region: str | None = strawberry.field(description="Region it applies to. / 适用地区。")
    note: str = strawberry.field(description="Caveats. / 备注。")

    @classmethod
    def from_dict(cls, d: dict) -> "EmissionFactor":
        return cls(id=d["id"], value=str(d["value"]), unit=d["unit"], source=d["source"], year=d.get("year"),
                   region=d.get("region"), note=d.get("note") or "")


@strawberry.type(description="How the CO2e and points of an action were computed. / 减排量与积分的计算过程。")
class Calculation:
    formula: str = strawberry.field(description="The formula with the numbers used. / 计算公式。")
    factors: list[EmissionFactor] = strawberry.field(description="Factors used, as they were at the time. / 使用的因子。")
    grams_co2e: int = strawberry.field(description="Grams CO2e avoided that were credited. / 计入的减排量（克）。")
    points: int = strawberry.field(description="Points credited (or to be credited on approval). / 积分。")


@strawberry.type(description="Why an action was refused or sent to review. / 原因。")
class ActionReason:
    code: str = strawberry.field(description="Stable code, e.g. SPEED_IMPLAUSIBLE. / 原因代码。")
    message: str = strawberry.field(description="Explanation (zh / en). / 说明。")


@strawberry.type(description="Evidence sent with an action. / 凭证。")
class ActionEvidence:
    source: str | None = strawberry.field(description="Partner or app the record comes from. / 来源。")
    external_id: str | None = strawberry.field(description="Record id at the source. / 来源记录编号。")
    signed: bool = strawberry.field(description="Whether a signature was sent. / 是否带签名。")
    attachments: list[str] = strawberry.field(description="Attachment URLs. / 附件。")


@strawberry.type(description="A low-carbon action submitted by a member. / 低碳行为。")
class Action(Node):
    action_type_code: str = strawberry.field(description="Code of its category, e.g. transit. / 类别代码。")
    plugin_version: str = strawberry.field(description="Version of the rules that judged it. / 规则版本。")
    status: ActionStatus = strawberry.field(description="Status. / 状态。")
    reasons: list[ActionReason] = strawberry.field(description="Reasons (rejections, review, caps). / 原因。")
    calculation: Calculation | None = strawberry.field(description="CO2e and points; null when rejected before calculation. / 计算。")
    input: JSON = strawberry.field(description="The validated input as stored. / 提交内容。")
    evidence: ActionEvidence = strawberry.field(description="Evidence. / 凭证。")
    occurred_from: datetime = strawberry.field(description="When it started. / 开始时间。")
    occurred_to: datetime = strawberry.field(description="When it ended. / 结束时间。")
    created_at: datetime = strawberry.field(description="When it was submitted. / 提交时间。")
    reviewed_at: datetime | None = strawberry.field(description="When an admin decided. / 审核时间。")
    review_reason: str | None = strawberry.field(description="The admin's reason. / 审核意见。")
    user_pk: strawberry.Private[int]
    transaction_pk: strawberry.Private[int | None]
    methodology_version_pk: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: dict) -> "Action":
        factors = json.loads(row["factors"])
        evidence = json.loads(row["evidence"])
        calc = None
        if row["formula"] or factors:
            calc = Calculation(
                formula=row["formula"],
                factors=[EmissionFactor.from_dict(f) for f in factors],
                grams_co2e=row["grams_co2e"],
                points=row["points"],
            )
        return cls(
            pk=row["id"],
            action_type_code=row["plugin_code"],
            plugin_version=row["plugin_version"],
            status=ActionStatus(row["status"]),
            reasons=[ActionReason(code=r["code"], message=r["message"]) for r in json.loads(row["reasons"])],
            calculation=calc,
            input=json.loads(row["input"]),
            evidence=ActionEvidence(
                source=evidence.get("source"),
                external_id=evidence.get("external_id"),
                signed=bool(evidence.get("signature")),
                attachments=evidence.get("attachments") or [],
            ),
            occurred_from=row["occurred_from"],
            occurred_to=row["occurred_to"],
            created_at=row["created_at"],
            reviewed_at=row["reviewed_at"],
            review_reason=row["review_reason"],
            user_pk=row["user_id"],
            transaction_pk=row["transaction_id"],
            methodology_version_pk=row.get("methodology_version_id"),
        )

    @strawberry.field(description="Its category, when still enabled (names, methodology). / 所属类别（仍启用时）。")
    def action_type(self, info: Info) -> Annotated["ActionTypeInfo", strawberry.lazy("jingtan_api.actions.types")] | None:
        return action_type_infos(info).get(self.action_type_code)

    @strawberry.field(description="The member who submitted it. / 提交人。")
    async def member(self, info: Info) -> User | None:
        return await user_by_id(info, self.user_pk)

    @strawberry.field(description="The ledger transaction that credited it (admins only). / 入账交易（管理员）。")
    async def transaction(self, info: Info) -> LedgerTransaction | None:
        viewer = info.context.viewer
        if self.transaction_pk is None or not (viewer.is_admin and "ledger:read" in viewer.scopes):
            return None
        ctx = info.context
        row = await ctx.loader("transactions", lambda ids: ctx.read(ledger.transactions_by_ids, ids)).load(self.transaction_pk)
        return LedgerTransaction.from_row(row) if row else None


def can_see_action(info: Info, row: dict) -> bool:
    viewer = info.context.viewer
    if row["user_id"] == viewer.user_id:
        return viewer.has_any_scope("account:read", "actions:write")
    return ADMIN in viewer.roles and "actions:review" in viewer.scopes


@strawberry.type(description="A methodology: how a category computes CO2e. / 方法学。")
class Methodology:
    title: str = strawberry.field(description="Title. / 标题。")
    reference: str = strawberry.field(description="Standard or document it follows. / 参考标准。")
    text: str = strawberry.field(description="Explanation. / 说明。")
    factors: list[EmissionFactor] = strawberry.field(description="Factor table with sources. / 因子表。")


@strawberry.type(description="Limits of a category (null = none): per member, and for all members together. / 上限。")
class ActionCaps:
    daily_grams: int | None = strawberry.field(description="Grams CO2e per day. / 每日克数上限。")
    monthly_grams: int | None = strawberry.field(description="Grams CO2e per month. / 每月克数上限。")
    daily_points: int | None = strawberry.field(description="Points per day. / 每日积分上限。")
    monthly_points: int | None = strawberry.field(description="Points per month. / 每月积分上限。")
    platform_daily_grams: int | None = strawberry.field(
        description="Grams CO2e per day for the whole category, all members together. / 全平台每日上限。"
    )


@strawberry.type(name="ActionType", description="An enabled category of low-carbon action. / 已启用的低碳行为类别。")
class ActionTypeInfo:
    code: str = strawberry.field(description="Code, e.g. transit. / 代码。")
    input_field: str = strawberry.field(description="Field of ActionInput that submits it. / 提交字段名。")
    name_zh: str = strawberry.field(description="Chinese name. / 中文名。")
    name_en: str = strawberry.field(description="English name. / 英文名。")
    description: str = strawberry.field(description="What counts. / 说明。")
    version: str = strawberry.field(description="Version of its rules. / 规则版本。")
    plugin: str = strawberry.field(description="Plugin (entry point) providing it. / 插件名。")
    methodology: Methodology = strawberry.field(description="Methodology and factors. / 方法学。")
    caps: ActionCaps = strawberry.field(description="Limits per member. / 上限。")
    settings_schema: JSON = strawberry.field(description="JSON Schema of its [plugins.<code>] settings. / 配置的 JSON Schema。")
    input_schema: JSON = strawberry.field(
        description="JSON Schema of its input, with the GraphQL (camelCase) field names. / 输入的 JSON Schema（GraphQL 字段名）。"
    )

    @classmethod
    def from_loaded(cls, loaded: LoadedActionType) -> "ActionTypeInfo":
        at, m, c = loaded.action_type, loaded.methodology, loaded.caps
        return cls(
            code=loaded.code,
            input_field=loaded.field_name,
            name_zh=at.name_zh,
            name_en=at.name_en,
            description=at.description,
            version=at.version,
            plugin=loaded.plugin,
            methodology=Methodology(
                title=m.title, reference=m.reference, text=m.text,
                factors=[EmissionFactor.from_dict(f.as_dict()) for f in m.factors],
            ),
            caps=ActionCaps(daily_grams=c.daily_grams, monthly_grams=c.monthly_grams,
                            daily_points=c.daily_points, monthly_points=c.monthly_points,
                            platform_daily_grams=c.platform_daily_grams),
            settings_schema=at.Settings.model_json_schema(),
            input_schema=graphql_json_schema(at.Input),
        )


_INFOS: "weakref.WeakKeyDictionary[PluginHost, dict[str, ActionTypeInfo]]" = weakref.WeakKeyDictionary()


def action_type_infos(info: Info) -> dict[str, ActionTypeInfo]:
    """The enabled categories as GraphQL objects, built once per app's plugin host (they only change on
    restart; building them renders JSON Schemas)."""
    host = info.context.services.plugins
    infos = _INFOS.get(host)
    if infos is None:
        infos = _INFOS[host] = {code: ActionTypeInfo.from_loaded(t) for code, t in host.action_types.items()}
    return infos


ActionErrorCode = error_code_enum(
    "ActionErrorCode",
    ("ACTION_TYPE_DISABLED", "FUTURE_TIMESTAMP", "END_BEFORE_START", "PLUGIN_FAILURE", "NOT_PENDING_REVIEW",
     "IDEMPOTENCY_KEY_REUSED", "CONTACT_NOT_VERIFIED"),
    description="Codes of the action mutations' userErrors. / 低碳行为错误代码。",
)
ActionError = user_error_type(
    "ActionError", ActionErrorCode, description="Why submitting or reviewing an action recorded nothing. / 低碳行为错误。"
)


@strawberry.input(description="Evidence for an action (optional). / 行为凭证（可选）。")
class ActionEvidenceInput:
    source: str | None = strawberry.field(default=None, description="Partner or app, e.g. a metro operator id. / 来源。")
    external_id: str | None = strawberry.field(default=None, description="Record id at the source. / 来源记录编号。")
    signature: str | None = strawberry.field(default=None, description="Hex HMAC-SHA256 by the partner. / 合作方签名。")
    signed_at: datetime | None = strawberry.field(default=None, description="When the partner signed. / 签名时间。")
    attachments: list[str] | None = strawberry.field(default=None, description="Attachment URLs. / 附件 URL。")


@strawberry.type(description="Result of `submitAction`. / 提交结果。")
class SubmitActionPayload:
    action: Action | None = strawberry.field(default=None, description="The stored action (approved, rejected or pending). / 行为记录。")
    replayed: bool = strawberry.field(default=False, description="True when an identical earlier request's result was returned.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why nothing was recorded. / 错误。")
    errors: list[ActionError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.input(description="An admin's decision on a pending action. / 审核待定行为。")
class ReviewActionInput:
    action_id: strawberry.ID = strawberry.field(description="Global ID of the action. / 行为 ID。")
    decision: ReviewDecision = strawberry.field(description="APPROVE or REJECT. / 决定。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.type(description="Result of `reviewAction`. / 审核结果。")
class ReviewActionPayload:
    action: Action | None = strawberry.field(default=None, description="The action after the decision. / 行为记录。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[ActionError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
