"""Floor baselines: minimal Starlette endpoints on the bare DRIVER (asyncpg on PostgreSQL, the standard
library's ``sqlite3`` on SQLite) — no SQLAlchemy, no pool of the project's own, no GraphQL.

Each sends the same SQL the GraphQL resolvers send (written out here; the statements the services build
with SQLAlchemy Core), after the same JWT check (``bench.servers._Auth``, PyJWT), and returns the same
JSON ``data`` (the runner checks it equal to the GraphQL subject's before measuring).

* :func:`floor_account_app` — ``MyAccount``: user, member account, one keyset page of 21 entries joined
  to their transactions, in one read transaction.
* :func:`floor_catalogue_app` — ``Catalogue`` (first 20, NEWEST, no filter): the catalogue page (offers
  of ACTIVE merchants, in window, in stock) and the page's merchants, in one read transaction.

* :func:`floor_submit_app` — ``submitAction`` (a recycling drop-off): the statements the mutation sends,
  in the same order. Reads first (no transaction on PostgreSQL): the member's roles and status, the
  identity gate's contact, then the household, the idempotency key and the evidence fingerprint in one
  statement. Then one write
  transaction: idempotency claim, member-row lock, the category's and the member's caps, APPROVED
  ``action`` (``ON CONFLICT`` on its evidence fingerprint), the ACTION_CREDIT transaction
  (``post_transaction`` written out: conditional balance UPDATEs in descending account id, two entries,
  one lot), the webhook outbox's endpoints, the action's ``transaction_id``, and the approval's
  listeners — pending volunteer referral, merchant attribution of the station, the impact aggregates
  (profile city, organisations, totals per board and period, breakdowns, medals crossed), the
  idempotency result and the day's counters (one sorted upsert). Until 2026-12-04 this floor sent only
  the credit (11 statements against the app's 29): the ratio then compared different work. It reuses
  the app's pure row helpers (``impact._total_rows``, ``_breakdown_rows``, ``medals_reached``), not its
  SQL layer; it leaves out what the app does not need to do (re-reading the action it just wrote) and
  the live-update NOTIFY after COMMIT.
* :func:`floor_grant_app` — ``grantPoints``: ``ledger.adjust_points`` (GRANT) written out: claim, the two
  accounts, the GRANT transaction (entries, lot, balances), the audit row, the idempotency result.
* :func:`floor_redeem_app` — ``redeemOffer``: the mutation's roles-and-status read, then
  ``redemptions.service.redeem`` written out (claim, verified contact, offer and merchant rows, member-row
  lock, per-member count, conditional stock UPDATE, expired lots probe, the REDEMPTION transaction with
  lot consumption, the webhook outbox's endpoints, code draw, redemption row, the listeners' segment-rule
  probe and volunteer-commission link, idempotency result, the day's points counter), then the payload's
  reads (redemption, offer, merchant, account). The roles read, endpoints, segment probe, commission
  link and counter were added on 2026-12-04, so that the floor sends what the app sends.

On SQLite the endpoint runs the driver on the event loop thread with one connection (no thread hand-off:
the cheapest way Python can answer; writes ``BEGIN IMMEDIATE``); on PostgreSQL an asyncpg pool of
``database_pool_size`` connections (writes: one READ COMMITTED transaction on one pooled connection, the
row locks the real path takes, retried whole on serialization failures and deadlocks as ``Database.write``
does).
"""

import asyncio
import base64
import contextlib
import functools
import json
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.servers import _Auth, _cursor, _gid, _settings
from jingtan_api.auth.permissions import scopes_for_roles
from jingtan_api.offers import service as offers_service

ENTRY_PAGE = (
    "SELECT ledger_entry.id, ledger_entry.amount, ledger_entry.balance_after, ledger_entry.created_at, "
    "ledger_transaction.kind, ledger_transaction.memo FROM ledger_entry JOIN ledger_transaction "
    "ON ledger_transaction.id = ledger_entry.transaction_id WHERE ledger_entry.account_id = {p1}{after} "
    "ORDER BY ledger_entry.id DESC LIMIT {plimit}"
)
# select(O) / select(M): every column, as the services send them.
OFFER_COLS = ", ".join(f"offer.{c}" for c in (
    "id", "merchant_id", "title_zh", "title_en", "description_zh", "description_en", "terms", "image_url",
    "points_price", "total_stock", "stock", "per_member_limit", "starts_at", "ends_at", "status", "created_at",
    "updated_at"))
CATALOGUE_PAGE = (
    f"SELECT {OFFER_COLS} FROM offer JOIN merchant ON merchant.id = offer.merchant_id "
    "WHERE offer.status = 'ACTIVE' AND offer.starts_at <= {p1} AND offer.ends_at > {p2} AND offer.stock > 0 "
    "AND merchant.status = 'ACTIVE' ORDER BY offer.created_at DESC, offer.id DESC LIMIT {p3}"
)
MERCHANT_COLS = ", ".join(f"merchant.{c}" for c in (
    "id", "name_zh", "name_en", "category", "city", "district", "address", "latitude", "longitude", "commitments",
    "status", "owner_user_id", "account_id", "created_at", "reviewed_at", "reviewed_by_user_id", "review_reason"))


def _ph(pg: bool, n: int) -> str:
    return f"${n}" if pg else "?"


@functools.lru_cache(maxsize=256)
def _qmark(sql: str) -> str:
    """``$1`` → ``?1``: SQLite's numbered parameters, so one SQL text serves both drivers."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


class _Tx:
    """One transaction on the bare driver: ``rows``/``row``/``val``/``execute`` (rowcount)/``many``."""

    def __init__(self, conn: Any, pg: bool) -> None:
        self.conn = conn
        self.pg = pg

    def ts(self, value: datetime) -> Any:
        return value if self.pg else _sqlite_now(value)

    async def rows(self, sql: str, *args: Any) -> list[dict]:
        if self.pg:
            return [dict(r) for r in await self.conn.fetch(sql, *args)]
        return [dict(r) for r in self.conn.execute(_qmark(sql), args).fetchall()]

    async def row(self, sql: str, *args: Any) -> dict | None:
        if self.pg:
            r = await self.conn.fetchrow(sql, *args)
            return dict(r) if r is not None else None
        r = self.conn.execute(_qmark(sql), args).fetchone()
        return dict(r) if r is not None else None

    async def val(self, sql: str, *args: Any) -> Any:
        if self.pg:
            return await self.conn.fetchval(sql, *args)
        r = self.conn.execute(_qmark(sql), args).fetchone()
        return r[0] if r is not None else None

    async def execute(self, sql: str, *args: Any) -> int:
        if self.pg:
            status = await self.conn.execute(sql, *args)
            return int(status.rsplit(" ", 1)[-1])
        return self.conn.execute(_qmark(sql), args).rowcount

    async def many(self, sql: str, args: list[tuple]) -> None:
        if self.pg:
            await self.conn.executemany(sql, args)
        else:
            self.conn.executemany(_qmark(sql), args)


def _dt(value: Any) -> datetime:
    """A timestamp as the app's ``UTCDateTime`` returns it: aware, UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _sqlite_now(now: datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format (UTC, no offset).
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Driver:
    """One read transaction with the bare driver; rows as dicts."""

    def __init__(self, url: str, pool_size: int, busy_timeout_ms: int = 30000) -> None:
        self.pg = url.startswith("postgresql")
        self.url = url
        self.pool_size = pool_size
        self.busy_timeout_ms = busy_timeout_ms
        self.pool: Any = None
        self.conn: sqlite3.Connection | None = None
        self.write_lock = asyncio.Lock()

    async def start(self) -> None:
        if self.pg:
            import asyncpg

            dsn = self.url.replace("postgresql+asyncpg://", "postgresql://")
            self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size)
        else:
            path = self.url.split("///", 1)[1]
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            # The app's connection setup (jingtan_api.db): WAL, foreign keys, synchronous=NORMAL, busy timeout.
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL",
                           f"busy_timeout={int(self.busy_timeout_ms)}"):
                self.conn.execute(f"PRAGMA {pragma}")

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.conn is not None:
            self.conn.close()

    async def read(self, statements: list[tuple[str, tuple]] | Any) -> list[list[dict]]:
        """``statements`` is a callable ``(run) -> awaitable`` so later statements can use earlier rows."""
        if self.pg:
            # No BEGIN/COMMIT: under READ COMMITTED each statement reads its own snapshot either way, and
            # the app's reads send none either (jingtan_api.driver, STATEMENT_READS).
            async with self.pool.acquire() as conn:
                async def run(sql: str, *args: Any) -> list[dict]:
                    return [dict(r) for r in await conn.fetch(sql, *args)]

                return await statements(run)
        assert self.conn is not None
        self.conn.execute("BEGIN")
        try:
            async def run(sql: str, *args: Any) -> list[dict]:
                return [dict(r) for r in self.conn.execute(sql, args).fetchall()]

            return await statements(run)
        finally:
            self.conn.execute("COMMIT")

    async def write(self, fn: Callable[[_Tx], Awaitable[Any]]) -> Any:
        """``fn`` in one write transaction: asyncpg READ COMMITTED on a pooled connection, retried whole on
        serialization failures and deadlocks (as ``Database.write``); SQLite ``BEGIN IMMEDIATE`` on the
        loop thread (writers of this process queue on an asyncio lock, as in ``Database.write``)."""
        if self.pg:
            import asyncpg

            for attempt in range(1, 9):
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        return await fn(_Tx(conn, True))
                except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                    if attempt == 8:
                        raise
                    await asyncio.sleep(min(0.2, 0.005 * 2**attempt))
        assert self.conn is not None
        async with self.write_lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = await fn(_Tx(self.conn, False))
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return result

    async def read_tx(self, fn: Callable[[_Tx], Awaitable[Any]]) -> Any:
        """``fn`` in one read transaction (``_Tx`` interface)."""
        if self.pg:
            async with self.pool.acquire() as conn:  # no BEGIN/COMMIT, as in read()
                return await fn(_Tx(conn, True))
        assert self.conn is not None
        self.conn.execute("BEGIN")
        try:
            return await fn(_Tx(self.conn, False))
        finally:
            self.conn.execute("COMMIT")


def _app(endpoint, driver: _Driver) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def lifespan(_app):
        await driver.start()
        yield
        await driver.stop()

    return Starlette(
        routes=[Route("/graphql", endpoint, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )


def _json(payload: dict) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
                    media_type="application/json")


def floor_account_app() -> Starlette:
    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size)
    pg = driver.pg
    user_sql = f"SELECT id FROM user_account WHERE id IN ({_ph(pg, 1)})"
    account_sql = f"SELECT id, balance FROM account WHERE account.user_id IN ({_ph(pg, 1)}) AND account.kind = 'MEMBER'"
    page_first = ENTRY_PAGE.format(p1=_ph(pg, 1), after="", plimit=_ph(pg, 2))
    page_after = ENTRY_PAGE.format(p1=_ph(pg, 1), after=f" AND ledger_entry.id < {_ph(pg, 2)}", plimit=_ph(pg, 3))

    async def account(request: Request) -> Response:
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        who = auth.viewer(request)
        if who is None:
            return _json({"data": None, "errors": [{"message": "unauthenticated"}]})
        user_id, roles = who
        if "account:read" not in scopes_for_roles(roles):
            return _json({"data": None, "errors": [{"message": "forbidden"}]})
        after = variables.get("after")
        after_key = int(base64.b64decode(after).decode()[2:]) if after else None

        async def statements(run):
            if not await run(user_sql, user_id):
                return None, None
            acc = await run(account_sql, user_id)
            if not acc:
                return {}, None
            if after_key is None:
                rows = await run(page_first, acc[0]["id"], 21)
            else:
                rows = await run(page_after, acc[0]["id"], after_key, 21)
            return acc[0], rows

        acc, rows = await driver.read(statements)
        if acc is None:
            return _json({"data": {"viewer": None}})
        if rows is None:
            return _json({"data": {"viewer": {"account": None}}})
        edges = [
            {
                "cursor": _cursor(r["id"]),
                "node": {"id": _gid("LedgerEntry", r["id"]), "amount": r["amount"], "balanceAfter": r["balance_after"],
                         "kind": r["kind"], "memo": r["memo"], "createdAt": _dt(r["created_at"]).isoformat()},
            }
            for r in rows[:20]
        ]
        page_info = {"hasNextPage": len(rows) > 20, "endCursor": edges[-1]["cursor"] if edges else None}
        return _json({"data": {"viewer": {"account": {"id": _gid("Account", acc["id"]), "balance": acc["balance"],
                                                      "entries": {"edges": edges, "pageInfo": page_info}}}}})

    return _app(account, driver)


