"""GraphQL subscriptions over WebSocket (graphql-transport-ws), with real clients against real uvicorn
processes: pushes of committed events (balance, action status, redemptions), authentication at
connection_init and per subscription, token expiry and refresh, limits and heartbeats, and two server
processes on one PostgreSQL database (an action submitted through one is pushed by the other).

Run alone: ``.venv/bin/python -m pytest -q tests/test_subscriptions.py``."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jingtan_api.auth.permissions import MEMBER
from jingtan_api.auth.tokens import AccessTokens
from jingtan_api.plugins.testing import SUBMIT
from jingtan_api.testing import FrozenClock, register_member, row_counts
from live_server import LiveServer
from tests.actions_helpers import trip
from tests.offers_helpers import make_member, make_merchant, make_offer, redeem

PROTOCOL = "graphql-transport-ws"
BALANCE = "subscription { balanceChanged { balance } }"
ACTIONS = "subscription($id: ID) { actionStatusChanged(actionId: $id) { id status calculation { points } } }"


@pytest.fixture
def clock() -> FrozenClock:
    # The live servers check tokens against the real clock, so the in-process setup issues them "now".
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def ws_url(server: LiveServer) -> str:
    return f"ws://127.0.0.1:{server.port}/graphql"


class Client:
    """A graphql-transport-ws client (what graphql-ws does in a browser), on the websockets library."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ack: dict | None = None

    @classmethod
    async def open(cls, url: str, token: str | None, *, payload: dict | None = None) -> "Client":
        ws = await connect(url, subprotocols=[PROTOCOL], open_timeout=30)
        client = cls(ws)
        init = payload if payload is not None else ({"authorization": f"Bearer {token}"} if token else {})
        await client.send({"type": "connection_init", "payload": init})
        return client

    async def send(self, message: dict) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 30) -> dict:
        async with asyncio.timeout(timeout):  # one deadline, however many pings arrive meanwhile
            return await self._recv()

    async def _recv(self) -> dict:
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "ping":  # server heartbeat: answer like graphql-ws does
                await self.send({"type": "pong"})
                continue
            return message

    async def quiet(self, seconds: float) -> None:
        """Read (answering the server's pings) for ``seconds``; nothing else may arrive meanwhile."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                message = await self.recv(timeout=left)
            except TimeoutError:
                return
            raise AssertionError(f"unexpected message {message}")

    async def acked(self) -> "Client":
        message = await self.recv()
        assert message["type"] == "connection_ack", message
        self.ack = message.get("payload")
        return self

    async def subscribe(self, sub_id: str, query: str, variables: dict | None = None) -> None:
        await self.send({"id": sub_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def closed(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the server to close; (code, reason)."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "the server did not send a close frame"
            return exc.rcvd.code, exc.rcvd.reason

    async def close(self) -> None:
        await self.ws.close()


def submit_trip(server: LiveServer, token: str, clock, **trip_args) -> dict:
    variables = {"input": {"action": {"transit": trip(clock, **trip_args)}, "idempotencyKey": uuid.uuid4().hex}}
    with httpx.Client(timeout=60) as http:
        r = http.post(server.url, json={"query": SUBMIT, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body
    return body["data"]["submitAction"]


@pytest.fixture
def server_env() -> dict:
    return {}


@pytest.fixture
def server(db_url, tmp_path, server_env, app):
    # `app` first: the database is migrated and the in-process app shares it (tokens, setup)
    with LiveServer(db_url, tmp_path, env=server_env) as live:
        yield live


async def test_balance_and_action_status_are_pushed_after_commit(server, services, clock):
    member = await make_member(services, clock)
    client = await (await Client.open(ws_url(server), member["token"])).acked()
    assert client.ack["expiresAt"]  # the ack tells when the token expires
    await client.subscribe("b", BALANCE)
    await client.subscribe("a", ACTIONS)
    await asyncio.sleep(0.3)  # the subscriptions are registered before the event
    submitted = await asyncio.to_thread(submit_trip, server, member["token"], clock)
    assert submitted["action"]["status"] == "APPROVED"
    points = submitted["action"]["calculation"]["points"]
    got = {}
    while len(got) < 2:
        message = await client.recv()
        assert message["type"] == "next", message
        got[message["id"]] = message["payload"]
    assert got["b"] == {"data": {"balanceChanged": {"balance": points}}}
    assert got["a"]["data"]["actionStatusChanged"] == {"id": submitted["action"]["id"], "status": "APPROVED",
                                                      "calculation": {"points": points}}
    await client.close()


async def test_redemption_status_is_pushed_to_the_member_and_the_merchant_staff(server, gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop, pointsPrice=10)
    member = await make_member(services, clock, points=100)
    redemption = await redeem(gql, member, offer["id"])
    assert not redemption["userErrors"], redemption
    rid = redemption["redemption"]["id"]
    code = redemption["redemption"]["code"]
    member_ws = await (await Client.open(ws_url(server), member["token"])).acked()
    staff_ws = await (await Client.open(ws_url(server), shop["owner"]["token"])).acked()
    await member_ws.subscribe("r", "subscription($id: ID) { redemptionStatusChanged(redemptionId: $id) { id status } }",
                              {"id": rid})
    await staff_ws.subscribe("m", "subscription($m: ID!) { merchantRedemptionChanged(merchantId: $m) { id status } }",
                             {"m": shop["id"]})
    await asyncio.sleep(0.3)
    confirm = ("mutation($i: ConfirmRedemptionInput!) { confirmRedemption(input: $i) { redemption { status } "
               "userErrors { code } } }")
    with httpx.Client(timeout=60) as http:
        r = await asyncio.to_thread(http.post, server.url, json={"query": confirm, "variables": {"i": {"code": code}}},
                                    headers={"Authorization": f"Bearer {shop['owner']['token']}"})
    assert r.json()["data"]["confirmRedemption"]["userErrors"] == [], r.text
    for ws, sub_id, field in ((member_ws, "r", "redemptionStatusChanged"), (staff_ws, "m", "merchantRedemptionChanged")):
        message = await ws.recv()
        assert message == {"id": sub_id, "type": "next", "payload": {"data": {field: {"id": rid, "status": "CONFIRMED"}}}}
        await ws.close()


@pytest.mark.parametrize("case", ["missing", "garbage", "expired", "not_an_object"])
async def test_a_connection_without_a_valid_token_is_closed_with_4403(server, services, clock, case):
    member = await make_member(services, clock)
    before = await row_counts(services.db)
    expired = AccessTokens(services.settings, clock).issue(member["pk"], frozenset({MEMBER}),
                                                          clock() - timedelta(hours=1))[0]
    payloads = {"missing": {}, "garbage": {"authorization": "Bearer not-a-token"},
                "expired": {"authorization": f"Bearer {expired}"}, "not_an_object": None}
    ws = await connect(ws_url(server), subprotocols=[PROTOCOL], open_timeout=30)
    client = Client(ws)
    message = {"type": "connection_init"} if case == "not_an_object" else {"type": "connection_init", "payload": payloads[case]}
    if case == "not_an_object":
        message["payload"] = "token"
    await client.send(message)
    code, reason = await client.closed()
    expected = {"missing": (4403, "UNAUTHENTICATED"), "garbage": (4403, "INVALID_TOKEN"),
                "expired": (4403, "TOKEN_EXPIRED"), "not_an_object": (4400, "Invalid connection init payload")}[case]
    assert code == expected[0] and reason.startswith(expected[1]), (code, reason)
    assert await row_counts(services.db) == before  # nothing written
    # a subscribe before connection_ack is refused too (4401, graphql-transport-ws)
    ws = await connect(ws_url(server), subprotocols=[PROTOCOL], open_timeout=30)
    client = Client(ws)
    await client.subscribe("x", BALANCE)
    assert (await client.closed())[0] == 4401


async def test_another_members_events_are_refused_per_subscription(server, gql, services, clock, admin):
    owner = await make_member(services, clock)
    intruder = await make_member(services, clock)
    submitted = await asyncio.to_thread(submit_trip, server, owner["token"], clock)
    shop = await make_merchant(gql, services, clock, admin)
    before = await row_counts(services.db)
    client = await (await Client.open(ws_url(server), intruder["token"])).acked()
    cases = [
        ("1", ACTIONS, {"id": submitted["action"]["id"]}, "FORBIDDEN"),
        ("2", ACTIONS, {"id": "QWN0aW9uOjk5OTk5OQ=="}, "NOT_FOUND"),  # Action:999999
        ("3", "subscription($m: ID!) { merchantRedemptionChanged(merchantId: $m) { id } }", {"m": shop["id"]}, "FORBIDDEN"),
        ("4", "subscription { balanceChanged { balanse } }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("5", "query { viewer { id } }", None, "BAD_REQUEST"),  # queries and mutations go over HTTP
    ]
    for sub_id, query, variables, code in cases:
        await client.subscribe(sub_id, query, variables)
        message = await client.recv()
        if message["type"] == "next":  # an error raised by the subscribe resolver arrives as a result
            errors = message["payload"]["errors"]
            assert message["payload"]["data"] is None
            assert (await client.recv()) == {"id": sub_id, "type": "complete"}
        else:
            assert message["type"] == "error", message
            errors = message["payload"]
        assert message["id"] == sub_id
        assert [e["extensions"]["code"] for e in errors] == [code], errors
    # the connection is still usable, and nothing was written
    await client.subscribe("6", BALANCE)
    await client.close()
    assert await row_counts(services.db) == before


@pytest.mark.parametrize("refresh", [False, True])
async def test_the_connection_ends_when_the_token_expires_unless_refreshed(server, services, clock, refresh):
    member = await make_member(services, clock)
    ttl = services.settings.auth.access_token_ttl_seconds
    now = datetime.now(UTC)
    # A token issued so that it expires 3 seconds from now.
    short = AccessTokens(services.settings, lambda: now).issue(member["pk"], frozenset({MEMBER}), now - timedelta(seconds=ttl - 3))[0]
    client = await (await Client.open(ws_url(server), short)).acked()
    await client.subscribe("b", BALANCE)
    if not refresh:
        code, reason = await client.closed(timeout=30)
        assert code == 4403 and reason.startswith("TOKEN_EXPIRED"), (code, reason)
        return
    await client.send({"type": "ping", "payload": {"authorization": f"Bearer {member['token']}"}})
    pong = await client.recv()
    assert pong["type"] == "pong" and pong["payload"]["expiresAt"] > client.ack["expiresAt"]
    await asyncio.sleep(4.5)  # past the first token's expiry: still open and still pushing
    submitted = await asyncio.to_thread(submit_trip, server, member["token"], clock)
    message = await client.recv()
    assert message["type"] == "next" and message["payload"]["data"]["balanceChanged"]["balance"] == \
        submitted["action"]["calculation"]["points"]
    # a refresh with another member's token is refused
    other = await make_member(services, clock)
    await client.send({"type": "ping", "payload": {"authorization": f"Bearer {other['token']}"}})
    code, reason = await client.closed()
    assert code == 4403 and reason.startswith("FORBIDDEN")


@pytest.mark.parametrize("server_env", [{"JINGTAN_LIVE__MAX_CONNECTIONS_PER_MEMBER": "2",
                                         "JINGTAN_LIVE__MAX_CONNECTIONS_PER_PROCESS": "3",
                                         "JINGTAN_LIVE__MAX_SUBSCRIPTIONS_PER_CONNECTION": "2",
                                         "JINGTAN_LIVE__HEARTBEAT_SECONDS": "1"}])
async def test_limits_and_heartbeats(server, services, clock):
    member = await make_member(services, clock)
    first = await (await Client.open(ws_url(server), member["token"])).acked()
    second = await (await Client.open(ws_url(server), member["token"])).acked()
    third = await Client.open(ws_url(server), member["token"])
    code, reason = await third.closed()
    assert code == 4029 and reason.startswith("TOO_MANY_CONNECTIONS: at most 2 per member"), (code, reason)
    other = await make_member(services, clock)
    other_first = await (await Client.open(ws_url(server), other["token"])).acked()  # the process's third
    other_second = await Client.open(ws_url(server), other["token"])
    code, reason = await other_second.closed()
    assert code == 4029 and reason.startswith("TOO_MANY_CONNECTIONS: this server"), (code, reason)
    await other_first.close()
    # subscriptions per connection
    await first.subscribe("1", BALANCE)
    await first.subscribe("2", ACTIONS)
    await first.subscribe("3", BALANCE)
    message = await first.recv()
    assert message["id"] == "3" and message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    # a client that answers the server's pings stays; one that answers nothing is closed with 4030
    await first.quiet(3.5)
    await first.subscribe("4", BALANCE)  # still refused (two running), so still connected
    assert (await first.recv())["type"] == "error"
    code, reason = await second.closed(timeout=30)  # `second` never read its pings
    assert code == 4030, (code, reason)
    # a closed connection frees its place
    again = await (await Client.open(ws_url(server), member["token"])).acked()
    await again.close()
    await first.close()


async def test_a_subscription_over_http_is_a_typed_error(gql, member):
    for accept in ("application/json", "application/graphql-response+json"):
        r = await gql.http.post("/graphql", json={"query": BALANCE},
                                headers={"Authorization": f"Bearer {member['token']}", "Accept": accept})
        assert r.status_code == 400, r.text
        error = r.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST" and "WebSocket" in error["message"], error


async def test_two_processes_on_postgresql_push_each_others_events(backend, db_url, tmp_path, app, services, clock):
    if backend != "postgresql":
        pytest.skip("several server processes share events through PostgreSQL LISTEN/NOTIFY (SQLite: one process)")
    member = await make_member(services, clock)
    with LiveServer(db_url, tmp_path) as one, LiveServer(db_url, tmp_path) as two:
        client = await (await Client.open(ws_url(two), member["token"])).acked()
        await client.subscribe("a", ACTIONS)
        await client.subscribe("b", BALANCE)
        await asyncio.sleep(0.5)
        submitted = await asyncio.to_thread(submit_trip, one, member["token"], clock)  # through the other process
        got = {}
        while len(got) < 2:
            message = await client.recv()
            got[message["id"]] = message["payload"]["data"]
        assert got["a"]["actionStatusChanged"]["id"] == submitted["action"]["id"]
        assert got["b"]["balanceChanged"]["balance"] == submitted["action"]["calculation"]["points"]
        await client.close()


def post(server: LiveServer, query: str, variables: dict, token: str) -> dict:
    with httpx.Client(timeout=60) as http:
        r = http.post(server.url, json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


async def test_a_review_decision_is_pushed_as_status_change_and_notification(server, services, clock, admin, operation):
    member = await make_member(services, clock)
    client = await (await Client.open(ws_url(server), member["token"])).acked()
    await client.subscribe("a", ACTIONS)
    await client.subscribe("n", "subscription { notificationAdded { kind titleEn titleZh read actionId } }")
    await asyncio.sleep(0.3)
    drop = {"material": "PET", "weightGrams": 30_000, "stationId": "ST-9", "receiptId": f"R-{uuid.uuid4().hex[:8]}",
            "droppedAt": (clock() - timedelta(hours=2)).isoformat(), "idempotencyKey": uuid.uuid4().hex}
    submitted = await asyncio.to_thread(post, server, operation("actions/SubmitRecyclingDropOff"), drop, member["token"])
    action = submitted["submitAction"]["action"]
    assert action["status"] == "NEEDS_REVIEW"
    first = await client.recv()
    assert first["id"] == "a" and first["payload"]["data"]["actionStatusChanged"]["status"] == "NEEDS_REVIEW"
    review = {"input": {"actionId": action["id"], "decision": "APPROVE", "reason": "receipt photo checked"}}
    await asyncio.to_thread(post, server, operation("actions/ReviewAction"), review, admin["token"])
    got = {}
    while len(got) < 2:
        message = await client.recv()
        got[message["id"]] = message["payload"]["data"]
    assert got["a"]["actionStatusChanged"]["status"] == "APPROVED"
    notice = got["n"]["notificationAdded"]
    assert notice["kind"] == "REVIEW_DECISION" and notice["read"] is False and notice["actionId"] == action["id"]
    assert notice["titleEn"] and notice["titleZh"]
    await client.close()


async def test_challenge_progress_is_pushed(server, gql, services, clock, admin):
    from community_helpers import join_org, ok
    from ledger_helpers import relogin
    from test_challenges import CREATE, challenge_input, funded_org

    clock.advance(hours=-1)  # the challenge starts an hour before the (real) time the server checks trips at
    boss = await register_member(gql, display_name="老板 Boss")
    runner = await register_member(gql, display_name="跑者 Runner")
    org_id = await funded_org(gql, admin, boss, 50)
    await join_org(gql, boss, org_id, runner)
    created = await ok(gql, CREATE, {"input": challenge_input(org_id, clock, goalValue=100)}, token=boss["token"])
    cid = created["challenge"]["id"]
    clock.advance(hours=1)
    await relogin(gql, runner)
    client = await (await Client.open(ws_url(server), runner["token"])).acked()
    await client.subscribe("c", "subscription($c: ID) { challengeProgressChanged(challengeId: $c) { progress actions "
                           "qualifiedAt } }", {"c": cid})
    await asyncio.sleep(0.3)
    submitted = await asyncio.to_thread(submit_trip, server, runner["token"], clock, minutes_ago=5)
    assert submitted["action"]["status"] == "APPROVED"
    message = await client.recv()
    progress = message["payload"]["data"]["challengeProgressChanged"]
    assert progress["actions"] == 1 and progress["progress"] == submitted["action"]["calculation"]["gramsCo2e"]
    assert (progress["qualifiedAt"] is not None) == (progress["progress"] >= 100)
    await client.close()
