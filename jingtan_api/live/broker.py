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
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from jingtan_api.events import Event

log = logging.getLogger("jingtan.live")

CHANNEL = "jingtan_live"
MAX_PAYLOAD_BYTES = 8000  # PostgreSQL's NOTIFY limit
# Only these keys travel: ids and statuses, small and not personal.
_KEYS = ("action_id", "user_id", "member_user_id", "merchant_id", "redemption_id", "offer_id", "status",
         "points", "reviewer_id", "transaction_id", "challenge_id", "notification_id", "kind")
MAX_USER_IDS = 500  # a ledger transaction touching more member accounts tells only the first ones


def message_for(event: Event) -> dict[str, Any]:
    data = {k: event.data[k] for k in _KEYS if k in event.data and isinstance(event.data[k], (int, str, type(None)))}
    user_ids = event.data.get("user_ids")
    if isinstance(user_ids, (list, tuple)):
        data["user_ids"] = [u for u in user_ids if isinstance(u, int)][:MAX_USER_IDS]
    return {"type": event.type, **data}


def topics_of(message: dict[str, Any]) -> set[str]:
    """Who a message concerns: ``user:<id>`` (the member, the action's owner, every member account of a
    ledger transaction) and ``merchant:<id>``; subscribers register for topics, not for everything."""
    topics = {f"user:{message[k]}" for k in ("user_id", "member_user_id") if isinstance(message.get(k), int)}
    topics.update(f"user:{u}" for u in message.get("user_ids") or ())
    if isinstance(message.get("merchant_id"), int):
        topics.add(f"merchant:{message['merchant_id']}")
    return topics


def encode(messages: Sequence[dict[str, Any]]) -> list[str]:
    """JSON payloads, each below the NOTIFY limit (a message too large alone is dropped and logged)."""
    payloads = []
    for message in messages:
        payload = orjson.dumps(message).decode()
        if len(payload.encode()) >= MAX_PAYLOAD_BYTES:
            log.warning("live message too large, dropped", extra={"event_type": message.get("type")})
            continue
        payloads.append(payload)
    return payloads


class SlowConsumer(Exception):
    """The subscriber did not keep up: its queue filled and it was dropped."""


class Subscription:
    """One subscriber's bounded queue of messages for its topics (``broker.subscribe(topics)``)."""

    __slots__ = ("_broker", "dropped", "queue", "topics")

    def __init__(self, broker: "InProcessBroker", topics: frozenset[str], size: int) -> None:
        self._broker = broker
        self.topics = topics
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = False

    async def get(self) -> dict[str, Any]:
        """The next message; :class:`SlowConsumer` once the subscriber was dropped."""
        if self.dropped:
            raise SlowConsumer
        message = await self.queue.get()
        if self.dropped:
            raise SlowConsumer
        return message

    def get_nowait(self) -> dict[str, Any]:
        return self.queue.get_nowait()

    def empty(self) -> bool:
        return self.queue.empty()

    def close(self) -> None:
        self._broker.unsubscribe(self)


