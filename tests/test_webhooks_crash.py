"""Webhooks with real processes: a uvicorn server (tests/live_server.py, configured through JINGTAN_* env
vars) and real local HTTP receivers (threads with http.server on 127.0.0.1; private addresses are allowed
because the server is not in production mode). On SQLite and PostgreSQL.

A. The server is SIGKILLed right after the mutation that emitted the event returned, before any delivery
   job ran (the first server runs no jobs); a new server on the same database delivers the event exactly
   once, with the Jingtan-Event-Id of the outbox row and a signature that verifies with the documented
   algorithm (tests/webhooks_helpers.verify, the code of docs/live.md).
B. 500 then 200: retried and delivered; always 500: FAILED after max_attempts, visible with its attempts
   through GraphQL; a receiver that holds the request past the timeout: the attempts record ``timeout``,
   and a mutation emitting another event returns while that request is still held.

Waits are for conditions (with a generous deadline), never timed assertions.
Run alone: ``.venv/bin/python -m pytest -q tests/test_webhooks_crash.py``.
"""

import asyncio
import json
import uuid

import httpx
from live_server import LiveServer
from sqlalchemy import select
from webhooks_helpers import Receiver, verify

from jingtan_api.graphql.relay import decode_id
from jingtan_api.job_models import JobLease
from jingtan_api.testing import REGISTER
from jingtan_api.webhooks.models import WebhookDelivery, WebhookEndpoint

FAST = {
    "JINGTAN_LIMITS__RATE_LIMITING": "false",
    "JINGTAN_OPERATIONS__JOBS__POLL_SECONDS": "0.2",
    "JINGTAN_WEBHOOKS__INTERVAL_SECONDS": "1",
    "JINGTAN_WEBHOOKS__BASE_BACKOFF_SECONDS": "0",
    "JINGTAN_WEBHOOKS__MAX_ATTEMPTS": "2",
    "JINGTAN_WEBHOOKS__TIMEOUT_SECONDS": "2",
}
NO_JOBS = {"JINGTAN_LIMITS__RATE_LIMITING": "false", "JINGTAN_OPERATIONS__JOBS__ENABLED": "false"}

CREATE = """mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { endpoint { id } secret userErrors { code } } }"""
DELIVERIES = """query($id: ID!) { node(id: $id) { ... on WebhookEndpoint {
  deliveries(first: 10) { nodes { eventId status attemptCount attempts { number statusCode error durationMs startedAt } } } } } }"""


def call(server: LiveServer, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(server.url, json={"query": query, "variables": variables}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


LOGIN = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }"


def login(server: LiveServer, admin: dict) -> str:
    """A token the server issued itself (the test app's clock is frozen)."""
    data = call(server, LOGIN, {"i": {"identifier": admin["email"], "password": admin["password"]}})
    return data["login"]["tokens"]["accessToken"]


def create_endpoint(server: LiveServer, token: str, url: str) -> dict:
    payload = call(server, CREATE, {"input": {"url": url, "eventTypes": ["USER_REGISTERED"]}}, token)["createWebhookEndpoint"]
    assert payload["userErrors"] == [], payload
    return payload


def register(server: LiveServer) -> str:
    email = f"hook-{uuid.uuid4().hex[:10]}@example.cn"
    data = call(server, REGISTER, {"input": {"email": email, "password": "Green-leaf-2026", "displayName": "回调 Hook"}})
    assert data["register"]["userErrors"] == []
    return data["register"]["user"]["id"]


async def wait_for(check, what: str, server: LiveServer, deadline: float = 120) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"gave up waiting for {what}\n{server.log()}")
        await asyncio.sleep(0.1)


async def deliveries(services) -> list[dict]:
    async with services.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(WebhookDelivery.__table__).order_by(WebhookDelivery.id))]


async def job_runs(services, name: str) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(JobLease.runs).where(JobLease.name == name))).scalar_one_or_none() or 0


