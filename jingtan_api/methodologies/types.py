"""GraphQL types of methodology governance (public: the registry needs no login)."""

import json
from datetime import datetime
from enum import Enum

import strawberry

from jingtan_api.actions.types import EmissionFactor
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError


@strawberry.enum(description="Review state of a methodology version. / 方法学版本审核状态。")
class MethodologyStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Waiting for the expert committee; credits nothing yet. / 待专家审核。")
    APPROVED = strawberry.enum_value("APPROVED", description="Approved: actions calculated with it are credited. / 已批准。")
    REJECTED = strawberry.enum_value("REJECTED", description="Rejected; its waiting actions were rejected. / 已驳回。")
    RETIRED = strawberry.enum_value("RETIRED", description="No longer credits new actions; past credits stay. / 已停用。")


@strawberry.enum(description="An expert's decision on a methodology version. / 专家决定。")
class MethodologyDecision(Enum):
    APPROVE = strawberry.enum_value("APPROVE", description="PENDING or RETIRED -> APPROVED; credits the waiting actions.")
    REJECT = strawberry.enum_value("REJECT", description="PENDING -> REJECTED; rejects the waiting actions.")
    RETIRE = strawberry.enum_value("RETIRE", description="APPROVED -> RETIRED; new actions wait again.")


@strawberry.enum(description="What happened to a methodology version. / 审核记录类型。")
class MethodologyReviewEvent(Enum):
    SUBMITTED = strawberry.enum_value("SUBMITTED", description="First run by a server. / 首次提交。")
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    RETIRED = "RETIRED"


@strawberry.type(description="One entry of a version's review history. / 审核记录。")
class MethodologyReview:
    event: MethodologyReviewEvent = strawberry.field(description="What happened. / 事件。")
    reviewer: str | None = strawberry.field(description="Display name of the expert (null for SUBMITTED). / 审核专家。")
    note: str = strawberry.field(description="The expert's note (or how it was submitted). / 说明。")
    at: datetime = strawberry.field(description="When. / 时间。")


@strawberry.type(description="Credits issued under a methodology version. / 该版本下的计入量。")
class MethodologyTotals:
    grams_co2e_credited: int = strawberry.field(description="Grams CO2e of credited (APPROVED) actions. / 计入的减排量（克）。")
    points_credited: int = strawberry.field(description="Points credited to members. / 发放的积分。")
    actions_credited: int = strawberry.field(description="Credited actions. / 计入的行为数。")
    actions_waiting: int = strawberry.field(description="Actions waiting in PENDING_METHODOLOGY. / 等待批准的行为数。")


@strawberry.type(
    description="A version of an action type's methodology: factor table with sources and formula text, its review "
    "state and history, and what was credited under it. / 方法学版本。"
)
class MethodologyVersion(Node):
    action_type_code: str = strawberry.field(description="Action type (plugin code). / 行为类别。")
    version_number: int = strawberry.field(description="1, 2, … per action type, in order of filing. / 版本号。")
    fingerprint: str = strawberry.field(description="SHA-256 of the methodology (identifies the version). / 指纹。")
    plugin: str = strawberry.field(description="Plugin (entry point) that first ran it. / 插件。")
    plugin_version: str = strawberry.field(description="The plugin's rules version when first run. / 插件规则版本。")
    status: MethodologyStatus = strawberry.field(description="Review state. / 审核状态。")
    title: str = strawberry.field(description="Title. / 标题。")
    reference: str = strawberry.field(description="Standard or document it follows. / 参考依据。")
    formula: str = strawberry.field(description="How CO2e is computed, in words. / 计算方法。")
    factors: list[EmissionFactor] = strawberry.field(description="Factor table with values and sources. / 因子表。")
    current: bool = strawberry.field(description="Whether this server runs this version now. / 是否为本服务器当前版本。")
    decided_at: datetime | None = strawberry.field(description="When it was last decided on. / 最近审核时间。")
    decision_note: str | None = strawberry.field(description="Note of the last decision. / 最近审核说明。")
    created_at: datetime = strawberry.field(description="When a server first ran it. / 提交时间。")
    reviews: list[MethodologyReview] = strawberry.field(description="Review history, oldest first. / 审核记录。")
    totals: MethodologyTotals = strawberry.field(description="Credits issued under it. / 计入统计。")

    @classmethod
    def from_row(cls, row: dict, *, current_ids: set[int], reviews: list[dict], totals: dict[str, int]) -> "MethodologyVersion":
        return cls(
            pk=row["id"],
            action_type_code=row["plugin_code"],
            version_number=row["version_no"],
            fingerprint=row["fingerprint"],
            plugin=row["plugin"],
            plugin_version=row["plugin_version"],
            status=MethodologyStatus(row["status"]),
            title=row["title"],
            reference=row["reference"],
            formula=row["text"],
            factors=[EmissionFactor.from_dict(f) for f in json.loads(row["factors"])],
            current=row["id"] in current_ids,
            decided_at=row["decided_at"],
            decision_note=row["decision_note"],
            created_at=row["created_at"],
            reviews=[MethodologyReview(event=MethodologyReviewEvent(r["event"]), reviewer=r["display_name"],
                                       note=r["note"], at=r["created_at"]) for r in reviews],
            totals=MethodologyTotals(grams_co2e_credited=totals["grams"], points_credited=totals["points"],
                                     actions_credited=totals["credited"], actions_waiting=totals["waiting"]),
        )


MethodologyErrorCode = error_code_enum(
    "MethodologyErrorCode", ("METHODOLOGY_NOT_REVIEWABLE",),
    description="Codes of the methodology review mutation's errors. / 方法学审核错误代码。",
)
MethodologyError = user_error_type(
    "MethodologyError", MethodologyErrorCode, description="Why a methodology decision was not recorded. / 方法学审核错误。"
)


@strawberry.input(description="An expert's decision on a methodology version. / 专家审核方法学版本。")
class ReviewMethodologyVersionInput:
    version_id: strawberry.ID = strawberry.field(description="Global ID of the MethodologyVersion. / 版本 ID。")
    decision: MethodologyDecision = strawberry.field(description="APPROVE, REJECT or RETIRE. / 决定。")
    note: str = strawberry.field(description="Why, 3-500 characters (public review history, audit log). / 说明。")


@strawberry.type(description="Result of `reviewMethodologyVersion`. / 审核结果。")
class ReviewMethodologyVersionPayload:
    version: MethodologyVersion | None = strawberry.field(default=None, description="The version after the decision. / 版本。")
    actions_credited: int = strawberry.field(
        default=0, description="Waiting actions credited by this approval (0 when another process did it). / 本次计入的行为数。"
    )
    actions_rejected: int = strawberry.field(default=0, description="Waiting actions rejected by this rejection. / 本次驳回的行为数。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why nothing was recorded. / 错误。")
    errors: list[MethodologyError] = strawberry.field(default_factory=list, description="The same errors, typed. / 错误。")
