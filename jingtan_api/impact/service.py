"""Impact: who avoided how many grams CO2e, by type and month, on which boards (docs/impact.md).

Writes happen only in the domain-event listeners (``jingtan_api.impact.listeners``), inside the
transaction that approved an action: :func:`record_approval` upserts every aggregate the action counts
for with two multi-row ``INSERT … ON CONFLICT DO UPDATE`` statements, so totals are exact under
concurrency on both databases (SQLite serialises writers; PostgreSQL's upsert locks the row) and roll
back with the approval. Reads are one or two indexed statements each.

**Attribution.** An approved action counts, in the time zone ``actions.timezone``, for the day, ISO week
and month in which it *occurred* (``occurred_from``), for its member, for the household recorded on the
action (the submitter's household when submitting), for the organisations the member belonged to when
submitting (``organisations.service.organisation_ids_at``), and for the city of the member's impact
profile at approval. Opted-out members are counted everywhere and named nowhere.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.actions.models import Action
from jingtan_api.db import Page, PageArgs, StatementCache, dialect_insert, dialect_insert_for, keyset_page_cached
from jingtan_api.driver import DriverStatement, in_list, row_binds, row_chunks, row_params
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.impact.models import ImpactBreakdown, ImpactProfile, ImpactTotal, MedalAward, StatsDaily
from jingtan_api.organisations import service as orgs
from jingtan_api.users.models import User

P = ImpactProfile.__table__
IT = ImpactTotal.__table__
IB = ImpactBreakdown.__table__
SD = StatsDaily.__table__
MA = MedalAward.__table__
A = Action.__table__
U = User.__table__

APPROVED = "APPROVED"

# Boards (ImpactTotal.board) and breakdown subjects (ImpactBreakdown.subject).
MEMBER = "MEMBER"
HOUSEHOLD = "HOUSEHOLD"
ORGANISATION = "ORGANISATION"
CITY = "CITY"
ORGANISATIONS = "ORGANISATIONS"
PLATFORM = "PLATFORM"
BOARDS = (MEMBER, HOUSEHOLD, ORGANISATION, CITY, ORGANISATIONS)

# Leaderboard periods.
WEEK = "WEEK"
MONTH = "MONTH"
ALL_TIME = "ALL_TIME"
PERIODS = (WEEK, MONTH, ALL_TIME)
ALL = "A"

MAX_CITY_LENGTH = 64


# --- periods ---------------------------------------------------------------------------------------------


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return aware(moment).astimezone(tz).date()


def day_key(day: date) -> str:
    return f"D{day.isoformat()}"


def week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"W{year}-{week:02d}"


def month_key(day: date) -> str:
    return f"M{day.year}-{day.month:02d}"


def period_key(period: str, day: date) -> str:
    """The stored period of the leaderboard ``period`` (WEEK, MONTH, ALL_TIME) containing ``day``."""
    if period == WEEK:
        return week_key(day)
    if period == MONTH:
        return month_key(day)
    if period == ALL_TIME:
        return ALL
    raise ValidationFailed("Unknown period / 未知的时间范围", field="period")


def period_bounds(period: str, day: date) -> tuple[date | None, date | None]:
    """First and last day (inclusive) of the period containing ``day``; (None, None) for all time."""
    if period == WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    if period == MONTH:
        start = day.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start, nxt - timedelta(days=1)
    return None, None


# --- profile ---------------------------------------------------------------------------------------------


def validate_city(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationFailed("City must be text / 城市须为文本", field="city")
    city = " ".join(value.split())
    if len(city) > MAX_CITY_LENGTH:
        raise ValidationFailed(f"City is longer than {MAX_CITY_LENGTH} characters / 城市名称过长", field="city")
    if any(ord(ch) < 32 for ch in city):
        raise ValidationFailed("City contains control characters / 城市名称含控制字符", field="city")
    return city


@dataclass(frozen=True)
class Profile:
    user_id: int
    city: str = ""
    leaderboard_opt_out: bool = False


async def profile_of(conn: AsyncConnection, user_id: int) -> Profile:
    row = (await conn.execute(select(P).where(P.c.user_id == user_id))).one_or_none()
    return Profile(user_id) if row is None else Profile(user_id, row.city, bool(row.leaderboard_opt_out))


async def profiles_of(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, Profile]:
    rows = await conn.execute(select(P).where(P.c.user_id.in_(list(user_ids))))
    found = {r.user_id: Profile(r.user_id, r.city, bool(r.leaderboard_opt_out)) for r in rows}
    return {uid: found.get(uid, Profile(uid)) for uid in user_ids}


async def set_profile(
    conn: AsyncConnection, *, user_id: int, city: Any = None, opt_out: bool | None = None, now: datetime,
    change_city: bool = False,
) -> Profile:
    """Change the member's city (only when ``change_city``; '' clears it) and/or leaderboard opt-out.
    A new city applies to actions approved from now on; earlier ones stay where they were counted."""
    current = await profile_of(conn, user_id)
    new_city = validate_city(city) if change_city else current.city
    new_opt = current.leaderboard_opt_out if opt_out is None else bool(opt_out)
    stmt = dialect_insert(conn, P).values(user_id=user_id, city=new_city, leaderboard_opt_out=new_opt, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id"], set_={"city": new_city, "leaderboard_opt_out": new_opt, "updated_at": now}
    )
    await conn.execute(stmt)
    return Profile(user_id, new_city, new_opt)


# --- writes: the approval listener -----------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution:
    """Where one approved action counts."""

    action_id: int
    user_id: int
    plugin_code: str
    grams: int
    occurred_from: datetime
    day: date
    household_id: int | None
    organisation_ids: tuple[int, ...]
    city: str


async def attribution(conn: AsyncConnection, action_id: int, tz: ZoneInfo) -> Attribution:
    """Two statements: the action (with the member's profile city), the member's organisations then."""
    rows = await _ATTRIBUTION.all(conn, {"aid": action_id})
    if not rows:
        raise LookupError(f"action {action_id} does not exist")
    row = rows[0]
    org_ids = await orgs.organisation_ids_at(conn, row["user_id"], aware(row["created_at"]))
    return Attribution(
        action_id=row["id"], user_id=row["user_id"], plugin_code=row["plugin_code"], grams=int(row["grams_co2e"]),
        occurred_from=aware(row["occurred_from"]), day=local_day(row["occurred_from"], tz),
        household_id=row["household_id"], organisation_ids=tuple(org_ids), city=row["city"] or "",
    )


_ATTRIBUTION = DriverStatement(
    select(A.c.id, A.c.user_id, A.c.plugin_code, A.c.grams_co2e, A.c.occurred_from, A.c.created_at,
           A.c.household_id, P.c.city)
    .select_from(A.outerjoin(P, P.c.user_id == A.c.user_id))
    .where(A.c.id == bindparam("aid")))


_CACHE_KEY = "jingtan.impact.attribution"


def remember_attribution(conn: AsyncConnection, att: Attribution) -> None:
    """Keep the attribution for the other ``action.approved`` listeners of the same emit (challenges), so
    they do not read the action and memberships again. Stored on the connection's ``info``; taken with
    :func:`attribution_of`."""
    conn.info.setdefault(_CACHE_KEY, {})[att.action_id] = att


async def attribution_of(conn: AsyncConnection, action_id: int, tz: ZoneInfo) -> Attribution:
    """The attribution remembered by the impact listener for this action, or read afresh."""
    att = conn.info.get(_CACHE_KEY, {}).pop(action_id, None)
    return att if att is not None else await attribution(conn, action_id, tz)


def _total_rows(att: Attribution) -> list[dict]:
    periods = [ALL, month_key(att.day), week_key(att.day)]
    boards: list[tuple[str, str, int]] = [(MEMBER, "", att.user_id)]
    if att.household_id is not None:
        boards.append((HOUSEHOLD, str(att.household_id), att.user_id))
    for org_id in att.organisation_ids:
        boards.append((ORGANISATION, str(org_id), att.user_id))
        boards.append((ORGANISATIONS, "", org_id))
    if att.city:
        boards.append((CITY, att.city, att.user_id))
    rows = [dict(board=b, board_key=k, period=p, entrant_id=e, grams=att.grams, actions=1)
            for b, k, e in boards for p in periods]
    rows.append(dict(board=MEMBER, board_key="", period=day_key(att.day), entrant_id=att.user_id,
                     grams=att.grams, actions=1))
    # A fixed order, so two transactions upserting overlapping rows lock them in the same order.
    rows.sort(key=lambda r: (r["board"], r["board_key"], r["period"], r["entrant_id"]))
    return rows


def _breakdown_rows(att: Attribution) -> list[dict]:
    month = f"{att.day.year}-{att.day.month:02d}"
    subjects = [(MEMBER, str(att.user_id)), (PLATFORM, "")]
    if att.household_id is not None:
        subjects.append((HOUSEHOLD, str(att.household_id)))
    subjects += [(ORGANISATION, str(o)) for o in att.organisation_ids]
    if att.city:
        subjects.append((CITY, att.city))
    rows = [dict(subject=s, subject_key=k, month=month, plugin_code=att.plugin_code, grams=att.grams, actions=1)
            for s, k in subjects]
    rows.sort(key=lambda r: (r["subject"], r["subject_key"]))
    return rows


_UPSERTS = StatementCache()


def _upsert(dialect: str, table: Any, keys: Sequence[str], adds: Sequence[str], returning: Sequence[str],
            n: int) -> DriverStatement:
    """``INSERT … VALUES (row 1), …, (row n) ON CONFLICT (keys) DO UPDATE SET add = add + excluded.add``
    for ``table``, returning ``returning`` (nothing when empty): a driver statement built and compiled once
    per dialect, shape and row count (``n`` ≤ ``driver.MAX_ROWS``). Parameters are ``<column>_<i>``. A
    ``.values([rows])`` statement has no cache key, so SQLAlchemy itself compiled it again on every
    execution (~1 ms each, five per approval)."""
    columns = (*keys, *adds)

    def build() -> DriverStatement:
        ins = dialect_insert_for(dialect, table).values(row_binds(table, columns, n))
        stmt = ins.on_conflict_do_update(index_elements=list(keys), set_={c: table.c[c] + ins.excluded[c] for c in adds})
        return DriverStatement(stmt.returning(*(table.c[c] for c in returning)) if returning else stmt)

    return _UPSERTS.get((dialect, table.name, tuple(keys), tuple(adds), tuple(returning), n), build)


async def _upsert_rows(conn: AsyncConnection, table: Any, rows: list[dict], keys: Sequence[str], adds: Sequence[str],
                       returning: Sequence[str] = ()) -> list[dict]:
    """Add ``adds`` of each row to the stored row with the same ``keys`` (inserting it when missing): one
    statement per ``driver.MAX_ROWS`` rows, rows in the given order (callers sort them, so concurrent
    writers lock in one order); returns the ``returning`` columns of the rows written. ``rows`` must not
    repeat a key (PostgreSQL refuses to update a row twice in one statement)."""
    columns = (*keys, *adds)
    out: list[dict] = []
    for chunk in row_chunks(rows):
        stmt = _upsert(conn.dialect.name, table, keys, adds, returning, len(chunk))
        out += await stmt.all(conn, row_params(chunk, columns))
    return out


async def record_approval(conn: AsyncConnection, att: Attribution, *, now: datetime) -> list[str]:
    """Count one newly approved action everywhere it belongs; returns the medals it earned the member."""
    # The totals upsert returns the member's all-time row, so the medal check needs no SELECT of its own.
    returned = await _upsert_rows(conn, IT, _total_rows(att), ("board", "board_key", "period", "entrant_id"),
                                  ("grams", "actions"), ("board", "board_key", "period", "grams", "actions"))
    total = next(r for r in returned if (r["board"], r["board_key"], r["period"]) == (MEMBER, "", ALL))
    await _upsert_rows(conn, IB, _breakdown_rows(att), ("subject", "subject_key", "month", "plugin_code"), ("grams", "actions"))
    # CO2e per day on the dashboard is by the day the action occurred, like every other aggregate.
    await bump_stats(conn, [("co2e", att.day, att.plugin_code, att.grams)])
    return await _award_medals(conn, att, int(total["grams"]), int(total["actions"]), now=now)


_STATS_KEY = "jingtan.impact.stats_daily"


async def bump_stats(conn: AsyncConnection, items: Iterable[tuple[str, date, str, int]]) -> None:
    """Add to the daily counters. Inside ``Database.write`` the additions of the whole transaction are
    merged and written by ONE sorted upsert just before COMMIT (``events.defer_to_commit``): an approved
    submission bumps three counters from three listeners, and every concurrent writer updates the same
    few rows, so their locks are now taken in one order and held only for the end of the transaction."""
    memo = events.attempt_memo()
    if memo is None:
        await _write_stats(conn, _merge_stats({}, items))
        return
    merged = memo.get(_STATS_KEY)
    if merged is None:
        merged = memo[_STATS_KEY] = {}
        events.defer_to_commit(_STATS_KEY, lambda c: _write_stats(c, memo.pop(_STATS_KEY, {})))
    _merge_stats(merged, items)


def _merge_stats(merged: dict[tuple[str, date, str], int], items: Iterable[tuple[str, date, str, int]]) -> dict:
    for metric, day, dim, value in items:
        merged[(metric, day, dim)] = merged.get((metric, day, dim), 0) + value
    return merged


async def _write_stats(conn: AsyncConnection, merged: dict[tuple[str, date, str], int]) -> None:
    rows = [dict(metric=m, day=d, dim=k, value=v) for (m, d, k), v in sorted(merged.items())]
    await _upsert_rows(conn, SD, rows, ("metric", "day", "dim"), ("value",))


# --- medals ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MedalDef:
    code: str
    name_en: str
    name_zh: str
    metric: str  # GRAMS or ACTIONS
    threshold: int


MEDALS: tuple[MedalDef, ...] = (
    MedalDef("FIRST_ACTION", "First green action", "首次绿色行动", "ACTIONS", 1),
    MedalDef("ACTIONS_10", "10 green actions", "绿色行动10次", "ACTIONS", 10),
    MedalDef("ACTIONS_100", "100 green actions", "绿色行动100次", "ACTIONS", 100),
    MedalDef("ACTIONS_1000", "1,000 green actions", "绿色行动1000次", "ACTIONS", 1000),
    MedalDef("CO2E_1KG", "1 kg CO2e avoided", "减排1千克", "GRAMS", 1_000),
    MedalDef("CO2E_10KG", "10 kg CO2e avoided", "减排10千克", "GRAMS", 10_000),
    MedalDef("CO2E_100KG", "100 kg CO2e avoided", "减排100千克", "GRAMS", 100_000),
    MedalDef("CO2E_1T", "1 tonne CO2e avoided", "减排1吨", "GRAMS", 1_000_000),
)
MEDALS_BY_CODE = {m.code: m for m in MEDALS}


def medals_reached(grams: int, actions: int) -> list[str]:
    return [m.code for m in MEDALS if (grams if m.metric == "GRAMS" else actions) >= m.threshold]


_AWARDED = ("user_id", "code", "awarded_at")


def _award_stmt(dialect: str, n: int) -> DriverStatement:
    """``INSERT INTO medal_award … ON CONFLICT DO NOTHING`` of ``n`` rows, built once per dialect and count."""
    return _UPSERTS.get((dialect, MA.name, n), lambda: DriverStatement(
        dialect_insert_for(dialect, MA).values(row_binds(MA, _AWARDED, n))
        .on_conflict_do_nothing(index_elements=["user_id", "code"])))


async def _award_medals(conn: AsyncConnection, att: Attribution, grams: int, actions: int, *,
                        now: datetime) -> list[str]:
    """Medals crossed by this approval, given the member's all-time totals after it (no statement unless a
    medal is new)."""
    before = set(medals_reached(grams - att.grams, actions - 1))
    new = [c for c in medals_reached(grams, actions) if c not in before]
    if new:
        rows = [dict(user_id=att.user_id, code=c, awarded_at=now) for c in new]  # at most len(MEDALS)
        await _award_stmt(conn.dialect.name, len(rows)).all(conn, row_params(rows, _AWARDED))
    return new


async def medals_of(conn: AsyncConnection, user_id: int) -> list[dict]:
    rows = await conn.execute(select(MA).where(MA.c.user_id == user_id).order_by(MA.c.awarded_at, MA.c.id))
    return [dict(r._mapping) for r in rows]


# --- reads: impact ---------------------------------------------------------------------------------------


@dataclass
class ImpactFigures:
    total_grams: int = 0
    actions: int = 0
    by_type: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_month: dict[str, tuple[int, int]] = field(default_factory=dict)


async def impact_of(conn: AsyncConnection, subject: str, key: str | int) -> ImpactFigures:
    """Totals of a subject (MEMBER, HOUSEHOLD, ORGANISATION, CITY, PLATFORM): one statement."""
    rows = await conn.execute(
        select(IB.c.month, IB.c.plugin_code, IB.c.grams, IB.c.actions).where(
            IB.c.subject == subject, IB.c.subject_key == str(key)
        )
    )
    out = ImpactFigures()
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_month: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        g, n = int(r.grams), int(r.actions)
        out.total_grams += g
        out.actions += n
        by_type[r.plugin_code][0] += g
        by_type[r.plugin_code][1] += n
        by_month[r.month][0] += g
        by_month[r.month][1] += n
    out.by_type = {k: (v[0], v[1]) for k, v in sorted(by_type.items())}
    out.by_month = {k: (v[0], v[1]) for k, v in sorted(by_month.items())}
    return out


@dataclass(frozen=True)
class Equivalent:
    code: str
    name_en: str
    name_zh: str
    unit_en: str
    unit_zh: str
    grams_per_unit: int
    source: str


# Relatable equivalents: value = grams / grams_per_unit. Where sources differ, the larger grams per unit
# is taken (the smaller, more conservative equivalent). docs/methodology.md "Equivalents" lists them.
EQUIVALENTS: tuple[Equivalent, ...] = (
    Equivalent("TREE_YEARS", "Tree-years of growth", "棵树一年的吸收量", "tree-years", "棵·年", 6_000,
               "US EPA Greenhouse Gas Equivalencies Calculator: 0.060 t CO2 per urban tree seedling grown for "
               "10 years (= 6 kg per tree-year)"),
    Equivalent("CAR_KM", "Car kilometres avoided", "少开车公里数", "km", "公里", 272,
               "Beijing Transport Commission: 5.98 kg CO2 per 22 km day of private-car driving (272 g/km; the "
               "larger of the car baselines in docs/methodology.md)"),
    Equivalent("GRID_KWH", "Grid electricity", "电网用电", "kWh", "千瓦时", 531,
               "MEE/NBS national average grid emission factor 2023, 0.5306 kg CO2/kWh (rounded up)"),
    Equivalent("PHONE_CHARGES", "Smartphone charges", "手机充电次数", "charges", "次", 9,
               "US EPA Greenhouse Gas Equivalencies Calculator: 8.22 g CO2 per smartphone charge (rounded up)"),
)


def equivalents(grams: int) -> list[tuple[Equivalent, float]]:
    return [(e, round(grams / e.grams_per_unit, 2)) for e in EQUIVALENTS]


# --- reads: leaderboards ---------------------------------------------------------------------------------


LEADERBOARD_ORDER_COLUMNS = (IT.c.grams, IT.c.id)


def _board_filter(board: str, key: str, period: str) -> Any:
    return and_(IT.c.board == board, IT.c.board_key == key, IT.c.period == period)


def _board_filter_bound() -> Any:
    """``_board_filter`` with bind parameters ``board``, ``board_key``, ``period`` (statements built once)."""
    return and_(IT.c.board == bindparam("board", type_=IT.c.board.type),
                IT.c.board_key == bindparam("board_key", type_=IT.c.board_key.type),
                IT.c.period == bindparam("period", type_=IT.c.period.type))


# The leaderboard's hot path on the driver (jingtan_api.driver): statements built and compiled once.
_LEADERBOARD_PAGES = StatementCache()
_TOP = bindparam("top", type_=IT.c.grams.type)
_RANKS = DriverStatement(
    select(func.coalesce(func.sum(case((IT.c.grams > _TOP, 1), else_=0)), 0).label("above"),
           func.count().label("at_or_above"))
    .where(_board_filter_bound(), IT.c.grams >= _TOP)
)


async def leaderboard_page(conn: AsyncConnection, board: str, key: str, period: str, args: PageArgs) -> Page:
    """One page of a board, most grams first (ties: the later entry first, a stable order). The rows carry
    ``rank`` (1 + entrants with more grams; ties share a rank) — two statements whatever the page size."""
    values = {"board": board, "board_key": key, "period": period}
    page = await keyset_page_cached(
        conn, _LEADERBOARD_PAGES, "board",
        lambda: select(IT.c.id, IT.c.entrant_id, IT.c.grams, IT.c.actions).where(_board_filter_bound()),
        [(IT.c.grams, True), (IT.c.id, True)], args, values,
    )
    if page.rows:
        top = page.rows[0]["grams"]
        (counts,) = await _RANKS.all(conn, {**values, "top": top})
        above, at_or_above = int(counts["above"]), int(counts["at_or_above"])
        for row in page.rows:
            g = row["grams"]
            # Rows with grams strictly between this row's and the page's top all lie earlier in this page.
            between = 0 if g == top else sum(1 for r in page.rows if g < r["grams"] < top)
            row["rank"] = above + 1 if g == top else at_or_above + between + 1
    return page


async def leaderboard_count(conn: AsyncConnection, board: str, key: str, period: str) -> int:
    return int((await conn.execute(select(func.count()).where(_board_filter(board, key, period)))).scalar_one())


async def leaderboard_entry(conn: AsyncConnection, board: str, key: str, period: str, entrant_id: int) -> dict | None:
    """One entrant's grams and rank on a board (two statements), None when they have nothing there."""
    row = (
        await conn.execute(
            select(IT.c.id, IT.c.entrant_id, IT.c.grams, IT.c.actions)
            .where(_board_filter(board, key, period), IT.c.entrant_id == entrant_id)
        )
    ).one_or_none()
    if row is None:
        return None
    above = (
        await conn.execute(select(func.count()).where(_board_filter(board, key, period), IT.c.grams > row.grams))
    ).scalar_one()
    return {**dict(row._mapping), "rank": int(above) + 1}


