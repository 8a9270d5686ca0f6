"""GraphQL subscriptions over WebSocket (``graphql-transport-ws``) on ``/graphql``, and the helper the
domains' subscription resolvers use to wait for committed events.

What this adds to strawberry's protocol handler (docs/live.md has the client side):

* **Authentication at ``connection_init``**: the payload carries ``{"authorization": "Bearer <token>"}``
  (an access token or an API token, as over HTTP). A connection without a valid credential is closed
  with 4403 and the reason's first word is the code (``UNAUTHENTICATED``, ``TOKEN_EXPIRED``,
  ``INVALID_TOKEN``, ``REVOKED_TOKEN``). The ack's payload tells when the credential expires.
* **Expiry and refresh**: the connection is closed with 4403 ``TOKEN_EXPIRED`` when the credential
  expires, unless the client sent a fresher token of the same member before, in a ``ping``
  (``{"type": "ping", "payload": {"authorization": "Bearer <new token>"}}``); the ``pong`` answers with
  the new expiry.
* **Limits** (``[live]``): connections per process and per member (4029), subscriptions per connection
  (an ``error`` message with code ``TOO_MANY_SUBSCRIPTIONS``), a slow consumer (its queue of
  ``[live] queue_size`` messages filled) closed with 4008, server pings every ``heartbeat_seconds``
  and 4030 when the client answered nothing for two intervals.
* **Subscriptions only**: queries and mutations are answered over HTTP (rate limits, idempotency and
  persisted operations live there); over WebSocket they get an ``error`` with code ``BAD_REQUEST``.
* Errors carry ``extensions.code`` like HTTP answers (``error_to_wire``).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import Info

from jingtan_api.auth.permissions import Viewer
from jingtan_api.context import Context
from jingtan_api.graphql.errors import error_to_wire
from jingtan_api.live.broker import SlowConsumer
from jingtan_api.live.connections import HEARTBEAT_TIMEOUT, SLOW_CONSUMER, TOO_MANY_CONNECTIONS

log = logging.getLogger("jingtan.live")

FORBIDDEN_CLOSE = 4403
_AUTH_REASONS = {
    "UNAUTHENTICATED": "UNAUTHENTICATED: send {\"authorization\": \"Bearer <token>\"} in connection_init / 请在 connection_init 中提供令牌",
    "TOKEN_EXPIRED": "TOKEN_EXPIRED: log in again or refresh the token / 令牌已过期",
    "INVALID_TOKEN": "INVALID_TOKEN: the token is not valid / 令牌无效",
    "REVOKED_TOKEN": "REVOKED_TOKEN: the token was revoked / 令牌已撤销",
}
SUBSCRIPTIONS_ONLY = (
    "Only subscriptions run over WebSocket; send queries and mutations over HTTP / WebSocket 仅用于订阅，查询和变更请使用 HTTP"
)


def _reason(text: str) -> str:
    """A WebSocket close reason is at most 123 bytes of UTF-8."""
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:123].decode(errors="ignore")


def credential_of(payload: Any) -> str | None:
    """The ``authorization`` value of a connection_init or ping payload (``Authorization`` and a bare
    ``token`` are accepted too)."""
    if not isinstance(payload, dict):
        return None
    for key in ("authorization", "Authorization"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    token = payload.get("token")
    return f"Bearer {token}" if isinstance(token, str) else None


class LiveTransport(BaseGraphQLTransportWSHandler[Context, None]):
    """strawberry's graphql-transport-ws handler with Jingtan's authentication, limits and heartbeats."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._member: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._last_seen = time.monotonic()

    # --- connection -------------------------------------------------------------------------------

    @property
    def _services(self) -> Any:
        return self.context.services

    async def handle_message(self, message: Any) -> None:
        self._last_seen = time.monotonic()
        await super().handle_message(message)

    async def _authenticate(self, payload: Any) -> Viewer:
        return await self.view.authenticate(credential_of(payload))  # type: ignore[attr-defined]

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code=code, reason=_reason(reason))

    async def handle_connection_init(self, message: Any) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self._close(4400, "Invalid connection init payload")
            return
        if self.connection_init_received:
            await self._close(4429, "Too many initialisation requests")
            return
        self.connection_init_received = True
        viewer = await self._authenticate(payload)
        if viewer.user_id is None:
            await self._close(FORBIDDEN_CLOSE, _AUTH_REASONS.get(viewer.auth_error or "UNAUTHENTICATED",
                                                                 _AUTH_REASONS["UNAUTHENTICATED"]))
            return
        refusal = self._services.live_connections.acquire(viewer.user_id)
        if refusal is not None:
            await self._close(TOO_MANY_CONNECTIONS, refusal)
            return
        self._member = viewer.user_id
        self.context.viewer = viewer
        await self.send_message({"type": "connection_ack", "payload": {"expiresAt": _iso(viewer.expires_at)}})
        self.connection_acknowledged = True
        self._tasks.append(asyncio.create_task(self._expire()))
        if self._services.settings.live.heartbeat_seconds > 0:
            self._tasks.append(asyncio.create_task(self._heartbeat()))

    async def handle_ping(self, message: Any) -> None:
        payload = message.get("payload")
        if self.connection_acknowledged and credential_of(payload) is not None:
            viewer = await self._authenticate(payload)
            if viewer.user_id is None:
                await self._close(FORBIDDEN_CLOSE, _AUTH_REASONS.get(viewer.auth_error or "", _AUTH_REASONS["INVALID_TOKEN"]))
                return
            if viewer.user_id != self._member:
                await self._close(FORBIDDEN_CLOSE, "FORBIDDEN: the token is another member's / 令牌属于其他会员")
                return
            self.context.viewer = viewer
            await self.send_message({"type": "pong", "payload": {"expiresAt": _iso(viewer.expires_at)}})
            return
        await self.send_message({"type": "pong"})

    async def _expire(self) -> None:
        """Close the connection when the viewer's credential expires (a refresh moves the deadline)."""
        while True:
            expires_at = self.context.viewer.expires_at
            if expires_at is None:
                return
            remaining = (expires_at - self._services.clock()).total_seconds()
            if remaining <= 0:
                await self._close(FORBIDDEN_CLOSE, _AUTH_REASONS["TOKEN_EXPIRED"])
                return
            await asyncio.sleep(min(remaining, 30.0))

    async def _heartbeat(self) -> None:
        interval = self._services.settings.live.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_seen > 2 * interval:
                await self._close(HEARTBEAT_TIMEOUT, "HEARTBEAT_TIMEOUT: no answer to pings / 心跳超时")
                return
            try:
                await self.send_message({"type": "ping"})
            except Exception:  # noqa: BLE001 - the connection is gone; the reader ends it
                return

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._member is not None:
            self._services.live_connections.release(self._member)
            self._member = None
        await super().shutdown()

    # --- operations -------------------------------------------------------------------------------

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            refusal = self._refusal(message["payload"])
            if refusal is not None:
                await self.send_message({"id": message["id"], "type": "error", "payload": [refusal]})
                return
        await super().handle_subscribe(message)

    def _refusal(self, payload: Any) -> dict | None:
        """A coded error for what this transport does not run (checked before strawberry executes)."""
        limit = self._services.settings.live.max_subscriptions_per_connection
        if len(self.operations) >= limit:
            return {"message": f"At most {limit} subscriptions per connection / 每个连接最多 {limit} 个订阅",
                    "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit}}
        query = payload.get("query") if isinstance(payload, dict) else None
        limits = self._services.settings.limits
        if not isinstance(query, str) or len(query) > limits.max_document_chars:
            return None  # strawberry and the document limits answer these
        try:
            document = parse(query, max_tokens=self._services.settings.graphql.max_tokens)
        except GraphQLError:
            return None  # strawberry answers the syntax error the usual way
        name = payload.get("operationName")
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = [o for o in ops if name is None or (o.name is not None and o.name.value == name)]
        if len(chosen) == 1 and chosen[0].operation is not OperationType.SUBSCRIPTION:
            return {"message": SUBSCRIPTIONS_ONLY, "extensions": {"code": "BAD_REQUEST"}}
        return None

    async def send_message(self, message: Any) -> None:
        production = self._services.settings.is_production
        if message.get("type") == "error":
            message["payload"] = [error_to_wire(dict(e), production=production) for e in message["payload"]]
        elif message.get("type") == "next" and message["payload"].get("errors"):
            message["payload"]["errors"] = [error_to_wire(dict(e), production=production)
                                            for e in message["payload"]["errors"]]
        await super().send_message(message)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- for the domains' subscription resolvers ---------------------------------------------------------


async def events(info: Info, topics: Iterable[str], types: Iterable[str]) -> AsyncIterator[dict[str, Any]]:
    """Committed events of ``types`` concerning ``topics`` (``user:<id>``, ``merchant:<id>``), as they
    come; each yielded message is a dict of ids and statuses (``jingtan_api.live.broker.message_for``).

    Before each yield the connection's per-request caches (DataLoaders, the clock reading) are reset, so
    the fields of every pushed value are read fresh. A subscriber that fell behind ends the connection
    with 4008."""
    ctx: Context = info.context
    wanted = frozenset(types)
    subscription = ctx.services.live.subscribe(topics)
    try:
        while True:
            try:
                message = await subscription.get()
            except SlowConsumer:
                websocket = ctx.request
                if websocket is not None and hasattr(websocket, "close"):
                    with contextlib.suppress(Exception):
                        await websocket.close(code=SLOW_CONSUMER,
                                              reason="SLOW_CONSUMER: messages were not read in time / 客户端读取过慢")
                return
            if message.get("type") in wanted:
                ctx.reset_request_caches()
                yield message
    finally:
        subscription.close()
