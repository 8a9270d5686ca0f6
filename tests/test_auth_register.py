"""Registration through GraphQL: success paths, and every refusal writes nothing."""

import pytest

from jingtan_api.testing import REGISTER, GraphQLClient, register_member, row_counts

GOOD_PASSWORD = "Green-leaf-2026"

VIEWER = "{ viewer { id displayName email phone roles account { balance } } }"


async def _register(gql, **fields) -> dict:
    data = {"email": None, "phone": None, "password": GOOD_PASSWORD, "displayName": "张三 Zhang San"}
    data.update(fields)
    return (await gql.ok(REGISTER, {"input": data}))["register"]


async def test_register_with_email_gives_session_and_member_account(gql):
    payload = await _register(gql, email="  Zhang.San@Example.CN ", displayName="  张三   Zhang San ")
    assert payload["userErrors"] == []
    token = payload["tokens"]["accessToken"]
    viewer = (await gql.ok(VIEWER, token=token))["viewer"]
    assert viewer == {
        "id": payload["user"]["id"],
        "displayName": "张三 Zhang San",
        "email": "zhang.san@example.cn",
        "phone": None,
        "roles": ["MEMBER"],
        "account": {"balance": 0},
    }


@pytest.mark.parametrize(
    "written, stored",
    [
        ("13800138000", "+8613800138000"),
        ("+86 138-0013-8000", "+8613800138000"),
        ("0086 138 0013 8000", "+8613800138000"),
        ("(+86) 139 0000 0000", "+8613900000000"),
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits typed on a Chinese keyboard
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
async def test_register_with_phone_stores_e164(gql, written, stored):
    payload = await _register(gql, phone=written)
    assert payload["userErrors"] == []
    viewer = (await gql.ok(VIEWER, token=payload["tokens"]["accessToken"]))["viewer"]
    assert viewer["phone"] == stored and viewer["email"] is None


async def test_register_with_email_and_phone_then_login_with_either(gql):
    await _register(gql, email="both@example.cn", phone="13700000001")
    for ident in ("BOTH@example.cn", "+86 137 0000 0001", "13700000001"):
        data = await gql.ok(
            "mutation($i: LoginInput!) { login(input: $i) { user { email phone } userErrors { code } } }",
            {"i": {"identifier": ident, "password": GOOD_PASSWORD}},
        )
        assert data["login"] == {"user": {"email": "both@example.cn", "phone": "+8613700000001"}, "userErrors": []}


async def _assert_refused(gql, services, fields: dict, code: str, field: str | None):
    before = await row_counts(services.db)
    payload = await _register(gql, **fields)
    assert payload["user"] is None and payload["tokens"] is None
    assert len(payload["userErrors"]) == 1, payload
    error = payload["userErrors"][0]
    assert error["code"] == code, error
    assert error["field"] == (["input", field] if field else None)
    assert error["message"]
    assert await row_counts(services.db) == before
    return error


@pytest.mark.parametrize(
    "first, second, field",
    [
        ({"email": "dup@example.cn"}, {"email": "dup@example.cn"}, "email"),
        ({"email": "dup@example.cn"}, {"email": "DUP@Example.CN"}, "email"),
        ({"phone": "13800138000"}, {"phone": "+86 138-0013-8000"}, "phone"),
        ({"phone": "+8613800138000"}, {"phone": "0086 13800138000"}, "phone"),
        ({"phone": "13800138000"}, {"phone": "１３８００１３８０００"}, "phone"),
        # A new email but a phone that is taken: still refused, and the phone is blamed.
        ({"email": "a@example.cn", "phone": "13800138000"}, {"email": "b@example.cn", "phone": "138 0013 8000"}, "phone"),
        ({"email": "a@example.cn", "phone": "13800138000"}, {"email": "A@example.cn", "phone": "13900000000"}, "email"),
    ],
)
async def test_duplicate_registration_is_refused(gql, services, first, second, field):
    assert (await _register(gql, **first))["userErrors"] == []
    await _assert_refused(gql, services, second, "ALREADY_REGISTERED", field)


# Representative cases through GraphQL (with the nothing-written check); the full tables are in
# test_auth_units.py.
@pytest.mark.parametrize(
    "phone",
    [
        "12345",
        "+86 128 0013 8000",
        "8613800138000",  # neither E.164 (no +) nor a mainland number
        "13٨00138000",  # an Arabic-Indic digit is a digit to Python's \d, not to us
        "",
    ],
)
async def test_malformed_phone_is_refused(gql, services, phone):
    if phone == "":
        # Empty phone and no email: "give an email or a phone".
        await _assert_refused(gql, services, {"phone": phone}, "BAD_USER_INPUT", "email")
        return
    await _assert_refused(gql, services, {"phone": phone}, "INVALID_PHONE", "phone")


@pytest.mark.parametrize("email", ["plainaddress", "a@example", "a@@example.cn", "x" * 250 + "@e.cn"])
async def test_malformed_email_is_refused(gql, services, email):
    await _assert_refused(gql, services, {"email": email}, "INVALID_EMAIL", "email")


async def test_missing_identifier_is_refused(gql, services):
    await _assert_refused(gql, services, {}, "BAD_USER_INPUT", "email")


@pytest.mark.parametrize(
    "password",
    [
        "short1A",  # too short
        "P@ssw0rd",  # common (case-insensitive)
        "x" * 300 + "A1",  # too long
        "weak13812345678Ab",  # contains the phone number (national form)
        "Weakling-newbie",  # contains the email's local part
    ],
)
async def test_weak_password_is_refused(gql, services, password):
    await _assert_refused(
        gql,
        services,
        {"email": "newbie@example.cn", "phone": "13812345678", "password": password},
        "WEAK_PASSWORD",
        "password",
    )


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\u200bbed\x07"])
async def test_bad_display_name_is_refused(gql, services, name):
    await _assert_refused(gql, services, {"email": "n@example.cn", "displayName": name}, "BAD_USER_INPUT", "displayName")


async def test_nul_in_display_name_is_refused_before_anything_runs(gql, services):
    # NUL is refused for every string by the input layer (graphql/sanitize.py): a GraphQL error, not userErrors
    before = await row_counts(services.db)
    variables = {"input": {"email": "n@example.cn", "password": "Green-leaf-2026", "displayName": "bad\u0000name"}}
    body = await gql(REGISTER, variables)
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert ".displayName" in body["errors"][0]["message"]
    assert await row_counts(services.db) == before


async def test_register_is_not_blocked_by_failed_logins_from_the_same_address(gql, services):
    """Registration issues its session directly: an address at its failed-login limit can still
    register, and a refused registration never leaves a half-created user behind."""
    limit = services.settings.auth.login_free_failures_per_address
    for n in range(limit):
        body = await gql.ok(
            "mutation($i: LoginInput!) { login(input: $i) { userErrors { code } } }",
            {"i": {"identifier": f"nobody{n}@example.cn", "password": "Wrong-pass-1"}},
        )
        assert body["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
    payload = await _register(gql, email="fresh@example.cn")
    assert payload["userErrors"] == []
    assert payload["tokens"]["accessToken"]
    counts = await row_counts(services.db)
    assert counts["user_account"] == 1 and counts["refresh_token"] == 1


async def test_register_twice_concurrently_creates_one_user(app, services):
    import asyncio

    clients = [GraphQLClient(app, client_address=f"10.0.0.{i}") for i in range(6)]
    try:
        results = await asyncio.gather(
            *(
                c(REGISTER, {"input": {"email": "race@example.cn", "password": GOOD_PASSWORD, "displayName": "R"}})
                for c in clients
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    ok = [r for r in results if r["data"]["register"]["userErrors"] == []]
    refused = [r for r in results if r["data"]["register"]["userErrors"]]
    assert len(ok) == 1
    assert all(r["data"]["register"]["userErrors"][0]["code"] == "ALREADY_REGISTERED" for r in refused)
    assert all("errors" not in r for r in results)
    assert (await row_counts(services.db))["user_account"] == 1


async def test_registered_member_helper_round_trip(gql):
    m = await register_member(gql, phone="15900000000")
    assert (await gql.ok("{ viewer { phone } }", token=m["token"]))["viewer"]["phone"] == "+8615900000000"


async def test_concurrent_registrations_of_one_phone_in_different_spellings(app, services):
    import asyncio

    spellings = ["13800138000", "+86 138 0013 8000", "0086-138-0013-8000", "+8613800138000", "１３８００１３８０００"]
    before = await row_counts(services.db)
    clients = [GraphQLClient(app, client_address=f"10.0.1.{i}") for i in range(len(spellings))]
    try:
        results = await asyncio.gather(
            *(
                c(REGISTER, {"input": {"email": f"p{i}@example.cn", "phone": phone, "password": GOOD_PASSWORD,
                                       "displayName": "P"}})
                for i, (c, phone) in enumerate(zip(clients, spellings, strict=True))
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    errors = [r["data"]["register"]["userErrors"] for r in results]
    assert sum(1 for e in errors if e == []) == 1
    assert all(e[0]["code"] == "ALREADY_REGISTERED" and e[0]["field"] == ["input", "phone"] for e in errors if e)
    after = await row_counts(services.db)
    grown = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    # stats_daily: the admin dashboard's new-members count of the day (impact listener on user.registered)
    assert grown == {"user_account": 1, "account": 1, "refresh_token": 1, "auth_session": 1, "user_consent": 2,
                     "stats_daily": 1}
