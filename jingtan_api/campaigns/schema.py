"""Merchants' growth in the schema: campaigns, stations, certification, analytics, near me and segments.

Fields on ``Merchant`` and ``Offer`` are contributed through ``Domain(extends=...)``."""

from datetime import date
from typing import Annotated

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.campaigns import analytics, service
from jingtan_api.campaigns.types import (
    AddMerchantStationInput,
    AnalyticsGranularity,
    Campaign,
    CampaignPayload,
    CertifyMerchantInput,
    CertifyMerchantPayload,
    CreateCampaignInput,
    EndCampaignInput,
    MerchantAnalyticsPeriod,
    MerchantCertification,
    MerchantStation,
    MerchantStationPayload,
    NearbyMerchantConnection,
    NearbyMerchantEdge,
    NearbyOfferConnection,
    NearbyOfferEdge,
    NearInput,
    OfferSegmentPayload,
    SegmentKind,
    SegmentRule,
    SetOfferSegmentInput,
    TopUpCampaignInput,
    campaigns_loader,
)
from jingtan_api.errors import PermissionDenied, ValidationFailed
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, Keyset, PageInfo, build_connection, decode_id, encode_cursor, page_args, to_global_id
from jingtan_api.merchants import attribution, certification, geo
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant, MerchantCategory, actor_of, can_manage, decode_opt, require_manage
from jingtan_api.offers import loaders as offer_loaders
from jingtan_api.offers import segments
from jingtan_api.offers import service as offers
from jingtan_api.volunteers import service as volunteers
from jingtan_api.offers.types import Offer, OfferFilter, ending_before, segment_viewer

NEAR_KEYSET = Keyset("DISTANCE", (int,))


def _near(info: Info, near: NearInput) -> geo.Near:
    return geo.validate_near(near.latitude, near.longitude, near.radius_meters,
                             max_radius_km=info.context.settings.merchants.near_max_radius_km)


def _page_info(page) -> PageInfo:
    cursors = [encode_cursor(k, NEAR_KEYSET) for k in page.keys]
    return PageInfo(has_next_page=page.has_next, has_previous_page=page.has_previous,
                    start_cursor=cursors[0] if cursors else None, end_cursor=cursors[-1] if cursors else None)


def _stations_loader(info: Info):
    ctx = info.context
    return ctx.loader("merchant_stations", lambda ids: ctx.read(attribution.stations_of, ids))


def _certifications_loader(info: Info):
    ctx = info.context
    return ctx.loader("merchant_certifications", lambda ids: ctx.read(certification.current_certifications, ids))


def _rules_loader(info: Info):
    ctx = info.context
    return ctx.loader("offer_segment_rules", lambda ids: ctx.read(segments.rules_of, ids))


async def _certification_of(info: Info, merchant_id: int) -> MerchantCertification | None:
    row = await _certifications_loader(info).load(merchant_id)
    if row is None or row["level"] == "NONE":
        return None
    if row["valid_until"] is not None and row["valid_until"] <= info.context.now():
        return None
    return MerchantCertification.from_row(row)


def _rule(row: dict) -> SegmentRule:
    return SegmentRule(
        kind=SegmentKind(row["kind"]), city=row["city"], min_grams=row["min_grams"],
        max_member_days=row["max_member_days"],
        organisation_id=to_global_id("Organisation", row["organisation_id"]) if row["organisation_id"] else None,
    )


async def _campaign(info: Info, campaign_id: int) -> Campaign:
    loader = campaigns_loader(info)
    merchant_loaders.forget(loader, campaign_id)
    return Campaign.from_row(await loader.load(campaign_id))


async def visible_campaigns(info: Info, pks: list[int]) -> dict[int, Campaign]:
    """Running (ACTIVE) campaigns are public; ended ones only for the merchant's staff and admins."""
    out = {}
    for row in await campaigns_loader(info).load_many(pks):
        if row is None:
            continue
        if row["status"] == service.ACTIVE or await can_manage(info, row["merchant_id"], "merchant:read"):
            out[row["id"]] = Campaign.from_row(row)
    return out


