"""GraphQL types of merchants' growth: campaigns, stations, certification, analytics, near me, segments."""

from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.campaigns import analytics, service
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, PageInfo, UserError
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant, require_manage
from jingtan_api.offers.types import Offer


def campaigns_loader(info: Info):
    ctx = info.context
    return ctx.loader("campaigns", lambda ids: ctx.read(service.campaigns_by_ids, ids))


def bonus_totals_loader(info: Info):
    ctx = info.context
    return ctx.loader("campaign_bonus_totals", lambda ids: ctx.read(service.bonus_totals, ids))


@strawberry.enum(description="Lifecycle of a campaign. / 活动状态。")
class CampaignStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Funded; pays bonuses inside its window. / 进行中。")
    ENDED = strawberry.enum_value("ENDED", description="Closed; the rest of the budget went back. / 已结束。")


@strawberry.type(description="What a campaign cost and brought. / 活动效果。")
class CampaignResults:
    bonuses: int = strawberry.field(description="Bonuses paid. / 已发放奖励次数。")
    bonus_points: int = strawberry.field(description="Points paid as bonuses (the spend). / 奖励积分（花费）。")
    members: int = strawberry.field(description="Members rewarded. / 获奖会员数。")
    actions: int = strawberry.field(description="Actions rewarded. / 获奖行为数。")
    grams_co2e: int = strawberry.field(description="CO2e of the rewarded actions (the actions' own grams; the bonus adds none). / 获奖行为减排量（克）。")
    redemptions_after: int = strawberry.field(description="Redemptions at the merchant by rewarded members after their first bonus, up to 30 days after the end. / 活动后兑换次数。")
    points_after: int = strawberry.field(description="Points of those redemptions. / 活动后兑换积分。")


@strawberry.type(description="A merchant-funded campaign: bonus points for actions done at the merchant. / 商户出资的积分活动。")
class Campaign(Node):
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    description_zh: str = strawberry.field(description="Chinese description. / 中文描述。")
    description_en: str = strawberry.field(description="English description. / 英文描述。")
    action_type_code: str | None = strawberry.field(description="Only actions of this type qualify (null: every type). / 限定行为类别。")
    bonus_points: int | None = strawberry.field(description="Fixed bonus per qualifying action. / 固定奖励积分。")
    bonus_percent: int | None = strawberry.field(description="Bonus as a percentage of the action's points (100 = double points). / 奖励百分比。")
    per_member_limit: int = strawberry.field(description="Bonuses one member can get. / 每人奖励次数上限。")
    starts_at: datetime = strawberry.field(description="Qualifying actions from. / 开始时间。")
    ends_at: datetime = strawberry.field(description="Until (exclusive); then the rest of the budget returns. / 结束时间。")
    status: CampaignStatus = strawberry.field(description="Lifecycle state. / 状态。")
    funded_points: int = strawberry.field(description="Points put into the budget so far. / 已投入预算。")
    budget_left: int = strawberry.field(description="Points left in the budget. / 剩余预算。")
    refunded_points: int = strawberry.field(description="Points returned to the merchant at the close. / 已退回积分。")
    created_at: datetime = strawberry.field(description="Creation time. / 创建时间。")
    ended_at: datetime | None = strawberry.field(description="When it was closed. / 关闭时间。")
    merchant_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "Campaign":
        return cls(
            pk=row["id"], title_zh=row["title_zh"], title_en=row["title_en"], description_zh=row["description_zh"],
            description_en=row["description_en"], action_type_code=row["action_type_code"],
            bonus_points=row["bonus_points"], bonus_percent=row["bonus_percent"],
            per_member_limit=row["per_member_limit"], starts_at=row["starts_at"], ends_at=row["ends_at"],
            status=CampaignStatus(row["status"]), funded_points=row["funded_points"],
            budget_left=row["budget_left"], refunded_points=row["refunded_points"], created_at=row["created_at"],
            ended_at=row["ended_at"], merchant_pk=row["merchant_id"],
        )

    @strawberry.field(description="The merchant running it. / 发起商户。")
    async def merchant(self, info: Info) -> Merchant:
        return Merchant.from_row(await merchant_loaders.merchants(info).load(self.merchant_pk))

    @strawberry.field(description="What the campaign cost and brought (staff and admins). / 活动效果。")
    async def results(self, info: Info) -> CampaignResults:
        await require_manage(info, self.merchant_pk, "merchant:read")
        r = await info.context.read(analytics.campaign_report, self.pk)
        return CampaignResults(bonuses=r.bonuses, bonus_points=r.bonus_points, members=r.members, actions=r.actions,
                               grams_co2e=r.grams_co2e, redemptions_after=r.redemptions_after, points_after=r.points_after)

    @strawberry.field(description="Bonuses paid so far. / 已发放奖励次数。")
    async def bonuses_paid(self, info: Info) -> int:
        totals = await bonus_totals_loader(info).load(self.pk)
        return totals[0] if totals else 0