def floor_catalogue_app() -> Starlette:
    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size)
    pg = driver.pg
    page_sql = CATALOGUE_PAGE.format(p1=_ph(pg, 1), p2=_ph(pg, 2), p3=_ph(pg, 3))

    def merchants_sql(n: int) -> str:
        marks = ", ".join(_ph(pg, i + 1) for i in range(n))
        return f"SELECT {MERCHANT_COLS} FROM merchant WHERE merchant.id IN ({marks})"

    def cursor(created_at: datetime, pk: int) -> str:
        raw = json.dumps([offers_service.NEWEST, created_at.isoformat(), pk], separators=(",", ":"))
        return base64.b64encode(raw.encode()).decode()

    async def catalogue(request: Request) -> Response:
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        if auth.viewer(request) is None:
            return _json({"data": None, "errors": [{"message": "unauthenticated"}]})
        first = int(variables.get("first", 20))
        now = datetime.now(UTC)
        bound_now: Any = now if pg else _sqlite_now(now)

        async def statements(run):
            rows = await run(page_sql, bound_now, bound_now, first + 1)
            ids = list(dict.fromkeys(r["merchant_id"] for r in rows[:first]))
            merchants = await run(merchants_sql(len(ids)), *ids) if ids else []
            return rows, {m["id"]: m for m in merchants}

        rows, merchants = await driver.read(statements)
        edges = []
        for r in rows[:first]:
            m = merchants[r["merchant_id"]]
            offer = {**r, "starts_at": _dt(r["starts_at"]), "ends_at": _dt(r["ends_at"])}
            created = _dt(r["created_at"])
            edges.append({
                "cursor": cursor(created, r["id"]),
                "node": {
                    "id": _gid("Offer", r["id"]), "titleZh": r["title_zh"], "titleEn": r["title_en"],
                    "imageUrl": r["image_url"], "pointsPrice": r["points_price"], "stock": r["stock"],
                    "endsAt": offer["ends_at"].isoformat(),
                    "available": offers_service.offer_is_available(offer, m, now),
                    "merchant": {"id": _gid("Merchant", m["id"]), "nameZh": m["name_zh"], "nameEn": m["name_en"],
                                 "category": m["category"], "city": m["city"], "district": m["district"]},
                },
            })
        page_info = {"hasNextPage": len(rows) > first, "endCursor": edges[-1]["cursor"] if edges else None}
        return _json({"data": {"offers": {"edges": edges, "pageInfo": page_info}}})

    return _app(catalogue, driver)


# --- writes ------------------------------------------------------------------------------------------

CLAIM = ("INSERT INTO idempotency_record (scope, key, request_hash, result_type, created_at) "
         "VALUES ($1, $2, $3, '', $4) ON CONFLICT (scope, key) DO NOTHING RETURNING id")
CLAIMED = "SELECT request_hash, result_type, result_id FROM idempotency_record WHERE scope = $1 AND key = $2"
COMPLETE = "UPDATE idempotency_record SET result_type = $1, result_id = $2 WHERE id = $3"
MEMBER_ACCOUNT = "SELECT id FROM account WHERE account.user_id = $1 AND account.kind = 'MEMBER'"
INSERT_TX = ("INSERT INTO ledger_transaction (kind, memo, actor_user_id, acting_admin_id, reverses_id, created_at) "
             "VALUES ($1, $2, $3, NULL, NULL, $4) RETURNING id")
MOVE = ("UPDATE account SET balance = balance + $1 WHERE id = $2 AND (allow_negative = TRUE OR balance + $1 >= 0) "
        "RETURNING balance, kind, user_id")
INSERT_ENTRY = ("INSERT INTO ledger_entry (transaction_id, account_id, amount, balance_after, created_at) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id")
INSERT_LOT = ("INSERT INTO points_lot (account_id, entry_id, amount, remaining, expires_at, created_at) "
              "VALUES ($1, $2, $3, $3, $4, $5)")
OPEN_LOTS = ("SELECT id, remaining, expires_at FROM points_lot WHERE account_id = $1 AND remaining > 0 "
             "ORDER BY expires_at, id")
TAKE_LOT = "UPDATE points_lot SET remaining = remaining - $1 WHERE id = $2"
INSERT_CONSUMPTION = "INSERT INTO lot_consumption (entry_id, lot_id, amount, expires_at) VALUES ($1, $2, $3, $4)"


class _Refused(Exception):
    """A request the floor does not serve (the bench never sends one): answered as a GraphQL error."""


# submitAction's reads and the approval listeners' statements (floor_submit_app), as the app sends them.
ROLES_STATUS = "SELECT roles, status FROM user_account WHERE id = $1"
CONTACT = "SELECT phone, email, phone_verified_at, email_verified_at FROM user_account WHERE id = $1"
# The household, the idempotency key and the evidence in one statement, as the app asks them.
PRECHECK = ("SELECT (SELECT household_id FROM household_member WHERE active_user_id = $1) AS household_id, "
            "(SELECT request_hash FROM idempotency_record WHERE scope = $2 AND key = $3) AS seen_hash, "
            "(SELECT result_id FROM idempotency_record WHERE scope = $2 AND key = $3) AS seen_result, "
            "EXISTS (SELECT 1 FROM action WHERE plugin_code = $4 AND evidence_fingerprint = $5) AS evidence_used")
CATEGORY_USED = ("SELECT coalesce(sum(grams_co2e), 0) FROM action WHERE plugin_code = $1 AND status = $2 "
                 "AND occurred_from >= $3 AND occurred_from < $4 AND user_id = $5")
MEMBER_USED = ("SELECT coalesce(sum(CASE WHEN coalesce(reviewed_at, created_at) >= $1 AND coalesce(reviewed_at, created_at) < $2 "
               "THEN points ELSE 0 END), 0) AS daily, coalesce(sum(points), 0) AS monthly FROM action "
               "WHERE user_id = $3 AND status = $4 AND coalesce(reviewed_at, created_at) >= $5 "
               "AND coalesce(reviewed_at, created_at) < $6")
WEBHOOK_ENDPOINTS = "SELECT id, event_types, merchant_id FROM webhook_endpoint WHERE active = TRUE ORDER BY id"
PENDING_REFERRAL = "SELECT id, volunteer_id FROM volunteer_referral WHERE referred_user_id = $1 AND status = $2 LIMIT 1"
ATTRIBUTED = "SELECT merchant_id, station_id FROM merchant_action WHERE action_id = $1"
ACTIVE_STATION = ("SELECT merchant_station.id, merchant_station.merchant_id FROM merchant_station JOIN merchant "
                  "ON merchant.id = merchant_station.merchant_id WHERE merchant_station.code = $1 AND merchant.status = $2")
