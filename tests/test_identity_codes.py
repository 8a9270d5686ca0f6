"""One-time codes through GraphQL over HTTP (SQLite and PostgreSQL): contact verification and the
earn/redeem gate, login by code, password reset, and every bad input of docs/identity.md."""

import pytest
from sqlalchemy import select

from actions_helpers import trip
from identity_helpers import (
    LOGIN_WITH_CODE, REQUEST_LOGIN, REQUEST_RESET, REQUEST_VERIFY, RESET, VERIFY, outbox, unchanged_except,
    verified_member,
)
from jingtan_api.identity.models import VerificationCode
from jingtan_api.testing import register_member, row_counts

LOGIN = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }"
REFRESH = "mutation($i: RefreshTokenInput!) { refreshToken(input: $i) { tokens { accessToken } userErrors { code } } }"
SUBMIT = """mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } userErrors { code } } }"""


async def codes_of(services, destination):
    VC = VerificationCode.__table__
    async with services.db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(VC).where(VC.c.destination == destination).order_by(VC.c.id))]


async def test_verify_phone_then_it_is_verified_and_the_code_is_hashed(gql, services, clock):
    member = await register_member(gql, phone="13800138100")
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    sent = data["requestContactVerification"]
    assert sent["channel"] == "SMS" and sent["resendAfterSeconds"] == 60 and sent["userErrors"] == []
    code = outbox(services).last_code("+8613800138100", "VERIFY_PHONE")
    assert code and len(code) == 6 and code.isdigit()
    rows = await codes_of(services, "+8613800138100")
    assert len(rows) == 1 and code not in rows[0]["code_hash"] and len(rows[0]["code_hash"]) == 64
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": code}}, token=member["token"])
    user = data["verifyContact"]["user"]
    assert data["verifyContact"]["userErrors"] == [] and user["phoneVerifiedAt"] is not None
    assert user["emailVerifiedAt"] is None
    # Reused code: refused, nothing changes.
    before = await row_counts(services.db)
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": code}}, token=member["token"])
    assert data["verifyContact"]["errors"] == [{"code": "CODE_ALREADY_USED"}]
    await unchanged_except(services, before)
    # And a new request is refused: already verified.
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    assert data["requestContactVerification"]["errors"] == [{"code": "ALREADY_VERIFIED"}]
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "EMAIL"}}, token=member["token"])
    assert data["requestContactVerification"]["errors"] == [{"code": "NO_CONTACT"}]
    await unchanged_except(services, before)


async def test_wrong_code_counts_attempts_until_the_code_is_void(gql, services, clock):
    member = await register_member(gql, phone="13800138101")
    await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    code = outbox(services).last_code("+8613800138101")
    wrong = "000000" if code != "000000" else "111111"
    seen = []
    for _ in range(5):
        data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": wrong}}, token=member["token"])
        seen.append(data["verifyContact"]["errors"][0]["code"])
    assert seen == ["INVALID_CODE"] * 4 + ["TOO_MANY_ATTEMPTS"]
    before = await row_counts(services.db)
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": code}}, token=member["token"])
    assert data["verifyContact"]["errors"] == [{"code": "TOO_MANY_ATTEMPTS"}]  # even the right code
    await unchanged_except(services, before)
    assert (await codes_of(services, "+8613800138101"))[0]["attempts"] == 5
    data = await gql.ok("query { viewer { phoneVerifiedAt } }", token=member["token"])
    assert data["viewer"]["phoneVerifiedAt"] is None


async def test_expired_code_and_malformed_code(gql, services, clock):
    member = await register_member(gql, phone="13800138102")
    await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    code = outbox(services).last_code("+8613800138102")
    before = await row_counts(services.db)
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": "12ab56"}}, token=member["token"])
    assert data["verifyContact"]["userErrors"][0]["code"] == "INVALID_CODE"
    assert data["verifyContact"]["userErrors"][0]["field"] == ["input", "code"]
    clock.advance(seconds=301)
    data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": code}}, token=member["token"])
    assert data["verifyContact"]["errors"] == [{"code": "CODE_EXPIRED"}]
    await unchanged_except(services, before)


async def test_resend_limits_per_number_and_per_address(gql, services, clock):
    member = await register_member(gql, phone="13800138103")
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    first = outbox(services).last_code("+8613800138103")
    before = await row_counts(services.db)
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    assert data["requestContactVerification"]["errors"] == [{"code": "RATE_LIMITED"}]
    await unchanged_except(services, before)
    # After the interval a new code supersedes the first: one active code per purpose.
    for _ in range(4):
        clock.advance(seconds=61)
        data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
        assert data["requestContactVerification"]["userErrors"] == []
    latest = outbox(services).last_code("+8613800138103")
    rows = await codes_of(services, "+8613800138103")
    assert len(rows) == 5 and [r["superseded_at"] is None for r in rows] == [False] * 4 + [True]
    if first != latest:
        data = await gql.ok(VERIFY, {"i": {"channel": "SMS", "code": first}}, token=member["token"])
        assert data["verifyContact"]["errors"] == [{"code": "INVALID_CODE"}]
    clock.advance(seconds=61)
    before = await row_counts(services.db)
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}}, token=member["token"])
    assert data["requestContactVerification"]["errors"] == [{"code": "RATE_LIMITED"}]  # 5 per hour per number
    await unchanged_except(services, before)


@pytest.fixture
def settings_overrides():
    return {"identity": {"codes_per_address": 6}}


async def test_resend_flood_from_one_address_over_many_numbers(gql, services, clock):
    for n in range(6):
        data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": f"1390013{n:04d}"}})
        assert data["requestLoginCode"]["userErrors"] == []
    before = await row_counts(services.db)
    data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13900139999"}})
    assert data["requestLoginCode"]["errors"] == [{"code": "RATE_LIMITED"}]
    await unchanged_except(services, before)
    body = await gql(REQUEST_LOGIN, {"i": {"identifier": "13900139998"}})
    assert body["data"]["requestLoginCode"]["userErrors"][0]["message"].startswith("Too many codes")


async def test_gate_earn_and_redeem_need_a_verified_contact(db_url, clock):
    from jingtan_api.app import create_app
    from jingtan_api.testing import GraphQLClient, make_settings

    app = create_app(make_settings(db_url, identity={"require_verified_contact": True}), clock=clock)
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        services = app.state.services
        member = await register_member(gql, phone="13800138104")
        action = {"transit": trip(clock, meters=5000)}
        before = await row_counts(services.db)
        body = await gql(SUBMIT, {"i": {"action": action, "idempotencyKey": "k-1"}}, token=member["token"])
        payload = body["data"]["submitAction"]
        assert payload["userErrors"] == [{"code": "CONTACT_NOT_VERIFIED"}]
        await unchanged_except(services, before)
        redeem = "mutation($i: RedeemOfferInput!) { redeemOffer(input: $i) { userErrors { code } } }"
        body = await gql(redeem, {"i": {"offerId": "T2ZmZXI6MQ==", "quantity": 1, "idempotencyKey": "r-1"}},
                         token=member["token"])
        assert body["data"]["redeemOffer"]["userErrors"] == [{"code": "CONTACT_NOT_VERIFIED"}]
        await unchanged_except(services, before)
        verified = await verified_member(gql, services, clock, phone="13800138105")
        body = await gql(SUBMIT, {"i": {"action": action, "idempotencyKey": "k-2"}}, token=verified["token"])
        assert body["data"]["submitAction"]["userErrors"] == [] and body["data"]["submitAction"]["action"]["id"]
        await gql.aclose()


async def test_login_with_code_verifies_the_contact(gql, services, clock):
    member = await register_member(gql, phone="13800138106", email="code-login@example.cn")
    data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "138 0013 8106"}})
    assert data["requestLoginCode"]["channel"] == "SMS"
    code = outbox(services).last_code("+8613800138106", "LOGIN")
    data = await gql.ok(LOGIN_WITH_CODE, {"i": {"identifier": "+8613800138106", "code": code, "deviceName": "小米 14"}})
    payload = data["loginWithCode"]
    assert payload["userErrors"] == [] and payload["user"]["id"] == member["id"]
    me = await gql.ok("query { viewer { phoneVerifiedAt emailVerifiedAt sessions { totalCount nodes { deviceName } } } }",
                      token=payload["tokens"]["accessToken"])
    assert me["viewer"]["phoneVerifiedAt"] is not None and me["viewer"]["emailVerifiedAt"] is None
    assert "小米 14" in [n["deviceName"] for n in me["viewer"]["sessions"]["nodes"]]
    assert me["viewer"]["sessions"]["totalCount"] == 2  # registration + this login
    # The password session still works: login by code does not revoke anything.
    data = await gql.ok(REFRESH, {"i": {"refreshToken": member["refresh"]}})
    assert data["refreshToken"]["userErrors"] == []


async def test_a_code_for_another_purpose_is_refused(gql, services, clock):
    await register_member(gql, phone="13800138107")
    await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13800138107"}})
    login_code = outbox(services).last_code("+8613800138107", "LOGIN")
    before = await row_counts(services.db)
    data = await gql.ok(RESET, {"i": {"identifier": "13800138107", "code": login_code, "newPassword": "Fresh-bamboo-77"}})
    assert data["resetPassword"]["errors"] == [{"code": "INVALID_CODE"}] and data["resetPassword"]["tokens"] is None
    await unchanged_except(services, before)
    data = await gql.ok(LOGIN, {"i": {"identifier": "13800138107", "password": "Fresh-bamboo-77"}})
    assert data["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]


async def test_password_reset_revokes_other_sessions(gql, services, clock):
    member = await register_member(gql, email="reset-me@example.cn")
    data = await gql.ok(REQUEST_RESET, {"i": {"identifier": "Reset-Me@example.cn"}})
    assert data["requestPasswordReset"]["channel"] == "EMAIL"
    code = outbox(services).last_code("reset-me@example.cn", "RESET_PASSWORD")
    before = await row_counts(services.db)
    data = await gql.ok(RESET, {"i": {"identifier": "reset-me@example.cn", "code": code, "newPassword": "short"}})
    assert data["resetPassword"]["errors"] == [{"code": "WEAK_PASSWORD"}]
    await unchanged_except(services, before)  # the policy is checked before the code: no attempt burnt
    data = await gql.ok(RESET, {"i": {"identifier": "reset-me@example.cn", "code": code, "newPassword": "Fresh-bamboo-77"}})
    assert data["resetPassword"]["userErrors"] == [] and data["resetPassword"]["user"]["id"] == member["id"]
    data = await gql.ok(REFRESH, {"i": {"refreshToken": member["refresh"]}})
    assert data["refreshToken"]["userErrors"] == [{"code": "INVALID_REFRESH_TOKEN"}]
    data = await gql.ok(LOGIN, {"i": {"identifier": "reset-me@example.cn", "password": member["password"]}})
    assert data["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    data = await gql.ok(LOGIN, {"i": {"identifier": "reset-me@example.cn", "password": "Fresh-bamboo-77"}})
    assert data["login"]["userErrors"] == []
    me = await gql.ok("query { viewer { emailVerifiedAt } }", token=data["login"]["tokens"]["accessToken"])
    assert me["viewer"]["emailVerifiedAt"] is not None  # receiving the code proved the address


async def test_no_account_enumeration(gql, services, clock):
    await register_member(gql, phone="13800138108")
    known = await gql(REQUEST_RESET, {"i": {"identifier": "13800138108"}})
    unknown = await gql(REQUEST_RESET, {"i": {"identifier": "13800138109"}})
    shape = lambda body: {k: v for k, v in body["data"]["requestPasswordReset"].items() if k != "expiresAt"}  # noqa: E731
    assert shape(known) == shape(unknown) and shape(known)["userErrors"] == []
    assert outbox(services).messages_to("+8613800138109") == []  # nothing is sent to an unknown number
    users_before = (await row_counts(services.db))["user_account"]
    # Any code for the unknown number is wrong, with the same error, and counts attempts the same way.
    for identifier in ("13800138108", "13800138109"):
        body = await gql(RESET, {"i": {"identifier": identifier, "code": "123456", "newPassword": "Fresh-bamboo-77"}})
        assert body["data"]["resetPassword"]["errors"] == [{"code": "INVALID_CODE"}]
    for identifier in ("13800138108", "13800138109"):
        body = await gql(REQUEST_RESET, {"i": {"identifier": identifier}})
        assert body["data"]["requestPasswordReset"]["errors"] == [{"code": "RATE_LIMITED"}]
    assert (await row_counts(services.db))["user_account"] == users_before
    body = await gql(LOGIN_WITH_CODE, {"i": {"identifier": "13800138109", "code": "123456"}})
    assert body["data"]["loginWithCode"]["errors"] == [{"code": "INVALID_CODE"}]


async def test_bad_identifiers_are_typed_errors(gql, services):
    before = await row_counts(services.db)
    data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "12345"}})
    assert data["requestLoginCode"]["errors"] == [{"code": "INVALID_PHONE"}]
    data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "not@an@email"}})
    assert data["requestLoginCode"]["errors"] == [{"code": "INVALID_EMAIL"}]
    data = await gql.ok(REQUEST_VERIFY, {"i": {"channel": "SMS"}})
    assert data["requestContactVerification"]["errors"] == [{"code": "UNAUTHENTICATED"}]
    await unchanged_except(services, before)
