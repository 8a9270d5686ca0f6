"""ASGI apps the benchmark serves with uvicorn (``--factory``), configured from the environment.

* :func:`subject_app` — the real Jingtan app (``create_app()``, settings from ``JINGTAN_*``).
* :func:`baseline_account_app` — a minimal Starlette endpoint answering the ``MyAccount`` query: same
  JWT check (PyJWT, same key/issuer/audience/claims), the same three SELECT statements (the resolvers'
  service functions) through the same engine setup (``jingtan_api.db.Database``, same URL), in ONE read transaction, and the
  same JSON body (``data`` identical to the GraphQL answer; checked by the runner before measuring).
* :func:`baseline_grant_app` — a minimal Starlette endpoint doing the ``grantPoints`` credit directly:
  JWT check, ``ledger.adjust_points`` inside ``db.write`` (same SQL as the mutation's write), and the
  same ``data`` JSON as the bench's mutation selection.
* :func:`baseline_submit_app` — ``submitAction`` (a recycling drop-off) written directly: JWT check, then
  in one ``db.write`` the idempotency record, the action row and the ACTION_CREDIT transaction.
* :func:`baseline_redeem_app` — ``redeemOffer``: ``redemptions.service.redeem`` in one ``db.write``, the
  payload's rows in one read transaction, the same JSON.
* :func:`baseline_catalogue_app` — the ``Catalogue`` query: ``catalogue_page`` + ``merchants_by_ids`` in
  one read transaction, the same ``data`` JSON.
"""

import base64
import contextlib
import json
import time
import uuid
from types import SimpleNamespace

import jwt
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jingtan_api.accounts import service as ledger
from jingtan_api.auth.permissions import ADMIN, scopes_for_roles
from jingtan_api.db import PageArgs
from jingtan_api.merchants import service as merchants_service
from jingtan_api.offers import service as offers_service
from jingtan_api.users import service as users_service


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
            # The same service functions, so the same statements, the GraphQL resolvers use
            # (users_by_ids, accounts_by_user_ids, entries_page), in one read transaction.
            user = (await users_service.users_by_ids(conn, [user_id])).get(user_id)
            if user is None:
                return JSONResponse({"data": {"viewer": None}})
            found = (await ledger.accounts_by_user_ids(conn, [user_id])).get(user_id)
            if found is None:
                return JSONResponse({"data": {"viewer": {"account": None}}})
            acc = SimpleNamespace(**found)
            args = PageArgs(first=first, after=(after_key,) if after_key is not None else None)
            page = await ledger.entries_page(conn, acc.id, args)
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