@strawberry.type(description="A place of a merchant that actions can name (e.g. a recycling station). / 商户站点。")
class MerchantStation(Node):
    code: str = strawberry.field(description="The code actions name: a recycling stationId, or evidence source `station:<code>`. / 站点编号。")
    name_zh: str = strawberry.field(description="Chinese name. / 中文名称。")
    name_en: str = strawberry.field(description="English name. / 英文名称。")
    created_at: datetime = strawberry.field(description="Registered at. / 登记时间。")

    @classmethod
    def from_row(cls, row: dict) -> "MerchantStation":
        return cls(pk=row["id"], code=row["code"], name_zh=row["name_zh"], name_en=row["name_en"], created_at=row["created_at"])


@strawberry.enum(description="Green-merchant certification level. / 绿色商户认证等级。")
class CertificationLevel(Enum):
    NONE = strawberry.enum_value("NONE", description="Not certified (or revoked). / 未认证。")
    BRONZE = strawberry.enum_value("BRONZE", description="Bronze / 铜牌。")
    SILVER = strawberry.enum_value("SILVER", description="Silver / 银牌。")
    GOLD = strawberry.enum_value("GOLD", description="Gold / 金牌。")


@strawberry.type(description="The merchant's current green certification. / 绿色商户认证。")
class MerchantCertification:
    level: CertificationLevel = strawberry.field(description="Level granted by the latest audit. / 认证等级。")
    audited_at: datetime = strawberry.field(description="When the audit was recorded. / 审核时间。")
    valid_until: datetime | None = strawberry.field(description="Valid until (null: no expiry). / 有效期至。")
    notes: str = strawberry.field(description="The auditor's findings. / 审核说明。")

    @classmethod
    def from_row(cls, row: dict) -> "MerchantCertification":
        return cls(level=CertificationLevel(row["level"]), audited_at=row["created_at"], valid_until=row["valid_until"],
                   notes=row["notes"])


@strawberry.enum(description="Bucket of merchant analytics. / 统计粒度。")
class AnalyticsGranularity(Enum):
    DAY = strawberry.enum_value("DAY", description="Calendar days. / 按天。")
    MONTH = strawberry.enum_value("MONTH", description="Calendar months. / 按月。")


@strawberry.type(description="What the platform brought the merchant in one day or month. / 商户经营数据。")
class MerchantAnalyticsPeriod:
    start: date = strawberry.field(description="First day of the period (local). / 起始日期。")
    redemptions: int = strawberry.field(description="Redemptions (not cancelled or expired). / 兑换次数。")
    points_received: int = strawberry.field(description="Their points. / 收到积分。")
    new_members: int = strawberry.field(description="Members in contact for the first time ever. / 新会员。")
    returning_members: int = strawberry.field(description="Members who had been in contact before. / 回头会员。")
    actions: int = strawberry.field(description="Approved actions done at the merchant. / 在店低碳行为数。")
    grams_co2e: int = strawberry.field(description="Their CO2e in grams. / 减排量（克）。")
    campaign_spend: int = strawberry.field(description="Bonus points paid by the merchant's campaigns. / 活动花费积分。")


@strawberry.type(description="A merchant within the search radius and how far it is. / 附近商户。")
class NearbyMerchantEdge:
    cursor: str = strawberry.field(description="Opaque cursor.")
    node: Merchant = strawberry.field(description="The merchant.")
    distance_meters: int = strawberry.field(description="Great-circle distance from the point, whole metres. / 距离（米）。")


@strawberry.type(description="Merchants near a point, nearest first. / 附近商户列表。")
class NearbyMerchantConnection:
    edges: list[NearbyMerchantEdge] = strawberry.field(description="Edges of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination state.")
    total_count: int = strawberry.field(description="Merchants within the radius. / 范围内商户数。")


