"""Crash safety: a real uvicorn server is SIGKILLed in the middle of a burst of concurrent redemptions
(redeemOffer) and action submissions (submitAction), each with its own idempotency key; a new server is
started on the same database and every request of the burst is sent again with the same key.

What must hold, on SQLite and on PostgreSQL:
- right after the kill (before the restart): every request the first server acknowledged has its effect
  in the database (its idempotency record points at the id it answered with); an unacknowledged one at
  most once; no effect without its idempotency record (transactions are all-or-nothing);
- after the replay: each acknowledged request answers ``replayed: true`` with the same id; every request
  has exactly one effect; the offer's stock, every member's balance and the ledger agree, and
  ``check_invariants`` of the ledger and of the redemptions find nothing.

The kill is triggered by a count (after ``KILL_AFTER`` acknowledgements), not by a time.

Run alone: ``.venv/bin/python -m pytest -q -s tests/test_crash_safety.py``.
"""

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import IdempotencyRecord
from jingtan_api.actions.models import Action
from jingtan_api.graphql.relay import decode_id
from jingtan_api.offers.models import Offer
from jingtan_api.plugins.testing import SUBMIT
from jingtan_api.redemptions import service as redemptions_service
from jingtan_api.redemptions.models import Redemption
from jingtan_api.testing import FrozenClock
from live_server import LiveServer
from offers_helpers import REDEEM, make_member, make_merchant, make_offer

MEMBERS = 6
REDEMPTIONS_PER_MEMBER = 10
ACTIONS_PER_MEMBER = 5
PRICE = 10
START_POINTS = 5000
STOCK = 500
KILL_AFTER = 30  # acknowledgements before the SIGKILL (of 90 requests)
WORKERS = 6

IR, R, A, O = IdempotencyRecord.__table__, Redemption.__table__, Action.__table__, Offer.__table__


@pytest.fixture
def clock() -> FrozenClock:
    # The live server checks tokens against the real clock, so the in-process setup issues them "now".
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def build_requests(members: list[dict], offer_id: str, now: datetime) -> list[dict]:
    requests = []
    for m in members:
        for _ in range(REDEMPTIONS_PER_MEMBER):
            requests.append({
                "kind": "redeem", "member": m, "key": uuid.uuid4().hex, "query": REDEEM,
                "input": {"offerId": offer_id, "quantity": 1},
            })
        for j in range(ACTIONS_PER_MEMBER):  # trips of one member must not overlap
            end = now - timedelta(minutes=60 + 45 * j)
            trip = {"mode": "METRO", "startedAt": (end - timedelta(minutes=30)).isoformat(),
                    "endedAt": end.isoformat(), "distanceMeters": 10_000}
            requests.append({
                "kind": "submit", "member": m, "key": uuid.uuid4().hex, "query": SUBMIT,
                "input": {"action": {"transit": trip}},
            })
    # interleave the members and the two kinds, so that the kill hits a mix of both
    return sorted(requests, key=lambda r: r["key"])


def send(http: httpx.Client, url: str, request: dict) -> dict | None:
    """The acknowledged answer ({"id", "replayed", "errors"}), or None when no answer came."""
    variables = {"input": {**request["input"], "idempotencyKey": request["key"]}}
    try:
        response = http.post(url, json={"query": request["query"], "variables": variables},
                             headers={"Authorization": f"Bearer {request['member']['token']}"})
    except httpx.TransportError:
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    payload = body["data"]["redeemOffer" if request["kind"] == "redeem" else "submitAction"]
    thing = payload["redemption" if request["kind"] == "redeem" else "action"]
    return {"id": thing["id"] if thing else None, "replayed": payload["replayed"],
            "errors": [e["code"] for e in payload["userErrors"]]}


