"""Notifications (docs/live.md "Notifications") over HTTP, on SQLite and PostgreSQL: review decisions, the
expiring-points and expiring-redemption job (idempotent, bounded), the list and its pages, marking read,
every refused input (its error and that nothing changed), and the notification.created event."""

import uuid
from datetime import timedelta

import pytest
from impact_helpers import StatementCounter
from offers_helpers import grant, make_member, make_merchant, make_offer, redeem, reissue
from sqlalchemy import select

from jingtan_api.auth.permissions import ADMIN, MEMBER
from jingtan_api.graphql.relay import to_global_id
from jingtan_api.jobs import registered_jobs, run_job
from jingtan_api.notifications import service
from jingtan_api.notifications.jobs import notify_expiring
from jingtan_api.notifications.models import Notification
from jingtan_api.testing import row_counts
from tests.actions_helpers import iso

N = Notification.__table__

NOTIFICATIONS_EXTRA = """
query($first: Int, $after: String, $last: Int, $before: String, $unreadOnly: Boolean = false) {
  viewer {
    notifications(first: $first, after: $after, last: $last, before: $before, unreadOnly: $unreadOnly) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes { id kind points read }
    }
  }
}
"""


async def notices(gql, operation, who: dict, **variables) -> dict:
    return (await gql.ok(operation("member/Notifications"), variables, token=who["token"]))["viewer"]


async def mark(gql, operation, who: dict | None, **input_) -> dict:
    data = await gql.ok(operation("member/MarkNotificationsRead"), {"input": input_},
                        token=who["token"] if who else None)
    return data["markNotificationsRead"]


async def read_state(services) -> list[tuple]:
    async with services.db.read() as conn:
        return [tuple(r) for r in (await conn.execute(select(N.c.id, N.c.user_id, N.c.read_at).order_by(N.c.id))).all()]


async def add_notices(services, clock, user_id: int, count: int) -> list[str]:
    """``count`` notices for ``user_id`` (oldest first), as global IDs."""
    ids = []
    for i in range(count):
        async def work(conn, i=i):
            return await service.create(conn, user_id=user_id, kind=service.POINTS_EXPIRING,
                                        params={"points": 10 + i, "date": "2026-06-08"},
                                        dedupe_key=f"test:{uuid.uuid4().hex}", now=clock())
        ids.append(to_global_id("Notification", await services.db.write(work)))
    return ids


def collect_created(services) -> list[dict]:
    """notification.created events, as an after-commit publisher sees them."""
    seen: list[dict] = []

    async def publisher(events):
        seen.extend(dict(e.data) for e in events if e.type == "notification.created")

    services.events.on_commit(publisher)
    return seen


async def pending_action(gql, operation, who: dict, clock) -> str:
    out = await gql.ok(operation("actions/SubmitRecyclingDropOff"), {
        "material": "PET", "weightGrams": 30_000, "stationId": "ST-9", "receiptId": f"R-{uuid.uuid4().hex[:8]}",
        "droppedAt": iso(clock() - timedelta(hours=2)), "idempotencyKey": uuid.uuid4().hex,
    }, token=who["token"])
    action = out["submitAction"]["action"]
    assert action["status"] == "NEEDS_REVIEW", out
    return action["id"]


async def review(gql, operation, admin: dict, action_id: str, decision: str) -> dict:
    out = await gql.ok(operation("actions/ReviewAction"), {
        "input": {"actionId": action_id, "decision": decision, "reason": "receipt photo checked"}}, token=admin["token"])
    return out["reviewAction"]


# --- review decisions -----------------------------------------------------------------------------------


