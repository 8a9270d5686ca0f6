"""Signed webhooks: endpoint rules, the in-transaction outbox listener and the delivery worker.

Headers of every POST (docs/live.md, "Webhooks"):
``Jingtan-Event-Id`` (idempotency id, the same on every retry), ``Jingtan-Event-Type``,
``Jingtan-Timestamp`` (unix seconds) and ``Jingtan-Signature: t=<timestamp>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{timestamp}.{body}")``.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit import service as audit
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import Conflict, NotFound, ValidationFailed
from jingtan_api.events import Event, EventBus, attempt_memo
from jingtan_api.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from jingtan_api.services import Services
    from jingtan_api.settings import Settings

EP = WebhookEndpoint.__table__
DL = WebhookDelivery.__table__
AT = WebhookAttempt.__table__

# Event types a partner may subscribe to; the merchant-scoped ones carry ``merchant_id`` in their data.
MERCHANT_EVENT_TYPES = ("merchant.applied", "redemption.created", "redemption.confirmed",
                        "redemption.cancelled", "redemption.expired")
EVENT_TYPES = ("user.registered", "action.recorded", "action.reviewed", "action.approved",
               "ledger.posted", *MERCHANT_EVENT_TYPES)


def refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


def check_private_allowed(settings: "Settings") -> bool:
    """``webhooks.allow_private_addresses``; unset: allowed in development, refused in production."""
    flag = settings.webhooks.allow_private_addresses
    return (not settings.is_production) if flag is None else flag


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (module-level so that tests can stub the resolver)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def vetted_address(host: str, port: int, settings: "Settings") -> str:
    """Resolve ``host`` ONCE and return the address to connect to. Unless private addresses are allowed,
    refuse (ValidationFailed UNSAFE_ADDRESS) when any address is private, loopback, link-local, multicast
    or reserved; a name that does not resolve is UNRESOLVABLE_HOST. Connecting to this very address (not
    resolving again) is what defeats DNS rebinding: the name cannot be re-pointed between check and use."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolve_host(host, port)
        except OSError as exc:
            raise ValidationFailed(f"Host does not resolve / 域名无法解析: {host}", code="UNRESOLVABLE_HOST", field="url") from exc
    if not addresses:
        raise ValidationFailed(f"Host does not resolve / 域名无法解析: {host}", code="UNRESOLVABLE_HOST", field="url")
    if not check_private_allowed(settings):
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if refused_address(ip):
                raise ValidationFailed(f"Address not allowed / 不允许的地址: {ip}", code="UNSAFE_ADDRESS", field="url")
    # IPv4 first (the resolver's order otherwise): one address is tried, without happy-eyeballs fallback.
    return sorted(addresses, key=lambda a: ":" in a)[0]


