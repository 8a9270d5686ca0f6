"""Query and Mutation fields of impact, and the ``impact``/``medals`` fields it adds to ``User``,
``Household`` and ``Organisation`` (docs/impact.md)."""

import json
from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, Keyset, build_connection, decode_id, page_args, to_global_id
from jingtan_api.households.types import Household, require_member
from jingtan_api.impact import service
from jingtan_api.impact.types import (
    AdminDashboard,
    DashboardDay,
    DashboardMerchant,
    DashboardOrganisation,
    DashboardPoints,
    DashboardValue,
    GreenCommunityHonour,
    Impact,
    ImpactEquivalent,
    ImpactPreferences,
    ImpactPreferencesPayload,
    ImpactReport,
    Leaderboard,
    LeaderboardBoard,
    LeaderboardEntry,
    LeaderboardPeriod,
    Medal,
    ReportFactor,
    ReportLine,
    SetImpactPreferencesInput,
)
from jingtan_api.merchants import service as merchants
from jingtan_api.organisations import service as orgs
from jingtan_api.organisations.types import Organisation, actor_of
from jingtan_api.users.types import User, require_personal

LEADERBOARD_KEYSET = Keyset("LEADERBOARD", (int,))
ANONYMOUS = "Anonymous member / 匿名成员"


def _tz(info: Info) -> ZoneInfo:
    return ZoneInfo(info.context.settings.actions.timezone)


def _today(info: Info) -> date:
    return service.local_day(info.context.now(), _tz(info))


async def _impact(info: Info, subject: str, key: str | int) -> Impact:
    return Impact.of(await info.context.read(service.impact_of, subject, key))


def _org_name(row: dict) -> str:
    return row["name_zh"] + (f" / {row['name_en']}" if row.get("name_en") else "")


async def _board_key(info: Info, board: LeaderboardBoard, household_id, organisation_id, city) -> str:
    """Which board, and whether the viewer may see it: households to their members, organisations' member
    boards to their members (as the member list), platform and city boards to members, the organisations'
    board to anyone."""
    ctx = info.context
    viewer = ctx.viewer
    if board == LeaderboardBoard.ORGANISATIONS:
        return ""
    viewer.require_user()
    if board == LeaderboardBoard.PLATFORM:
        return ""
    if board == LeaderboardBoard.CITY:
        text = service.validate_city(city)
        if not text:
            raise service.ValidationFailed("Name the city / 请指定城市", field="city")
        return text
    if board == LeaderboardBoard.HOUSEHOLD:
        if household_id is None:
            raise service.ValidationFailed("Name the household / 请指定家庭", field="householdId")
        hid = decode_id(household_id, "Household", field="householdId")
        await require_member(info, hid)
        return str(hid)
    if organisation_id is None:
        raise service.ValidationFailed("Name the organisation / 请指定组织", field="organisationId")
    oid = decode_id(organisation_id, "Organisation", field="organisationId")
    actor = orgs.Actor(user_id=viewer.user_id or 0, is_platform_admin=viewer.is_admin)
    if not await ctx.read(orgs.can_see_members, actor, oid):
        raise PermissionDenied("Only the organisation's members can see its leaderboard / 仅组织成员可查看排行榜")
    return str(oid)


