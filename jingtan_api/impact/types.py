"""GraphQL types of impact: figures with equivalents, medals, leaderboards, the admin dashboard and the
report for authorities."""

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import Enum
from typing import NewType

import strawberry

from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, UserError
from jingtan_api.impact import service

MAX_SAFE = 2**53 - 1


def _long(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SAFE:
        raise ValueError("Long is a whole number of at most 2^53 - 1 / 须为不超过 2^53-1 的整数")
    return value


Long = strawberry.scalar(
    NewType("Long", int),
    serialize=_long,
    parse_value=_long,
    description="A whole number up to ±(2^53 − 1), sent as a JSON number (grams CO2e of a city can pass Int's "
    "2^31). / 长整数。",
)


@strawberry.type(description="A relatable comparison of grams CO2e, with its factor and source. / 等效换算。")
class ImpactEquivalent:
    code: str = strawberry.field(description="TREE_YEARS, CAR_KM, GRID_KWH, PHONE_CHARGES.")
    name_en: str = strawberry.field(description="English name.")
    name_zh: str = strawberry.field(description="中文名称。")
    value: float = strawberry.field(description="grams ÷ gramsPerUnit, two decimals. / 等效数值。")
    unit_en: str = strawberry.field(description="Unit (English).")
    unit_zh: str = strawberry.field(description="单位。")
    grams_per_unit: int = strawberry.field(description="The factor: grams CO2e per unit. / 换算系数（克/单位）。")
    source: str = strawberry.field(description="Where the factor comes from (docs/methodology.md). / 来源。")

    @classmethod
    def of(cls, e: service.Equivalent, value: float) -> "ImpactEquivalent":
        return cls(code=e.code, name_en=e.name_en, name_zh=e.name_zh, value=value, unit_en=e.unit_en,
                   unit_zh=e.unit_zh, grams_per_unit=e.grams_per_unit, source=e.source)


@strawberry.type(description="Grams CO2e and approved actions of one action type. / 按行为类别。")
class ImpactByActionType:
    action_type: str = strawberry.field(description="Action type code. / 行为类别。")
    grams: Long = strawberry.field(description="Grams CO2e avoided. / 减排量（克）。")
    actions: int = strawberry.field(description="Approved actions. / 已通过行为数。")


@strawberry.type(description="Grams CO2e and approved actions of one month. / 按月。")
class ImpactByMonth:
    month: str = strawberry.field(description="YYYY-MM in the platform's time zone. / 月份。")
    grams: Long = strawberry.field(description="Grams CO2e avoided. / 减排量（克）。")
    actions: int = strawberry.field(description="Approved actions. / 已通过行为数。")


@strawberry.type(description="Verified CO2e avoided (approved actions only; promotional points carry none). / 减排成果。")
class Impact:
    total_grams: Long = strawberry.field(description="Grams CO2e avoided in all. / 累计减排量（克）。")
    actions: int = strawberry.field(description="Approved actions counted. / 已通过行为数。")
    by_action_type: list[ImpactByActionType] = strawberry.field(description="By action type. / 按类别。")
    by_month: list[ImpactByMonth] = strawberry.field(description="By month (months with none are left out). / 按月。")
    equivalents: list[ImpactEquivalent] = strawberry.field(description="Relatable equivalents. / 等效换算。")

    @classmethod
    def of(cls, f: service.ImpactFigures) -> "Impact":
        return cls(
            total_grams=f.total_grams, actions=f.actions,
            by_action_type=[ImpactByActionType(action_type=k, grams=g, actions=n) for k, (g, n) in f.by_type.items()],
            by_month=[ImpactByMonth(month=k, grams=g, actions=n) for k, (g, n) in f.by_month.items()],
            equivalents=[ImpactEquivalent.of(e, v) for e, v in service.equivalents(f.total_grams)],
        )


@strawberry.enum(description="What a medal counts. / 勋章计量。")
class MedalMetric(Enum):
    GRAMS = "GRAMS"
    ACTIONS = "ACTIONS"


@strawberry.type(description="A medal for a cumulative milestone (勋章). / 勋章。")
class Medal:
    code: str = strawberry.field(description="Stable code, e.g. CO2E_10KG. / 代码。")
    name_en: str = strawberry.field(description="English name.")
    name_zh: str = strawberry.field(description="中文名称。")
    metric: MedalMetric = strawberry.field(description="Grams CO2e or approved actions. / 计量。")
    threshold: Long = strawberry.field(description="The milestone. / 门槛。")
    awarded_at: datetime | None = strawberry.field(description="When it was earned (null in the catalogue). / 获得时间。")

    @classmethod
    def of(cls, m: service.MedalDef, awarded_at: datetime | None = None) -> "Medal":
        return cls(code=m.code, name_en=m.name_en, name_zh=m.name_zh, metric=MedalMetric(m.metric),
                   threshold=m.threshold, awarded_at=awarded_at)


@strawberry.type(description="A member's impact preferences. / 减排偏好设置。")
class ImpactPreferences:
    city: str = strawberry.field(description="City for city leaderboards and challenges ('' none). / 所在城市。")
    leaderboard_opt_out: bool = strawberry.field(
        description="Counted in totals but not named on leaderboards. / 不在排行榜上显示姓名。"
    )


@strawberry.type(description="The green community honour (绿色社区) of a community organisation. / 绿色社区荣誉。")
class GreenCommunityHonour:
    eligible: bool = strawberry.field(description="Whether the organisation is of kind COMMUNITY. / 是否社区类组织。")
    awarded: bool = strawberry.field(description="Whether its members passed the threshold. / 是否获得。")
    grams: Long = strawberry.field(description="Grams CO2e its members avoided while members. / 减排量。")
    threshold_grams: Long = strawberry.field(description="The configured threshold. / 门槛（克）。")


@strawberry.enum(description="Which leaderboard. / 排行榜范围。")
class LeaderboardBoard(Enum):
    PLATFORM = "MEMBER"
    HOUSEHOLD = "HOUSEHOLD"
    ORGANISATION = "ORGANISATION"
    CITY = "CITY"
    ORGANISATIONS = "ORGANISATIONS"


@strawberry.enum(description="Leaderboard period (in the platform's time zone). / 排行榜时间范围。")
class LeaderboardPeriod(Enum):
    WEEK = "WEEK"
    MONTH = "MONTH"
    ALL_TIME = "ALL_TIME"


@strawberry.type(description="One place on a leaderboard. / 排行榜条目。")
class LeaderboardEntry:
    rank: int = strawberry.field(description="1 + entrants with more grams (ties share a rank). / 名次。")
    grams: Long = strawberry.field(description="Grams CO2e in the period. / 减排量（克）。")
    actions: int = strawberry.field(description="Approved actions in the period. / 行为数。")
    name: str = strawberry.field(description="Display name, or 'Anonymous member / 匿名成员' when opted out. / 名称。")
    anonymous: bool = strawberry.field(description="The member opted out of being named. / 是否匿名。")
    is_viewer: bool = strawberry.field(description="This entry is the viewer (or the viewer's organisation). / 是否本人。")
    member_id: strawberry.ID | None = strawberry.field(description="The member (null when anonymous or on ORGANISATIONS). / 成员。")
    organisation_id: strawberry.ID | None = strawberry.field(description="The organisation (ORGANISATIONS board). / 组织。")


@strawberry.type(description="A leaderboard for one period. / 排行榜。")
class Leaderboard:
    board: LeaderboardBoard = strawberry.field(description="Which board. / 范围。")
    period: LeaderboardPeriod = strawberry.field(description="Which period. / 时间范围。")
    period_start: date | None = strawberry.field(description="First day of the period (null: all time). / 开始日期。")
    period_end: date | None = strawberry.field(description="Last day of the period (null: all time). / 结束日期。")
    entries: Connection[LeaderboardEntry] = strawberry.field(description="Most grams first. / 排名。")
    # The viewer's own place is read only when asked for (two statements).
    _viewer_entry: strawberry.Private[Callable[[], Awaitable[LeaderboardEntry | None]]]

    @strawberry.field(description="The viewer's own place (or their organisation's on ORGANISATIONS with "
                      "organisationId), if any. / 我的排名。")
    async def viewer_entry(self) -> LeaderboardEntry | None:
        return await self._viewer_entry()


@strawberry.type(description="Points moved on one day, by kind. / 每日积分。")
class DashboardPoints:
    issued: Long = strawberry.field(description="Credited for actions and granted (ACTION_CREDIT + GRANT). / 发放。")
    redeemed: Long = strawberry.field(description="Spent on offers, net of refunds. / 兑换（扣除退还）。")
    expired: Long = strawberry.field(description="Expired. / 过期。")
    donated: Long = strawberry.field(description="Donated to organisations. / 捐赠。")
    challenge_rewards: Long = strawberry.field(description="Paid by organisations as challenge rewards. / 挑战奖励。")


@strawberry.type(description="A count or grams by key (status, action type, kind). / 分项数值。")
class DashboardValue:
    key: str = strawberry.field(description="What is counted (e.g. APPROVED:transit). / 分项。")
    value: Long = strawberry.field(description="The number. / 数值。")


@strawberry.type(description="The platform on one day (every day of the range, zeros included). / 单日数据。")
class DashboardDay:
    day: date = strawberry.field(description="The day (platform time zone). / 日期。")
    new_members: int = strawberry.field(description="Members who registered. / 新增成员。")
    active_members: int = strawberry.field(description="Members with an approved action that occurred that day. / 活跃成员。")
    actions_by_status_and_type: list[DashboardValue] = strawberry.field(
        description="Actions recorded that day, by outcome and type (STATUS:type). / 按状态与类别的行为数。")
    reviews_by_decision_and_type: list[DashboardValue] = strawberry.field(
        description="Reviews decided that day (STATUS:type). / 审核数。")
    co2e_grams_by_type: list[DashboardValue] = strawberry.field(
        description="Grams CO2e of approved actions that occurred that day, by type. / 按类别的减排量。")
    points: DashboardPoints = strawberry.field(description="Points moved. / 积分流动。")


@strawberry.type(description="A merchant's confirmed redemptions in the range. / 商户排行。")
class DashboardMerchant:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    name: str = strawberry.field(description="Merchant name (中文 / English). / 名称。")
    points: Long = strawberry.field(description="Points of confirmed redemptions. / 核销积分。")
    redemptions: int = strawberry.field(description="Confirmed redemptions. / 核销次数。")


@strawberry.type(description="An organisation's members' CO2e in the range's months. / 组织排行。")
class DashboardOrganisation:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    name: str = strawberry.field(description="Organisation name. / 名称。")
    grams: Long = strawberry.field(description="Grams CO2e (whole months overlapping the range). / 减排量。")
    actions: int = strawberry.field(description="Approved actions. / 行为数。")


@strawberry.type(description="The platform admin's dashboard for a date range. / 管理后台统计。")
class AdminDashboard:
    start: date = strawberry.field(description="First day. / 开始日期。")
    end: date = strawberry.field(description="Last day. / 结束日期。")
    days: list[DashboardDay] = strawberry.field(description="Every day of the range, oldest first. / 每日数据。")
    top_merchants: list[DashboardMerchant] = strawberry.field(description="By points redeemed. / 商户排行。")
    top_organisations: list[DashboardOrganisation] = strawberry.field(description="By grams CO2e. / 组织排行。")


@strawberry.type(description="An emission factor as recorded on the actions. / 排放因子。")
class ReportFactor:
    id: str = strawberry.field(description="Factor id. / 因子编号。")
    value: float | None = strawberry.field(description="Value. / 数值。")
    unit: str | None = strawberry.field(description="Unit. / 单位。")
    source: str | None = strawberry.field(description="Source. / 来源。")


@strawberry.type(description="Verified reductions of one methodology version and factor set in one month. / 报告行。")
class ReportLine:
    action_type: str = strawberry.field(description="Action type (methodology). / 方法学（行为类别）。")
    methodology_version: str = strawberry.field(description="Plugin/methodology version. / 方法学版本。")
    month: str = strawberry.field(description="YYYY-MM. / 月份。")
    factor_ids: list[str] = strawberry.field(description="Factors used. / 所用因子。")
    factors: list[ReportFactor] = strawberry.field(description="Their values as recorded. / 因子取值。")
    actions: int = strawberry.field(description="Approved actions. / 行为数。")
    grams: Long = strawberry.field(description="Grams CO2e (sum of the actions' recorded grams). / 减排量（克）。")


@strawberry.type(description="Verified reductions for reporting to authorities. / 核证减排量报告。")
class ImpactReport:
    period_start: date = strawberry.field(description="First day. / 开始。")
    period_end: date = strawberry.field(description="Last day. / 结束。")
    timezone: str = strawberry.field(description="Time zone of the days. / 时区。")
    total_grams: Long = strawberry.field(description="Sum of the lines = sum of the actions' grams. / 合计（克）。")
    total_actions: int = strawberry.field(description="Approved actions. / 行为数。")
    lines: list[ReportLine] = strawberry.field(description="By methodology and month. / 明细。")
    csv: str = strawberry.field(description="The same as CSV (UTF-8, header row, TOTAL row). / CSV 格式。")
    json: str = strawberry.field(description="The same as a JSON document. / JSON 格式。")


@strawberry.input(description="Change impact preferences; omitted fields stay. / 修改减排偏好。")
class SetImpactPreferencesInput:
    city: str | None = strawberry.field(default=strawberry.UNSET, description="City ('' clears it). / 城市。")
    leaderboard_opt_out: bool | None = strawberry.field(default=strawberry.UNSET, description="Opt out of being named. / 匿名。")


ImpactErrorCode = error_code_enum("ImpactErrorCode", (), description="Codes of impact mutations' errors. / 减排错误代码。")
ImpactError = user_error_type("ImpactError", ImpactErrorCode, description="Why an impact mutation failed. / 错误。")


@strawberry.type(description="Result of setImpactPreferences. / 设置结果。")
class ImpactPreferencesPayload:
    preferences: ImpactPreferences | None = strawberry.field(default=None, description="The preferences. / 偏好。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[ImpactError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