async def names_for_board(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
    """{user id: (display name, opted out)} in one statement."""
    if not user_ids:
        return {}
    rows = await _BOARD_NAMES.all(conn, {"ids": list(user_ids)})
    return {r["id"]: (r["display_name"], bool(r["leaderboard_opt_out"])) for r in rows}


_BOARD_NAMES = DriverStatement(
    select(U.c.id, U.c.display_name, P.c.leaderboard_opt_out)
    .select_from(U.outerjoin(P, P.c.user_id == U.c.id))
    .where(in_list(U.c.id, "ids"))
)


# --- reads: admin dashboard ------------------------------------------------------------------------------

MAX_DASHBOARD_DAYS = 366


def validate_range(start: Any, end: Any, *, max_days: int) -> tuple[date, date]:
    if not isinstance(start, date) or not isinstance(end, date):
        raise ValidationFailed("Give a start and an end date / 请提供起止日期", field="from")
    if end < start:
        raise ValidationFailed("The end date is before the start date / 结束日期早于开始日期", code="INVALID_PERIOD",
                               field="to")
    if (end - start).days + 1 > max_days:
        raise ValidationFailed(f"At most {max_days} days at a time / 最多{max_days}天", code="INVALID_PERIOD", field="to")
    return start, end


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass
class Dashboard:
    days: list[date]
    # metric -> day -> dim -> value
    daily: dict[str, dict[date, dict[str, int]]]
    active: dict[date, int]
    top_merchants: list[tuple[int, int, int]]  # (merchant id, points, redemptions)
    top_organisations: list[tuple[int, int, int]]  # (organisation id, grams, actions)


async def dashboard(conn: AsyncConnection, start: date, end: date, *, top: int = 10) -> Dashboard:
    """Every figure of the admin dashboard for [start, end] (days in ``actions.timezone``), days without
    activity included as zeros: four statements whatever the range."""
    days = days_between(start, end)
    daily: dict[str, dict[date, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    rows = await conn.execute(
        select(SD.c.metric, SD.c.day, SD.c.dim, SD.c.value).where(SD.c.day >= start, SD.c.day <= end)
    )
    for r in rows:
        daily[r.metric][r.day][r.dim] = int(r.value)
    active_rows = await conn.execute(
        select(IT.c.period, func.count()).where(
            IT.c.board == MEMBER, IT.c.board_key == "", IT.c.period.in_([day_key(d) for d in days])
        ).group_by(IT.c.period)
    )
    active = {date.fromisoformat(p[1:]): int(n) for p, n in active_rows}
    merchants = await conn.execute(
        select(SD.c.dim, func.sum(SD.c.value).label("points"))
        .where(SD.c.metric == "merchant_points", SD.c.day >= start, SD.c.day <= end)
        .group_by(SD.c.dim).order_by(func.sum(SD.c.value).desc(), SD.c.dim).limit(top)
    )
    merchant_rows = [(int(r.dim), int(r.points)) for r in merchants]
    counts = daily.get("merchant_redemptions", {})
    top_merchants = [
        (mid, pts, sum(counts.get(d, {}).get(str(mid), 0) for d in days)) for mid, pts in merchant_rows
    ]
    org_rows = await _top_organisations(conn, start, end, top=top)
    return Dashboard(days=days, daily=daily, active=active, top_merchants=top_merchants, top_organisations=org_rows)


async def _top_organisations(conn: AsyncConnection, start: date, end: date, *, top: int) -> list[tuple[int, int, int]]:
    """Organisations by grams in the months overlapping [start, end]: the ORGANISATIONS board keeps
    months, weeks and all time, so the range is widened to whole months (said on the GraphQL field)."""
    months = sorted({month_key(d) for d in days_between(start, end)})
    rows = await conn.execute(
        select(IT.c.entrant_id, func.sum(IT.c.grams).label("grams"), func.sum(IT.c.actions).label("actions"))
        .where(IT.c.board == ORGANISATIONS, IT.c.board_key == "", IT.c.period.in_(months))
        .group_by(IT.c.entrant_id)
        .order_by(func.sum(IT.c.grams).desc(), IT.c.entrant_id)
        .limit(top)
    )
    return [(int(r.entrant_id), int(r.grams), int(r.actions)) for r in rows]


# --- reads: report for authorities -----------------------------------------------------------------------

MAX_REPORT_DAYS = 3660
REPORT_VERSION = "jingtan-impact-report/1"


@dataclass
class ReportLine:
    plugin_code: str
    plugin_version: str
    factor_ids: list[str]
    factors: list[dict]
    month: str
    actions: int
    grams: int


@dataclass
class Report:
    period_start: date
    period_end: date
    timezone: str
    generated_at: datetime
    lines: list[ReportLine]

    @property
    def total_grams(self) -> int:
        return sum(line.grams for line in self.lines)

    @property
    def total_actions(self) -> int:
        return sum(line.actions for line in self.lines)


def _utc_bounds(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    lo = datetime(start.year, start.month, start.day, tzinfo=tz).astimezone(UTC)
    nxt = end + timedelta(days=1)
    hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    return lo, hi


async def report(conn: AsyncConnection, start: date, end: date, *, tz: ZoneInfo, now: datetime) -> Report:
    """Verified reductions (approved actions) that occurred in [start, end] (local days), by methodology
    (action type, plugin version, factor set) and month: read straight from the actions, never from the
    aggregates, so the report is evidence on its own. Streams the rows in one statement."""
    lo, hi = _utc_bounds(start, end, tz)
    stmt = (
        select(A.c.plugin_code, A.c.plugin_version, A.c.factor_ids, A.c.factors, A.c.occurred_from, A.c.grams_co2e)
        .where(A.c.status == APPROVED, A.c.occurred_from >= lo, A.c.occurred_from < hi)
    )
    groups: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    result = await conn.stream(stmt)
    async for r in result:
        d = local_day(r.occurred_from, tz)
        k = (r.plugin_code, r.plugin_version, r.factor_ids, r.factors, f"{d.year}-{d.month:02d}")
        groups[k][0] += 1
        groups[k][1] += int(r.grams_co2e)
    lines = [
        ReportLine(code, version, json.loads(fids or "[]"), json.loads(factors or "[]"), month, n, g)
        for (code, version, fids, factors, month), (n, g) in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][4], kv[0][2]))
    ]
    return Report(start, end, str(tz), now, lines)


async def recorded_grams(conn: AsyncConnection, start: date, end: date, *, tz: ZoneInfo) -> int:
    """SUM of the approved actions' grams in the period (what a report must reconcile with)."""
    lo, hi = _utc_bounds(start, end, tz)
    return int((await conn.execute(
        select(func.coalesce(func.sum(A.c.grams_co2e), 0)).where(
            A.c.status == APPROVED, A.c.occurred_from >= lo, A.c.occurred_from < hi)
    )).scalar_one())


def report_json(rep: Report) -> dict:
    return {
        "format": REPORT_VERSION,
        "title": "Verified emission reductions / 核证减排量报告",
        "periodStart": rep.period_start.isoformat(),
        "periodEnd": rep.period_end.isoformat(),
        "timezone": rep.timezone,
        "generatedAt": rep.generated_at.isoformat(),
        "unit": "g CO2e",
        "totalGrams": rep.total_grams,
        "totalActions": rep.total_actions,
        "lines": [
            {
                "actionType": line.plugin_code, "methodologyVersion": line.plugin_version, "month": line.month,
                "factorIds": line.factor_ids, "factors": line.factors, "actions": line.actions, "grams": line.grams,
            }
            for line in rep.lines
        ],
    }


def report_csv(rep: Report) -> str:
    import csv  # deferred: only the export needs it
    import io  # deferred: only the export needs it

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["action_type", "methodology_version", "month", "factor_ids", "factors", "actions", "grams_co2e"])
    for line in rep.lines:
        factors = ";".join(f"{f.get('id')}={f.get('value')} {f.get('unit', '')}".strip() for f in line.factors)
        w.writerow([line.plugin_code, line.plugin_version, line.month, ";".join(line.factor_ids), factors,
                    line.actions, line.grams])
    w.writerow(["TOTAL", "", f"{rep.period_start.isoformat()}..{rep.period_end.isoformat()}", "", "",
                rep.total_actions, rep.total_grams])
    return buf.getvalue()