@strawberry.type(description="An offer of a merchant within the search radius and how far it is. / 附近优惠。")
class NearbyOfferEdge:
    cursor: str = strawberry.field(description="Opaque cursor.")
    node: Offer = strawberry.field(description="The offer.")
    distance_meters: int = strawberry.field(description="Distance of its merchant from the point, whole metres. / 距离（米）。")


@strawberry.type(description="Offers near a point, nearest first. / 附近优惠列表。")
class NearbyOfferConnection:
    edges: list[NearbyOfferEdge] = strawberry.field(description="Edges of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination state.")
    total_count: int = strawberry.field(description="Offers within the radius. / 范围内优惠数。")


@strawberry.input(description="A point and a radius. / 位置与半径。")
class NearInput:
    latitude: float = strawberry.field(description="WGS-84 latitude, -90..90. / 纬度。")
    longitude: float = strawberry.field(description="WGS-84 longitude, -180..180. / 经度。")
    radius_meters: int = strawberry.field(description="Radius in metres, 1 up to merchants.near_max_radius_km. / 半径（米）。")


@strawberry.enum(description="Who an offer is for. / 优惠目标人群。")
class SegmentKind(Enum):
    CITY = strawberry.enum_value("CITY", description="Members who acted at a merchant in `city`. / 在该城市有过低碳行为的会员。")
    MIN_GRAMS_AVOIDED = strawberry.enum_value("MIN_GRAMS_AVOIDED", description="At least `minGrams` g CO2e avoided. / 累计减排不少于 minGrams 克。")
    PAST_CUSTOMERS = strawberry.enum_value("PAST_CUSTOMERS", description="Acted at this merchant before. / 曾在本店有低碳行为。")
    NEW_MEMBERS = strawberry.enum_value("NEW_MEMBERS", description="Registered at most `maxMemberDays` days ago. / 新会员。")
    ORGANISATION_MEMBERS = strawberry.enum_value("ORGANISATION_MEMBERS", description="Current members of `organisationId`. / 指定组织成员。")
    HOUSEHOLD_MEMBERS = strawberry.enum_value("HOUSEHOLD_MEMBERS", description="Members of a household. / 家庭成员。")


@strawberry.type(description="One rule of an offer's segment; a member must meet every rule. / 目标人群规则。")
class SegmentRule:
    kind: SegmentKind = strawberry.field(description="Kind of rule. / 规则类型。")
    city: str | None = strawberry.field(description="CITY: the city. / 城市。")
    min_grams: int | None = strawberry.field(description="MIN_GRAMS_AVOIDED: grams CO2e. / 最低减排量（克）。")
    max_member_days: int | None = strawberry.field(description="NEW_MEMBERS: days since registration. / 注册天数上限。")
    organisation_id: strawberry.ID | None = strawberry.field(description="ORGANISATION_MEMBERS: the organisation. / 组织。")


@strawberry.input(description="One rule of an offer's segment. / 目标人群规则。")
class SegmentRuleInput:
    kind: SegmentKind = strawberry.field(description="Kind of rule. / 规则类型。")
    city: str | None = strawberry.field(default=None, description="CITY: the city. / 城市。")
    min_grams: int | None = strawberry.field(default=None, description="MIN_GRAMS_AVOIDED: grams CO2e, > 0.")
    max_member_days: int | None = strawberry.field(default=None, description="NEW_MEMBERS: 1-3650 days.")
    organisation_id: strawberry.ID | None = strawberry.field(default=None, description="ORGANISATION_MEMBERS: the organisation.")


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Start a campaign funded from the merchant's points. / 发起商户出资的积分活动。")
class CreateCampaignInput:
    merchant_id: strawberry.ID | None = strawberry.field(default=None, description="Merchant (default: the one you work for).")
    title_zh: str = strawberry.field(description="Chinese title, 1-100 characters. / 中文标题。")
    title_en: str = strawberry.field(default="", description="English title. / 英文标题。")
    description_zh: str = strawberry.field(default="", description="Chinese description. / 中文描述。")
    description_en: str = strawberry.field(default="", description="English description. / 英文描述。")
    action_type_code: str | None = strawberry.field(default=None, description="Only this action type qualifies (e.g. recycling).")
    bonus_points: int | None = strawberry.field(default=None, description="Fixed bonus per action (give this or bonusPercent).")
    bonus_percent: int | None = strawberry.field(default=None, description="Bonus as % of the action's points, 1-1000 (100 = double).")
    per_member_limit: int = strawberry.field(default=1, description="Bonuses per member, 1-1000. / 每人奖励次数。")
    starts_at: datetime | None = strawberry.field(default=None, description="Start (default: now). / 开始时间。")
    ends_at: datetime = strawberry.field(description="End (exclusive), at most 366 days after the start. / 结束时间。")
    budget: int = strawberry.field(description="Points moved from the merchant's account into the budget. / 预算积分。")
    idempotency_key: str = strawberry.field(description="Client-chosen unique key; a retry returns the first campaign.")


