"""Domain events (jingtan_api.events): listeners run inside the emitting transaction and roll back with
it; publishers see only committed transactions, once, also when ``db.write`` retried an attempt."""

import pytest
from sqlalchemy import text

from jingtan_api import events
from jingtan_api.events import Event, EventBus
from jingtan_api.jobs import JOBS, registered_jobs, run_job
from jingtan_api.services import Services
from jingtan_api.testing import REGISTER, register_member



async def test_listener_runs_in_the_transaction_and_publisher_after_commit(services: Services, gql):
    bus = services.events
    seen_inside: list[tuple[str, int]] = []
    published: list[list[str]] = []

    async def listener(conn, event: Event) -> None:
        # the emitting transaction's own uncommitted row is visible: same connection
        count = (await conn.execute(text("SELECT count(*) FROM user_account"))).scalar_one()
        seen_inside.append((event.type, count))

    async def publisher(batch) -> None:
        published.append([e.type for e in batch])

    bus.listen("user.registered", listener)
    bus.on_commit(publisher)
    await register_member(gql, email="events@example.com")
    assert [t for t, _ in seen_inside] == ["user.registered"]
    assert seen_inside[0][1] >= 1
    assert published == [["user.registered"]]


async def test_rolled_back_transaction_publishes_nothing(services: Services):
    published: list = []

    async def publisher(batch) -> None:
        published.append(batch)

    services.events.on_commit(publisher)

    async def work(conn) -> None:
        await events.emit(conn, "test.happened", n=1)
        raise ValueError("roll back")

    with pytest.raises(ValueError):
        await services.db.write(work)
    assert published == []