# --- rebuild ---------------------------------------------------------------------------------------------


async def rebuild(conn: AsyncConnection, *, tz: ZoneInfo, batch: int = 5000) -> int:
    """Recompute impact_total, impact_breakdown, the ``co2e`` stats and medals from the approved actions
    (after a bulk load, or on an existing database after the migration). Returns the actions counted.
    Membership and city are taken as for new approvals (organisations at submission, city now)."""
    await conn.execute(IT.delete())
    await conn.execute(IB.delete())
    await conn.execute(SD.delete().where(SD.c.metric == "co2e"))
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    breakdown: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    co2e: dict[tuple, int] = defaultdict(int)
    cities = {r.user_id: r.city for r in await conn.execute(select(P.c.user_id, P.c.city)) if r.city}
    stays: dict[int, list[tuple[int, datetime, datetime | None]]] = defaultdict(list)
    OM = orgs.OM
    for r in await conn.execute(select(OM.c.user_id, OM.c.organisation_id, OM.c.joined_at, OM.c.left_at)):
        stays[r.user_id].append((r.organisation_id, aware(r.joined_at), aware(r.left_at) if r.left_at else None))
    n = 0
    # Local day per quarter hour (every UTC offset is a multiple of 15 minutes): one zone conversion per
    # quarter hour instead of one per action.
    days: dict[int, tuple[date, str, str, str, str]] = {}

    def periods_of(moment: datetime) -> tuple[date, str, str, str, str]:
        slot = int(moment.timestamp()) // 900
        got = days.get(slot)
        if got is None:
            d = local_day(moment, tz)
            got = days[slot] = (d, month_key(d), week_key(d), day_key(d), f"{d.year}-{d.month:02d}")
        return got

    result = await conn.stream(
        select(A.c.user_id, A.c.plugin_code, A.c.grams_co2e, A.c.occurred_from, A.c.created_at, A.c.household_id)
        .where(A.c.status == APPROVED)
    )
    async for r in result:
        n += 1
        uid, code, grams = r.user_id, r.plugin_code, int(r.grams_co2e)
        d, mk, wk, dk, month = periods_of(aware(r.occurred_from))
        user_stays = stays.get(uid)
        if user_stays:
            created = aware(r.created_at)
            org_ids = sorted({o for o, j, left in user_stays if j <= created and (left is None or created < left)})
        else:
            org_ids = []
        city = cities.get(uid, "")
        boards = [(MEMBER, "", uid)]
        subjects = [(MEMBER, str(uid)), (PLATFORM, "")]
        if r.household_id is not None:
            boards.append((HOUSEHOLD, str(r.household_id), uid))
            subjects.append((HOUSEHOLD, str(r.household_id)))
        for o in org_ids:
            boards.append((ORGANISATION, str(o), uid))
            boards.append((ORGANISATIONS, "", o))
            subjects.append((ORGANISATION, str(o)))
        if city:
            boards.append((CITY, city, uid))
            subjects.append((CITY, city))
        for b, k, e in boards:
            for p in (ALL, mk, wk):
                t = totals[(b, k, p, e)]
                t[0] += grams
                t[1] += 1
        t = totals[(MEMBER, "", dk, uid)]
        t[0] += grams
        t[1] += 1
        for sub, key in subjects:
            b = breakdown[(sub, key, month, code)]
            b[0] += grams
            b[1] += 1
        co2e[(d, code)] += grams

    async def flush(table: Any, cols: tuple[str, ...], rows: Iterable[tuple]) -> None:
        chunk: list[tuple] = []
        is_pg = conn.dialect.name == "postgresql"
        raw = (await conn.get_raw_connection()).driver_connection if is_pg else None
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch * 10:
                await write(table, cols, chunk, raw)
                chunk = []
        if chunk:
            await write(table, cols, chunk, raw)

    async def write(table: Any, cols: tuple[str, ...], chunk: list[tuple], raw: Any) -> None:
        if raw is not None:  # COPY on the transaction's own connection: ~10× executemany
            await raw.copy_records_to_table(table.name, columns=list(cols), records=chunk)
        else:
            await conn.execute(table.insert(), [dict(zip(cols, r, strict=True)) for r in chunk])

    await flush(IT, ("board", "board_key", "period", "entrant_id", "grams", "actions"),
                (k + (v[0], v[1]) for k, v in totals.items()))
    await flush(IB, ("subject", "subject_key", "month", "plugin_code", "grams", "actions"),
                (k + (v[0], v[1]) for k, v in breakdown.items()))
    await flush(SD, ("metric", "day", "dim", "value"), (("co2e", d, code, v) for (d, code), v in co2e.items()))
    return n


async def require_user(conn: AsyncConnection, user_id: int) -> None:
    if (await conn.execute(select(U.c.id).where(U.c.id == user_id))).scalar_one_or_none() is None:
        raise NotFound("No such member / 成员不存在", field="userId")