@strawberry.input(description="Add points of the merchant to a running campaign's budget. / 追加活动预算。")
class TopUpCampaignInput:
    campaign_id: strawberry.ID = strawberry.field(description="The campaign. / 活动。")
    amount: int = strawberry.field(description="Points, > 0. / 积分。")
    idempotency_key: str = strawberry.field(description="Client-chosen unique key.")


@strawberry.input(description="End a campaign now; the rest of the budget returns to the merchant. / 提前结束活动。")
class EndCampaignInput:
    campaign_id: strawberry.ID = strawberry.field(description="The campaign. / 活动。")


@strawberry.input(description="Register a station code of a merchant. / 登记商户站点。")
class AddMerchantStationInput:
    merchant_id: strawberry.ID | None = strawberry.field(default=None, description="Merchant (default: the one you work for).")
    code: str = strawberry.field(description="1-64 letters, digits, _ . : - (e.g. the recycling stationId). / 站点编号。")
    name_zh: str = strawberry.field(default="", description="Chinese name. / 中文名称。")
    name_en: str = strawberry.field(default="", description="English name. / 英文名称。")


@strawberry.input(description="Record a green-merchant audit (admin). / 记录绿色商户审核（管理员）。")
class CertifyMerchantInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    level: CertificationLevel = strawberry.field(description="Level granted (NONE revokes). / 认证等级。")
    notes: str = strawberry.field(description="Findings of the audit, 1-1000 characters. / 审核说明。")
    valid_days: int | None = strawberry.field(default=None, description="Valid for 1-1098 days (null: no expiry). / 有效天数。")


@strawberry.input(description="Replace the segment of an offer (an empty list opens it to everyone). / 设置优惠目标人群。")
class SetOfferSegmentInput:
    offer_id: strawberry.ID = strawberry.field(description="The offer. / 优惠。")
    rules: list[SegmentRuleInput] = strawberry.field(description="Up to 10 rules, all of which a member must meet. / 规则。")


CampaignErrorCode = error_code_enum(
    "CampaignErrorCode",
    ("INSUFFICIENT_POINTS", "IDEMPOTENCY_KEY_REUSED", "MERCHANT_NOT_ACTIVE", "CAMPAIGN_ENDED", "INVALID_WINDOW",
     "STATION_CODE_TAKEN", "ACTION_TYPE_DISABLED"),
    description="Codes of the merchants' growth mutations (campaigns, stations, certification, segments)' userErrors. / 商户增长错误代码。",
)
CampaignError = user_error_type(
    "CampaignError", CampaignErrorCode,
    description="Why a campaign, station, certification or segment mutation failed. / 商户增长操作错误。",
)


@strawberry.type(description="Result of the campaign mutations.")
class CampaignPayload:
    campaign: Campaign | None = strawberry.field(default=None, description="The campaign.")
    replayed: bool = strawberry.field(default=False, description="True when an earlier identical request's result was returned.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[CampaignError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `addMerchantStation`.")
class MerchantStationPayload:
    station: MerchantStation | None = strawberry.field(default=None, description="The station.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[CampaignError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `certifyMerchant`.")
class CertifyMerchantPayload:
    merchant: Merchant | None = strawberry.field(default=None, description="The merchant.")
    certification: MerchantCertification | None = strawberry.field(default=None, description="The recorded audit.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[CampaignError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `setOfferSegment`.")
class OfferSegmentPayload:
    offer: Offer | None = strawberry.field(default=None, description="The offer.")
    rules: list[SegmentRule] = strawberry.field(default_factory=list, description="Its segment now.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[CampaignError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