@strawberry.type
class ImpactQuery:
    @strawberry.field(description="Grams CO2e avoided by everyone on the platform. / 平台累计减排。")
    async def platform_impact(self, info: Info) -> Impact:
        return await _impact(info, service.PLATFORM, "")

    @strawberry.field(description="Grams CO2e avoided by members whose impact profile names this city. / 城市减排。")
    async def city_impact(self, info: Info, city: str) -> Impact:
        return await _impact(info, service.CITY, service.validate_city(city))

    @strawberry.field(description="The equivalents' factors and sources. / 等效换算因子。")
    def impact_equivalents(self, info: Info) -> list[ImpactEquivalent]:
        return [ImpactEquivalent.of(e, 0.0) for e in service.EQUIVALENTS]

    @strawberry.field(description="Every medal one can earn. / 勋章目录。")
    def medal_catalogue(self, info: Info) -> list[Medal]:
        return [Medal.of(m) for m in service.MEDALS]

    @strawberry.field(description="A leaderboard by grams CO2e: members of the platform, a household, an organisation "
                      "or a city, or organisations among themselves; WEEK and MONTH are the current ones unless `on` "
                      "names a day in another. Opted-out members are ranked but not named. / 排行榜。")
    async def leaderboard(
        self,
        info: Info,
        board: LeaderboardBoard,
        period: LeaderboardPeriod,
        household_id: strawberry.ID | None = None,
        organisation_id: strawberry.ID | None = None,
        city: str | None = None,
        on: date | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Leaderboard:
        ctx = info.context
        args = page_args(info, first, after, last, before, keyset=LEADERBOARD_KEYSET)
        key = await _board_key(info, board, household_id, organisation_id, city)
        day = on or _today(info)
        stored = service.period_key(period.value, day)
        start, end = service.period_bounds(period.value, day)
        page = await ctx.read(service.leaderboard_page, board.value, key, stored, args)
        viewer_id = ctx.viewer.user_id
        is_orgs = board == LeaderboardBoard.ORGANISATIONS
        viewer_entrant = viewer_id
        if is_orgs:
            viewer_entrant = None if organisation_id is None else decode_id(organisation_id, "Organisation", field="organisationId")

        async def names_of(ids: list[int]) -> dict[int, tuple[str, bool]]:
            if is_orgs:
                return {i: (_org_name(r), False) for i, r in (await ctx.read(orgs.organisations_by_ids, ids)).items()}
            return await ctx.read(service.names_for_board, ids)

        named = await names_of([r["entrant_id"] for r in page.rows])

        def entry(row: dict, names: dict[int, tuple[str, bool]]) -> LeaderboardEntry:
            name, anonymous = names.get(row["entrant_id"], ("", False))
            mine = row["entrant_id"] == viewer_entrant
            shown = not anonymous or (mine and not is_orgs)
            return LeaderboardEntry(
                rank=row["rank"], grams=int(row["grams"]), actions=int(row["actions"]),
                name=name if shown else ANONYMOUS, anonymous=anonymous, is_viewer=mine,
                member_id=None if is_orgs or not shown else to_global_id("User", row["entrant_id"]),
                organisation_id=to_global_id("Organisation", row["entrant_id"]) if is_orgs else None,
            )

        async def viewer_entry() -> LeaderboardEntry | None:
            if viewer_entrant is None:
                return None
            own = next((r for r in page.rows if r["entrant_id"] == viewer_entrant), None)
            if own is not None:
                return entry(own, named)
            own = await ctx.read(service.leaderboard_entry, board.value, key, stored, viewer_entrant)
            return None if own is None else entry(own, await names_of([viewer_entrant]))

        entries: Connection[LeaderboardEntry] = build_connection(
            page, lambda row: entry(row, named),
            count=lambda: ctx.read(service.leaderboard_count, board.value, key, stored), keyset=LEADERBOARD_KEYSET,
        )
        return Leaderboard(board=board, period=period, period_start=start, period_end=end, entries=entries,
                           _viewer_entry=viewer_entry)

    @strawberry.field(description="The admin dashboard for [from, to] (days in the platform's time zone, at most 366; "
                      "admins only). / 管理后台统计。")
    async def admin_dashboard(self, info: Info, from_: Annotated[date, strawberry.argument(name="from")],
                              to: date, top: int = 10) -> AdminDashboard:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        start, end = service.validate_range(from_, to, max_days=service.MAX_DASHBOARD_DAYS)
        top = max(1, min(top, 50))
        d = await ctx.read(service.dashboard, start, end, top=top)
        merchant_rows = await ctx.read(merchants.merchants_by_ids, [m[0] for m in d.top_merchants])
        org_rows = await ctx.read(orgs.organisations_by_ids, [o[0] for o in d.top_organisations])

        def values(metric: str, day: date) -> list[DashboardValue]:
            return [DashboardValue(key=k, value=v) for k, v in sorted(d.daily.get(metric, {}).get(day, {}).items())]

        def points(day: date) -> DashboardPoints:
            p = d.daily.get("points", {}).get(day, {})
            return DashboardPoints(
                issued=p.get("ACTION_CREDIT", 0) + p.get("GRANT", 0), redeemed=p.get("REDEMPTION", 0) - p.get("REFUND", 0),
                expired=p.get("EXPIRY", 0), donated=p.get("DONATION", 0), challenge_rewards=p.get("CHALLENGE_REWARD", 0),
            )

        days = [
            DashboardDay(
                day=day, new_members=d.daily.get("members_new", {}).get(day, {}).get("", 0),
                active_members=d.active.get(day, 0), actions_by_status_and_type=values("actions", day),
                reviews_by_decision_and_type=values("reviews", day), co2e_grams_by_type=values("co2e", day),
                points=points(day),
            )
            for day in d.days
        ]
        return AdminDashboard(
            start=start, end=end, days=days,
            top_merchants=[
                DashboardMerchant(merchant_id=to_global_id("Merchant", mid),
                                  name=_org_name(merchant_rows[mid]) if mid in merchant_rows else "",
                                  points=pts, redemptions=n)
                for mid, pts, n in d.top_merchants
            ],
            top_organisations=[
                DashboardOrganisation(organisation_id=to_global_id("Organisation", oid),
                                      name=_org_name(org_rows[oid]) if oid in org_rows else "", grams=g, actions=n)
                for oid, g, n in d.top_organisations
            ],
        )

    @strawberry.field(description="Verified reductions per methodology and month for [from, to], for reporting to "
                      "authorities (admins only; at most 3660 days). / 核证减排量报告。")
    async def impact_report(self, info: Info, from_: Annotated[date, strawberry.argument(name="from")],
                            to: date) -> ImpactReport:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        start, end = service.validate_range(from_, to, max_days=service.MAX_REPORT_DAYS)
        rep = await ctx.read(service.report, start, end, tz=_tz(info), now=ctx.now())
        return report_type(rep)


def report_type(rep: service.Report) -> ImpactReport:
    return ImpactReport(
        period_start=rep.period_start, period_end=rep.period_end, timezone=rep.timezone, total_grams=rep.total_grams,
        total_actions=rep.total_actions,
        lines=[
            ReportLine(
                action_type=line.plugin_code, methodology_version=line.plugin_version, month=line.month,
                factor_ids=line.factor_ids, actions=line.actions, grams=line.grams,
                factors=[ReportFactor(id=str(f.get("id", "")), value=f.get("value"), unit=f.get("unit"),
                                      source=f.get("source")) for f in line.factors],
            )
            for line in rep.lines
        ],
        csv=service.report_csv(rep), json=json.dumps(service.report_json(rep), ensure_ascii=False),
    )


@strawberry.type
class ImpactMutation:
    @payload_mutation(description="Set your city and whether you are named on leaderboards. / 设置城市与排行榜匿名。")
    async def set_impact_preferences(self, info: Info, input: SetImpactPreferencesInput) -> ImpactPreferencesPayload:
        ctx = info.context
        user_id = actor_of(info).user_id
        change_city = input.city is not strawberry.UNSET
        opt = None if input.leaderboard_opt_out in (None, strawberry.UNSET) else bool(input.leaderboard_opt_out)
        city = None if not change_city else (input.city or "")
        if change_city:
            service.validate_city(city)  # refuse before opening a transaction
        profile = await ctx.db.write(lambda conn: service.set_profile(
            conn, user_id=user_id, city=city, opt_out=opt, change_city=change_city, now=ctx.now()))
        return ImpactPreferencesPayload(
            preferences=ImpactPreferences(city=profile.city, leaderboard_opt_out=profile.leaderboard_opt_out))


@strawberry.type
class UserImpact:
    """Fields of ``User`` from impact (only the user and admins)."""

    @strawberry.field(description="Grams CO2e the member avoided (only the user and admins). / 个人减排。")
    async def impact(self: User, info: Info) -> Impact:
        require_personal(info, self)
        return await _impact(info, service.MEMBER, self.pk)

    @strawberry.field(description="Medals the member earned, in order (only the user and admins). / 勋章。")
    async def medals(self: User, info: Info) -> list[Medal]:
        require_personal(info, self)
        rows = await info.context.read(service.medals_of, self.pk)
        return [Medal.of(service.MEDALS_BY_CODE[r["code"]], r["awarded_at"]) for r in rows
                if r["code"] in service.MEDALS_BY_CODE]

    @strawberry.field(description="City and leaderboard opt-out (only the user and admins). / 减排偏好。")
    async def impact_preferences(self: User, info: Info) -> ImpactPreferences:
        require_personal(info, self)
        p = await info.context.read(service.profile_of, self.pk)
        return ImpactPreferences(city=p.city, leaderboard_opt_out=p.leaderboard_opt_out)


@strawberry.type
class HouseholdImpact:
    @strawberry.field(description="Grams CO2e its members avoided while members (members and admins). / 家庭减排。")
    async def impact(self: Household, info: Info) -> Impact:
        await require_member(info, self.pk)
        return await _impact(info, service.HOUSEHOLD, self.pk)


@strawberry.type
class OrganisationImpact:
    @strawberry.field(description="Grams CO2e its members avoided while members. / 组织减排。")
    async def impact(self: Organisation, info: Info) -> Impact:
        return await _impact(info, service.ORGANISATION, self.pk)

    @strawberry.field(description="The green community honour (community organisations). / 绿色社区荣誉。")
    async def green_community(self: Organisation, info: Info) -> GreenCommunityHonour:
        threshold = info.context.settings.impact.green_community_grams
        figures = await info.context.read(service.impact_of, service.ORGANISATION, self.pk)
        eligible = self.kind.value == "COMMUNITY"
        return GreenCommunityHonour(eligible=eligible, awarded=eligible and figures.total_grams >= threshold,
                                    grams=figures.total_grams, threshold_grams=threshold)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="impact",
        query=[ImpactQuery],
        mutation=[ImpactMutation],
        types=[],
        extends={"User": [UserImpact], "Household": [HouseholdImpact], "Organisation": [OrganisationImpact]},
    )