def burst(url: str, requests: list[dict], *, kill: LiveServer | None) -> tuple[dict[str, dict | None], set[str]]:
    """Send every request from WORKERS threads; with ``kill``, SIGKILL that server after KILL_AFTER answers.
    Returns the answers by key (None: no answer) and the keys that were sent but not answered (in flight)."""
    answers: dict[str, dict | None] = {}
    in_flight: set[str] = set()
    acked = 0
    lock = threading.Lock()
    killed = threading.Event()

    def work(chunk: list[dict]) -> None:
        nonlocal acked
        with httpx.Client(timeout=60) as http:
            for request in chunk:
                sent = not killed.is_set()
                answer = send(http, url, request) if sent else None
                with lock:
                    answers[request["key"]] = answer
                    if sent and answer is None:
                        in_flight.add(request["key"])
                    if answer is not None:
                        acked += 1
                    if kill is not None and acked >= KILL_AFTER and not killed.is_set():
                        kill.kill()
                        killed.set()

    chunks = [requests[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(work, chunks))
    return answers, in_flight


async def effects(services) -> dict:
    """What the database holds: idempotency records by (scope, key), effect rows, stock, balances."""
    async with services.db.read() as conn:
        rows = await conn.execute(select(IR.c.scope, IR.c.key, IR.c.result_id))
        # the burst's scopes only (the setup's point grants have records too)
        records = {(r.scope, r.key): r.result_id for r in rows if r.scope.startswith(("redeem:", "submitAction:"))}
        state = {
            "records": records,
            "redemptions": (await conn.execute(select(func.count()).select_from(R))).scalar_one(),
            "actions": (await conn.execute(select(func.count()).select_from(A))).scalar_one(),
            "stock": (await conn.execute(select(O.c.stock))).scalar_one(),
            "spent": dict((await conn.execute(select(R.c.member_user_id, func.sum(R.c.points)).group_by(R.c.member_user_id))).all()),
            "earned": dict((await conn.execute(
                select(A.c.user_id, func.sum(A.c.points)).where(A.c.transaction_id.is_not(None)).group_by(A.c.user_id)
            )).all()),
            "problems": await ledger.check_invariants(conn) + await redemptions_service.check_invariants(conn),
        }
    return state


def scope(request: dict) -> tuple[str, str]:
    prefix = "redeem" if request["kind"] == "redeem" else "submitAction"
    return f"{prefix}:{request['member']['pk']}", request["key"]


def result_pk(request: dict, global_id: str) -> int:
    return decode_id(global_id, "Redemption" if request["kind"] == "redeem" else "Action")


async def test_sigkill_mid_burst_then_replay_every_request(gql, services, clock, admin, databases, db_url, tmp_path):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=PRICE, totalStock=STOCK, perMemberLimit=100)
    members = [await make_member(services, clock, points=START_POINTS) for _ in range(MEMBERS)]
    requests = build_requests(members, offer["id"], clock())

    # --- first run: a burst, SIGKILL after KILL_AFTER acknowledgements
    first_server = LiveServer(db_url, tmp_path).start()
    try:
        first, in_flight = burst(first_server.url, requests, kill=first_server)
    finally:
        first_server.kill()
    acked = [r for r in requests if first[r["key"]] is not None]
    unacked = [r for r in requests if first[r["key"]] is None]
    assert len(acked) >= KILL_AFTER and unacked, (len(acked), len(unacked))
    assert all(first[r["key"]]["errors"] == [] and first[r["key"]]["id"] for r in acked), [first[r["key"]] for r in acked]

    after_kill = await effects(services)
    for r in acked:  # acknowledged: its effect is there, the one it answered with
        assert after_kill["records"].get(scope(r)) == result_pk(r, first[r["key"]]["id"]), r["key"]
    survived = sum(1 for r in unacked if scope(r) in after_kill["records"])
    n_redeem = sum(1 for s in after_kill["records"] if s[0].startswith("redeem:"))
    n_submit = sum(1 for s in after_kill["records"] if s[0].startswith("submitAction:"))
    assert (after_kill["redemptions"], after_kill["actions"]) == (n_redeem, n_submit)  # no effect without its record
    assert after_kill["stock"] == STOCK - after_kill["redemptions"]
    assert after_kill["problems"] == []

    # --- second run: a new server on the same database; every request again with the same key
    with LiveServer(db_url, tmp_path) as second_server:
        second, _ = burst(second_server.url, requests, kill=None)
    assert all(answer is not None for answer in second.values())
    for r in acked:
        assert second[r["key"]] == {**first[r["key"]], "replayed": True}, r["key"]
    for r in unacked:
        answer = second[r["key"]]
        assert answer["errors"] == [] and answer["id"], answer
        assert answer["replayed"] == (scope(r) in after_kill["records"]), r["key"]

    final = await effects(services)
    assert len(final["records"]) == len(requests)  # one effect per key: nothing lost, nothing doubled
    assert all(final["records"][scope(r)] == result_pk(r, second[r["key"]]["id"]) for r in requests)
    assert final["redemptions"] == MEMBERS * REDEMPTIONS_PER_MEMBER
    assert final["actions"] == MEMBERS * ACTIONS_PER_MEMBER
    assert final["stock"] == STOCK - final["redemptions"]
    assert final["spent"] == {m["pk"]: PRICE * REDEMPTIONS_PER_MEMBER for m in members}
    async with services.db.read() as conn:
        balances = await ledger.accounts_by_user_ids(conn, [m["pk"] for m in members])
    for m in members:
        expected = START_POINTS - final["spent"][m["pk"]] + final["earned"].get(m["pk"], 0)
        assert balances[m["pk"]]["balance"] == expected, m["pk"]
    assert final["problems"] == []
    kinds = Counter(r["kind"] for r in acked)
    print(f"\ncrash safety: {len(requests)} requests, {len(acked)} acknowledged before the SIGKILL "
          f"({kinds['redeem']} redemptions, {kinds['submit']} actions), {len(unacked)} not ({len(in_flight)} in flight "
          f"at the kill), {survived} of those committed anyway; after the replay {final['redemptions']} redemptions, "
          f"{final['actions']} actions, stock {final['stock']}")
