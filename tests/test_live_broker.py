"""The live broker: committed events reach subscribers (in this process, through PostgreSQL NOTIFY to
another broker, through Redis); a rolled-back transaction's events never do."""

import asyncio
import uuid

import pytest

from jingtan_api import events
from jingtan_api.live import broker as live
from jingtan_api.live.broker import InProcessBroker, PostgresBroker, RedisBroker, make_broker


async def _approve(services, action_id: int, user_id: int) -> None:
    await services.db.write(lambda conn: events.emit(conn, "test.live_event", action_id=action_id, user_id=user_id,
                                                     plugin_code="x", grams_co2e=1, points=5))


class Boom(Exception):
    pass


async def _rolled_back(services) -> None:
    async def fn(conn):
        await events.emit(conn, "test.live_event", action_id=99, user_id=1, plugin_code="x", grams_co2e=1, points=5)
        raise Boom

    with pytest.raises(Boom):
        await services.db.write(fn)


async def test_committed_events_reach_subscribers_rolled_back_never(services):
    broker = services.live  # the app's own broker, started by its lifespan and publishing after commit
    listener = make_broker(services.settings.database_url)  # on PostgreSQL: another "process"
    await listener.start()
    try:
        local, remote = broker.subscribe(), listener.subscribe()
        await _rolled_back(services)
        await _approve(services, 7, 3)
        expected = {"type": "test.live_event", "action_id": 7, "user_id": 3, "points": 5}
        assert await asyncio.wait_for(local.get(), 30) == expected
        if isinstance(broker, PostgresBroker):
            assert await asyncio.wait_for(remote.get(), 30) == expected
        else:
            assert isinstance(broker, InProcessBroker)
        assert local.empty()  # the rolled-back event (action 99) was never published
    finally:
        await listener.aclose()


async def test_redis_broker_reaches_another_broker(services):
    url = "redis://127.0.0.1:6379/0"
    sender, receiver = RedisBroker(url), RedisBroker(url)
    live_channel = live.CHANNEL
    live.CHANNEL = f"jingtan_live_test_{uuid.uuid4().hex[:8]}"  # isolated from other engineers' tests
    try:
        try:
            await receiver._redis.ping()
        except Exception:  # noqa: BLE001 - redis-py's ConnectionError, or an OSError
            pytest.skip("Redis not reachable on 127.0.0.1:6379")
        await receiver.start()
        services.events.on_commit(sender.publish)
        queue = receiver.subscribe()
        await asyncio.sleep(0.2)  # the SUBSCRIBE is acknowledged before the pump reads
        await _rolled_back(services)
        await _approve(services, 8, 4)
        message = await asyncio.wait_for(queue.get(), 30)
        assert message["action_id"] == 8 and message["user_id"] == 4
        assert queue.empty()
    finally:
        live.CHANNEL = live_channel
        await sender.aclose()
        await receiver.aclose()


def test_slow_consumer_dropped_and_large_messages_refused():
    broker = InProcessBroker(queue_size=1)
    queue = broker.subscribe()
    broker.deliver({"type": "a"})
    broker.deliver({"type": "b"})  # queue full: the subscriber is dropped
    broker.deliver({"type": "c"})
    assert queue.dropped and queue.queue.qsize() == 1 and queue.get_nowait() == {"type": "a"}
    with pytest.raises(live.SlowConsumer):  # the subscriber learns it was dropped at its next read
        asyncio.run(queue.get())
    assert broker.subscriber_count == 0 and broker.dropped == 1
    assert live.encode([{"type": "x", "status": "y" * 9000}]) == []


def test_messages_reach_only_the_subscriptions_of_their_topics():
    broker = InProcessBroker()
    mine, other, merchant = broker.subscribe(["user:1"]), broker.subscribe(["user:2"]), broker.subscribe(["merchant:9"])
    broker.deliver({"type": "ledger.posted", "user_ids": [1, 3]})
    broker.deliver({"type": "redemption.confirmed", "member_user_id": 2, "merchant_id": 9})
    assert mine.get_nowait()["type"] == "ledger.posted" and mine.empty()
    assert other.get_nowait()["type"] == "redemption.confirmed" and other.empty()
    assert merchant.get_nowait()["type"] == "redemption.confirmed" and merchant.empty()
    mine.close()
    assert broker.subscriber_count == 2


async def test_a_slow_subscription_closes_its_websocket_with_4008():
    from types import SimpleNamespace

    from jingtan_api.live.connections import SLOW_CONSUMER
    from jingtan_api.live.transport import events as live_events

    closed: list[tuple[int, str]] = []

    class FakeWebSocket:
        async def close(self, code: int, reason: str) -> None:
            closed.append((code, reason))

    broker = InProcessBroker(queue_size=2)
    ctx = SimpleNamespace(services=SimpleNamespace(live=broker), request=FakeWebSocket(),
                          reset_request_caches=lambda: None)
    stream = live_events(SimpleNamespace(context=ctx), ["user:1"], ["ledger.posted"])
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)  # the subscription is registered
    broker.deliver({"type": "ledger.posted", "user_id": 1})
    assert (await first)["user_id"] == 1
    for _ in range(3):  # the consumer is busy: its queue of 2 overflows
        broker.deliver({"type": "ledger.posted", "user_id": 1})
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert closed and closed[0][0] == SLOW_CONSUMER and closed[0][1].startswith("SLOW_CONSUMER")
    assert broker.subscriber_count == 0


async def test_an_unreachable_database_does_not_stop_the_broker_from_starting():
    broker = PostgresBroker("postgresql://postgres@127.0.0.1:1/postgres")
    await broker.start()  # logs and retries in the background instead of failing the server's startup
    try:
        assert broker._listener is None and broker._reconnect is not None and not broker._reconnect.done()
    finally:
        await broker.aclose()
    assert broker._reconnect.done()


async def test_a_lost_listen_connection_is_reopened(services, backend):
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import asyncpg

    listener = PostgresBroker(services.settings.database_url)
    await listener.start()
    try:
        sub = listener.subscribe(["user:5"])
        lost_pid = listener._listener.get_server_pid()
        admin = await asyncpg.connect(listener.dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", lost_pid)  # the connection dies under it
        finally:
            await admin.close()
        for _ in range(100):  # reopened in the background
            if listener._listener is not None and not listener._listener.is_closed() \
                    and listener._listener.get_server_pid() != lost_pid:
                break
            await asyncio.sleep(0.1)
        assert listener._listener.get_server_pid() != lost_pid
        await _approve(services, 11, 5)  # published by the app's own broker after commit
        assert (await asyncio.wait_for(sub.get(), 30))["action_id"] == 11
    finally:
        await listener.aclose()