async def test_a_review_decision_notifies_the_member_once(gql, services, admin, clock, operation):
    who = await make_member(services, clock)
    other = await make_member(services, clock)
    created = collect_created(services)
    approve_id = await pending_action(gql, operation, who, clock)
    reject_id = await pending_action(gql, operation, who, clock)
    assert (await notices(gql, operation, who))["unreadNotificationCount"] == 0

    with StatementCounter(services) as counter:
        approved = await review(gql, operation, admin, approve_id, "APPROVE")
    # The listener adds one statement to the reviewing transaction: the INSERT ... ON CONFLICT DO NOTHING.
    touching = [sql for sql in counter.statements if "notification" in sql.lower()]
    assert len(touching) == 1 and touching[0].lstrip().upper().startswith("INSERT"), touching
    assert approved["action"]["status"] == "APPROVED"
    points = approved["action"]["calculation"]["points"]
    assert (await review(gql, operation, admin, reject_id, "REJECT"))["action"]["status"] == "REJECTED"
    # A second decision on a decided action is refused and notifies nobody.
    again = await review(gql, operation, admin, approve_id, "REJECT")
    assert [e["code"] for e in again["userErrors"]] == ["NOT_PENDING_REVIEW"]

    viewer = await notices(gql, operation, who)
    assert viewer["unreadNotificationCount"] == 2
    nodes = [e["node"] for e in viewer["notifications"]["edges"]]
    assert viewer["notifications"]["totalCount"] == 2
    assert [n["kind"] for n in nodes] == ["REVIEW_DECISION", "REVIEW_DECISION"]
    rejected, accepted = nodes  # newest first
    assert accepted["actionId"] == approve_id and rejected["actionId"] == reject_id
    assert accepted["points"] == points and points > 0 and rejected["points"] == 0
    assert accepted["titleEn"] == "Action approved" and accepted["titleZh"] == "行为已通过审核"
    assert f"{points} points" in accepted["bodyEn"] and f"{points} 积分" in accepted["bodyZh"]
    assert rejected["titleEn"] == "Action not approved" and rejected["titleZh"] == "行为未通过审核"
    assert not accepted["read"] and accepted["readAt"] is None and accepted["redemptionId"] is None
    assert (await notices(gql, operation, other))["notifications"]["totalCount"] == 0

    assert sorted(e["kind"] for e in created) == ["REVIEW_DECISION", "REVIEW_DECISION"]
    assert {e["user_id"] for e in created} == {who["pk"]}
    assert sorted(to_global_id("Notification", e["notification_id"]) for e in created) == sorted(n["id"] for n in nodes)


# --- the job ---------------------------------------------------------------------------------------------


async def test_the_job_notifies_expiring_points_and_redemptions_once(gql, services, admin, clock, operation):
    created = collect_created(services)
    who = await make_member(services, clock, points=100)  # lot 1 expires in 365 days
    clock.advance(hours=1)
    await grant(services, clock, who["pk"], 50)  # lot 2: the same local day
    clock.advance(days=2)
    await grant(services, clock, who["pk"], 30)  # lot 3: two days later
    nobody = await make_member(services, clock)

    assert await notify_expiring(services, clock()) == {"points_expiring": 0, "redemption_expiring": 0}
    clock.advance(days=360)  # lots 1 and 2 expire in 3 days, lot 3 in 5 days (within 7)
    assert await notify_expiring(services, clock()) == {"points_expiring": 2, "redemption_expiring": 0}
    assert await notify_expiring(services, clock()) == {"points_expiring": 0, "redemption_expiring": 0}
    clock.advance(hours=5)
    assert await notify_expiring(services, clock()) == {"points_expiring": 0, "redemption_expiring": 0}

    reissue(services, clock, who)
    viewer = await notices(gql, operation, who)
    nodes = [e["node"] for e in viewer["notifications"]["edges"]]
    assert [(n["kind"], n["points"]) for n in nodes] == [("POINTS_EXPIRING", 30), ("POINTS_EXPIRING", 150)]
    later, sooner = nodes
    assert "150 of your points expire on" in sooner["bodyEn"] and "150 积分" in sooner["bodyZh"]
    assert sooner["expiresAt"] < later["expiresAt"]
    assert viewer["unreadNotificationCount"] == 2
    reissue(services, clock, nobody)
    assert (await notices(gql, operation, nobody))["notifications"]["totalCount"] == 0
    assert len(created) == 2

    # A redemption code valid 7 days: noticed once it expires within 24 hours.
    reissue(services, clock, admin, MEMBER, ADMIN)
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=20)
    reissue(services, clock, who)
    code = await redeem(gql, who, offer["id"])
    assert code["userErrors"] == [], code
    redemption_id = code["redemption"]["id"]
    assert (await notify_expiring(services, clock()))["redemption_expiring"] == 0
    clock.advance(days=6, hours=12)
    assert await notify_expiring(services, clock()) == {"points_expiring": 0, "redemption_expiring": 1}
    assert await notify_expiring(services, clock()) == {"points_expiring": 0, "redemption_expiring": 0}
    reissue(services, clock, who)
    newest = (await notices(gql, operation, who, first=1))["notifications"]["edges"][0]["node"]
    assert newest["kind"] == "REDEMPTION_EXPIRING" and newest["redemptionId"] == redemption_id
    assert newest["points"] == 20 and newest["titleEn"] == "Redemption code expiring"
    assert newest["titleZh"] == "兑换码即将过期"
    assert [e["kind"] for e in created] == ["POINTS_EXPIRING", "POINTS_EXPIRING", "REDEMPTION_EXPIRING"]