def baseline_submit_app() -> Starlette:
    """``submitAction`` for a recycling drop-off written directly: JWT check, the plugin's factor and
    formula, then in ONE ``db.write`` the idempotency claim, the APPROVED action row, the ACTION_CREDIT
    transaction (issuance → member, ``post_transaction``), the action's transaction id and the idempotency
    result — the rows the real mutation writes — and the same payload JSON. No plugin host, no caps, no
    duplicate/overlap reads: this is the floor the mutation is compared against."""
    from datetime import datetime

    from sqlalchemy import update
    from sqlalchemy.dialects import postgresql, sqlite

    from jingtan_api.accounts import idempotency
    from jingtan_api.actions.models import Action
    from jingtan_api.auth.permissions import scopes_for_roles
    from jingtan_api.methodologies.models import MethodologyVersion
    from jingtan_api.plugins.api import grams_from
    from jingtan_recycling import FACTORS, FACTOR_OF, RecyclingActionType

    settings = _settings()
    db = _db(settings)
    auth = _Auth(settings)
    cfg = settings.points
    action_t = Action.__table__
    factors = {f.id: f for f in FACTORS}
    version = RecyclingActionType.version
    empty_evidence = json.dumps(
        {"attachments": [], "external_id": None, "signature": None, "signed_at": None, "source": None},
        sort_keys=True, separators=(",", ":"),
    )
    issuance: list[int] = []
    methodology: list[int] = []
    MV = MethodologyVersion.__table__

    def dumps(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def credit_memo(action_id: int) -> str:  # actions.service.credit_memo: bilingual, with the action's global ID
        gid = _gid("Action", action_id)
        return f"{RecyclingActionType.name_en} action {gid} / {RecyclingActionType.name_zh}行为 {gid}"[:200]

    async def submit(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None or "actions:write" not in scopes_for_roles(who[1]):
            return _error("forbidden")
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
                        "receipt_id": raw["receiptId"], "dropped_at": raw["droppedAt"]}
        req_hash = idempotency.request_hash({"code": "recycling", "input": stored_input, "evidence": None})
        now = ledger.utcnow()

        async def work(conn) -> tuple[int, bool]:
            claim = await idempotency.claim(conn, f"submitAction:{user_id}", key, req_hash)
            if claim.is_replay:
                return int(claim.result_id), True
            account_id = await ledger.member_account_id(conn, user_id)
            if not issuance:
                issuance.append(await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE))
            if not methodology:  # the version the real path's ensure_versions registered (the subject's first submit)
                found = (await conn.execute(
                    select(MV.c.id).where(MV.c.plugin_code == "recycling").order_by(MV.c.version_no.desc()).limit(1)
                )).scalar_one_or_none()
                if found is not None:
                    methodology.append(found)
            dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            action_id = (
                await conn.execute(
                    dialect_insert(action_t).values(
                        user_id=user_id, plugin_code="recycling", plugin_version=version, input=dumps(stored_input),
                        evidence=empty_evidence, evidence_fingerprint=fingerprint, evidence_fingerprint_seen=fingerprint,
                        subject=raw["stationId"], occurred_from=dropped_at, occurred_to=dropped_at, status="APPROVED",
                        reasons="[]", grams_co2e=grams, points=points, factor_ids=dumps([factor.id]),
                        factors=dumps([factor.as_dict()]), formula=formula, cap_group=None,
                        cap_group_daily_grams=None, methodology_version_id=methodology[0] if methodology else None,
                        created_at=now,
                    ).returning(action_t.c.id)
                )
            ).scalar_one()
            tx = await ledger.post_transaction(
                conn, kind="ACTION_CREDIT",
                postings=[ledger.Posting(issuance[0], -points), ledger.Posting(account_id, points)],
                now=now, lot_expiry_days=cfg.lot_expiry_days, memo=credit_memo(action_id),
            )
            await conn.execute(update(action_t).where(action_t.c.id == action_id).values(transaction_id=tx.id))
            await idempotency.complete(conn, claim, "Action", action_id)
            return action_id, False

        action_id, replayed = await db.write(work)
        factor_out = {"id": factor.id, "value": str(factor.value), "unit": factor.unit, "source": factor.source}
        return JSONResponse(
            {
                "data": {
                    "submitAction": {
                        "replayed": replayed,
                        "action": {
                            "id": _gid("Action", action_id),
                            "status": "APPROVED",
                            "reasons": [],
                            "calculation": {"formula": formula, "gramsCo2e": grams, "points": points,
                                            "factors": [factor_out]},
                        },
                        "userErrors": [],
                    }
                }
            }
        )

    return _app(submit, db)