PROFILE_CITY = "SELECT city FROM impact_profile WHERE user_id = $1"
ORGANISATIONS_AT = ("SELECT organisation_id FROM organisation_member WHERE user_id = $1 AND joined_at <= $2 "
                    "AND (left_at IS NULL OR left_at > $2) ORDER BY organisation_id")
SEGMENT_RULED = "SELECT id FROM offer_segment_rule WHERE offer_id = $1 LIMIT 1"
COMMISSION_LINK = ("SELECT redemption.created_at, volunteer_merchant.volunteer_id, volunteer_merchant.share_basis_points, "
                   "volunteer.earnings_account_id FROM redemption JOIN volunteer_merchant ON "
                   "volunteer_merchant.merchant_id = $1 AND volunteer_merchant.starts_at <= redemption.created_at AND "
                   "volunteer_merchant.ends_at > redemption.created_at JOIN volunteer ON volunteer.id = "
                   "volunteer_merchant.volunteer_id WHERE redemption.id = $2 ORDER BY volunteer_merchant.id LIMIT 1")
AWARD_MEDAL = ("INSERT INTO medal_award (user_id, code, awarded_at) VALUES ($1, $2, $3) "
               "ON CONFLICT (user_id, code) DO NOTHING")


def _local_day(moment: datetime, tz: ZoneInfo) -> Any:
    return moment.astimezone(tz).date()


def _local_bounds(moment: datetime, tz: ZoneInfo, *, monthly: bool) -> tuple[datetime, datetime]:
    local = moment.astimezone(tz)
    if monthly:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start, (start + timedelta(days=32)).replace(day=1)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


async def _upsert(tx: _Tx, table: str, rows: list[dict], keys: tuple[str, ...], adds: tuple[str, ...],
                  returning: str = "") -> list[dict]:
    """``INSERT … VALUES (row), … ON CONFLICT (keys) DO UPDATE SET add = table.add + excluded.add``: one
    statement for all rows (sorted by the caller), as the impact aggregates are written."""
    if not rows:
        return []
    cols = (*keys, *adds)
    values = ", ".join("(" + ", ".join(f"${i * len(cols) + j + 1}" for j in range(len(cols))) + ")" for i in range(len(rows)))
    sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
           + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in adds) + (f" RETURNING {returning}" if returning else ""))
    args = [row[c] for row in rows for c in cols]
    if returning:
        return await tx.rows(sql, *args)
    await tx.execute(sql, *args)
    return []


async def _claim(tx: _Tx, scope: str, key: str, req_hash: str, now: datetime) -> tuple[int | None, int | None]:
    """``idempotency.claim``: (record id, None) when new, (None, result id) for a replay."""
    record_id = await tx.val(CLAIM, scope, key, req_hash, tx.ts(now))
    if record_id is not None:
        return record_id, None
    row = await tx.row(CLAIMED, scope, key)
    assert row is not None
    if row["request_hash"] != req_hash:
        raise _Refused("IDEMPOTENCY_CONFLICT")
    return None, row["result_id"]


async def _post(tx: _Tx, *, kind: str, postings: list[tuple[int, int]], now: datetime, memo: str,
                actor_user_id: int | None, lot_expiry_days: int) -> tuple[int, dict[int, int]]:
    """``ledger.post_transaction`` written out: the transaction row, then per posting in descending account
    id (the ledger's lock order) the conditional balance UPDATE, the entry, and for a member account a lot
    (credit) or the consumption of its soonest-expiring lots (debit). Returns (id, balance after by account)."""
    tx_id = await tx.val(INSERT_TX, kind, memo, actor_user_id, tx.ts(now))
    after: dict[int, int] = {}
    for account_id, amount in sorted(postings, key=lambda p: -p[0]):
        moved = await tx.row(MOVE, amount, account_id)
        if moved is None:
            raise _Refused("INSUFFICIENT_POINTS")
        entry_id = await tx.val(INSERT_ENTRY, tx_id, account_id, amount, moved["balance"], tx.ts(now))
        if moved["kind"] == "MEMBER":
            if amount > 0:
                await tx.execute(INSERT_LOT, account_id, entry_id, amount,
                                 tx.ts(now + timedelta(days=lot_expiry_days)), tx.ts(now))
            else:
                left, consumed = -amount, []
                for lot in await tx.rows(OPEN_LOTS, account_id):
                    if left == 0:
                        break
                    take = min(left, lot["remaining"])
                    await tx.execute(TAKE_LOT, take, lot["id"])
                    consumed.append((entry_id, lot["id"], take, lot["expires_at"]))
                    left -= take
                if left:
                    raise RuntimeError(f"account {account_id}: lots hold less than {-amount} points")
                await tx.many(INSERT_CONSUMPTION, consumed)
        after[account_id] = moved["balance"]
    return tx_id, after


