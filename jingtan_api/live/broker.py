"""Committed domain events delivered to subscribers, never events of a rolled-back transaction.

The broker is an ``EventBus.on_commit`` publisher (:mod:`jingtan_api.events`): it only ever sees the events
of transactions that committed. Each event becomes a small message (type, ids, user ids — never whole rows)
so it fits PostgreSQL's NOTIFY payload limit (8000 bytes); subscribers read current state themselves.

Brokers:

* ``InProcessBroker`` — one process (SQLite, tests): messages go straight to local subscribers.
* ``PostgresBroker`` — the default on PostgreSQL: ``NOTIFY jingtan_live`` after commit, one ``LISTEN``
  connection (asyncpg, the project's driver) per process. Every API process already shares the database,
  so no further infrastructure is needed to reach subscribers connected to another process.
* ``RedisBroker`` — Redis pub/sub (redis-py asyncio), for deployments that prefer to keep the fan-out off
  the database.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from jingtan_api.events import Event

log = logging.getLogger("jingtan.live")

CHANNEL = "jingtan_live"
MAX_PAYLOAD_BYTES = 8000  # PostgreSQL's NOTIFY limit
# Only these keys travel: ids and statuses, small and not personal.
_KEYS = ("action_id", "user_id", "member_user_id", "merchant_id", "redemption_id", "offer_id", "status",
         "points", "reviewer_id", "transaction_id")


def message_for(event: Event) -> dict[str, Any]:
    data = {k: event.data[k] for k in _KEYS if k in event.data and isinstance(event.data[k], (int, str, type(None)))}
    return {"type": event.type, **data}


def encode(messages: Sequence[dict[str, Any]]) -> list[str]:
    """JSON payloads, each below the NOTIFY limit (a message too large alone is dropped and logged)."""
    payloads = []
    for message in messages:
        payload = json.dumps(message, separators=(",", ":"))
        if len(payload.encode()) >= MAX_PAYLOAD_BYTES:
            log.warning("live message too large, dropped", extra={"event_type": message.get("type")})
            continue
        payloads.append(payload)
    return payloads


class InProcessBroker:
    """Fan-out to this process's subscribers: each ``subscribe()`` gets a bounded queue."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._queues: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)

    def deliver(self, message: dict[str, Any]) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a slow consumer loses its subscription rather than slowing others
                self._queues.discard(queue)
                log.warning("slow live subscriber dropped")

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def publish(self, events: Sequence[Event]) -> None:
        for payload in encode([message_for(e) for e in events]):
            self.deliver(json.loads(payload))


class PostgresBroker(InProcessBroker):
    def __init__(self, dsn: str, queue_size: int = 100) -> None:
        super().__init__(queue_size)
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self._listener: Any = None
        self._sender: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        import asyncpg

        if self._listener is None:
            self._listener = await asyncpg.connect(self.dsn)
            await self._listener.add_listener(CHANNEL, lambda _c, _p, _ch, payload: self.deliver(json.loads(payload)))

    async def publish(self, events: Sequence[Event]) -> None:
        import asyncpg

        payloads = encode([message_for(e) for e in events])
        if not payloads:
            return
        async with self._lock:
            if self._sender is None or self._sender.is_closed():
                self._sender = await asyncpg.connect(self.dsn)
            for payload in payloads:
                await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def aclose(self) -> None:
        for conn in (self._listener, self._sender):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listener = self._sender = None


class RedisBroker(InProcessBroker):
    def __init__(self, url: str, queue_size: int = 100) -> None:
        super().__init__(queue_size)
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CHANNEL)

        async def pump() -> None:
            async for item in pubsub.listen():
                if item.get("type") == "message":
                    self.deliver(json.loads(item["data"]))

        self._task = asyncio.create_task(pump())

    async def publish(self, events: Sequence[Event]) -> None:
        for payload in encode([message_for(e) for e in events]):
            await self._redis.publish(CHANNEL, payload)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._redis.aclose()


def make_broker(database_url: str, *, redis_url: str | None = None, queue_size: int = 100) -> InProcessBroker:
    """Redis when a URL is given; PostgreSQL LISTEN/NOTIFY on PostgreSQL; else in-process."""
    if redis_url:
        return RedisBroker(redis_url, queue_size)
    if database_url.startswith("postgresql"):
        return PostgresBroker(database_url, queue_size)
    return InProcessBroker(queue_size)