@pytest.mark.parametrize("settings_overrides", [{"notifications": {"batch_size": 1}}])
async def test_one_run_creates_at_most_batch_size_notices_of_each_kind(gql, services, clock):
    members = [await make_member(services, clock, points=10) for _ in range(3)]
    clock.advance(days=362)
    job = {j.name: j for j in registered_jobs()}["notifications"]  # as the server's job runner runs it
    runs = [await run_job(services, job, now=clock()) for _ in range(4)]
    assert [r["points_expiring"] for r in runs] == [1, 1, 1, 0]
    async with services.db.read() as conn:
        owners = sorted((await conn.execute(select(N.c.user_id))).scalars())
    assert owners == sorted(m["pk"] for m in members)


# --- the list --------------------------------------------------------------------------------------------


async def test_notifications_page_newest_first_and_unread_only(gql, services, clock, operation):
    who = await make_member(services, clock)
    ids = await add_notices(services, clock, who["pk"], 5)
    first = (await notices(gql, operation, who, first=2))["notifications"]
    assert [e["node"]["id"] for e in first["edges"]] == [ids[4], ids[3]]
    assert first["totalCount"] == 5 and first["pageInfo"]["hasNextPage"] is True
    rest = (await notices(gql, operation, who, first=10, after=first["pageInfo"]["endCursor"]))["notifications"]
    assert [e["node"]["id"] for e in rest["edges"]] == [ids[2], ids[1], ids[0]]
    assert rest["pageInfo"]["hasNextPage"] is False

    back = await gql.ok(NOTIFICATIONS_EXTRA, {"last": 2, "before": rest["edges"][-1]["cursor"]}, token=who["token"])
    assert [n["id"] for n in back["viewer"]["notifications"]["nodes"]] == [ids[2], ids[1]]

    marked = await mark(gql, operation, who, ids=[ids[4], ids[2]])
    assert marked == {"markedCount": 2, "unreadCount": 3, "userErrors": [], "errors": []}
    unread = (await notices(gql, operation, who, unreadOnly=True))
    assert [e["node"]["id"] for e in unread["notifications"]["edges"]] == [ids[3], ids[1], ids[0]]
    assert unread["notifications"]["totalCount"] == 3 and unread["unreadNotificationCount"] == 3
    page = (await notices(gql, operation, who, first=1, unreadOnly=True))["notifications"]
    nxt = (await notices(gql, operation, who, first=1, after=page["pageInfo"]["endCursor"], unreadOnly=True))
    assert [e["node"]["id"] for e in nxt["notifications"]["edges"]] == [ids[1]]

    bad = await gql(NOTIFICATIONS_EXTRA, {"first": 1, "after": "bm9wZQ=="}, token=who["token"])
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_only_the_member_sees_their_notifications(gql, services, admin, clock, operation):
    who = await make_member(services, clock)
    other = await make_member(services, clock)
    (mine,) = await add_notices(services, clock, who["pk"], 1)
    query = "query($id: ID!) { node(id: $id) { ... on Notification { id kind } } }"
    assert (await gql.ok(query, {"id": mine}, token=who["token"]))["node"] == {"id": mine, "kind": "POINTS_EXPIRING"}
    assert (await gql.ok(query, {"id": mine}, token=other["token"]))["node"] is None
    assert (await gql.ok(query, {"id": mine}))["node"] is None
    other_user = "query($id: ID!) { node(id: $id) { ... on User { unreadNotificationCount } } }"
    body = await gql(other_user, {"id": who["id"]}, token=admin["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- marking read ----------------------------------------------------------------------------------------


async def test_mark_read_by_ids_and_all(gql, services, clock, operation):
    who = await make_member(services, clock)
    other = await make_member(services, clock)
    ids = await add_notices(services, clock, who["pk"], 4)
    await add_notices(services, clock, other["pk"], 2)

    clock.advance(minutes=1)
    assert await mark(gql, operation, who, ids=[ids[0], ids[1], ids[0]]) == {
        "markedCount": 2, "unreadCount": 2, "userErrors": [], "errors": []}
    # Already read: nothing to mark, the first readAt stays.
    before = await read_state(services)
    clock.advance(minutes=1)
    assert (await mark(gql, operation, who, ids=[ids[1]]))["markedCount"] == 0
    assert await read_state(services) == before
    viewer = await notices(gql, operation, who)
    read = {e["node"]["id"]: e["node"]["read"] for e in viewer["notifications"]["edges"]}
    assert read == {ids[0]: True, ids[1]: True, ids[2]: False, ids[3]: False}

    assert await mark(gql, operation, who, all=True) == {"markedCount": 2, "unreadCount": 0, "userErrors": [], "errors": []}
    assert (await notices(gql, operation, who))["unreadNotificationCount"] == 0
    assert (await notices(gql, operation, other))["unreadNotificationCount"] == 2  # another member's stay unread
    assert (await mark(gql, operation, who, all=True))["markedCount"] == 0


@pytest.mark.parametrize(
    "case",
    ["foreign", "own_and_foreign", "malformed", "other_type", "both", "neither", "neither_all_false", "empty",
     "too_many", "anonymous"],
)
async def test_refused_mark_read_changes_nothing(gql, services, clock, operation, case):
    who = await make_member(services, clock)
    other = await make_member(services, clock)
    mine = await add_notices(services, clock, who["pk"], 2)
    (theirs,) = await add_notices(services, clock, other["pk"], 1)
    expected, actor, input_ = {
        "foreign": ("NOT_FOUND", who, {"ids": [theirs]}),
        "own_and_foreign": ("NOT_FOUND", who, {"ids": [mine[0], theirs]}),
        "malformed": ("NOT_FOUND", who, {"ids": [mine[0], "not-an-id"]}),
        "other_type": ("NOT_FOUND", who, {"ids": [who["id"]]}),
        "both": ("BAD_USER_INPUT", who, {"ids": [mine[0]], "all": True}),
        "neither": ("BAD_USER_INPUT", who, {}),
        "neither_all_false": ("BAD_USER_INPUT", who, {"all": False}),
        "empty": ("BAD_USER_INPUT", who, {"ids": []}),
        "too_many": ("TOO_MANY_IDS", who, {"ids": [mine[0]] * 101}),
        "anonymous": ("UNAUTHENTICATED", None, {"all": True}),
    }[case]
    counts, state = await row_counts(services.db), await read_state(services)
    payload = await mark(gql, operation, actor, **input_)
    assert [e["code"] for e in payload["userErrors"]] == [expected], payload
    assert [e["code"] for e in payload["errors"]] == [expected]
    assert payload["markedCount"] == 0 and payload["unreadCount"] is None
    assert await read_state(services) == state, "a refused markNotificationsRead changed read state"
    assert await row_counts(services.db) == counts
    assert (await notices(gql, operation, who))["unreadNotificationCount"] == 2