def floor_submit_app() -> Starlette:
    """``submitAction`` (recycling drop-off) on the bare driver; see the module docstring. The same JWT
    check, factor and formula as ``baseline_submit_app``; the rows and values of the real path
    (``actions.service.submit``: the bilingual credit memo, the methodology version id)."""
    from jingtan_api.accounts import idempotency
    from jingtan_api.plugins.api import grams_from
    from jingtan_recycling import FACTOR_OF, FACTORS, RecyclingActionType, RecyclingInput

    from jingtan_api.impact import service as impact

    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size, settings.sqlite_busy_timeout_ms)
    pg = driver.pg
    cfg = settings.points
    tz = ZoneInfo(settings.actions.timezone)
    factors = {f.id: f for f in FACTORS}
    version = RecyclingActionType.version
    lock = " FOR UPDATE" if pg else ""
    member_sql = MEMBER_ACCOUNT + lock
    action_cols = ("user_id", "plugin_code", "plugin_version", "input", "evidence", "evidence_fingerprint",
                   "evidence_fingerprint_seen", "subject", "occurred_from", "occurred_to", "status", "reasons",
                   "grams_co2e", "points", "factor_ids", "factors", "formula", "cap_group", "cap_group_daily_grams",
                   "methodology_version_id", "household_id", "created_at")
    insert_action = (f"INSERT INTO action ({', '.join(action_cols)}) VALUES "
                     f"({', '.join(f'${i + 1}' for i in range(len(action_cols)))}) "
                     "ON CONFLICT (plugin_code, evidence_fingerprint) DO NOTHING RETURNING id")
    set_tx = "UPDATE action SET transaction_id = $1 WHERE id = $2"
    issuance_sql = "SELECT id FROM account WHERE code = 'platform:issuance'"
    version_sql = "SELECT id FROM methodology_version WHERE plugin_code = 'recycling' ORDER BY version_no DESC LIMIT 1"
    evidence = json.dumps({"attachments": [], "external_id": None, "signature": None, "signed_at": None, "source": None},
                          sort_keys=True, separators=(",", ":"))
    cache: dict[str, Any] = {}
    dumped_at: dict[str, str] = {}

    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))

    def stored_dropped_at(raw: dict) -> str:
        # The input column holds the validated model dumped as JSON (pydantic's form of the timestamp).
        if raw["droppedAt"] not in dumped_at:
            model = RecyclingInput(material=raw["material"], weight_grams=raw["weightGrams"], station_id=raw["stationId"],
                                   receipt_id=raw["receiptId"], dropped_at=raw["droppedAt"])
            dumped_at[raw["droppedAt"]] = model.model_dump(mode="json")["dropped_at"]
        return dumped_at[raw["droppedAt"]]

    async def submit(request: Request) -> Response:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None or "actions:write" not in scopes_for_roles(who[1]):
            return _json({"data": None, "errors": [{"message": "forbidden"}]})
        user_id = who[0]
        raw = data_in["action"]["recycling"]
        key = idempotency.validate_key(data_in["idempotencyKey"])
        factor = factors[FACTOR_OF[raw["material"]]]
        weight = int(raw["weightGrams"])
        dropped_at = datetime.fromisoformat(raw["droppedAt"])
        grams = grams_from(weight, factor)
        points = grams // cfg.grams_per_point
        formula = f"{weight / 1000:g} kg × {factor.value} kg CO2e/kg ({factor.id}) = {grams} g"
        fingerprint = f"{raw['stationId']}:{raw['receiptId']}"
        stored_input = {"material": raw["material"], "weight_grams": weight, "station_id": raw["stationId"],
                        "receipt_id": raw["receiptId"], "dropped_at": stored_dropped_at(raw)}
        req_hash = idempotency.request_hash({"code": "recycling", "input": stored_input, "evidence": None})
        now = datetime.now(UTC)

        # The reads before the write, as the mutation sends them (no transaction on PostgreSQL): the
        # member's roles and status, the identity gate's contact, the household, the idempotency key and
        # the evidence fingerprint.
        async def prechecks(tx: _Tx) -> dict:
            found = await tx.row(ROLES_STATUS, user_id)
            if found is None or found["status"] != "ACTIVE":
                raise _Refused("ACCOUNT_NOT_ACTIVE")
            contact = await tx.row(CONTACT, user_id)
            if settings.identity.require_verified_contact and not (
                    (contact["phone"] and contact["phone_verified_at"]) or (contact["email"] and contact["email_verified_at"])):
                raise _Refused("CONTACT_NOT_VERIFIED")
            found = await tx.row(PRECHECK, user_id, f"submitAction:{user_id}", key, "recycling", fingerprint)
            seen = {"result_id": found["seen_result"]} if found["seen_hash"] is not None else None
            return {"household_id": found["household_id"], "seen": seen, "evidence_used": bool(found["evidence_used"])}

        async def work(tx: _Tx) -> tuple[int, bool]:
            record_id, replay_of = await _claim(tx, f"submitAction:{user_id}", key, req_hash, now)
            if record_id is None:
                return int(replay_of), True
            account_id = await tx.val(member_sql, user_id)
            if "issuance" not in cache:
                cache["issuance"] = await tx.val(issuance_sql)
            if cache.get("version") is None:
                cache["version"] = await tx.val(version_sql)
            # The caps: the category's daily grams (recycling: 20 kg) and the member's daily/monthly points.
            day0, day1 = _local_bounds(dropped_at, tz, monthly=False)
            cat_used = await tx.val(CATEGORY_USED, "recycling", "APPROVED", tx.ts(day0), tx.ts(day1), user_id)
            now0, now1 = _local_bounds(now, tz, monthly=False)
            month0, month1 = _local_bounds(now, tz, monthly=True)
            member_used = await tx.row(MEMBER_USED, tx.ts(now0), tx.ts(now1), user_id, "APPROVED", tx.ts(month0), tx.ts(month1))
            room = min(RecyclingActionType.default_caps.daily_grams - int(cat_used),
                       (settings.actions.member_daily_cap_points - int(member_used["daily"])) * cfg.grams_per_point,
                       (settings.actions.member_monthly_cap_points - int(member_used["monthly"])) * cfg.grams_per_point)
            if grams > room:
                raise _Refused("CAPPED")
            action_id = await tx.val(
                insert_action, user_id, "recycling", version, dumps(stored_input), evidence, fingerprint, fingerprint,
                raw["stationId"], tx.ts(dropped_at), tx.ts(dropped_at), "APPROVED", "[]", grams, points,
                dumps([factor.id]), dumps([factor.as_dict()]), formula, None, None, cache["version"],
                pre["household_id"], tx.ts(now),
            )
            if action_id is None:
                raise _Refused("DUPLICATE_EVIDENCE")
            gid = _gid("Action", action_id)
            memo = f"{RecyclingActionType.name_en} action {gid} / {RecyclingActionType.name_zh}行为 {gid}"[:200]
            tx_id, _ = await _post(tx, kind="ACTION_CREDIT", postings=[(cache["issuance"], -points), (account_id, points)],
                                   now=now, memo=memo, actor_user_id=None, lot_expiry_days=cfg.lot_expiry_days)
            await tx.rows(WEBHOOK_ENDPOINTS)  # the outbox's endpoints (none subscribed in the bench)
            await tx.execute(set_tx, tx_id, action_id)
            # The approval's listeners: a pending volunteer referral, the merchant attribution of the drop-off
            # station, the impact aggregates (profile city, organisations; totals per board and period,
            # breakdowns, medals crossed), then the idempotency result and the day's counters.
            await tx.row(PENDING_REFERRAL, user_id, "PENDING")
            await tx.rows(ATTRIBUTED, action_id)
            await tx.row(ACTIVE_STATION, raw["stationId"], "ACTIVE")
            city = await tx.val(PROFILE_CITY, user_id)
            orgs = tuple(r["organisation_id"] for r in await tx.rows(ORGANISATIONS_AT, user_id, tx.ts(now)))
            day = impact.local_day(dropped_at, tz)
            att = impact.Attribution(action_id, user_id, "recycling", grams, dropped_at, day, pre["household_id"],
                                     orgs, city or "")
            totals = await _upsert(tx, "impact_total", impact._total_rows(att), ("board", "board_key", "period", "entrant_id"),
                                   ("grams", "actions"), "board, board_key, period, grams, actions")
            mine = next(r for r in totals if (r["board"], r["board_key"], r["period"]) == (impact.MEMBER, "", impact.ALL))
            before = set(impact.medals_reached(int(mine["grams"]) - grams, int(mine["actions"]) - 1))
            new = [c for c in impact.medals_reached(int(mine["grams"]), int(mine["actions"])) if c not in before]
            await _upsert(tx, "impact_breakdown", impact._breakdown_rows(att), ("subject", "subject_key", "month", "plugin_code"),
                          ("grams", "actions"))
            for code in new:
                await tx.execute(AWARD_MEDAL, user_id, code, tx.ts(now))
            await tx.execute(COMPLETE, "Action", action_id, record_id)
            today = impact.local_day(now, tz)
            stats = sorted([("actions", today, "APPROVED:recycling", 1), ("co2e", day, "recycling", grams),
                            ("points", today, "ACTION_CREDIT", points)])
            await _upsert(tx, "stats_daily", [dict(metric=m, day=d if tx.pg else d.isoformat(), dim=k, value=v)
                                              for m, d, k, v in stats], ("metric", "day", "dim"), ("value",))
            return action_id, False

        try:
            pre = await driver.read_tx(prechecks)
            if pre["seen"] is not None and pre["seen"]["result_id"] is not None:
                action_id, replayed = int(pre["seen"]["result_id"]), True
            elif pre["evidence_used"]:
                raise _Refused("DUPLICATE_EVIDENCE")
            else:
                action_id, replayed = await driver.write(work)
        except _Refused as exc:
            return _json({"data": None, "errors": [{"message": str(exc)}]})
        factor_out = {"id": factor.id, "value": str(factor.value), "unit": factor.unit, "source": factor.source}
        return _json({"data": {"submitAction": {
            "replayed": replayed,
            "action": {"id": _gid("Action", action_id), "status": "APPROVED", "reasons": [],
                       "calculation": {"formula": formula, "gramsCo2e": grams, "points": points, "factors": [factor_out]}},
            "userErrors": [],
        }}})

    return _app(submit, driver)