async def _campaign_connection(info: Info, first, after, last, before, *, merchant_id: int | None,
                               status: str | None, running: bool) -> Connection[Campaign]:
    ctx = info.context
    args = page_args(info, first, after, last, before)
    now = ctx.now() if running else None
    page = await ctx.read(service.campaigns_page, args, merchant_id=merchant_id, status=status, now=now)
    campaigns_loader(info).prime_many({r["id"]: r for r in page.rows})
    return build_connection(page, Campaign.from_row, count=lambda: ctx.read(
        service.campaigns_count, merchant_id=merchant_id, status=status, now=now))


@strawberry.type
class GrowthQuery:
    @strawberry.field(description="Campaigns running now (active, inside their window), newest first. / 进行中的商户活动。")
    async def campaigns(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, merchant_id: strawberry.ID | None = None,
    ) -> Connection[Campaign]:
        merchant = decode_opt(merchant_id, "Merchant", "merchantId")
        return await _campaign_connection(info, first, after, last, before, merchant_id=merchant,
                                          status=service.ACTIVE, running=True)

    @strawberry.field(description="One campaign; null when unknown or not visible to you. / 单个活动。")
    async def campaign(self, info: Info, id: strawberry.ID) -> Campaign | None:
        pk = decode_id(id, "Campaign")
        return (await visible_campaigns(info, [pk])).get(pk)

    @strawberry.field(description="Active merchants within a radius of a point, nearest first, with the distance. / 附近商户。")
    async def merchants_near(
        self, info: Info, near: NearInput, category: MerchantCategory | None = None, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> NearbyMerchantConnection:
        ctx = info.context
        point = _near(info, near)
        args = page_args(info, first, after, last, before, NEAR_KEYSET)
        result = await ctx.read(geo.merchants_near, point, args, category=category.value if category else None)
        merchant_loaders.merchants(info).prime_many({r["id"]: r for r in result.page.rows})
        return NearbyMerchantConnection(
            edges=[NearbyMerchantEdge(cursor=encode_cursor(k, NEAR_KEYSET), node=Merchant.from_row(r),
                                      distance_meters=r["distance_m"]) for r, k in zip(result.page.rows, result.page.keys, strict=True)],
            page_info=_page_info(result.page), total_count=result.total,
        )

    @strawberry.field(description="Catalogue offers (what you may redeem) of merchants within a radius, nearest first, with the distance. / 附近优惠。")
    async def offers_near(
        self, info: Info, near: NearInput, filter: OfferFilter | None = None, first: int | None = None,
        after: str | None = None, last: int | None = None, before: str | None = None,
    ) -> NearbyOfferConnection:
        ctx = info.context
        point = _near(info, near)
        f = filter or OfferFilter()
        if f.include_unavailable or f.affordable:
            raise ValidationFailed("includeUnavailable and affordable are not available near me / 附近优惠不支持该筛选",
                                   field="filter")
        args = page_args(info, first, after, last, before, NEAR_KEYSET)
        flt = offers.CatalogueFilter(
            city=f.city.strip() if f.city else None, category=f.category.value if f.category else None,
            merchant_id=decode_opt(f.merchant_id, "Merchant", "merchantId"),
            ends_before=ending_before(info, f.ending_within_days), segment=await segment_viewer(info),
        )
        result = await ctx.read(offers.offers_near, point, args, now=ctx.now(), flt=flt)
        rows = [{k: v for k, v in r.items() if k not in ("latitude", "longitude", "distance_m")} for r in result.page.rows]
        offer_loaders.offers(info).prime_many({r["id"]: r for r in rows})
        return NearbyOfferConnection(
            edges=[NearbyOfferEdge(cursor=encode_cursor(k, NEAR_KEYSET), node=Offer.from_row(row),
                                   distance_meters=r["distance_m"])
                   for row, r, k in zip(rows, result.page.rows, result.page.keys, strict=True)],
            page_info=_page_info(result.page), total_count=result.total,
        )


@strawberry.type
class GrowthMutation:
    @payload_mutation(description="Start a campaign funded from the merchant's points (staff or admin). / 发起积分活动。")
    async def create_campaign(self, info: Info, input: CreateCampaignInput) -> CampaignPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        merchant_id = decode_opt(input.merchant_id, "Merchant", "merchantId") or actor.merchant_id
        if merchant_id is None:
            raise ValidationFailed("Give merchantId / 请指定商户", field="merchantId")
        code = input.action_type_code
        if code is not None and ctx.services.plugins.get(code) is None:
            raise ValidationFailed(f"Action type {code!r} is not enabled / 该行为类别未启用",
                                   code="ACTION_TYPE_DISABLED", field="actionTypeCode")
        fields = {name: getattr(input, name) for name in (
            "title_zh", "title_en", "description_zh", "description_en", "action_type_code", "bonus_points",
            "bonus_percent", "per_member_limit", "starts_at", "ends_at")}
        p = ctx.settings.points
        campaign_id, replayed = await ctx.db.write(lambda conn: service.create_campaign(
            conn, actor=actor, merchant_id=merchant_id, fields=fields, budget=input.budget,
            idempotency_key=input.idempotency_key, now=ctx.now(), max_points=p.max_single_amount,
            lot_expiry_days=p.lot_expiry_days, request_id=ctx.request_id,
        ))
        merchant_loaders.forget(merchant_loaders.merchant_balances(info), merchant_id)
        return CampaignPayload(campaign=await _campaign(info, campaign_id), replayed=replayed)

    @payload_mutation(description="Add points of the merchant to a running campaign (staff or admin). / 追加活动预算。")
    async def top_up_campaign(self, info: Info, input: TopUpCampaignInput) -> CampaignPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        campaign_id = decode_id(input.campaign_id, "Campaign", field="campaignId")
        p = ctx.settings.points
        _, replayed = await ctx.db.write(lambda conn: service.top_up(
            conn, actor=actor, campaign_id=campaign_id, amount=input.amount, idempotency_key=input.idempotency_key,
            now=ctx.now(), max_points=p.max_single_amount, lot_expiry_days=p.lot_expiry_days,
            request_id=ctx.request_id,
        ))
        return CampaignPayload(campaign=await _campaign(info, campaign_id), replayed=replayed)

    @payload_mutation(description="End a campaign now; the rest of the budget returns to the merchant. / 提前结束活动。")
    async def end_campaign(self, info: Info, input: EndCampaignInput) -> CampaignPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        campaign_id = decode_id(input.campaign_id, "Campaign", field="campaignId")
        await ctx.db.write(lambda conn: service.end_campaign(
            conn, actor=actor, campaign_id=campaign_id, now=ctx.now(),
            lot_expiry_days=ctx.settings.points.lot_expiry_days, request_id=ctx.request_id,
        ))
        return CampaignPayload(campaign=await _campaign(info, campaign_id))

    @payload_mutation(description="Register a station code actions can name (staff or admin). / 登记商户站点。")
    async def add_merchant_station(self, info: Info, input: AddMerchantStationInput) -> MerchantStationPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        merchant_id = decode_opt(input.merchant_id, "Merchant", "merchantId") or actor.merchant_id
        if merchant_id is None:
            raise ValidationFailed("Give merchantId / 请指定商户", field="merchantId")
        station_id = await ctx.db.write(lambda conn: attribution.add_station(
            conn, actor=actor, merchant_id=merchant_id, code=input.code, name_zh=input.name_zh, name_en=input.name_en,
            now=ctx.now(),
        ))
        stations = await ctx.read(attribution.stations_of, [merchant_id])
        row = next(s for s in stations[merchant_id] if s["id"] == station_id)
        return MerchantStationPayload(station=MerchantStation.from_row(row))

    @payload_mutation(description="Record a green-merchant audit and the level it grants (admin or certified volunteer; audit-logged). / 绿色商户认证。")
    async def certify_merchant(self, info: Info, input: CertifyMerchantInput) -> CertifyMerchantPayload:
        ctx = info.context
        auditor = await _certification_auditor(info)
        merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
        await ctx.db.write(lambda conn: certification.certify(
            conn, auditor_user_id=auditor, merchant_id=merchant_id, level=input.level.value, notes=input.notes,
            valid_days=input.valid_days, now=ctx.now(), request_id=ctx.request_id,
        ))
        row = await merchant_loaders.merchants(info).load(merchant_id)
        cert = (await ctx.read(certification.current_certifications, [merchant_id]))[merchant_id]
        return CertifyMerchantPayload(merchant=Merchant.from_row(row), certification=MerchantCertification.from_row(cert))

    @payload_mutation(description="Replace who an offer is for (staff or admin); outsiders neither see nor redeem it. / 设置优惠目标人群。")
    async def set_offer_segment(self, info: Info, input: SetOfferSegmentInput) -> OfferSegmentPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        offer_id = decode_id(input.offer_id, "Offer", field="offerId")
        rules = [
            {"kind": r.kind.value, "city": r.city, "min_grams": r.min_grams, "max_member_days": r.max_member_days,
             "organisation_id": decode_opt(r.organisation_id, "Organisation", "organisationId")}
            for r in input.rules
        ]
        await ctx.db.write(lambda conn: segments.set_segment(conn, actor=actor, offer_id=offer_id, rules=rules, now=ctx.now()))
        offer = await offer_loaders.offers(info).load(offer_id)
        saved = (await ctx.read(segments.rules_of, [offer_id])).get(offer_id, [])
        return OfferSegmentPayload(offer=Offer.from_row(offer), rules=[_rule(r) for r in saved])


async def _certification_auditor(info: Info) -> int:
    """An admin, or a volunteer of level CERTIFIED or LECTURER (the programme's trained auditors)."""
    ctx = info.context
    if ctx.viewer.is_admin:
        return ctx.viewer.require_role(ADMIN, scope="merchants:write")
    user_id = ctx.viewer.require_user()
    row = await ctx.read(volunteers.volunteer_by_user, user_id)
    if row is None or row.status != volunteers.ACTIVE or row.level not in (volunteers.CERTIFIED, volunteers.LECTURER):
        raise PermissionDenied(
            "Only admins and certified volunteers audit merchants / 仅管理员与认证志愿者可认证商家"
        )
    return user_id


@strawberry.type
class MerchantGrowth:
    """Fields of ``Merchant`` from merchants' growth."""

    @strawberry.field(description="The merchant's campaigns, newest first: running ones for everyone, all for staff and admins. / 商户活动。")
    async def campaigns(
        self: Merchant, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Campaign]:
        manager = await can_manage(info, self.pk, "merchant:read")
        return await _campaign_connection(info, first, after, last, before, merchant_id=self.pk,
                                          status=None if manager else service.ACTIVE, running=not manager)

    @strawberry.field(description="Station codes actions can name to count as done here (staff and admins). / 商户站点。")
    async def stations(self: Merchant, info: Info) -> list[MerchantStation]:
        await require_manage(info, self.pk, "merchant:read")
        return [MerchantStation.from_row(r) for r in (await _stations_loader(info).load(self.pk) or [])]

    @strawberry.field(description="Current green-merchant certification (null: none or expired). / 绿色商户认证。")
    async def certification(self: Merchant, info: Info) -> MerchantCertification | None:
        return await _certification_of(info, self.pk)

    @strawberry.field(description="Per day or month of `from`..`to`, days without activity included (staff and admins). / 经营数据。")
    async def analytics(
        self: Merchant,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from", description="First day (inclusive).")],
        to: Annotated[date, strawberry.argument(description="Last day (inclusive).")],
        granularity: AnalyticsGranularity = AnalyticsGranularity.DAY,
    ) -> list[MerchantAnalyticsPeriod]:
        await require_manage(info, self.pk, "merchant:read")
        ctx = info.context
        period = analytics.analytics_period(from_, to, granularity.value, ctx.settings.offers.settlement_utc_offset_minutes)
        rows = await ctx.read(analytics.merchant_analytics, merchant_id=self.pk, period=period,
                              granularity=granularity.value)
        return [MerchantAnalyticsPeriod(
            start=s.start, redemptions=s.redemptions, points_received=s.points_received, new_members=s.new_members,
            returning_members=s.returning_members, actions=s.actions, grams_co2e=s.grams_co2e,
            campaign_spend=s.campaign_spend) for s in rows]


@strawberry.type
class OfferGrowth:
    """Fields of ``Offer`` from merchants' growth."""

    @strawberry.field(description="Who the offer is for: every rule must hold (empty: everyone). / 目标人群。")
    async def segment(self: Offer, info: Info) -> list[SegmentRule]:
        return [_rule(r) for r in (await _rules_loader(info).load(self.pk) or [])]

    @strawberry.field(description="Green certification of the offer's merchant. / 商户绿色认证。")
    async def merchant_certification(self: Offer, info: Info) -> MerchantCertification | None:
        return await _certification_of(info, self.merchant_pk)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="growth",
        query=[GrowthQuery],
        mutation=[GrowthMutation],
        types=[Campaign],
        nodes={"Campaign": visible_campaigns},
        extends={"Merchant": [MerchantGrowth], "Offer": [OfferGrowth]},
    )