def baseline_redeem_app() -> Starlette:
    """``redeemOffer`` through the project's services: JWT check, ``redemptions.service.redeem`` in ONE
    ``db.write`` (the real mutation's transaction: claim, verified-contact gate, offer/merchant rows,
    member-row lock, per-member count, stock UPDATE, expired-lots probe, REDEMPTION transaction with lot
    consumption, code, redemption row, idempotency result), then one read transaction for the payload
    (``redemptions_by_ids``, ``offer_row``, ``merchant_row``, ``accounts_by_user_ids``) and the JSON of
    ``RedeemOffer.graphql``. No GraphQL, no listeners (segments, impact stats), no DataLoaders."""
    from jingtan_api.redemptions import service as redemptions

    settings = _settings()
    db = _db(settings)
    auth = _Auth(settings)

    async def redeem(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        data_in = body["variables"]["input"]
        who = auth.viewer(request)
        if who is None:
            return _error("unauthenticated")
        user_id = who[0]
        kind, _, pk = base64.b64decode(data_in["offerId"]).decode().partition(":")
        if kind != "Offer" or not pk.isdigit():
            return _error("bad offer id")
        now = ledger.utcnow()
        redemption_id, replayed = await db.write(
            lambda conn: redemptions.redeem(
                conn, user_id=user_id, offer_id=int(pk), quantity=data_in.get("quantity", 1),
                idempotency_key=data_in["idempotencyKey"], now=now, lot_expiry_days=settings.points.lot_expiry_days,
                valid_days=settings.offers.redemption_valid_days, max_quantity=settings.offers.max_quantity,
                require_verified_contact=settings.identity.require_verified_contact,
            )
        )
        async with db.read() as conn:
            r = (await redemptions.redemptions_by_ids(conn, [redemption_id]))[redemption_id]
            o = await offers_service.offer_row(conn, r["offer_id"])
            m = await merchants_service.merchant_row(conn, r["merchant_id"])
            a = (await ledger.accounts_by_user_ids(conn, [user_id]))[user_id]
        return JSONResponse({"data": {"redeemOffer": {
            "redemption": {
                "id": _gid("Redemption", r["id"]), "code": r["code"], "status": r["status"], "quantity": r["quantity"],
                "points": r["points"], "expiresAt": r["expires_at"].isoformat(),
                "offer": {"id": _gid("Offer", o.id), "titleZh": o.title_zh},
                "merchant": {"id": _gid("Merchant", m.id), "nameZh": m.name_zh, "address": m.address},
            },
            "account": {"balance": a["balance"]},
            "replayed": replayed,
            "userErrors": [],
        }}})

    return _app(redeem, db)


def baseline_catalogue_app() -> Starlette:
    """The ``Catalogue`` query (first 20, NEWEST, no filter) with the same two statements the GraphQL
    resolvers send (``catalogue_page``, then ``merchants_by_ids`` for the page's merchants) in one read
    transaction, after the same JWT check, and the same ``data`` JSON."""
    settings = _settings()
    db = _db(settings)
    auth = _Auth(settings)
    no_filter = offers_service.CatalogueFilter()

    def cursor(row: dict) -> str:
        raw = json.dumps([offers_service.NEWEST, row["created_at"].isoformat(), row["id"]], separators=(",", ":"))
        return base64.b64encode(raw.encode()).decode()

    async def catalogue(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        variables = body.get("variables") or {}
        if auth.viewer(request) is None:
            return _error("unauthenticated")
        first = variables.get("first", 20)
        now = ledger.utcnow()
        async with db.read() as conn:
            page = await offers_service.catalogue_page(
                conn, PageArgs(first=first), now=now, order=offers_service.NEWEST, flt=no_filter
            )
            rows, has_next = page.rows, page.has_next
            merchants = await merchants_service.merchants_by_ids(conn, list(dict.fromkeys(r["merchant_id"] for r in rows)))
        edges = []
        for r in rows:
            m = merchants[r["merchant_id"]]
            edges.append(
                {
                    "cursor": cursor(r),
                    "node": {
                        "id": _gid("Offer", r["id"]),
                        "titleZh": r["title_zh"],
                        "titleEn": r["title_en"],
                        "imageUrl": r["image_url"],
                        "pointsPrice": r["points_price"],
                        "stock": r["stock"],
                        "endsAt": r["ends_at"].isoformat(),
                        "available": offers_service.offer_is_available(r, m, now),
                        "merchant": {
                            "id": _gid("Merchant", m["id"]),
                            "nameZh": m["name_zh"],
                            "nameEn": m["name_en"],
                            "category": m["category"],
                            "city": m["city"],
                            "district": m["district"],
                        },
                    },
                }
            )
        page_info = {"hasNextPage": has_next, "endCursor": edges[-1]["cursor"] if edges else None}
        return JSONResponse({"data": {"offers": {"edges": edges, "pageInfo": page_info}}})

    return _app(catalogue, db)


def _app(endpoint, db) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def lifespan(_app):
        yield
        await db.dispose()

    return Starlette(
        routes=[Route("/graphql", endpoint, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )
