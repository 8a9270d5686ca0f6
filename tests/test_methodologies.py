"""Methodology governance through GraphQL over HTTP, on SQLite and PostgreSQL: an unapproved version
credits nothing, an expert's approval credits exactly the waiting actions once (also when two server
processes approve at the same moment, and when two processes credit at once), a factor override makes a
new pending version, credits already issued never change, and the public registry needs no login."""

import asyncio
import json
import threading
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.actions import service as actions_service
from jingtan_api.app import create_app
from jingtan_api.methodologies import service as mservice
from jingtan_api.methodologies.models import MethodologyReview, MethodologyVersion
from jingtan_api.users import service as users_service
from jingtan_api.testing import GraphQLClient, make_settings, register_member
from tests.actions_helpers import balance, ledger_ok, submit, trip
from tests.live_server import LiveServer

GATED = {"plugins": {"enabled": ["transit"]}, "methodologies": {"require_methodology_approval": True}}

REGISTRY = """
query($type: String, $status: MethodologyStatus) {
  methodologies(actionType: $type, status: $status, first: 20) {
    totalCount
    nodes { id actionTypeCode versionNumber status current plugin pluginVersion formula fingerprint
            factors { id value unit source }
            reviews { event reviewer note }
            totals { gramsCo2eCredited pointsCredited actionsCredited actionsWaiting } }
  }
}
"""

REVIEW = """
mutation($input: ReviewMethodologyVersionInput!) {
  reviewMethodologyVersion(input: $input) {
    version { id status decisionNote reviews { event reviewer } totals { actionsCredited actionsWaiting gramsCo2eCredited } }
    actionsCredited actionsRejected
    userErrors { code field message }
    errors { code }
  }
}
"""


@pytest.fixture
def settings_overrides():
    return GATED


async def make_expert(gql, admin, *, email="expert@example.cn", name="王教授 Prof. Wang") -> dict:
    user = await register_member(gql, email=email, display_name=name)
    out = await gql.ok(
        "mutation($i: SetUserRolesInput!) { setUserRoles(input: $i) { user { roles } userErrors { code } } }",
        {"i": {"userId": user["id"], "roles": ["MEMBER", "EXPERT"], "reason": "joins the expert committee"}},
        token=admin["token"],
    )
    assert out["setUserRoles"]["userErrors"] == []
    login = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
        {"i": {"identifier": email, "password": user["password"]}},
    )
    return {**user, "token": login["login"]["tokens"]["accessToken"]}


async def registry(gql, **variables) -> dict:
    return (await gql.ok(REGISTRY, variables))["methodologies"]  # no token: public


async def review(gql, token, version_id, decision="APPROVE", note="factors checked against the source") -> dict:
    body = await gql(REVIEW, {"input": {"versionId": version_id, "decision": decision, "note": note}}, token=token)
    assert "errors" not in body, body
    return body["data"]["reviewMethodologyVersion"]


async def table_counts(services) -> dict[str, int]:
    async with services.db.read() as conn:
        return {
            "reviews": (await conn.execute(select(func.count()).select_from(MethodologyReview.__table__))).scalar_one(),
            "credits": (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__)
                                           .where(LedgerTransaction.__table__.c.kind == "ACTION_CREDIT"))).scalar_one(),
        }


async def test_unapproved_version_credits_nothing_and_approval_credits_the_waiting_actions_once(
    gql, member, admin, services, clock
):
    first = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="m1")
    second = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=200, meters=5_000), key="m2")
    for out in (first, second):
        assert out["userErrors"] == []
        assert out["action"]["status"] == "PENDING_METHODOLOGY"
        assert "METHODOLOGY_PENDING" in [r["code"] for r in out["action"]["reasons"]]
    assert await balance(gql, member["token"]) == 0
    assert (await table_counts(services))["credits"] == 0

    reg = await registry(gql, type="transit")
    (version,) = reg["nodes"]
    assert version["status"] == "PENDING" and version["current"] is True and version["versionNumber"] == 1
    assert version["totals"] == {"gramsCo2eCredited": 0, "pointsCredited": 0, "actionsCredited": 0, "actionsWaiting": 2}
    metro = next(f for f in version["factors"] if f["id"] == "transit.metro")
    assert metro["value"] == "46.7" and metro["source"]
    assert [r["event"] for r in version["reviews"]] == ["SUBMITTED"]

    expert = await make_expert(gql, admin)
    approved = await review(gql, expert["token"], version["id"])
    assert approved["userErrors"] == [] and approved["actionsCredited"] == 2
    assert approved["version"]["status"] == "APPROVED"
    assert [(r["event"], r["reviewer"]) for r in approved["version"]["reviews"]] == [
        ("SUBMITTED", None), ("APPROVED", "王教授 Prof. Wang")]
    # 10 km × 46.7 = 467 g -> 46 points; 5 km -> 233 g -> 23 points
    assert await balance(gql, member["token"]) == 46 + 23
    assert (await table_counts(services))["credits"] == 2

    # Approving again: a typed conflict, nothing credited twice, nothing written.
    before = await table_counts(services)
    again = await review(gql, expert["token"], version["id"])
    assert again["errors"] == [{"code": "METHODOLOGY_NOT_REVIEWABLE"}] and again["version"] is None
    assert await table_counts(services) == before and await balance(gql, member["token"]) == 69

    # New actions are credited at once; the public totals add up.
    now_ok = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=400, meters=2_000), key="m3")
    assert now_ok["action"]["status"] == "APPROVED"
    (version,) = (await registry(gql, type="transit"))["nodes"]
    assert version["totals"] == {"gramsCo2eCredited": 467 + 233 + 93, "pointsCredited": 46 + 23 + 9,
                                 "actionsCredited": 3, "actionsWaiting": 0}
    listed = await gql.ok("{ viewer { actions(first: 5) { nodes { status methodologyVersion { id versionNumber } } } } }",
                          token=member["token"])
    assert [n["status"] for n in listed["viewer"]["actions"]["nodes"]] == ["APPROVED"] * 3
    assert {n["methodologyVersion"]["id"] for n in listed["viewer"]["actions"]["nodes"]} == {version["id"]}
    log = await gql.ok('{ auditLog(first: 5, action: "methodology.approve") { nodes { targetId reason details } } }',
                       token=admin["token"])
    (entry,) = log["auditLog"]["nodes"]
    assert entry["targetId"] == version["id"] and entry["details"]["to"] == "APPROVED"
    await ledger_ok(services)


async def test_rejection_rejects_the_waiting_actions_and_releases_their_evidence(gql, member, admin, services, clock):
    data = trip(clock, meters=4_000)
    waiting = await submit(gql, member["token"], "transit", data, key="r1")
    assert waiting["action"]["status"] == "PENDING_METHODOLOGY"
    (version,) = (await registry(gql))["nodes"]
    expert = await make_expert(gql, admin)
    rejected = await review(gql, expert["token"], version["id"], "REJECT", "walk factor has no official source")
    assert rejected["userErrors"] == [] and rejected["actionsRejected"] == 1
    assert rejected["version"]["status"] == "REJECTED"
    node = await gql.ok("query($id: ID!) { node(id: $id) { ... on Action { status reasons { code message } } } }",
                        {"id": waiting["action"]["id"]}, token=member["token"])
    assert node["node"]["status"] == "REJECTED"
    assert "METHODOLOGY_REJECTED" in [r["code"] for r in node["node"]["reasons"]]
    assert await balance(gql, member["token"]) == 0
    # A rejected version cannot be approved; retiring needs an approved one.
    for decision in ("APPROVE", "RETIRE"):
        out = await review(gql, expert["token"], version["id"], decision)
        assert out["errors"] == [{"code": "METHODOLOGY_NOT_REVIEWABLE"}]


async def test_retired_version_makes_new_actions_wait_and_keeps_past_credits(gql, member, admin, services, clock):
    (version,) = (await registry(gql))["nodes"]
    expert = await make_expert(gql, admin)
    assert (await review(gql, expert["token"], version["id"]))["userErrors"] == []
    credited = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="t1")
    assert credited["action"]["status"] == "APPROVED"
    retired = await review(gql, expert["token"], version["id"], "RETIRE", "superseded by the 2026 study")
    assert retired["version"]["status"] == "RETIRED"
    waits = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=300, meters=10_000), key="t2")
    assert waits["action"]["status"] == "PENDING_METHODOLOGY"
    assert await balance(gql, member["token"]) == 46  # the credit issued before retirement stays
    reinstated = await review(gql, expert["token"], version["id"], "APPROVE", "reinstated after the review")
    assert reinstated["actionsCredited"] == 1 and await balance(gql, member["token"]) == 92


async def test_review_refuses_bad_input_and_non_experts_and_writes_nothing(gql, member, admin, services, clock):
    (version,) = (await registry(gql))["nodes"]
    before = await table_counts(services)
    # a member and an admin are not experts
    for token in (member["token"], admin["token"]):
        out = await review(gql, token, version["id"])
        assert out["errors"] == [{"code": "FORBIDDEN"}]
    anonymous = await review(gql, None, version["id"])
    assert anonymous["errors"] == [{"code": "UNAUTHENTICATED"}]
    expert = await make_expert(gql, admin)
    assert (await review(gql, expert["token"], version["id"], note="ok"))["errors"] == [{"code": "BAD_USER_INPUT"}]
    assert (await review(gql, expert["token"], member["id"]))["errors"] == [{"code": "NOT_FOUND"}]
    from jingtan_api.graphql.relay import to_global_id

    missing = await review(gql, expert["token"], to_global_id("MethodologyVersion", 999_999))
    assert missing["errors"] == [{"code": "NOT_FOUND"}]
    assert await table_counts(services) == before
    (still,) = (await registry(gql))["nodes"]
    assert still["status"] == "PENDING"
    # bad arguments of the public registry are typed errors too
    body = await gql("{ methodologies(first: -1) { totalCount } }")
    assert body["errors"][0]["extensions"]["code"] == "PAGE_SIZE_INVALID"


async def test_factor_override_makes_a_new_pending_version_and_issued_credits_never_change(
    gql, member, admin, services, clock, settings
):
    (v1,) = (await registry(gql))["nodes"]
    expert = await make_expert(gql, admin)
    await review(gql, expert["token"], v1["id"])
    await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="o1")
    assert await balance(gql, member["token"]) == 46

    overridden = make_settings(settings.database_url, plugins={"enabled": ["transit"], "transit": {
        "factors": {"transit.metro": {"value": "40", "source": "Shenzhen metro LCA 2026"}}}},
        methodologies={"require_methodology_approval": True})
    app2 = create_app(overridden, clock=clock)
    async with app2.router.lifespan_context(app2):
        gql2 = GraphQLClient(app2)
        try:
            waits = await submit(gql2, member["token"], "transit", trip(clock, minutes_ago=300, meters=10_000), key="o2")
            assert waits["action"]["status"] == "PENDING_METHODOLOGY"
            assert waits["action"]["calculation"]["gramsCo2e"] == 400
            reg = await registry(gql2, type="transit")
            assert [(n["versionNumber"], n["status"], n["current"]) for n in reg["nodes"]] == [
                (1, "APPROVED", False), (2, "PENDING", True)]
            v2 = reg["nodes"][1]
            assert next(f for f in v2["factors"] if f["id"] == "transit.metro")["value"] == "40"
            # the first app still runs version 1: credited at once
            assert (await submit(gql, member["token"], "transit", trip(clock, minutes_ago=600, meters=10_000),
                                 key="o3"))["action"]["status"] == "APPROVED"
            approved = await review(gql2, expert["token"], v2["id"])
            assert approved["actionsCredited"] == 1
            assert approved["version"]["totals"]["gramsCo2eCredited"] == 400
        finally:
            await gql2.aclose()
    assert await balance(gql, member["token"]) == 46 + 46 + 40
    (v1,) = (await registry(gql, status="APPROVED", type="transit"))["nodes"][:1]
    assert v1["versionNumber"] == 1 and v1["totals"]["gramsCo2eCredited"] == 934  # unchanged by version 2
    # the first credit kept its factor
    listed = await gql.ok("{ viewer { actions(first: 5) { nodes { calculation { gramsCo2e factors { value } } } } } }",
                          token=member["token"])
    values = sorted(n["calculation"]["factors"][0]["value"] for n in listed["viewer"]["actions"]["nodes"])
    assert values == ["40", "46.7", "46.7"]


async def test_development_default_credits_at_once_but_registers_the_version(db_url, clock):
    app = create_app(make_settings(db_url, plugins={"enabled": ["transit"]}), clock=clock)
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        try:
            member = await register_member(gql)
            out = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="d1")
            assert out["action"]["status"] == "APPROVED"
            (version,) = (await registry(gql))["nodes"]
            assert version["status"] == "PENDING" and version["totals"]["actionsCredited"] == 1
        finally:
            await gql.aclose()


