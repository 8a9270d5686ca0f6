"""Organisations (docs/community.md "Organisations"): creation by an admin or by application and review,
bilingual profile, admins, invites, join requests, leave/remove, closing, donations; the member list is
for members only. Every refusal is typed and writes nothing (SQLite and PostgreSQL)."""

import asyncio

from community_helpers import PROFILE, call, join_org, key, member, ok, op, organisation, refused
from ledger_helpers import balance_of, invariants

from jingtan_api.graphql.relay import from_global_id
from jingtan_api.organisations import service as orgs

CONSOLE = op("organisation/OrganisationConsole")


def pk(gid: str) -> int:
    return int(from_global_id(gid)[1])


async def test_application_review_and_public_profile(gql, services, admin):
    applicant = await member(gql, "张伟 Zhang Wei")
    created = await ok(gql, "community/ApplyForOrganisation", {"input": {"profile": {**PROFILE, "kind": "SCHOOL"}}},
                       token=applicant["token"])
    org_id = created["organisation"]["id"]
    assert created["organisation"]["status"] == "PENDING"
    await refused(gql, services, "community/ApplyForOrganisation", {"input": {"profile": PROFILE}}, token=applicant["token"],
                  code="APPLICATION_PENDING")
    pending = await gql.ok(op("admin/PendingOrganisationApplications"), {"first": 10}, token=admin["token"])
    assert [e["node"]["id"] for e in pending["organisations"]["edges"]] == [org_id]
    await refused(gql, services, "admin/ReviewOrganisationApplication",
                  {"input": {"organisationId": org_id, "approve": True, "reason": "资料齐全 complete"}},
                  token=applicant["token"], code="FORBIDDEN")
    reviewed = await ok(gql, "admin/ReviewOrganisationApplication",
                        {"input": {"organisationId": org_id, "approve": True, "reason": "资料齐全 complete"}}, token=admin["token"])
    assert reviewed["organisation"]["status"] == "ACTIVE"
    await refused(gql, services, "admin/ReviewOrganisationApplication",
                  {"input": {"organisationId": org_id, "approve": False, "reason": "again 再次"}}, token=admin["token"],
                  code="ALREADY_REVIEWED")
    console = await gql.ok(CONSOLE, {"id": org_id}, token=applicant["token"])
    org = console["organisation"]
    assert (org["kind"], org["viewerRole"], org["pointsBalance"], org["memberCount"]) == ("SCHOOL", "ADMIN", 0, 1)
    assert org["nameEn"] == PROFILE["nameEn"] and org["descriptionZh"] == PROFILE["descriptionZh"]
    listed = await gql.ok(op("community/Organisations"), {"kind": "SCHOOL", "city": "深圳", "first": 5})
    assert [e["node"]["id"] for e in listed["organisations"]["edges"]] == [org_id]


async def test_bad_profiles_are_refused(gql, services, admin):
    m = await member(gql)
    for change, code in (({"nameZh": ""}, "BAD_USER_INPUT"), ({"website": "http://x.cn"}, "INVALID_URL"),
                         ({"city": " "}, "BAD_USER_INPUT"), ({"nameEn": "n" * 101}, "BAD_USER_INPUT"),
                         ({"registrationNumber": "91 4403/00"}, "BAD_USER_INPUT")):
        await refused(gql, services, "community/ApplyForOrganisation", {"input": {"profile": {**PROFILE, **change}}},
                      token=m["token"], code=code)
    await refused(gql, services, "admin/CreateOrganisation", {"input": {"profile": PROFILE}}, token=m["token"], code="FORBIDDEN")