async def test_sigkill_before_delivery_then_delivered_once_after_restart(services, admin, db_url, tmp_path):
    with Receiver() as receiver:
        first = LiveServer(db_url, tmp_path, env=NO_JOBS).start()
        try:
            token = login(first, admin)
            secret = create_endpoint(first, token, receiver.url)["secret"]
            user_id = register(first)  # user.registered: the outbox row is written in the registration's transaction
        finally:
            first.kill()
        assert receiver.received == []
        [pending] = await deliveries(services)
        assert pending["status"] == "PENDING" and pending["attempts"] == 0

        with LiveServer(db_url, tmp_path, env=FAST) as second:
            async def succeeded() -> bool:
                return [d["status"] for d in await deliveries(services)] == ["SUCCEEDED"]

            await wait_for(succeeded, "the delivery after the restart", second)
            runs = await job_runs(services, "webhooks")

            async def two_more_runs() -> bool:
                return await job_runs(services, "webhooks") >= runs + 2

            await wait_for(two_more_runs, "two more runs of the webhooks job", second)
            token = login(second, admin)
            endpoint_id = call(second, "{ webhookEndpoints { nodes { id } } }", {}, token)["webhookEndpoints"]["nodes"][0]["id"]
            seen = call(second, DELIVERIES, {"id": endpoint_id}, token)["node"]["deliveries"]["nodes"]

        assert len(receiver.received) == 1  # exactly once, even after more job runs
        headers, raw = receiver.received[0]
        assert headers["Jingtan-Event-Id"] == pending["event_id"] == json.loads(raw)["id"]
        assert verify(secret, headers["Jingtan-Signature"], raw)
        assert headers["Jingtan-Signature"].startswith(f"t={headers['Jingtan-Timestamp']},")
        body = json.loads(raw)
        assert body["type"] == "user.registered" and raw.decode() == pending["payload"]
        assert body["data"]["user_id"] == decode_id(user_id, "User")
        assert [(d["eventId"], d["status"], [a["statusCode"] for a in d["attempts"]]) for d in seen] == [
            (pending["event_id"], "SUCCEEDED", [200])
        ]


async def test_retries_failures_and_timeouts_with_a_real_server(services, admin, db_url, tmp_path):
    flaky, broken, slow = Receiver(fail_first=1), Receiver(always_fail=True), Receiver(hang=True, hang_limit=60)
    try:
        with LiveServer(db_url, tmp_path, env=FAST) as server:
            token = login(server, admin)
            ids = {name: create_endpoint(server, token, r.url)["endpoint"]["id"]
                   for name, r in (("flaky", flaky), ("broken", broken), ("slow", slow))}
            register(server)

            async def slow_holds_a_request() -> bool:
                return slow.in_flight > 0

            await wait_for(slow_holds_a_request, "the slow receiver to hold a delivery", server)
            # The delivery job is stuck on the slow receiver: a mutation emitting an event still returns.
            register(server)
            assert slow.in_flight > 0 and not slow.released.is_set()

            async def all_settled() -> bool:
                rows = await deliveries(services)
                return len(rows) == 6 and all(d["status"] != "PENDING" for d in rows)

            await wait_for(all_settled, "every delivery to succeed or fail", server, deadline=180)
            seen = {name: call(server, DELIVERIES, {"id": gid}, token)["node"]["deliveries"]["nodes"]
                    for name, gid in ids.items()}
    finally:
        for r in (flaky, broken, slow):
            r.close()

    # 500 then 200: retried with the same event id, delivered.
    assert [d["status"] for d in seen["flaky"]] == ["SUCCEEDED", "SUCCEEDED"]
    codes = sorted([a["statusCode"] for a in d["attempts"]] for d in seen["flaky"])
    assert codes == [[200], [500, 200]]
    first_event = flaky.received[0][0]["Jingtan-Event-Id"]
    assert [h["Jingtan-Event-Id"] for h, _ in flaky.received].count(first_event) == 2
    # always 500: FAILED after max_attempts (2), every attempt visible.
    for d in seen["broken"]:
        assert d["status"] == "FAILED" and d["attemptCount"] == 2
        assert [(a["number"], a["statusCode"], a["error"]) for a in d["attempts"]] == [(1, 500, None), (2, 500, None)]
    assert len(broken.received) == 4
    # held past the timeout: the attempts say so.
    for d in seen["slow"]:
        assert d["status"] == "FAILED"
        assert [(a["statusCode"], a["error"]) for a in d["attempts"]] == [(None, "timeout"), (None, "timeout")]
    # Every receiver saw each event with a valid signature (one secret per endpoint).
    async with services.db.read() as conn:
        secrets = {r.url: r.secret for r in await conn.execute(select(WebhookEndpoint.url, WebhookEndpoint.secret))}
    for r in (flaky, broken, slow):
        assert all(verify(secrets[r.url], h["Jingtan-Signature"], b) for h, b in r.received)