async def test_two_processes_credit_the_same_approved_version_at_once(gql, member, admin, services, clock, settings):
    """Two app instances in two threads (own event loops, own pools) credit one approved version's waiting
    actions concurrently: each action is credited exactly once."""
    for i in range(6):
        await submit(gql, member["token"], "transit", trip(clock, minutes_ago=60 + 90 * i, meters=3_000), key=f"c{i}")
    await registry(gql)  # registers the version
    version_pk = await _version_pk(services)
    # the decision alone (no crediting): then both "processes" credit
    await mservice.decide(services, actor_user_id=admin["pk"], version_id=version_pk, decision="APPROVE",
                          note="approved for the race", now=clock(), request_id=None)
    results: list[int] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        async def go() -> int:
            app = create_app(settings, clock=clock)
            async with app.router.lifespan_context(app):
                barrier.wait()
                done, _ = await actions_service.credit_waiting(app.state.services, version_id=version_pk, now=clock())
                return done
        results.append(asyncio.run(go()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(results) == 6, results
    assert await balance(gql, member["token"]) == 6 * 14  # 3 km × 46.7 = 140 g -> 14 points
    assert (await table_counts(services))["credits"] == 6
    await ledger_ok(services)


async def _version_pk(services) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(MethodologyVersion.__table__.c.id))).scalar_one()


def _post(url: str, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps({"query": query, "variables": variables}).encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


async def test_two_server_processes_approve_at_the_same_moment(gql, services, clock, tmp_path, db_url):
    """Two real server processes (uvicorn) receive the same approval at once: one wins, the other answers
    METHODOLOGY_NOT_REVIEWABLE, and every waiting action is credited exactly once."""
    clock.now = datetime.now(UTC)  # the servers run on the real clock: their tokens must be valid there
    member = await register_member(gql, email="racer@example.cn")
    admin_pk = await users_service.create_admin(services, email="chief@example.cn", phone=None,
                                                password="Sturdy-oak-2026", display_name="Admin", now=clock())
    login = await gql.ok("mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
                         {"i": {"identifier": "chief@example.cn", "password": "Sturdy-oak-2026"}})
    admin = {"pk": admin_pk, "token": login["login"]["tokens"]["accessToken"]}
    for i in range(5):
        await submit(gql, member["token"], "transit", trip(clock, minutes_ago=60 + 90 * i, meters=2_000), key=f"p{i}")
    (version,) = (await registry(gql))["nodes"]
    assert version["totals"]["actionsWaiting"] == 5
    expert = await make_expert(gql, admin)
    env = {"JINGTAN_PLUGINS__ENABLED": '["transit"]', "JINGTAN_METHODOLOGIES__REQUIRE_METHODOLOGY_APPROVAL": "true"}
    servers = [LiveServer(db_url, tmp_path, env=env) for _ in range(2)]
    try:
        for s in servers:
            s.start()
        barrier = threading.Barrier(2)
        answers: list[dict] = [{}, {}]

        def approve(i: int) -> None:
            barrier.wait()
            answers[i] = _post(servers[i].url, REVIEW, {"input": {"versionId": version["id"], "decision": "APPROVE",
                                                                  "note": f"approved through server {i}"}},
                               token=expert["token"])

        threads = [threading.Thread(target=approve, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for s in servers:
            s.stop()
    payloads = [a["data"]["reviewMethodologyVersion"] for a in answers]
    winners = [p for p in payloads if p["userErrors"] == []]
    losers = [p for p in payloads if p["userErrors"]]
    assert len(winners) == 1 and len(losers) == 1, payloads
    assert losers[0]["errors"] == [{"code": "METHODOLOGY_NOT_REVIEWABLE"}]
    assert winners[0]["actionsCredited"] == 5
    assert await balance(gql, member["token"]) == 5 * 9  # 2 km × 46.7 = 93 g -> 9 points
    assert (await table_counts(services))["credits"] == 5
    (version,) = (await registry(gql))["nodes"]
    assert version["totals"]["actionsCredited"] == 5 and version["totals"]["actionsWaiting"] == 0
    assert [r["event"] for r in version["reviews"]] == ["SUBMITTED", "APPROVED"]
    await ledger_ok(services)


async def test_demo_seed_approves_the_demo_versions(gql, services, clock):
    """With approval required (GATED), the demo still credits: its expert approved every version at seed."""
    from jingtan_api.demo import DEMO_PASSWORD, seed_demo

    assert await seed_demo(services, if_empty=True) == 0
    reg = await registry(gql)
    assert [(n["actionTypeCode"], n["status"]) for n in reg["nodes"]] == [("transit", "APPROVED")]
    assert reg["nodes"][0]["reviews"][-1]["reviewer"].startswith("专家委员会")
    login = await gql.ok("mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
                         {"i": {"identifier": "wangfang@demo.jingtan.org", "password": DEMO_PASSWORD}})
    token = login["login"]["tokens"]["accessToken"]
    out = await submit(gql, token, "transit", trip(clock, meters=10_000), key="demo-1")
    assert out["action"]["status"] == "APPROVED"