async def test_join_by_invite_and_by_request(gql, services, admin):
    boss, a, b, c = \
        [await member(gql, n) for n in ("老板 Boss", "甲 A", "乙 B", "丙 C")]
    org_id = await organisation(gql, admin, boss)
    invite = await ok(gql, "organisation/CreateOrganisationInvite", {"input": {"organisationId": org_id, "maxUses": 1}},
                      token=boss["token"])
    joined = await ok(gql, "community/JoinOrganisation", {"input": {"code": invite["code"]}}, token=a["token"])
    assert joined["organisation"]["viewerRole"] == "MEMBER"
    await refused(gql, services, "community/JoinOrganisation", {"input": {"code": invite["code"]}}, token=b["token"],
                  code="INVITE_USED")
    await refused(gql, services, "organisation/CreateOrganisationInvite", {"input": {"organisationId": org_id}},
                  token=a["token"], code="FORBIDDEN")
    for bad in (0, 1001):
        await refused(gql, services, "organisation/CreateOrganisationInvite",
                      {"input": {"organisationId": org_id, "maxUses": bad}}, token=boss["token"], code="BAD_USER_INPUT")
    req = await ok(gql, "community/RequestToJoinOrganisation",
                   {"input": {"organisationId": org_id, "message": "我是新同事 new colleague"}}, token=b["token"])
    await refused(gql, services, "community/RequestToJoinOrganisation", {"input": {"organisationId": org_id}},
                  token=b["token"], code="JOIN_REQUEST_PENDING")
    await refused(gql, services, "community/RequestToJoinOrganisation", {"input": {"organisationId": org_id}},
                  token=a["token"], code="ALREADY_ORGANISATION_MEMBER")
    await refused(gql, services, "organisation/DecideJoinRequest",
                  {"input": {"requestId": req["request"]["id"], "approve": True}}, token=a["token"], code="FORBIDDEN")
    console = await gql.ok(CONSOLE, {"id": org_id}, token=boss["token"])
    assert console["organisation"]["joinRequests"]["totalCount"] == 1
    decided = await ok(gql, "organisation/DecideJoinRequest", {"input": {"requestId": req["request"]["id"], "approve": True}},
                       token=boss["token"])
    assert decided["request"]["status"] == "APPROVED"
    await refused(gql, services, "organisation/DecideJoinRequest",
                  {"input": {"requestId": req["request"]["id"], "approve": False}}, token=boss["token"], code="ALREADY_REVIEWED")
    req_c = await ok(gql, "community/RequestToJoinOrganisation", {"input": {"organisationId": org_id}}, token=c["token"])
    await ok(gql, "organisation/DecideJoinRequest", {"input": {"requestId": req_c["request"]["id"], "approve": False,
                                                               "reason": "不认识 unknown"}}, token=boss["token"])
    async with services.db.read() as conn:
        assert sorted(await orgs.current_member_ids(conn, pk(org_id))) == sorted(pk(m["id"]) for m in (boss, a, b))
        assert await orgs.is_admin(conn, pk(org_id), pk(boss["id"])) and not await orgs.is_admin(conn, pk(org_id), pk(a["id"]))
        assert not await orgs.is_member(conn, pk(org_id), pk(c["id"]))


async def test_expired_invite_is_refused(gql, services, admin, clock):
    boss = await member(gql)
    org_id = await organisation(gql, admin, boss)
    code = (await ok(gql, "organisation/CreateOrganisationInvite",
                     {"input": {"organisationId": org_id, "validForHours": 1, "maxUses": 5}}, token=boss["token"]))["code"]
    clock.advance(hours=1)
    late = await member(gql)
    await refused(gql, services, "community/JoinOrganisation", {"input": {"code": code}}, token=late["token"],
                  code="INVITE_EXPIRED")


async def test_member_list_is_for_members_only(gql, services, admin):
    boss, worker, other_boss, outsider = [await member(gql) for _ in range(4)]
    org_id = await organisation(gql, admin, boss)
    other_id = await organisation(gql, admin, other_boss, nameZh="别的公司", nameEn="Other Co.")
    await join_org(gql, boss, org_id, worker)
    await join_org(gql, other_boss, other_id, outsider)
    members = "query($id: ID!) { organisation(id: $id) { id members(first: 10) { totalCount edges { node { user { id } } } } } }"
    seen = await gql.ok(members, {"id": org_id}, token=worker["token"])
    assert seen["organisation"]["members"]["totalCount"] == 2
    assert (await gql.ok(members, {"id": org_id}, token=admin["token"]))["organisation"]["members"]["totalCount"] == 2
    for reader in (outsider, other_boss):  # members (and admins) of another organisation
        body = await gql(members, {"id": org_id}, token=reader["token"])
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert body["data"]["organisation"] is None
    body = await gql(members, {"id": org_id})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The public profile stays readable.
    assert (await gql.ok("query($id: ID!) { organisation(id: $id) { nameZh } }", {"id": org_id}))["organisation"]["nameZh"]
    balance = await gql("query($id: ID!) { organisation(id: $id) { pointsBalance } }", {"id": org_id}, token=worker["token"])
    assert balance["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_leave_remove_and_the_last_admin(gql, services, admin):
    boss, worker, deputy = [await member(gql) for _ in range(3)]
    org_id = await organisation(gql, admin, boss)
    await join_org(gql, boss, org_id, worker, deputy)
    await refused(gql, services, "community/LeaveOrganisation", {"input": {"organisationId": org_id}}, token=boss["token"],
                  code="LAST_ADMIN")
    await refused(gql, services, "organisation/RemoveOrganisationMember", {"input": {"organisationId": org_id, "userId": boss["id"]}},
                  token=boss["token"], code="LAST_ADMIN")
    await refused(gql, services, "organisation/RemoveOrganisationMember",
                  {"input": {"organisationId": org_id, "userId": deputy["id"]}}, token=worker["token"], code="FORBIDDEN")
    await ok(gql, "organisation/SetOrganisationRole", {"input": {"organisationId": org_id, "userId": deputy["id"], "role": "ADMIN"}},
             token=boss["token"])
    await ok(gql, "community/LeaveOrganisation", {"input": {"organisationId": org_id}}, token=boss["token"])
    removed = await ok(gql, "organisation/RemoveOrganisationMember",
                       {"input": {"organisationId": org_id, "userId": worker["id"], "reason": "离职 left the company"}},
                       token=deputy["token"])
    assert removed["organisation"]["memberCount"] == 1
    await refused(gql, services, "community/LeaveOrganisation", {"input": {"organisationId": org_id}}, token=worker["token"],
                  code="NOT_ORGANISATION_MEMBER")
    async with services.db.read() as conn:
        stays = await orgs.member_intervals(conn, pk(org_id))
        assert [(s.user_id, s.left_at is None) for s in stays] == [
            (pk(boss["id"]), False), (pk(worker["id"]), False), (pk(deputy["id"]), True)]
    mine = await gql.ok(op("community/MyOrganisations"), token=deputy["token"])
    assert [o["viewerRole"] for o in mine["viewer"]["organisations"]] == ["ADMIN"]


async def test_donations_idempotent_bounded_and_never_to_a_closed_organisation(gql, services, admin):
    boss = await member(gql)
    donor = await member(gql, "捐赠人 Donor", points=300, admin=admin)
    org_id = await organisation(gql, admin, boss)
    k = key()
    first = await ok(gql, "community/DonateToOrganisation", {"input": {"organisationId": org_id, "points": 120, "idempotencyKey": k}},
                     token=donor["token"])
    again = await ok(gql, "community/DonateToOrganisation", {"input": {"organisationId": org_id, "points": 120, "idempotencyKey": k}},
                     token=donor["token"])
    assert (first["replayed"], again["replayed"]) == (False, True) and first["donation"]["id"] == again["donation"]["id"]
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": org_id, "points": 121, "idempotencyKey": k}}, token=donor["token"],
                  code="IDEMPOTENCY_KEY_REUSED")
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": org_id, "points": 181, "idempotencyKey": key()}}, token=donor["token"],
                  code="INSUFFICIENT_POINTS")
    for bad in (0, -1):
        await refused(gql, services, "community/DonateToOrganisation",
                      {"input": {"organisationId": org_id, "points": bad, "idempotencyKey": key()}}, token=donor["token"],
                      code="BAD_USER_INPUT")
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": "T3JnYW5pc2F0aW9uOjk5OTk=", "points": 1, "idempotencyKey": key()}},
                  token=donor["token"], code="NOT_FOUND")
    console = await gql.ok(CONSOLE, {"id": org_id}, token=boss["token"])
    assert console["organisation"]["pointsBalance"] == 120 and console["organisation"]["donations"]["totalCount"] == 1
    await ok(gql, "organisation/CloseOrganisation", {"input": {"organisationId": org_id, "reason": "停止运营 wound up"}},
             token=boss["token"])
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": org_id, "points": 10, "idempotencyKey": key()}}, token=donor["token"],
                  code="ORGANISATION_CLOSED")
    await refused(gql, services, "community/RequestToJoinOrganisation", {"input": {"organisationId": org_id}},
                  token=donor["token"], code="ORGANISATION_CLOSED")
    pending = await ok(gql, "community/ApplyForOrganisation", {"input": {"profile": PROFILE}}, token=donor["token"])
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": pending["organisation"]["id"], "points": 10, "idempotencyKey": key()}},
                  token=donor["token"], code="ORGANISATION_NOT_ACTIVE")
    assert await balance_of(gql, donor) == 180
    assert await invariants(services.db) == []


async def test_concurrent_donations_never_overdraw(gql, services, admin):
    boss = await member(gql)
    org_id = await organisation(gql, admin, boss)
    donors = [await member(gql, points=50, admin=admin) for _ in range(3)]
    jobs = [(d, 7) for d in donors for _ in range(8)]  # 24 concurrent donations, 56 asked per donor of 50 held
    results = await asyncio.gather(*(
        call(gql, "community/DonateToOrganisation", {"input": {"organisationId": org_id, "points": p, "idempotencyKey": key()}},
             token=d["token"]) for d, p in jobs
    ))
    assert {r["errors"][0]["code"] for r in results if r["errors"]} == {"INSUFFICIENT_POINTS"}
    assert sum(1 for r in results if not r["errors"]) == 3 * 7
    for d in donors:
        assert await balance_of(gql, d) == 1
    console = await gql.ok(CONSOLE, {"id": org_id}, token=boss["token"])
    assert console["organisation"]["pointsBalance"] == 3 * 49
    assert await invariants(services.db) == []


async def test_profile_updates_invite_revocation_and_withdrawn_requests(gql, services, admin):
    boss, worker, applicant = [await member(gql) for _ in range(3)]
    org_id = await organisation(gql, admin, boss)
    await join_org(gql, boss, org_id, worker)
    upd = "organisation/UpdateOrganisation"
    await refused(gql, services, upd, {"input": {"organisationId": org_id, "kind": "NGO"}}, token=boss["token"], code="FORBIDDEN")
    await refused(gql, services, upd, {"input": {"organisationId": org_id, "nameZh": "新名"}}, token=worker["token"],
                  code="FORBIDDEN")
    await refused(gql, services, upd, {"input": {"organisationId": org_id, "website": "ftp://x"}}, token=boss["token"],
                  code="INVALID_URL")
    done = await ok(gql, upd, {"input": {"organisationId": org_id, "kind": "NGO", "nameEn": "Green NGO"}}, token=admin["token"])
    assert (done["organisation"]["kind"], done["organisation"]["nameEn"]) == ("NGO", "Green NGO")
    invite = await ok(gql, "organisation/CreateOrganisationInvite", {"input": {"organisationId": org_id}}, token=boss["token"])
    await ok(gql, "organisation/RevokeOrganisationInvite", {"input": {"inviteId": invite["invite"]["id"]}}, token=boss["token"])
    await refused(gql, services, "organisation/RevokeOrganisationInvite", {"input": {"inviteId": invite["invite"]["id"]}},
                  token=boss["token"], code="INVALID_INVITE")
    await refused(gql, services, "community/JoinOrganisation", {"input": {"code": invite["code"]}}, token=applicant["token"],
                  code="INVALID_INVITE")
    req = await ok(gql, "community/RequestToJoinOrganisation", {"input": {"organisationId": org_id}}, token=applicant["token"])
    await refused(gql, services, "community/WithdrawJoinRequest", {"input": {"requestId": req["request"]["id"]}},
                  token=worker["token"], code="NOT_FOUND")
    await ok(gql, "community/WithdrawJoinRequest", {"input": {"requestId": req["request"]["id"]}}, token=applicant["token"])
    await refused(gql, services, "organisation/DecideJoinRequest", {"input": {"requestId": req["request"]["id"], "approve": True}},
                  token=boss["token"], code="ALREADY_REVIEWED")


async def test_community_events_are_published_after_commit(gql, services, admin):
    published: list[tuple[str, dict]] = []

    async def publisher(events):
        published.extend((e.type, dict(e.data)) for e in events if e.type.startswith(("organisation.", "household.")))

    services.events.on_commit(publisher)
    boss = await member(gql)
    donor = await member(gql, points=20, admin=admin)
    org_id = await organisation(gql, admin, boss)
    await join_org(gql, boss, org_id, donor)
    await ok(gql, "community/DonateToOrganisation", {"input": {"organisationId": org_id, "points": 5, "idempotencyKey": key()}},
             token=donor["token"])
    await refused(gql, services, "community/DonateToOrganisation",
                  {"input": {"organisationId": org_id, "points": 500, "idempotencyKey": key()}}, token=donor["token"],
                  code="INSUFFICIENT_POINTS")
    await ok(gql, "community/LeaveOrganisation", {"input": {"organisationId": org_id}}, token=donor["token"])
    types = [t for t, _ in published]
    assert types == ["organisation.member_joined", "organisation.member_joined", "organisation.donation",
                     "organisation.member_left"], types
    assert published[2][1]["points"] == 5 and published[2][1]["organisation_id"] == pk(org_id)
