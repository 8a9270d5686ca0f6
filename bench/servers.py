"""ASGI apps the benchmark serves with uvicorn (``--factory``), configured from the environment.

* :func:`subject_app` — the real Jingtan app (``create_app()``, settings from ``JINGTAN_*``).
* :func:`baseline_account_app` — a minimal Starlette endpoint answering the ``MyAccount`` query: same
  JWT check (PyJWT, same key/issuer/audience/claims), the same three SELECT statements through the same
  SQLAlchemy async engine setup (``jingtan_api.db.Database``, same URL), in ONE read transaction, and the
  same JSON body (``data`` identical to the GraphQL answer; checked by the runner before measuring).
* :func:`baseline_grant_app` — a minimal Starlette endpoint doing the ``grantPoints`` credit directly:
  JWT check, ``ledger.adjust_points`` inside ``db.write`` (same SQL as the mutation's write), and the
  same ``data`` JSON as the bench's mutation selection.
"""

import base64
import contextlib
import json
import time
import uuid

import jwt
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jingtan_api.accounts import service as ledger
from jingtan_api.auth.permissions import ADMIN, scopes_for_roles
from jingtan_api.users.models import User

U = User.__table__


def subject_app() -> Starlette:
    from jingtan_api.app import create_app

    return create_app()


def _settings():
    from jingtan_api.settings import load_settings

    return load_settings()


def _db(settings):
    from jingtan_api.db import Database

    return Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )


class _Auth:
    """The same JWT validation as ``AccessTokens.decode`` (claims, issuer, audience, expiry)."""

    def __init__(self, settings) -> None:
        self.key = settings.secret_key
        self.issuer = settings.auth.jwt_issuer
        self.audience = settings.auth.jwt_audience

    def viewer(self, request: Request) -> tuple[int, frozenset[str]] | None:
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = jwt.decode(
                token.strip(),
                self.key,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        if claims["exp"] <= time.time() or claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
            return None
        return int(claims["sub"]), frozenset(claims.get("roles", []))


def _gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def _cursor(pk: int) -> str:
    return base64.b64encode(f"c:{pk}".encode()).decode()


def _error(message: str) -> JSONResponse:
    return JSONResponse({"data": None, "errors": [{"message": message}]})


def baseline_account_app() -> Starlette:
    settings = _settings()
    db = _db(settings)
    auth = _Auth(settings)

    async def account(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        who = auth.viewer(request)
        if who is None:
            return _error("unauthenticated")
        user_id, roles = who
        if "account:read" not in scopes_for_roles(roles):
            return _error("forbidden")
        first = 20
        after = variables.get("after")
        after_key = int(base64.b64decode(after).decode()[2:]) if after else None
        async with db.read() as conn:
            # The same statements the GraphQL resolvers send (users_by_ids, accounts_by_user_ids,
            # entries_page), in one read transaction.
            user = (await conn.execute(select(U).where(U.c.id.in_([user_id])))).first()
            if user is None:
                return JSONResponse({"data": {"viewer": None}})
            acc = (
                await conn.execute(
                    select(ledger.A).where(ledger.A.c.user_id.in_([user_id]), ledger.A.c.kind == ledger.MEMBER)
                )
            ).first()
            if acc is None:
                return JSONResponse({"data": {"viewer": {"account": None}}})
            page = await ledger.entries_page(conn, acc.id, first=first, after=after_key, last=None, before=None)
        edges = [
            {
                "cursor": _cursor(r["id"]),
                "node": {
                    "id": _gid("LedgerEntry", r["id"]),
                    "amount": r["amount"],
                    "balanceAfter": r["balance_after"],
                    "kind": r["kind"],
                    "memo": r["memo"],
                    "createdAt": r["created_at"].isoformat(),
                },
            }
            for r in page.rows
        ]
        data = {
            "viewer": {
                "account": {
                    "id": _gid("Account", acc.id),
                    "balance": acc.balance,
                    "entries": {
                        "edges": edges,
                        "pageInfo": {
                            "hasNextPage": page.has_next,
                            "endCursor": edges[-1]["cursor"] if edges else None,
                        },
                    },
                }
            }
        }
        return JSONResponse({"data": data})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def lifespan(_app):
        yield
        await db.dispose()

    return Starlette(
        routes=[Route("/graphql", account, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )


def baseline_grant_app() -> Starlette:
    settings = _settings()
    db = _db(settings)
    auth = _Auth(settings)
    cfg = settings.points

    async def grant(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None or ADMIN not in who[1] or "points:write" not in scopes_for_roles(who[1]):
            return _error("forbidden")
        actor, _roles = who
        kind, _, pk = base64.b64decode(data_in["userId"]).decode().partition(":")
        if kind != "User" or not pk.isdigit():
            return _error("bad user id")
        user_id = int(pk)
        now = ledger.utcnow()
        request_id = uuid.uuid4().hex
        tx_id, replayed = await db.write(
            lambda conn: ledger.adjust_points(
                conn,
                direction=ledger.GRANT,
                actor_user_id=actor,
                user_id=user_id,
                amount=data_in["amount"],
                reason=data_in["reason"],
                idempotency_key=data_in["idempotencyKey"],
                max_amount=cfg.max_single_amount,
                lot_expiry_days=cfg.lot_expiry_days,
                now=now,
                request_id=request_id,
            )
        )
        return JSONResponse(
            {
                "data": {
                    "grantPoints": {
                        "transaction": {"id": _gid("LedgerTransaction", tx_id)},
                        "replayed": replayed,
                        "userErrors": [],
                    }
                }
            }
        )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def lifespan(_app):
        yield
        await db.dispose()

    return Starlette(
        routes=[Route("/graphql", grant, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )

