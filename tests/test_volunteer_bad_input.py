"""Every refused volunteer input answers a typed error and writes nothing (SQLite and PostgreSQL)."""

from datetime import timedelta

import pytest

from jingtan_api.testing import row_counts
from jingtan_api.users import service as users_service
from offers_helpers import CANCEL, REDEEM, make_member
from test_volunteers import merchant_with_offer
from volunteer_helpers import (
    ensure_course,
    event_input,
    fresh,
    invariants,
    make_event,
    make_volunteer,
    op,
    op_register,
    payload,
)


@pytest.fixture
def settings_overrides() -> dict:
    return {"auth": {"access_token_ttl_seconds": 86400}}


async def refused(services, client, name: str, field: str, variables: dict, code: str) -> dict:
    before = await row_counts(services.db)
    out = await payload(client, name, field, variables)
    assert [e["code"] for e in out["errors"]] == [code], out
    assert [e["code"] for e in out["userErrors"]] == [code]
    assert await row_counts(services.db) == before, "a refused input wrote something"
    return out


async def test_sign_up_to_a_full_event_and_twice(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock, capacity=1)
    first = await make_member(services, clock)
    ok = await payload(gql.as_user(first["token"]), "SignUpForVolunteerEvent", "signUpForVolunteerEvent",
                       {"input": {"eventId": event_id}})
    assert ok["errors"] == []
    await refused(services, gql.as_user(first["token"]), "SignUpForVolunteerEvent", "signUpForVolunteerEvent",
                  {"input": {"eventId": event_id}}, "ALREADY_SIGNED_UP")
    second = await make_member(services, clock)
    out = await refused(services, gql.as_user(second["token"]), "SignUpForVolunteerEvent", "signUpForVolunteerEvent",
                        {"input": {"eventId": event_id}}, "EVENT_FULL")
    assert out["errors"][0]["field"] == ["input", "eventId"]
    await refused(services, volunteer["client"], "SignUpForVolunteerEvent", "signUpForVolunteerEvent",
                  {"input": {"eventId": event_id}}, "OWN_EVENT")


async def test_sign_up_to_a_past_event(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock)
    member = await make_member(services, clock)
    clock.advance(hours=5)  # started and ended
    await refused(services, fresh(gql, services, clock, member["pk"]), "SignUpForVolunteerEvent",
                  "signUpForVolunteerEvent", {"input": {"eventId": event_id}}, "EVENT_STARTED")
    await refused(services, volunteer["client"], "CreateVolunteerEvent", "createVolunteerEvent",
                  {"input": event_input(clock, startsAt=(clock() - timedelta(hours=1)).isoformat())}, "EVENT_IN_PAST")


async def test_check_in_with_an_expired_or_another_events_code(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock, rewardPoints=25)
    other_id = await make_event(volunteer, clock)
    member = await make_member(services, clock)
    me = gql.as_user(member["token"])
    await payload(me, "SignUpForVolunteerEvent", "signUpForVolunteerEvent", {"input": {"eventId": event_id}})
    await payload(me, "SignUpForVolunteerEvent", "signUpForVolunteerEvent", {"input": {"eventId": other_id}})
    # Before check-in opens.
    code_now = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": event_id}))["volunteerEvent"]["checkInCode"]["code"]
    cfg = services.settings.volunteers
    clock.advance(hours=2)
    code = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": event_id}))["volunteerEvent"]["checkInCode"]["code"]
    other = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": other_id}))["volunteerEvent"]["checkInCode"]["code"]
    await refused(services, me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                  {"input": {"eventId": event_id, "code": other}}, "INVALID_CHECKIN_CODE")
    await refused(services, me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                  {"input": {"eventId": event_id, "code": "ABCDE-FGHIJ"}}, "INVALID_CHECKIN_CODE")
    await refused(services, me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                  {"input": {"eventId": event_id, "code": code_now}}, "CHECKIN_CODE_EXPIRED")
    clock.advance(seconds=cfg.checkin_code_seconds * (cfg.checkin_grace_codes + 1))
    await refused(services, me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                  {"input": {"eventId": event_id, "code": code}}, "CHECKIN_CODE_EXPIRED")
    # The previous code is still accepted within the grace period; a second check-in is refused.
    current = (await volunteer["client"].ok(op("EventCheckInCode"), {"id": event_id}))["volunteerEvent"]["checkInCode"]["code"]
    clock.advance(seconds=cfg.checkin_code_seconds)
    ok = await payload(me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent", {"input": {"eventId": event_id, "code": current}})
    assert ok["errors"] == []
    await refused(services, me, "CheckInToVolunteerEvent", "checkInToVolunteerEvent",
                  {"input": {"eventId": event_id, "code": current}}, "ALREADY_CHECKED_IN")
    await invariants(services)


async def test_a_volunteer_cannot_approve_their_own_hours(gql, services, clock, admin):
    # The admin is also a volunteer; another admin approved them.
    other_admin = await users_service.create_admin(services, email="second-admin@example.cn", phone=None,
                                                   password="Sturdy-oak-2026", display_name="管理员二 Admin 2", now=clock())
    me = gql.as_user(admin["token"])
    applied = await payload(me, "ApplyToVolunteer", "applyToVolunteer", {
        "input": {"city": "广州 Guangzhou", "skills": [], "motivation": "管理员也来做志愿者 Admins volunteer too"}})
    await refused(services, me, "ReviewVolunteerApplication", "reviewVolunteerApplication",
                  {"input": {"volunteerId": applied["volunteer"]["id"], "approve": True, "reason": "自己 Myself"}},
                  "SELF_APPROVAL")
    other = fresh(gql, services, clock, other_admin, "ADMIN")
    await payload(other, "ReviewVolunteerApplication", "reviewVolunteerApplication",
                  {"input": {"volunteerId": applied["volunteer"]["id"], "approve": True, "reason": "同意 OK"}})
    course = await ensure_course(gql, admin)
    await payload(me, "SubmitVolunteerCourseAttempt", "submitVolunteerCourseAttempt",
                  {"input": {"courseId": course, "answers": [0, 1]}})
    event_id = await make_event({"client": me}, clock)
    clock.advance(hours=5)
    await refused(services, fresh(gql, services, clock, admin["pk"], "ADMIN"), "ConfirmVolunteerHours",
                  "confirmVolunteerHours", {"input": {"eventId": event_id}}, "SELF_APPROVAL")


async def test_self_referral_and_double_referral(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    other = await make_volunteer(gql, services, clock, admin, certified=False)
    await refused(services, volunteer["client"], "ApplyReferralCode", "applyReferralCode",
                  {"input": {"code": volunteer["code"]}}, "SELF_REFERRAL")
    member = await make_member(services, clock)
    me = gql.as_user(member["token"])
    assert (await payload(me, "ApplyReferralCode", "applyReferralCode", {"input": {"code": volunteer["code"]}}))["errors"] == []
    await refused(services, me, "ApplyReferralCode", "applyReferralCode", {"input": {"code": other["code"]}},
                  "ALREADY_REFERRED")
    await refused(services, me, "ApplyReferralCode", "applyReferralCode", {"input": {"code": "NOPE-NOPE"}},
                  "INVALID_REFERRAL_CODE")
    # At registration an unknown code refuses the registration (BAD_USER_INPUT on referralCode), nothing written.
    before = await row_counts(services.db)
    reg = await gql.ok(op_register(), {"input": {"email": "x@example.cn", "password": "Green-leaf-2026",
                                                  "displayName": "新 New", "referralCode": "VZZZZZZZ"}})
    assert [(e["code"], e["field"]) for e in reg["register"]["userErrors"]] == [("BAD_USER_INPUT", ["input", "referralCode"])]
    assert await row_counts(services.db) == before


async def test_merchant_application_with_own_or_unknown_volunteer_code(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    query = "mutation($i: ApplyForMerchantInput!) { applyForMerchant(input: $i) { merchant { id } userErrors { code field } } }"
    profile = {"nameZh": "绿叶咖啡", "nameEn": "Green Leaf Café", "category": "CAFE", "city": "深圳 Shenzhen"}
    for client, code in ((volunteer["client"], volunteer["code"]), (gql.as_user((await make_member(services, clock))["token"]), "VNOTACODE")):
        before = await row_counts(services.db)
        out = (await client.ok(query, {"i": {"profile": profile, "volunteerCode": code}}))["applyForMerchant"]
        assert out["merchant"] is None and out["userErrors"] == [{"code": "BAD_USER_INPUT", "field": ["input", "volunteerCode"]}]
        assert await row_counts(services.db) == before


async def test_no_commission_on_a_refunded_redemption(gql, services, clock, admin):
    services.settings.volunteers.commission_basis_points = 5000
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    _, offer_id = await merchant_with_offer(gql, services, clock, admin, volunteer, price=400)
    member = await make_member(services, clock, points=1000)
    me = gql.as_user(member["token"])
    r = (await me.ok(REDEEM, {"input": {"offerId": offer_id, "quantity": 1, "idempotencyKey": "c1"}}))["redeemOffer"]
    assert (await me.ok(CANCEL, {"input": {"redemptionId": r["redemption"]["id"]}}))["cancelRedemption"]["userErrors"] == []
    console = (await volunteer["client"].ok(op("VolunteerConsole"), {"month": "2026-06"}))["viewer"]["volunteer"]
    assert console["earnings"] == {"balance": 0, "pending": 0, "available": 0}
    assert console["commissions"]["edges"][0]["node"]["status"] == "REVERSED"
    # Its commission cannot be paid out, and a second refund attempt reverses nothing.
    await refused(services, volunteer["client"], "RequestVolunteerPayout", "requestVolunteerPayout",
                  {"input": {"points": 200}}, "INSUFFICIENT_POINTS")
    before = await row_counts(services.db)
    again = await me.ok(CANCEL, {"input": {"redemptionId": r["redemption"]["id"]}})
    assert again["cancelRedemption"]["userErrors"][0]["code"] == "REDEMPTION_CANCELLED"
    assert await row_counts(services.db) == before
    await invariants(services)


async def test_bad_applications_events_courses_and_payouts(gql, services, clock, admin):
    member = await make_member(services, clock)
    me = gql.as_user(member["token"])
    await refused(services, me, "ApplyToVolunteer", "applyToVolunteer",
                  {"input": {"city": " ", "skills": [], "motivation": "我想帮助社区 I want to help"}}, "BAD_USER_INPUT")
    await refused(services, me, "ApplyToVolunteer", "applyToVolunteer",
                  {"input": {"city": "深圳", "skills": [], "motivation": "short"}}, "BAD_USER_INPUT")
    await refused(services, me, "CreateVolunteerEvent", "createVolunteerEvent", {"input": event_input(clock)}, "NOT_A_VOLUNTEER")
    await refused(services, me, "RequestVolunteerPayout", "requestVolunteerPayout", {"input": {"points": 100}}, "NOT_A_VOLUNTEER")
    volunteer = await make_volunteer(gql, services, clock, admin)
    before = await row_counts(services.db)
    for bad, code in (({"capacity": 0}, "BAD_USER_INPUT"), ({"latitude": 91.0}, "INVALID_COORDINATES"),
                      ({"rewardPoints": 10_000}, "BAD_USER_INPUT"), ({"actionType": "no_such_type"}, "ACTION_TYPE_DISABLED"),
                      ({"endsAt": (clock() + timedelta(minutes=30)).isoformat()}, "BAD_USER_INPUT")):
        out = await payload(volunteer["client"], "CreateVolunteerEvent", "createVolunteerEvent", {"input": event_input(clock, **bad)})
        assert out["event"] is None and [e["code"] for e in out["errors"]] == [code], (bad, out)
    assert await row_counts(services.db) == before
    await refused(services, volunteer["client"], "RequestVolunteerPayout", "requestVolunteerPayout",
                  {"input": {"points": 1}}, "BAD_USER_INPUT")
    staff = gql.as_user(admin["token"])
    bad_course = {"level": "TRAINEE", "titleZh": "课", "titleEn": "Course", "lessons": [], "questions": []}
    await refused(services, staff, "CreateVolunteerCourse", "createVolunteerCourse", {"input": bad_course}, "BAD_USER_INPUT")
    # Members may not publish courses or read the admin queues.
    await refused(services, me, "CreateVolunteerCourse", "createVolunteerCourse", {"input": bad_course}, "FORBIDDEN")
    body = await me(op("VolunteerFlags"), {"status": "OPEN"})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