async def test_a_failing_listener_rolls_back_the_emitting_transaction(services: Services, gql):
    async def refuse(conn, event) -> None:
        raise RuntimeError("listener refuses")

    services.events.listen("user.registered", refuse)
    body = await gql(REGISTER, {"input": {"email": "refused@example.com", "password": "Green-leaf-2026",
                                          "displayName": "Refused 拒绝"}})
    assert body["data"] is None or body["data"]["register"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "listener refuses" not in str(body)
    async with services.db.read() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM user_account WHERE email = 'refused@example.com'"))).scalar_one()
    assert n == 0


async def test_retried_attempt_publishes_only_the_committed_attempt(services: Services):
    from sqlalchemy.exc import DBAPIError

    class Retry(Exception):
        sqlstate = "40001"

    published: list[list[dict]] = []

    async def publisher(batch) -> None:
        published.append([dict(e.data) for e in batch])

    services.events.on_commit(publisher)
    attempts = 0

    async def work(conn) -> int:
        nonlocal attempts
        attempts += 1
        await events.emit(conn, "test.attempt", attempt=attempts)
        if attempts == 1:
            raise DBAPIError("SELECT 1", {}, Retry())
        return attempts

    assert await services.db.write(work) == 2
    assert published == [[{"attempt": 2}]]


async def test_the_attempt_memo_lives_one_attempt(services: Services):
    from sqlalchemy.exc import DBAPIError

    class Retry(Exception):
        sqlstate = "40001"

    assert events.attempt_memo() is None  # outside a write
    seen: list[dict] = []

    async def work(conn) -> int:
        memo = events.attempt_memo()
        seen.append(dict(memo))
        memo["read"] = len(seen)
        if len(seen) == 1:
            raise DBAPIError("SELECT 1", {}, Retry())
        return memo["read"]

    assert await services.db.write(work) == 2
    assert seen == [{}, {}]  # the retried attempt starts empty
    assert events.attempt_memo() is None
    assert await services.db.write(lambda conn: _memo_keys()) == []  # the next transaction too


async def test_a_deferred_write_runs_once_before_commit_and_its_failure_rolls_back(services: Services):
    """``events.defer_to_commit``: the deferred write runs after the transaction's work, once per key (the
    first ``fn`` kept), inside the transaction (what it writes commits with the rest); when it fails, the
    whole transaction rolls back and publishes nothing; outside a write there is nothing to defer to."""
    assert events.defer_to_commit("k", lambda conn: None) is False  # outside a write
    order: list[str] = []
    published: list = []

    async def publisher(batch) -> None:
        published.append(batch)

    services.events.on_commit(publisher)

    async def setup(conn) -> None:
        await conn.execute(text("CREATE TABLE deferred_probe (n INTEGER)"))

    await services.db.write(setup)

    async def deferred(conn) -> None:
        order.append("deferred")
        await conn.execute(text("INSERT INTO deferred_probe (n) VALUES (1)"))

    async def other(conn) -> None:
        order.append("other")

    async def work(conn) -> None:
        assert events.defer_to_commit("probe", deferred) is True
        assert events.defer_to_commit("probe", other) is True  # same key: the first fn is kept
        await events.emit(conn, "test.happened", n=1)
        order.append("work")

    await services.db.write(work)
    assert order == ["work", "deferred"] and len(published) == 1

    async def failing(conn) -> None:
        raise ValueError("the deferred write failed")

    async def failing_work(conn) -> None:
        await conn.execute(text("INSERT INTO deferred_probe (n) VALUES (2)"))
        events.defer_to_commit("probe", failing)
        await events.emit(conn, "test.happened", n=2)

    with pytest.raises(ValueError, match="deferred write failed"):
        await services.db.write(failing_work)
    async with services.db.read() as conn:
        assert [r.n for r in await conn.execute(text("SELECT n FROM deferred_probe ORDER BY n"))] == [1]
    assert len(published) == 1  # the failed transaction published nothing


async def _memo_keys() -> list[str]:
    memo = events.attempt_memo()
    return ["outside"] if memo is None else list(memo)


async def test_a_failing_publisher_does_not_fail_the_committed_write(services: Services, gql):
    async def broken(batch) -> None:
        raise RuntimeError("receiver bug")

    services.events.on_commit(broken)
    user = await register_member(gql, email="published@example.com")
    assert user


def test_emit_outside_a_write_reaches_no_receiver():
    import asyncio

    async def listener(conn, event) -> None:
        raise AssertionError("no bus outside Database.write")

    EventBus().listen("x", listener)
    event = asyncio.run(events.emit(None, "x", n=1))  # type: ignore[arg-type]
    assert event.type == "x" and dict(event.data) == {"n": 1}


def test_buses_are_per_app():
    a, b = EventBus(), EventBus()

    async def listener(conn, event) -> None: ...

    a.listen("x", listener)
    assert list(a.listeners("x")) == [listener] and list(b.listeners("x")) == []


def test_job_registry_has_the_core_expiry_job_and_unique_names():
    jobs = registered_jobs()
    assert [j.name for j in JOBS] == ["expiry"]
    assert len({j.name for j in jobs}) == len(jobs)


async def test_run_job_logs_a_failure_and_answers_failed(services: Services):
    from jingtan_api.jobs import Job

    async def boom(app, now):
        raise RuntimeError("job bug")

    job = Job(name="boom", description="fails", run=boom, interval_seconds=lambda s: 0)
    assert await run_job(services, job) == {"failed": 1}
    result = await run_job(services, JOBS[0])
    assert set(result) == {"redemptions", "refunded", "accounts", "expired", "deletions"}


class TestCoreEvents:
    """The events the core emits, with the data keys other domains rely on (jingtan_api.events)."""

    @pytest.fixture
    def settings_overrides(self):
        return {"plugins": {"enabled": ["transit"]}}

    async def test_an_approved_action_emits_recorded_approved_and_ledger_posted(self, gql, member, services, clock):
        from tests.actions_helpers import submit, trip

        inside: list[Event] = []
        committed: list[str] = []

        async def listener(conn, event: Event) -> None:
            inside.append(event)

        async def publisher(batch) -> None:
            committed.extend(e.type for e in batch)

        for kind in ("action.recorded", "action.approved", "ledger.posted"):
            services.events.listen(kind, listener)
        services.events.on_commit(publisher)
        out = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="ev1")
        assert out["action"]["status"] == "APPROVED"
        by_type = {e.type: dict(e.data) for e in inside}
        assert committed == ["ledger.posted", "action.recorded", "action.approved"]
        approved = by_type["action.approved"]
        assert approved["plugin_code"] == "transit" and approved["grams_co2e"] == 467 and approved["points"] == 46
        assert by_type["action.recorded"]["status"] == "APPROVED"
        assert sorted(by_type["ledger.posted"]["amounts"].values()) == [-46, 46]
        # a replay emits nothing
        inside.clear()
        committed.clear()
        again = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="ev1")
        assert again["replayed"] is True
        assert inside == [] and committed == []
