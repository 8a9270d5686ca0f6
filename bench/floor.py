"""Floor baselines: minimal Starlette endpoints on the bare DRIVER (asyncpg on PostgreSQL, the standard
library's ``sqlite3`` on SQLite) — no SQLAlchemy, no pool of the project's own, no GraphQL.

Each sends the same SQL the GraphQL resolvers send (written out here; the statements the services build
with SQLAlchemy Core), after the same JWT check (``bench.servers._Auth``, PyJWT), and returns the same
JSON ``data`` (the runner checks it equal to the GraphQL subject's before measuring).

* :func:`floor_account_app` — ``MyAccount``: user, member account, one keyset page of 21 entries joined
  to their transactions, in one read transaction.
* :func:`floor_catalogue_app` — ``Catalogue`` (first 20, NEWEST, no filter): the catalogue page (offers
  of ACTIVE merchants, in window, in stock) and the page's merchants, in one read transaction.

On SQLite the endpoint runs the driver on the event loop thread with one connection (no thread hand-off:
the cheapest way Python can answer); on PostgreSQL an asyncpg pool of ``database_pool_size`` connections.
Writes (submit, grant, redeem) have no floor yet — see bench/RESULTS.md.
"""

import base64
import contextlib
import json
import sqlite3
from datetime import UTC, datetime
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

    def __init__(self, url: str, pool_size: int) -> None:
        self.pg = url.startswith("postgresql")
        self.url = url
        self.pool_size = pool_size
        self.pool: Any = None
        self.conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        if self.pg:
            import asyncpg

            dsn = self.url.replace("postgresql+asyncpg://", "postgresql://")
            self.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=self.pool_size)
        else:
            path = self.url.split("///", 1)[1]
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.conn is not None:
            self.conn.close()

    async def read(self, statements: list[tuple[str, tuple]] | Any) -> list[list[dict]]:
        """``statements`` is a callable ``(run) -> awaitable`` so later statements can use earlier rows."""
        if self.pg:
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
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