def floor_grant_app() -> Starlette:
    """``grantPoints`` on the bare driver: ``ledger.adjust_points`` (GRANT) written out in one write
    transaction — idempotency claim, the member's and the issuance account's ids, the GRANT transaction
    (issuance → member: two conditional balance UPDATEs, two entries, one lot), the ``points.grant`` audit
    row, the idempotency result — after the same JWT and role check as ``baseline_grant_app``, and the same
    payload JSON."""
    from jingtan_api.accounts import idempotency
    from jingtan_api.accounts import service as ledger
    from jingtan_api.audit import service as audit
    from jingtan_api.auth.permissions import ADMIN

    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size, settings.sqlite_busy_timeout_ms)
    cfg = settings.points
    issuance_sql = "SELECT id FROM account WHERE account.code = 'platform:issuance'"
    audit_sql = ("INSERT INTO audit_log (actor_user_id, acting_admin_id, action, target_type, target_id, reason, "
                 "details, request_id, created_at) VALUES ($1, NULL, 'points.grant', 'User', $2, $3, $4, $5, $6) "
                 "RETURNING id")

    async def grant(request: Request) -> Response:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None or ADMIN not in who[1] or "points:write" not in scopes_for_roles(who[1]):
            return _json({"data": None, "errors": [{"message": "forbidden"}]})
        actor = who[0]
        kind, _, pk = base64.b64decode(data_in["userId"]).decode().partition(":")
        if kind != "User" or not pk.isdigit():
            return _json({"data": None, "errors": [{"message": "bad user id"}]})
        user_id = int(pk)
        amount = ledger.validate_amount(data_in["amount"], max_amount=cfg.max_single_amount)
        reason = audit.validate_reason(data_in["reason"])
        key = idempotency.validate_key(data_in["idempotencyKey"])
        req_hash = idempotency.request_hash({"op": "GRANT", "userId": user_id, "amount": amount, "reason": reason})
        now = datetime.now(UTC)
        request_id = uuid.uuid4().hex

        async def work(tx: _Tx) -> tuple[int, bool]:
            record_id, replay_of = await _claim(tx, f"admin:{actor}:points", key, req_hash, now)
            if record_id is None:
                return int(replay_of), True
            member_id = await tx.val(MEMBER_ACCOUNT, user_id)
            if member_id is None:
                raise _Refused("NOT_FOUND")
            issuance_id = await tx.val(issuance_sql)
            tx_id, _ = await _post(tx, kind="GRANT", postings=[(issuance_id, -amount), (member_id, amount)], now=now,
                                   memo=reason, actor_user_id=actor, lot_expiry_days=cfg.lot_expiry_days)
            details = json.dumps({"amount": amount, "transactionId": tx_id, "idempotencyKey": key},
                                 ensure_ascii=False, sort_keys=True, default=str)
            await tx.val(audit_sql, actor, user_id, reason, details, request_id, tx.ts(now))
            await tx.execute(COMPLETE, "LedgerTransaction", tx_id, record_id)
            return tx_id, False

        try:
            tx_id, replayed = await driver.write(work)
        except _Refused as exc:
            return _json({"data": None, "errors": [{"message": str(exc)}]})
        return _json({"data": {"grantPoints": {"transaction": {"id": _gid("LedgerTransaction", tx_id)},
                                               "replayed": replayed, "userErrors": []}}})

    return _app(grant, driver)


REDEMPTION_COLS = ("id", "offer_id", "merchant_id", "member_user_id", "quantity", "points", "code", "status",
                   "created_at", "expires_at", "confirmed_at", "confirmed_by_user_id", "closed_at", "transaction_id",
                   "refund_transaction_id")


