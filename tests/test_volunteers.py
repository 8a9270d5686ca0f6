"""The volunteer programme end to end over GraphQL (SQLite and PostgreSQL): application and review,
training and certification, events with rotating check-in codes and promotional rewards, service hours,
referrals, merchants brought, commissions, payouts and the console."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from actions_helpers import submit, trip
from jingtan_api.accounts.models import Account, LedgerTransaction
from jingtan_api.jobs import registered_jobs, run_job
from jingtan_api.volunteers import service as vservice
from offers_helpers import CANCEL, CREATE_OFFER, REDEEM, make_member
from volunteer_helpers import (
    COURSE,
    event_input,
    fresh,
    invariants,
    make_event,
    make_volunteer,
    op,
    op_register,
    payload,
)

A = Account.__table__
TX = LedgerTransaction.__table__


@pytest.fixture
def settings_overrides() -> dict:
    return {"auth": {"access_token_ttl_seconds": 86400}}


async def balance_of(services, account_id: int) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(A.c.balance).where(A.c.id == account_id))).scalar_one()


async def platform(services, code: str) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(A.c.id).where(A.c.code == code))).scalar_one()


async def test_training_certifies_and_quiz_answers_stay_on_the_server(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    me = volunteer["client"]
    # A trainee cannot run events.
    out = await payload(me, "CreateVolunteerEvent", "createVolunteerEvent", {"input": event_input(clock)})
    assert out["errors"][0]["code"] == "NOT_CERTIFIED" and out["event"] is None

    staff = gql.as_user(admin["token"])
    course = await payload(staff, "CreateVolunteerCourse", "createVolunteerCourse", {"input": COURSE})
    assert course["errors"] == []
    body = await me("{ volunteerCourses(first: 5) { edges { node { questions { answer } } } } }")
    assert body["errors"] and "answer" in body["errors"][0]["message"]  # the field does not exist

    failed = await payload(me, "SubmitVolunteerCourseAttempt", "submitVolunteerCourseAttempt",
                           {"input": {"courseId": course["course"]["id"], "answers": [1, 0]}})
    assert failed["attempt"] == {"scorePercent": 0, "passed": False} and failed["volunteer"]["level"] == "TRAINEE"
    passed = await payload(me, "SubmitVolunteerCourseAttempt", "submitVolunteerCourseAttempt",
                           {"input": {"courseId": course["course"]["id"], "answers": [0, 1]}})
    assert passed["attempt"] == {"scorePercent": 100, "passed": True} and passed["volunteer"]["level"] == "CERTIFIED"
    listed = await me.ok(op("VolunteerCourses"), {"level": "CERTIFIED"})
    attempts = listed["volunteerCourses"]["edges"][0]["node"]["myAttempts"]
    assert [a["passed"] for a in attempts] == [True, False]  # newest first, both kept

    # Wrong number of answers: typed error, no attempt written.
    bad = await payload(me, "SubmitVolunteerCourseAttempt", "submitVolunteerCourseAttempt",
                        {"input": {"courseId": course["course"]["id"], "answers": [0]}})
    assert bad["errors"][0]["code"] == "BAD_USER_INPUT" and bad["errors"][0]["field"] == ["input", "answers"]
    async with services.db.read() as conn:
        assert len(await vservice.attempts_of(conn, volunteer["pk"], int(__import__("base64").b64decode(
            course["course"]["id"]).decode().split(":")[1]))) == 2


async def test_event_signup_check_in_reward_evidence_and_hours(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock, actionType="transit", rewardPoints=30)
    member = await make_member(services, clock, name="参加者 Attendee")
    me = gql.as_user(member["token"])
    signed = await payload(me, "SignUpForVolunteerEvent", "signUpForVolunteerEvent", {"input": {"eventId": event_id}})
    assert signed["errors"] == [] and signed["event"]["signedUp"] == 1 and signed["event"]["placesLeft"] == 9

    # Only the organiser sees the code; it rotates.
    denied = await me(op("EventCheckInCode"), {"id": event_id})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    clock.advance(hours=2, minutes=5)  # the event is running
    code = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": event_id}))["volunteerEvent"]["checkInCode"]
    assert len(code["code"]) == 11 and code["code"][5] == "-"
    promotions = await platform(services, vservice.PROMOTIONS_CODE)
    before = await balance_of(services, promotions)
    checked = await payload(me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                            {"input": {"eventId": event_id, "code": code["code"].lower()}})
    assert checked["errors"] == [] and checked["signup"]["checkedInAt"]
    evidence = checked["signup"]["actionEvidence"]
    assert evidence["source"] == vservice.EVIDENCE_SOURCE and evidence["externalId"].startswith("VolunteerEvent:")
    assert await balance_of(services, promotions) == before - 30
    acct = (await me.ok("{ viewer { account { balance } } }"))["viewer"]["account"]
    assert acct["balance"] == 30
    async with services.db.read() as conn:
        kinds = [r.kind for r in await conn.execute(select(TX.c.kind).order_by(TX.c.id))]
    assert kinds[-1] == vservice.EVENT_REWARD

    # The attendee submits the event's action with the evidence the core filled in.
    out = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=1, duration_min=3, meters=1000), key="ev-1",
                       evidence={"source": evidence["source"], "externalId": evidence["externalId"],
                                 "signature": evidence["signature"], "signedAt": evidence["signedAt"]})
    assert out["userErrors"] == []

    # Hours: not before the end; then confirmed by an admin; the console shows them.
    staff = gql.as_user(admin["token"])
    early = await payload(staff, "ConfirmVolunteerHours", "confirmVolunteerHours", {"input": {"eventId": event_id}})
    assert early["errors"][0]["code"] == "EVENT_NOT_ENDED"
    clock.advance(hours=3)
    done = await payload(staff, "ConfirmVolunteerHours", "confirmVolunteerHours", {"input": {"eventId": event_id}})
    assert done["event"] == {"id": event_id, "hoursStatus": "CONFIRMED", "hoursMinutes": 120}
    again = await payload(staff, "ConfirmVolunteerHours", "confirmVolunteerHours", {"input": {"eventId": event_id}})
    assert again["errors"][0]["code"] == "ALREADY_REVIEWED"
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert console["serviceMinutes"] == 120
    ev = console["events"]["edges"][0]["node"]
    assert ev["attendees"]["totalCount"] == 1 and ev["attendees"]["edges"][0]["node"]["checkedInAt"]
    await invariants(services)


async def test_hours_confirm_themselves_after_the_event_with_attendance(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    attended = await make_event(volunteer, clock, rewardPoints=0)
    empty = await make_event(volunteer, clock, rewardPoints=0)
    member = await make_member(services, clock)
    me = gql.as_user(member["token"])
    await payload(me, "SignUpForVolunteerEvent", "signUpForVolunteerEvent", {"input": {"eventId": attended}})
    clock.advance(hours=2, minutes=1)
    code = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": attended}))["volunteerEvent"]["checkInCode"]["code"]
    assert (await payload(me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                          {"input": {"eventId": attended, "code": code}}))["errors"] == []
    job = {j.name: j for j in registered_jobs()}["volunteer-hours"]
    assert (await run_job(services, job, now=clock()))["confirmed"] == 0  # not ended yet
    clock.advance(hours=2 + services.settings.volunteers.hours_auto_confirm_after_hours)
    assert (await run_job(services, job, now=clock()))["confirmed"] == 1
    assert (await run_job(services, job, now=clock()))["confirmed"] == 0  # idempotent
    body = await gql.ok("query($a: ID!, $b: ID!) { a: volunteerEvent(id: $a) { hoursStatus hoursMinutes } "
                        "b: volunteerEvent(id: $b) { hoursStatus } }", {"a": attended, "b": empty})
    assert body == {"a": {"hoursStatus": "AUTO_CONFIRMED", "hoursMinutes": 120}, "b": {"hoursStatus": "PENDING"}}


async def test_referral_credited_on_first_approved_action_with_caps(gql, services, clock, admin, operation):
    services.settings.volunteers.referral_daily_cap = 1
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    regs = []
    for n in range(2):
        reg = await gql.ok(operation("account/Register"), {"input": {
            "email": f"ref{n}@example.cn", "password": "Green-leaf-2026", "displayName": f"新会员 New {n}",
            "referralCode": volunteer["code"].lower(), "deviceId": f"device-{n}"}})
        assert reg["register"]["userErrors"] == []
        regs.append(reg["register"]["tokens"]["accessToken"])
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert [e["node"]["status"] for e in console["referrals"]["edges"]] == ["PENDING", "PENDING"]

    vol_balance = "{ viewer { account { balance } } }"
    for n, token in enumerate(regs):
        out = await submit(gql, token, "transit", trip(clock, minutes_ago=60 - n * 5), key=f"first-{n}")
        assert out["action"]["status"] == "APPROVED", out
        # A second action changes nothing.
        await submit(gql, token, "transit", trip(clock, minutes_ago=30 - n * 5, duration_min=3), key=f"second-{n}")
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert [(e["node"]["status"], e["node"]["points"]) for e in console["referrals"]["edges"]] == [
        ("CREDITED", services.settings.volunteers.referral_points), ("CAPPED", 0)]
    assert console["earningsStatement"]["referralBonuses"] == services.settings.volunteers.referral_points
    assert (await volunteer["client"].ok(vol_balance))["viewer"]["account"]["balance"] == services.settings.volunteers.referral_points
    async with services.db.read() as conn:
        kinds = [r.kind for r in await conn.execute(select(TX.c.kind))]
    assert kinds.count(vservice.REFERRAL_BONUS) == 1
    await invariants(services)


async def test_referral_later_within_window_and_farming_flags(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    # Later, with applyReferralCode.
    late = await make_member(services, clock)
    out = await payload(gql.as_user(late["token"]), "ApplyReferralCode", "applyReferralCode",
                        {"input": {"code": volunteer["code"]}})
    assert out["errors"] == [] and out["referral"]["status"] == "PENDING"
    # Three accounts from one address flag the volunteer (the test client's address is 127.0.0.1).
    for n in range(3):
        reg = await gql.ok(op_register(), {"input": {"email": f"farm{n}@example.cn", "password": "Green-leaf-2026",
                                                      "displayName": f"农场 Farm {n}", "referralCode": volunteer["code"]}})
        assert reg["register"]["userErrors"] == []
    staff = gql.as_user(admin["token"])
    flags = (await staff.ok(op("VolunteerFlags"), {"status": "OPEN"}))["volunteerFlags"]
    assert [e["node"]["kind"] for e in flags["edges"]] == ["SAME_ADDRESS"]
    # Referred accounts that never act: the review job flags them once.
    clock.advance(days=services.settings.volunteers.inactive_referral_days + 1)
    job = {j.name: j for j in registered_jobs()}["volunteer-referral-review"]
    assert (await run_job(services, job, now=clock()))["flagged"] == 1
    await run_job(services, job, now=clock())
    staff = fresh(gql, services, clock, admin["pk"], "ADMIN")
    flags = (await staff.ok(op("VolunteerFlags"), {"status": "OPEN"}))["volunteerFlags"]
    assert sorted(e["node"]["kind"] for e in flags["edges"]) == ["INACTIVE_REFERRALS", "SAME_ADDRESS"]
    resolved = await payload(staff, "ResolveVolunteerFlag", "resolveVolunteerFlag",
                             {"input": {"flagId": flags["edges"][0]["node"]["id"], "resolution": "已核实 Checked"}})
    assert resolved["flag"]["status"] == "RESOLVED"
    # The window closes.
    old = await make_member(services, clock)
    clock.advance(days=services.settings.volunteers.referral_window_days + 1)
    closed = await payload(fresh(gql, services, clock, old["pk"]), "ApplyReferralCode", "applyReferralCode",
                           {"input": {"code": volunteer["code"]}})
    assert closed["errors"][0]["code"] == "REFERRAL_WINDOW_CLOSED"


async def merchant_with_offer(gql, services, clock, admin, volunteer, *, price: int = 200) -> tuple[dict, str]:
    """A merchant that applied with the volunteer's code, approved, with an offer; returns (owner, offer id)."""
    owner = await make_member(services, clock, name="店主 Owner")
    applied = await gql.as_user(owner["token"]).ok(
        "mutation($i: ApplyForMerchantInput!) { applyForMerchant(input: $i) { merchant { id } userErrors { code field } } }",
        {"i": {"profile": {"nameZh": "绿叶咖啡", "nameEn": "Green Leaf Café", "category": "CAFE", "city": "深圳 Shenzhen"},
               "volunteerCode": volunteer["code"]}},
    )
    assert applied["applyForMerchant"]["userErrors"] == []
    merchant_id = applied["applyForMerchant"]["merchant"]["id"]
    staff = gql.as_user(admin["token"])
    await staff.ok(
        "mutation($i: ReviewMerchantApplicationInput!) { reviewMerchantApplication(input: $i) { userErrors { code } } }",
        {"i": {"merchantId": merchant_id, "approve": True, "reason": "资料齐全 OK"}},
    )
    from jingtan_api.auth.permissions import MEMBER, MERCHANT

    owner["token"], _ = services.access_tokens.issue(owner["pk"], frozenset({MEMBER, MERCHANT}), clock())
    offer = await gql.as_user(owner["token"]).ok(CREATE_OFFER, {"input": {
        "merchantId": merchant_id, "titleZh": "免费咖啡", "titleEn": "Free coffee", "pointsPrice": price, "totalStock": 100,
        "perMemberLimit": 100, "status": "ACTIVE", "startsAt": (clock() - timedelta(days=1)).isoformat(),
        "endsAt": (clock() + timedelta(days=60)).isoformat()}})
    assert offer["createOffer"]["userErrors"] == [], offer
    return owner, offer["createOffer"]["offer"]["id"]