class InProcessBroker:
    """Fan-out to this process's subscribers, by topic: a message reaches only the subscriptions of the
    users and merchants it concerns (one dict lookup per topic, not a scan of every subscriber)."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._by_topic: dict[str, set[Subscription]] = {}
        self.delivered = 0  # messages put on subscribers' queues (bench/live.py reads it)
        self.dropped = 0  # subscribers dropped as slow consumers

    @property
    def subscriber_count(self) -> int:
        return len({s for subs in self._by_topic.values() for s in subs})

    def subscribe(self, topics: Iterable[str] = ("*",)) -> Subscription:
        sub = Subscription(self, frozenset(topics), self.queue_size)
        for topic in sub.topics:
            self._by_topic.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for topic in sub.topics:
            subs = self._by_topic.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_topic[topic]

    def deliver(self, message: dict[str, Any]) -> None:
        targets: set[Subscription] = set(self._by_topic.get("*", ()))
        for topic in topics_of(message):
            targets.update(self._by_topic.get(topic, ()))
        for sub in targets:
            try:
                sub.queue.put_nowait(message)
                self.delivered += 1
            except asyncio.QueueFull:  # a slow consumer loses its subscription rather than slowing others
                sub.dropped = True
                self.unsubscribe(sub)
                self.dropped += 1
                log.warning("slow live subscriber dropped", extra={"topics": sorted(sub.topics)[:3]})

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def publish(self, events: Sequence[Event]) -> None:
        for payload in encode([message_for(e) for e in events]):
            self.deliver(orjson.loads(payload))


class PostgresBroker(InProcessBroker):
    """``NOTIFY jingtan_live`` after commit (one statement per transaction, however many events), and one
    ``LISTEN`` connection per process that feeds the local subscribers. A lost LISTEN connection is
    re-opened with back-off; messages sent meanwhile are missed (clients re-read state when they
    reconnect, see docs/live.md)."""

    def __init__(self, dsn: str, queue_size: int = 100) -> None:
        super().__init__(queue_size)
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self._listener: Any = None
        self._sender: Any = None
        self._lock = asyncio.Lock()
        self._closing = False
        self._reconnect: asyncio.Task | None = None

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.deliver(orjson.loads(payload))
        except orjson.JSONDecodeError:
            log.warning("malformed live notification ignored")

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_lost)
        self._listener = conn

    def _on_lost(self, _conn: Any) -> None:
        if self._closing or (self._reconnect is not None and not self._reconnect.done()):
            return
        log.warning("live LISTEN connection lost; reconnecting")
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self._listen()
                return
            except (OSError, Exception):  # noqa: BLE001 - keep trying until closed
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> None:
        """Open the LISTEN connection; when the database cannot be reached now, the server still starts
        (``/readyz`` reports the database) and the connection is retried in the background."""
        if self._listener is not None or (self._reconnect is not None and not self._reconnect.done()):
            return
        try:
            await self._listen()
        except (OSError, Exception):  # noqa: BLE001 - unreachable, refused, not yet accepting connections
            log.warning("live LISTEN connection could not be opened; retrying in the background")
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def publish(self, events: Sequence[Event]) -> None:
        import asyncpg

        payloads = encode([message_for(e) for e in events])
        if not payloads:
            return
        async with self._lock:
            if self._sender is None or self._sender.is_closed():
                self._sender = await asyncpg.connect(self.dsn)
            await self._sender.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)

    async def aclose(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnect
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
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe (waiting up to 5 s for Redis to acknowledge); an unreachable Redis does not stop the
        server: the subscription is retried in the background with back-off."""
        if self._task is not None:
            return
        self._subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._pump())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def _pump(self) -> None:
        delay = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                self._subscribed.set()
                delay = 0.5
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self.deliver(orjson.loads(item["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis went away: retry until closed
                log.warning("live Redis subscription lost; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

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


def make_broker(database_url: str, *, kind: str = "auto", redis_url: str | None = None,
                queue_size: int = 100) -> InProcessBroker:
    """``kind`` (``[live] broker``): ``auto`` is Redis when a URL is given, PostgreSQL LISTEN/NOTIFY on
    PostgreSQL, else in-process; ``memory``, ``postgresql`` and ``redis`` choose one explicitly."""
    if kind == "auto":
        kind = "redis" if redis_url else "postgresql" if database_url.startswith("postgresql") else "memory"
    if kind == "redis":
        if not redis_url:
            raise ValueError("[live] broker = \"redis\" needs [live] redis_url")
        return RedisBroker(redis_url, queue_size)
    if kind == "postgresql":
        if not database_url.startswith("postgresql"):
            raise ValueError("[live] broker = \"postgresql\" needs a PostgreSQL database_url")
        return PostgresBroker(database_url, queue_size)
    return InProcessBroker(queue_size)