def floor_redeem_app() -> Starlette:
    """``redeemOffer`` on the bare driver: ``redemptions.service.redeem`` written out (see the module
    docstring), then the payload's reads — the redemption, its offer and merchant, the member's account — in
    one read transaction, and the JSON of ``RedeemOffer.graphql``."""
    from jingtan_api.accounts import idempotency
    from jingtan_api.redemptions import service as redemptions

    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size, settings.sqlite_busy_timeout_ms)
    pg = driver.pg
    lot_days = settings.points.lot_expiry_days
    valid_days = settings.offers.redemption_valid_days
    max_quantity = settings.offers.max_quantity
    verified_gate = settings.identity.require_verified_contact
    tz = ZoneInfo(settings.actions.timezone)
    lock = " FOR UPDATE" if pg else ""
    offer_sql = f"SELECT {OFFER_COLS} FROM offer WHERE offer.id = $1"
    merchant_sql = f"SELECT {MERCHANT_COLS} FROM merchant WHERE merchant.id = $1"
    contact_sql = "SELECT phone, email, phone_verified_at, email_verified_at FROM user_account WHERE id = $1"
    member_sql = MEMBER_ACCOUNT + lock
    already_sql = ("SELECT coalesce(sum(quantity), 0) FROM redemption WHERE offer_id = $1 AND member_user_id = $2 "
                   "AND status IN ('PENDING', 'CONFIRMED')")
    take_sql = "UPDATE offer SET stock = stock - $1 WHERE id = $2 AND stock >= $1 AND status = 'ACTIVE'"
    expired_sql = "SELECT id FROM points_lot WHERE account_id = $1 AND remaining > 0 AND expires_at <= $2 LIMIT 1"
    clash_sql = "SELECT id FROM redemption WHERE code = $1"
    insert_sql = ("INSERT INTO redemption (offer_id, merchant_id, member_user_id, quantity, points, code, status, "
                  "created_at, expires_at, transaction_id) VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8, $9) "
                  "RETURNING id")
    redemption_sql = f"SELECT {', '.join(REDEMPTION_COLS)} FROM redemption WHERE redemption.id = $1"
    account_sql = "SELECT id, balance FROM account WHERE account.user_id = $1 AND account.kind = 'MEMBER'"

    async def redeem(request: Request) -> Response:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None:
            return _json({"data": None, "errors": [{"message": "unauthenticated"}]})
        user_id = who[0]
        kind, _, pk = base64.b64decode(data_in["offerId"]).decode().partition(":")
        if kind != "Offer" or not pk.isdigit():
            return _json({"data": None, "errors": [{"message": "bad offer id"}]})
        offer_id = int(pk)
        quantity = redemptions.validate_quantity(data_in.get("quantity", 1), max_quantity=max_quantity)
        key = idempotency.validate_key(data_in["idempotencyKey"])
        req_hash = idempotency.request_hash({"offerId": offer_id, "quantity": quantity})
        now = datetime.now(UTC)
        today = _local_day(now, tz)

        async def work(tx: _Tx) -> tuple[int, bool]:
            if verified_gate:
                c = await tx.row(contact_sql, user_id)
                if c is None or not ((c["phone"] is not None and c["phone_verified_at"] is not None)
                                     or (c["email"] is not None and c["email_verified_at"] is not None)):
                    raise _Refused("CONTACT_NOT_VERIFIED")
            record_id, replay_of = await _claim(tx, f"redeem:{user_id}", key, req_hash, now)
            if record_id is None:
                return int(replay_of), True
            offer = await tx.row(offer_sql, offer_id)
            if offer is None:
                raise _Refused("NOT_FOUND")
            merchant = await tx.row(merchant_sql, offer["merchant_id"])
            if (merchant is None or merchant["status"] != "ACTIVE" or merchant["account_id"] is None
                    or offer["status"] != "ACTIVE" or not _dt(offer["starts_at"]) <= now < _dt(offer["ends_at"])
                    or offer["stock"] <= 0 or quantity > offer["per_member_limit"]):
                raise _Refused("OFFER_UNAVAILABLE")
            member_account = await tx.val(member_sql, user_id)
            if int(await tx.val(already_sql, offer_id, user_id)) + quantity > offer["per_member_limit"]:
                raise _Refused("REDEMPTION_LIMIT_REACHED")
            if await tx.execute(take_sql, quantity, offer_id) != 1:
                raise _Refused("OUT_OF_STOCK")
            points = quantity * offer["points_price"]
            if await tx.val(expired_sql, member_account, tx.ts(now)) is not None:
                raise _Refused("expired lots: not written out in the floor")  # never in the bench (fresh lots)
            memo = f"{offer['title_zh']} {offer['title_en']}".strip()[:200] + f" ×{quantity}"
            tx_id, _ = await _post(tx, kind="REDEMPTION", postings=[(member_account, -points),
                                                                    (merchant["account_id"], points)],
                                   now=now, memo=memo, actor_user_id=user_id, lot_expiry_days=lot_days)
            await tx.rows(WEBHOOK_ENDPOINTS)  # the outbox's endpoints (none subscribed in the bench)
            for _ in range(5):
                code = redemptions.new_code()
                if await tx.val(clash_sql, code) is None:
                    break
            else:  # pragma: no cover - 31^10 codes
                raise RuntimeError("could not draw a free redemption code")
            redemption_id = await tx.val(insert_sql, offer_id, offer["merchant_id"], user_id, quantity, points, code,
                                         tx.ts(now), tx.ts(now + timedelta(days=valid_days)), tx_id)
            # The redemption's listeners: the offer's segment rules (none: open to everyone), the
            # volunteer commission's link (none in the bench); then the idempotency result and the day's
            # points counter.
            if await tx.val(SEGMENT_RULED, offer_id) is not None:
                raise _Refused("segment rules: not written out in the floor")  # never in the bench
            await tx.row(COMMISSION_LINK, offer["merchant_id"], redemption_id)
            await tx.execute(COMPLETE, "Redemption", redemption_id, record_id)
            await _upsert(tx, "stats_daily", [dict(metric="points", day=today if tx.pg else today.isoformat(),
                                                   dim="REDEMPTION", value=points)], ("metric", "day", "dim"), ("value",))
            return redemption_id, False

        async def payload(tx: _Tx, redemption_id: int) -> tuple[dict, dict, dict, dict]:
            r = await tx.row(redemption_sql, redemption_id)
            assert r is not None
            o = await tx.row(offer_sql, r["offer_id"])
            m = await tx.row(merchant_sql, r["merchant_id"])
            a = await tx.row(account_sql, user_id)
            return r, o, m, a  # type: ignore[return-value]

        try:
            # The mutation's check of the member's roles and status (a read of its own, before the write).
            found = await driver.read_tx(lambda tx: tx.row(ROLES_STATUS, user_id))
            if found is None or found["status"] != "ACTIVE":
                raise _Refused("ACCOUNT_NOT_ACTIVE")
            redemption_id, replayed = await driver.write(work)
        except _Refused as exc:
            return _json({"data": None, "errors": [{"message": str(exc)}]})
        r, o, m, a = await driver.read_tx(lambda tx: payload(tx, redemption_id))
        return _json({"data": {"redeemOffer": {
            "redemption": {
                "id": _gid("Redemption", r["id"]), "code": r["code"], "status": r["status"], "quantity": r["quantity"],
                "points": r["points"], "expiresAt": _dt(r["expires_at"]).isoformat(),
                "offer": {"id": _gid("Offer", o["id"]), "titleZh": o["title_zh"]},
                "merchant": {"id": _gid("Merchant", m["id"]), "nameZh": m["name_zh"], "address": m["address"]},
            },
            "account": {"balance": a["balance"]},
            "replayed": replayed,
            "userErrors": [],
        }}})

    return _app(redeem, driver)