async def resolve_and_check(host: str, port: int, settings: "Settings") -> None:
    """At registration: refuse (ValidationFailed UNSAFE_ADDRESS) a host that resolves to a private,
    loopback, link-local, multicast or reserved address, unless private addresses are allowed."""
    if check_private_allowed(settings):
        return
    await vetted_address(host, port, settings)


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or ValidationFailed INVALID_URL."""
    if len(url) > 2000 or "\x00" in url:
        raise ValidationFailed("URL too long / 网址过长", code="INVALID_URL", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("Only http(s) URLs / 仅支持 http(s) 网址", code="INVALID_URL", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationFailed("Invalid port / 端口无效", code="INVALID_URL", field="url") from exc
    return parts.hostname, port


async def validate_url(url: str, settings: "Settings") -> None:
    host, port = split_url(url)
    await resolve_and_check(host, port, settings)


def pinned_request(url: str, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """``url`` aimed at ``address`` (a vetted IP) while the receiver still sees its own name: the Host
    header keeps the URL's host[:port], and for https the TLS SNI and the certificate check use the host
    name (httpcore's ``sni_hostname`` request extension)."""
    original = httpx.URL(url)
    target = original.copy_with(host=address.split("%")[0])
    headers = {"Host": original.netloc.decode("ascii")}
    extensions: dict[str, Any] = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return target, headers, extensions


def validate_event_types(event_types: Sequence[str], *, merchant_id: int | None) -> list[str]:
    allowed = MERCHANT_EVENT_TYPES if merchant_id is not None else EVENT_TYPES
    if not event_types:
        raise ValidationFailed("Choose at least one event type / 请至少选择一种事件", code="NO_EVENT_TYPES", field="eventTypes")
    unknown = [t for t in event_types if t not in allowed]
    if unknown:
        scope = " (merchant endpoints receive only their merchant's events / 商户端点仅接收本商户事件)" if (
            merchant_id is not None and all(t in EVENT_TYPES for t in unknown)) else ""
        raise ValidationFailed(f"Unknown event types / 未知事件类型: {', '.join(unknown)}{scope}", code="UNKNOWN_EVENT_TYPE",
                               field="eventTypes")
    return sorted(set(event_types))


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


async def create_endpoint(
    app: "Services", *, url: str, event_types: Sequence[str], merchant_id: int | None, created_by: int | None,
    description: str = "", request_id: str | None = None,
) -> dict[str, Any]:
    """Validate (outside any transaction: DNS) then write and audit (``webhook.create``). Returns the row,
    secret included (shown once)."""
    types = validate_event_types(event_types, merchant_id=merchant_id)
    await validate_url(url, app.settings)
    now = app.clock()
    values = dict(url=url, secret=new_secret(), event_types=",".join(types), active=True, merchant_id=merchant_id,
                  description=description[:500], created_by=created_by, created_at=now, updated_at=now)

    async def write(conn: AsyncConnection) -> int:
        endpoint_id = (await conn.execute(insert(EP).values(**values).returning(EP.c.id))).scalar_one()
        _forget_endpoints()
        await audit.record(conn, actor_user_id=created_by, action="webhook.create", target_type="WebhookEndpoint",
                           target_id=endpoint_id, details={"url": url, "eventTypes": types, "merchantId": merchant_id},
                           request_id=request_id, now=now)
        return endpoint_id

    return {"id": await app.db.write(write), **values}


async def endpoint_row(conn: AsyncConnection, endpoint_id: int) -> dict[str, Any] | None:
    """An endpoint that was not deleted (secret included: callers never show it)."""
    row = (await conn.execute(select(EP).where(EP.c.id == endpoint_id, EP.c.deleted_at.is_(None)))).one_or_none()
    return dict(row._mapping) if row else None


async def _live_endpoint(app: "Services", endpoint_id: int) -> dict[str, Any]:
    async with app.db.read() as conn:
        row = await endpoint_row(conn, endpoint_id)
    if row is None:
        raise NotFound("Endpoint not found / 未找到端点", field="id")
    return row


async def update_endpoint(
    app: "Services", endpoint_id: int, *, actor_user_id: int | None, url: str | None = None,
    event_types: Sequence[str] | None = None, description: str | None = None, enabled: bool | None = None,
    request_id: str | None = None,
) -> None:
    """Change what is given (None: unchanged); validated like a new endpoint; audited (``webhook.update``)."""
    row = await _live_endpoint(app, endpoint_id)
    changes: dict[str, Any] = {}
    if event_types is not None:
        changes["event_types"] = ",".join(validate_event_types(event_types, merchant_id=row["merchant_id"]))
    if url is not None:
        await validate_url(url, app.settings)
        changes["url"] = url
    if description is not None:
        changes["description"] = description[:500]
    if enabled is not None:
        changes["active"] = enabled
    now = app.clock()

    async def write(conn: AsyncConnection) -> None:
        done = await conn.execute(update(EP).where(EP.c.id == endpoint_id, EP.c.deleted_at.is_(None))
                                  .values(**changes, updated_at=now))
        _forget_endpoints()
        if done.rowcount != 1:
            raise NotFound("Endpoint not found / 未找到端点", field="id")
        details = {("eventTypes" if k == "event_types" else "enabled" if k == "active" else k): v for k, v in changes.items()}
        await audit.record(conn, actor_user_id=actor_user_id, action="webhook.update", target_type="WebhookEndpoint",
                           target_id=endpoint_id, details=details, request_id=request_id, now=now)

    await app.db.write(write)


async def delete_endpoint(app: "Services", endpoint_id: int, *, actor_user_id: int | None,
                          request_id: str | None = None) -> int:
    """Soft delete: the endpoint stops receiving (``deleted_at`` set, inactive), its deliveries and attempts
    stay readable; its PENDING deliveries become FAILED (``ENDPOINT_DELETED``). Returns how many."""
    now = app.clock()

    async def write(conn: AsyncConnection) -> int:
        done = await conn.execute(update(EP).where(EP.c.id == endpoint_id, EP.c.deleted_at.is_(None))
                                  .values(active=False, deleted_at=now, updated_at=now))
        _forget_endpoints()
        if done.rowcount != 1:
            raise NotFound("Endpoint not found / 未找到端点", field="id")
        dropped = (await conn.execute(update(DL).where(DL.c.endpoint_id == endpoint_id, DL.c.status == "PENDING").values(
            status="FAILED", last_error="ENDPOINT_DELETED", claimed_by=None, claimed_until=None, updated_at=now))).rowcount
        await audit.record(conn, actor_user_id=actor_user_id, action="webhook.delete", target_type="WebhookEndpoint",
                           target_id=endpoint_id, details={"pendingDropped": dropped}, request_id=request_id, now=now)
        return int(dropped)

    return await app.db.write(write)


async def rotate_secret(app: "Services", endpoint_id: int, *, actor_user_id: int | None = None,
                        request_id: str | None = None) -> str:
    """A new secret (shown once); the next attempt is signed with it. Audited (``webhook.rotate_secret``)."""
    secret = new_secret()
    now = app.clock()

    async def write(conn: AsyncConnection) -> None:
        done = await conn.execute(update(EP).where(EP.c.id == endpoint_id, EP.c.deleted_at.is_(None))
                                  .values(secret=secret, updated_at=now))
        if done.rowcount != 1:
            raise NotFound("Endpoint not found / 未找到端点", field="id")
        await audit.record(conn, actor_user_id=actor_user_id, action="webhook.rotate_secret",
                           target_type="WebhookEndpoint", target_id=endpoint_id, request_id=request_id, now=now)

    await app.db.write(write)
    return secret


# --- reads ------------------------------------------------------------------------------------------

def _endpoint_filter(stmt: Any, merchant_id: int | None, everything: bool) -> Any:
    stmt = stmt.where(EP.c.deleted_at.is_(None))
    return stmt if everything else stmt.where(EP.c.merchant_id == merchant_id)


async def endpoints_page(conn: AsyncConnection, args: PageArgs, *, merchant_id: int | None = None,
                         everything: bool = False) -> Page:
    """Endpoints not deleted, newest first: of ``merchant_id``, or all of them (``everything``)."""
    return await keyset_page(conn, _endpoint_filter(select(EP), merchant_id, everything), [(EP.c.id, True)], args)


async def endpoints_count(conn: AsyncConnection, *, merchant_id: int | None = None, everything: bool = False) -> int:
    stmt = _endpoint_filter(select(func.count()).select_from(EP), merchant_id, everything)
    return int((await conn.execute(stmt)).scalar_one())


async def endpoints_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Endpoints by id, deleted ones included (their delivery history stays readable)."""
    return {r.id: dict(r._mapping) for r in await conn.execute(select(EP).where(EP.c.id.in_(list(ids))))}


def _delivery_filter(stmt: Any, endpoint_id: int, status: str | None) -> Any:
    stmt = stmt.where(DL.c.endpoint_id == endpoint_id)
    return stmt if status is None else stmt.where(DL.c.status == status)


async def deliveries_page(conn: AsyncConnection, args: PageArgs, *, endpoint_id: int, status: str | None = None) -> Page:
    """An endpoint's deliveries, newest first."""
    return await keyset_page(conn, _delivery_filter(select(DL), endpoint_id, status), [(DL.c.id, True)], args)


async def deliveries_count(conn: AsyncConnection, *, endpoint_id: int, status: str | None = None) -> int:
    stmt = _delivery_filter(select(func.count()).select_from(DL), endpoint_id, status)
    return int((await conn.execute(stmt)).scalar_one())


async def deliveries_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    return {r.id: dict(r._mapping) for r in await conn.execute(select(DL).where(DL.c.id.in_(list(ids))))}


async def attempts_of(conn: AsyncConnection, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each delivery's attempts, first attempt first."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
    rows = await conn.execute(select(AT).where(AT.c.delivery_id.in_(list(delivery_ids))).order_by(AT.c.delivery_id, AT.c.number, AT.c.id))
    for r in rows:
        out[r.delivery_id].append(dict(r._mapping))
    return out


def sign(secret: str, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


# --- the outbox listener ----------------------------------------------------------------------------

def register_listeners(bus: EventBus, app: "Services") -> None:
    async def on_event(conn: AsyncConnection, event: Event) -> None:
        await enqueue(conn, event, now=app.clock())

    for event_type in EVENT_TYPES:
        bus.listen(event_type, on_event)


_ENDPOINTS_MEMO = "webhooks.active_endpoints"


_ACTIVE = DriverStatement(
    select(EP.c.id, EP.c.event_types, EP.c.merchant_id).where(EP.c.active.is_(True)).order_by(EP.c.id))


async def _active_endpoints(conn: AsyncConnection) -> list[tuple[int, frozenset[str], int | None]]:
    """(id, event types, merchant id) of every active endpoint: read once per write transaction (an
    approved submission emits three events), kept in ``events.attempt_memo``."""
    memo = attempt_memo()
    rows = memo.get(_ENDPOINTS_MEMO) if memo is not None else None
    if rows is None:
        rows = [(r["id"], frozenset(r["event_types"].split(",")), r["merchant_id"]) for r in await _ACTIVE.all(conn)]
        if memo is not None:
            memo[_ENDPOINTS_MEMO] = rows
    return rows


def _forget_endpoints() -> None:
    """An endpoint changed in this transaction: its events read the endpoints again."""
    memo = attempt_memo()
    if memo is not None:
        memo.pop(_ENDPOINTS_MEMO, None)


async def enqueue(conn: AsyncConnection, event: Event, *, now: datetime) -> int:
    """One outbox row per active endpoint subscribed to ``event`` (same transaction as the event): the
    platform's endpoints, and for a merchant's event also that merchant's."""
    merchant_id = event.data.get("merchant_id") if event.type in MERCHANT_EVENT_TYPES else None
    targets = [
        endpoint_id for endpoint_id, types, owner in await _active_endpoints(conn)
        if event.type in types and (owner is None or (merchant_id is not None and owner == merchant_id))
    ]
    if not targets:
        return 0
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"id": event_id, "type": event.type, "createdAt": now.isoformat(), "data": dict(event.data)},
                      default=str, ensure_ascii=False, sort_keys=True)
    await conn.execute(insert(DL), [
        dict(endpoint_id=t, event_id=event_id, event_type=event.type, payload=body, status="PENDING", attempts=0,
             next_attempt_at=now, created_at=now, updated_at=now) for t in targets
    ])
    return len(targets)


# --- the delivery worker ----------------------------------------------------------------------------

def backoff(attempts: int, settings: "Settings") -> float:
    cfg = settings.webhooks
    delay = min(cfg.max_backoff_seconds, cfg.base_backoff_seconds * (2 ** (attempts - 1)))
    return delay * random.uniform(0.5, 1.0)


async def claim(conn: AsyncConnection, delivery_id: int, holder: str, *, now: datetime, lease: float) -> bool:
    """Conditional UPDATE: at most one worker holds a delivery's attempt at a time (both databases)."""
    stmt = (update(DL).where(DL.c.id == delivery_id, DL.c.status == "PENDING", DL.c.next_attempt_at <= now,
                             or_(DL.c.claimed_until.is_(None), DL.c.claimed_until < now))
            .values(claimed_by=holder, claimed_until=now + timedelta(seconds=lease)))
    return (await conn.execute(stmt)).rowcount == 1


async def post(url: str, secret: str, delivery: Mapping[str, Any], settings: "Settings") -> dict[str, Any]:
    """One attempt; never raises. Resolves the host once, checks the addresses (unless private ones are
    allowed) and connects to the vetted address (no second resolution: DNS rebinding protection)."""
    cfg = settings.webhooks
    started = time.perf_counter()
    ts = int(time.time())
    body = delivery["payload"]
    headers = {"Content-Type": "application/json", "User-Agent": "Jingtan-Webhooks/1",
               "Jingtan-Event-Id": delivery["event_id"], "Jingtan-Event-Type": delivery["event_type"],
               "Jingtan-Timestamp": str(ts), "Jingtan-Signature": f"t={ts},v1={sign(secret, ts, body)}"}
    out: dict[str, Any] = {"status_code": None, "error": None, "response_body": ""}
    try:
        host, port = split_url(url)
        address = await asyncio.wait_for(vetted_address(host, port, settings), cfg.timeout_seconds)
        target, host_header, extensions = pinned_request(url, address)
        timeout = httpx.Timeout(cfg.timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            async with client.stream("POST", target, content=body.encode(), headers={**headers, **host_header},
                                     extensions=extensions) as resp:
                out["status_code"] = resp.status_code
                chunks = b""
                async for chunk in resp.aiter_bytes():
                    chunks += chunk
                    if len(chunks) >= cfg.max_response_bytes:
                        break
                out["response_body"] = chunks[: cfg.max_response_bytes].decode("utf-8", "replace")
    except ValidationFailed as exc:
        out["error"] = f"{exc.code}: {exc}"[:500]
    except (httpx.TimeoutException, TimeoutError):  # TimeoutError: the DNS resolution took too long
        out["error"] = "timeout"
    except httpx.HTTPError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
    out["duration_ms"] = int((time.perf_counter() - started) * 1000)
    return out


async def deliver_due(app: "Services", *, holder: str | None = None, limit: int = 100) -> dict[str, int]:
    """One pass: claim each due delivery, POST it outside any transaction, record the attempt."""
    holder = holder or f"wh:{uuid.uuid4().hex[:8]}"
    cfg = app.settings.webhooks
    now = app.clock()
    async with app.db.read() as conn:
        # Deliveries of a disabled endpoint wait (PENDING) until it is enabled again.
        due = (await conn.execute(
            select(DL.c.id).join(EP, EP.c.id == DL.c.endpoint_id)
            .where(DL.c.status == "PENDING", DL.c.next_attempt_at <= now, EP.c.active.is_(True))
            .order_by(DL.c.next_attempt_at).limit(limit)
        )).scalars().all()
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    lease = cfg.timeout_seconds * 2 + 30
    for delivery_id in due:
        if not await app.db.write(lambda c, i=delivery_id: claim(c, i, holder, now=app.clock(), lease=lease)):
            continue
        async with app.db.read() as conn:
            row = (await conn.execute(
                select(DL, EP.c.url, EP.c.secret).join(EP, EP.c.id == DL.c.endpoint_id).where(DL.c.id == delivery_id)
            )).one()._mapping
        started_at = app.clock()
        result = await post(row["url"], row["secret"], row, app.settings)
        ok = result["status_code"] is not None and 200 <= result["status_code"] < 300
        number = row["attempts"] + 1
        status = "SUCCEEDED" if ok else ("FAILED" if number >= cfg.max_attempts else "PENDING")
        counts["delivered" if ok else ("failed" if status == "FAILED" else "retrying")] += 1

        async def record(conn: AsyncConnection, i=delivery_id, r=result, n=number, s=status, t=started_at) -> None:
            done = app.clock()
            await conn.execute(insert(AT).values(delivery_id=i, number=n, started_at=t, duration_ms=r["duration_ms"],
                                                 status_code=r["status_code"], error=r["error"],
                                                 response_body=r["response_body"]))
            await conn.execute(update(DL).where(DL.c.id == i, DL.c.claimed_by == holder).values(
                status=s, attempts=n, claimed_by=None, claimed_until=None, last_status_code=r["status_code"],
                last_error=r["error"], updated_at=done,
                next_attempt_at=done + timedelta(seconds=backoff(n, app.settings)) if s == "PENDING" else done))

        await app.db.write(record)
    return counts


async def replay(app: "Services", delivery_id: int, *, actor_user_id: int | None = None,
                 request_id: str | None = None) -> None:
    """Deliver again (same event id): a SUCCEEDED or FAILED delivery back to PENDING, due now, attempts
    restart (the earlier attempts stay). Refused while PENDING and for a deleted endpoint. Audited
    (``webhook.replay``)."""
    now = app.clock()

    async def write(conn: AsyncConnection) -> None:
        row = (await conn.execute(select(DL.c.status, DL.c.endpoint_id, EP.c.deleted_at)
                                  .join(EP, EP.c.id == DL.c.endpoint_id).where(DL.c.id == delivery_id))).one_or_none()
        if row is None:
            raise NotFound("Delivery not found / 未找到投递", field="id")
        if row.deleted_at is not None:
            raise Conflict("The endpoint was deleted / 端点已删除", field="id")
        n = (await conn.execute(update(DL).where(DL.c.id == delivery_id, DL.c.status != "PENDING").values(
            status="PENDING", attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None,
            updated_at=now))).rowcount
        if n != 1:
            raise Conflict("The delivery is still pending / 投递仍在进行中", field="id")
        await audit.record(conn, actor_user_id=actor_user_id, action="webhook.replay", target_type="WebhookDelivery",
                           target_id=delivery_id, details={"from": row.status, "endpointId": row.endpoint_id},
                           request_id=request_id, now=now)

    await app.db.write(write)