async def test_commission_accrues_with_redemption_reverses_on_refund_and_pays_out(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    _, offer_id = await merchant_with_offer(gql, services, clock, admin, volunteer)
    member = await make_member(services, clock, points=1000)
    me = gql.as_user(member["token"])
    r1 = (await me.ok(REDEEM, {"input": {"offerId": offer_id, "quantity": 1, "idempotencyKey": "r1"}}))["redeemOffer"]
    r2 = (await me.ok(REDEEM, {"input": {"offerId": offer_id, "quantity": 2, "idempotencyKey": "r2"}}))["redeemOffer"]
    assert r1["userErrors"] == [] and r2["userErrors"] == []
    share = services.settings.volunteers.commission_basis_points
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert console["earnings"] == {"balance": 600 * share // 10000, "pending": 600 * share // 10000, "available": 0}
    assert console["merchantsBrought"][0]["merchant"]["nameEn"] == "Green Leaf Café"

    # Nothing can be paid out while the redemptions can still be refunded.
    refused = await payload(volunteer["client"], "RequestVolunteerPayout", "requestVolunteerPayout", {"input": {"points": 100}})
    assert refused["errors"][0]["code"] == "INSUFFICIENT_POINTS"

    # Refunding r2 reverses its commission in the same transaction.
    cancelled = await me.ok(CANCEL, {"input": {"redemptionId": r2["redemption"]["id"]}})
    assert cancelled["cancelRedemption"]["userErrors"] == []
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert [e["node"]["status"] for e in console["commissions"]["edges"]] == ["ACCRUED", "REVERSED"]
    assert console["earnings"]["balance"] == 200 * share // 10000
    statement = console["earningsStatement"]
    assert statement["commissions"] == 600 * share // 10000 and statement["netCommissions"] == 200 * share // 10000
    await invariants(services)


async def test_payout_of_confirmed_commissions_marked_paid(gql, services, clock, admin):
    services.settings.volunteers.commission_basis_points = 5000
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    owner, offer_id = await merchant_with_offer(gql, services, clock, admin, volunteer, price=400)
    member = await make_member(services, clock, points=1000)
    r = (await gql.as_user(member["token"]).ok(REDEEM, {"input": {"offerId": offer_id, "quantity": 1,
                                                                  "idempotencyKey": "p1"}}))["redeemOffer"]
    confirm = await gql.as_user(owner["token"]).ok(
        "mutation($i: ConfirmRedemptionInput!) { confirmRedemption(input: $i) { userErrors { code } } }",
        {"i": {"code": r["redemption"]["code"]}})
    assert confirm["confirmRedemption"]["userErrors"] == []
    out = await payload(volunteer["client"], "RequestVolunteerPayout", "requestVolunteerPayout", {"input": {"points": 150}})
    assert out["errors"] == [] and out["earnings"] == {"balance": 50, "pending": 0, "available": 50}
    staff = gql.as_user(admin["token"])
    queue = (await staff.ok(op("VolunteerPayouts"), {"status": "REQUESTED"}))["volunteerPayouts"]
    assert queue["totalCount"] == 1
    paid = await payload(staff, "MarkVolunteerPayoutPaid", "markVolunteerPayoutPaid",
                         {"input": {"payoutId": out["payout"]["id"], "externalReference": "WX-2026-0001"}})
    assert paid["payout"]["status"] == "PAID" and paid["payout"]["externalReference"] == "WX-2026-0001"
    twice = await payload(staff, "MarkVolunteerPayoutPaid", "markVolunteerPayoutPaid",
                          {"input": {"payoutId": out["payout"]["id"], "externalReference": "WX-2026-0002"}})
    assert twice["errors"][0]["code"] == "ALREADY_REVIEWED"
    payouts = await platform(services, vservice.PAYOUTS_CODE)
    assert await balance_of(services, payouts) == 150
    await invariants(services)



async def test_demo_has_a_volunteer_an_event_and_a_referral(gql, services, clock, admin):
    from jingtan_api.demo import seed_demo

    assert await seed_demo(services, if_empty=False) == 0  # the admin fixture already made one user
    events = (await gql.ok(op("VolunteerEvents"), {"first": 10}))["volunteerEvents"]
    assert events["totalCount"] == 1
    event = events["edges"][0]["node"]
    assert event["titleZh"] == "社区回收日" and event["titleEn"] == "Community recycling day"
    assert event["organiserName"] == "陈杰 Chen Jie" and event["placesLeft"] == 29 and event["mySignup"] is None
    staff = gql.as_user(admin["token"])
    active = (await staff.ok(op("VolunteerApplications"), {"status": "ACTIVE", "first": 10}))["volunteerApplications"]
    assert [e["node"]["user"]["displayName"] for e in active["edges"]] == ["陈杰 Chen Jie"]
    assert (await staff.ok(op("VolunteerApplications"), {"status": "PENDING"}))["volunteerApplications"]["totalCount"] == 0
    await invariants(services)


def test_every_volunteer_operation_is_executed_by_a_test():
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sources = "".join(p.read_text(encoding="utf-8") for p in here.glob("test_volunteer*.py"))
    sources += (here / "volunteer_helpers.py").read_text(encoding="utf-8")
    names = sorted(p.stem for p in (here.parent / "schema" / "operations" / "volunteer").glob("*.graphql"))
    assert len(names) >= 19
    assert [n for n in names if f'"{n}"' not in sources] == []


async def test_volunteer_records_are_personal(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    query = "query($id: ID!) { node(id: $id) { ... on Volunteer { id city } } }"
    assert (await volunteer["client"].ok(query, {"id": volunteer["volunteer_id"]}))["node"]["city"]
    stranger = await make_member(services, clock)
    assert (await gql.as_user(stranger["token"]).ok(query, {"id": volunteer["volunteer_id"]}))["node"] is None
    body = await gql.as_user(stranger["token"])(
        "query($id: ID!) { node(id: $id) { ... on User { volunteer { id } } } }", {"id": volunteer["id"]})
    assert body.get("data", {}).get("node") is None or body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "errors" in body or body["data"]["node"] is None