# --- impact and leaderboards (bench/impact.py) --------------------------------------------------------

ANONYMOUS = "Anonymous member / 匿名成员"  # jingtan_api.impact.schema.ANONYMOUS


def floor_impact_app() -> Starlette:
    """The queries of ``bench/impact.py`` on the bare driver, in one read transaction each, after the same
    JWT check, as the same ``data`` JSON:

    * ``leaderboard(board, period, city?, first: 20) { entries { edges { node { rank grams actions name
      anonymous } } } }`` — ``impact.service.leaderboard_page`` (the keyset page of 21 ``impact_total`` rows,
      the rank count over rows with at least the page's top grams, ranks computed as the service does),
      then the names: ``names_for_board`` (users joined to their impact profiles: opted-out members are
      ranked but not named) or, for the ORGANISATIONS board, ``organisations_by_ids``;
    * ``viewer { impact { totalGrams actions byActionType { actionType grams } byMonth { month grams } } }``
      — the viewer's user row, then ``impact_of`` (the member's ``impact_breakdown`` rows, summed here).
    """
    from zoneinfo import ZoneInfo

    from jingtan_api.impact import service as impact

    settings = _settings()
    auth = _Auth(settings)
    driver = _Driver(settings.database_url, settings.database_pool_size, settings.sqlite_busy_timeout_ms)
    tz = ZoneInfo(settings.actions.timezone)
    board_sql = "impact_total.board = $1 AND impact_total.board_key = $2 AND impact_total.period = $3"
    page_sql = (f"SELECT impact_total.id, impact_total.entrant_id, impact_total.grams, impact_total.actions "
                f"FROM impact_total WHERE {board_sql} ORDER BY impact_total.grams DESC, impact_total.id DESC LIMIT $4")
    rank_sql = (f"SELECT coalesce(sum(CASE WHEN (impact_total.grams > $4) THEN 1 ELSE 0 END), 0), count(*) "
                f"FROM impact_total WHERE {board_sql} AND impact_total.grams >= $4")
    user_sql = "SELECT id, status FROM user_account WHERE id IN ($1)"
    breakdown_sql = ("SELECT month, plugin_code, grams, actions FROM impact_breakdown "
                     "WHERE subject = 'MEMBER' AND subject_key = $1")

    def marks(n: int) -> str:
        return ", ".join(f"${i + 1}" for i in range(n))

    async def leaderboard(variables: dict, viewer_id: int) -> dict:
        # The GraphQL enum's stored values (impact.types.LeaderboardBoard): PLATFORM is the MEMBER board.
        board, period = {"PLATFORM": "MEMBER"}.get(variables["board"], variables["board"]), variables["period"]
        first = int(variables.get("first") or 20)
        is_orgs = board == "ORGANISATIONS"
        key = impact.validate_city(variables.get("city")) if board == "CITY" else ""
        stored = impact.period_key(period, impact.local_day(datetime.now(UTC), tz))

        async def statements(tx: _Tx) -> tuple[list[dict], dict[int, tuple[str, bool]]]:
            rows = await tx.rows(page_sql, board, key, stored, first + 1)
            rows = rows[:first]
            if rows:
                top = rows[0]["grams"]
                above, at_or_above = (int(v) for v in (await tx.rows(rank_sql, board, key, stored, top))[0].values())
                for row in rows:
                    g = row["grams"]
                    between = 0 if g == top else sum(1 for r in rows if g < r["grams"] < top)
                    row["rank"] = above + 1 if g == top else at_or_above + between + 1
            ids = [r["entrant_id"] for r in rows]
            if not ids:
                return rows, {}
            if is_orgs:
                orgs = await tx.rows(f"SELECT id, name_zh, name_en FROM organisation WHERE organisation.id IN "
                                     f"({marks(len(ids))})", *ids)
                return rows, {o["id"]: (o["name_zh"] + (f" / {o['name_en']}" if o["name_en"] else ""), False)
                              for o in orgs}
            named = await tx.rows(
                "SELECT user_account.id, user_account.display_name, impact_profile.leaderboard_opt_out FROM user_account "
                "LEFT OUTER JOIN impact_profile ON impact_profile.user_id = user_account.id "
                f"WHERE user_account.id IN ({marks(len(ids))})", *ids)
            return rows, {n["id"]: (n["display_name"], bool(n["leaderboard_opt_out"])) for n in named}

        rows, names = await driver.read_tx(statements)
        edges = []
        for row in rows:
            name, anonymous = names.get(row["entrant_id"], ("", False))
            shown = not anonymous or (row["entrant_id"] == viewer_id and not is_orgs)
            edges.append({"node": {"rank": row["rank"], "grams": int(row["grams"]), "actions": int(row["actions"]),
                                   "name": name if shown else ANONYMOUS, "anonymous": anonymous}})
        return {"leaderboard": {"entries": {"edges": edges}}}

    async def my_impact(viewer_id: int) -> dict:
        async def statements(tx: _Tx) -> list[dict] | None:
            user = await tx.row(user_sql, viewer_id)
            if user is None or user["status"] != "ACTIVE":
                return None
            return await tx.rows(breakdown_sql, str(viewer_id))

        rows = await driver.read_tx(statements)
        if rows is None:
            return {"viewer": None}
        total = actions = 0
        by_type: dict[str, int] = {}
        by_month: dict[str, int] = {}
        for r in rows:
            total += int(r["grams"])
            actions += int(r["actions"])
            by_type[r["plugin_code"]] = by_type.get(r["plugin_code"], 0) + int(r["grams"])
            by_month[r["month"]] = by_month.get(r["month"], 0) + int(r["grams"])
        return {"viewer": {"impact": {
            "totalGrams": total, "actions": actions,
            "byActionType": [{"actionType": k, "grams": g} for k, g in sorted(by_type.items())],
            "byMonth": [{"month": k, "grams": g} for k, g in sorted(by_month.items())],
        }}}

    async def endpoint(request: Request) -> Response:
        body = json.loads(await request.body())
        who = auth.viewer(request)
        if who is None:
            return _json({"data": None, "errors": [{"message": "unauthenticated"}]})
        if "leaderboard(" in body["query"]:
            return _json({"data": await leaderboard(body.get("variables") or {}, who[0])})
        return _json({"data": await my_impact(who[0])})

    return _app(endpoint, driver)
