"""Login through GraphQL: tokens, one generic error for every credential failure, throttling (progressive
delays per account and client, per client, and per account for clients that never logged in to it)."""

import jwt
import pytest

from jingtan_api.testing import GraphQLClient, register_member, row_counts

PASSWORD = "Green-leaf-2026"
ACCOUNT_LIMIT = 3  # free failures of one account from one address
ADDRESS_LIMIT = 5  # free failures from one address
ACCOUNT_FREE = 8  # free failures of one account from addresses that never logged in to it
WINDOW = 60

LOGIN = """
mutation($i: LoginInput!) {
  login(input: $i) {
    tokens { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType }
    user { id displayName email }
    userErrors { code message field }
  }
}
"""


@pytest.fixture
def settings_overrides():
    return {
        "auth": {
            "login_free_failures_per_client": ACCOUNT_LIMIT,
            "login_free_failures_per_address": ADDRESS_LIMIT,
            "login_free_failures_per_account": ACCOUNT_FREE,
            "login_window_seconds": WINDOW,
        }
    }


async def login(client, identifier: str, password: str = PASSWORD, **kw) -> dict:
    return (await client.ok(LOGIN, {"i": {"identifier": identifier, "password": password}}, **kw))["login"]


def error_of(payload: dict) -> dict:
    assert payload["tokens"] is None and payload["user"] is None, payload
    assert len(payload["userErrors"]) == 1, payload
    return payload["userErrors"][0]


def without_attempts(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k != "login_attempt"}


async def test_login_returns_pinned_jwt_and_refresh_token(gql, member, clock, settings):
    payload = await login(gql, "MEMBER@example.cn")
    assert payload["userErrors"] == []
    assert payload["user"]["email"] == "member@example.cn"
    tokens = payload["tokens"]
    assert tokens["tokenType"] == "Bearer"
    assert tokens["refreshToken"] and tokens["refreshToken"] != tokens["accessToken"]
    header = jwt.get_unverified_header(tokens["accessToken"])
    assert header["alg"] == "HS256"
    claims = jwt.decode(
        tokens["accessToken"],
        settings.secret_key,
        algorithms=["HS256"],
        audience=settings.auth.jwt_audience,
        issuer=settings.auth.jwt_issuer,
        options={"verify_exp": False},
    )
    now = int(clock().timestamp())
    assert claims["iat"] == now
    assert claims["exp"] == now + settings.auth.access_token_ttl_seconds
    assert claims["typ"] == "access" and claims["roles"] == ["MEMBER"]
    assert claims["sub"].isdigit()
    assert tokens["accessTokenExpiresAt"].startswith("2026-06-01T08:15:00")
    assert tokens["refreshTokenExpiresAt"].startswith("2026-07-01T08:00:00")
    viewer = await gql.ok("{ viewer { id } }", token=tokens["accessToken"])
    assert viewer["viewer"]["id"] == payload["user"]["id"]


async def test_login_with_phone_in_any_spelling(gql):
    await register_member(gql, phone="13800138000")
    for ident in ("13800138000", "+8613800138000", "+86 138-0013-8000", "0086 138 0013 8000", "１３８００１３８０００"):
        assert (await login(gql, ident))["userErrors"] == [], ident


async def test_wrong_password_unknown_user_and_malformed_identifier_look_the_same(gql, services, member):
    before = await row_counts(services.db)
    errors = [
        error_of(await login(gql, "member@example.cn", "Wrong-pass-2026")),
        error_of(await login(gql, "nobody@example.cn")),
        error_of(await login(gql, "13900000000")),
        error_of(await login(gql, "not an identifier")),
        error_of(await login(gql, "member@example.cn", "")),
    ]
    assert errors[0] == {
        "code": "INVALID_CREDENTIALS",
        "message": "Wrong account or password / 账号或密码错误",
        "field": ["input", "password"],
    }
    assert all(e == errors[0] for e in errors)
    after = await row_counts(services.db)
    # Nothing but the failed attempts themselves was written: no session, no token.
    assert without_attempts(after) == without_attempts(before)
    assert after["login_attempt"] == before["login_attempt"] + len(errors)


async def test_disabled_user_cannot_log_in_even_with_the_right_password(gql, services, member):
    from sqlalchemy import update

    from jingtan_api.users.service import U

    await services.db.write(lambda conn: conn.execute(update(U).values(status="DISABLED")))
    before = await row_counts(services.db)
    assert error_of(await login(gql, member["email"]))["code"] == "INVALID_CREDENTIALS"
    assert (await row_counts(services.db))["refresh_token"] == before["refresh_token"]


async def test_failures_from_one_address_delay_it_progressively_and_no_one_else(app, gql, member, clock, services):
    for _ in range(ACCOUNT_LIMIT):
        assert error_of(await login(gql, "member@example.cn", "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    before = await row_counts(services.db)
    # Even the right password waits: the answer says how long (no sleeping on the server).
    limited = error_of(await login(gql, "member@example.cn"))
    assert limited["code"] == "RATE_LIMITED" and limited["field"] == ["input", "identifier"]
    assert "retry in 1 s" in limited["message"] and " / " in limited["message"]
    # Another address is not slowed down, whatever the spelling of the email.
    other = GraphQLClient(app, client_address="203.0.113.9")
    try:
        assert (await login(other, "Member@Example.CN"))["userErrors"] == []
    finally:
        await other.aclose()
    # Refused attempts issue nothing and are not counted.
    after = await row_counts(services.db)
    assert without_attempts(after) == without_attempts(
        {**before, "refresh_token": before["refresh_token"] + 1, "auth_session": before["auth_session"] + 1})
    # The delay doubles with each further failure: 1 s, then 2 s, then 4 s ...
    clock.advance(seconds=1)
    assert error_of(await login(gql, "member@example.cn", "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    clock.advance(seconds=1)
    assert "retry in 1 s" in error_of(await login(gql, "member@example.cn"))["message"]
    clock.advance(seconds=1)
    assert error_of(await login(gql, "member@example.cn", "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    assert "retry in 4 s" in error_of(await login(gql, "member@example.cn"))["message"]
    clock.advance(seconds=4)
    assert (await login(gql, "member@example.cn"))["userErrors"] == []


async def test_account_limit_counts_phone_spellings_as_one_account(gql, clock):
    await register_member(gql, phone="13800138000")
    for ident in ("13800138000", "+86 138 0013 8000", "0086-138-0013-8000"):
        assert error_of(await login(gql, ident, "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    assert error_of(await login(gql, "+8613800138000"))["code"] == "RATE_LIMITED"


async def test_successful_login_clears_the_account_counter(gql, member):
    for _ in range(ACCOUNT_LIMIT - 1):
        error_of(await login(gql, "member@example.cn", "Wrong-pass-2026"))
    assert (await login(gql, "member@example.cn"))["userErrors"] == []
    # Without the reset this would be failure number ACCOUNT_LIMIT + 1.
    for _ in range(ACCOUNT_LIMIT - 1):
        assert error_of(await login(gql, "member@example.cn", "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    assert (await login(gql, "member@example.cn"))["userErrors"] == []


async def test_address_limit_spans_accounts_and_spares_other_addresses(app, gql, member, clock):
    attacker = GraphQLClient(app, client_address="198.51.100.7")
    bystander = GraphQLClient(app, client_address="198.51.100.8")
    try:
        for n in range(ADDRESS_LIMIT):
            # Different accounts each time, so only the address limit can trigger.
            err = error_of(await login(attacker, f"victim{n}@example.cn", "Guess-pass-1"))
            assert err["code"] == "INVALID_CREDENTIALS"
        assert error_of(await login(attacker, "member@example.cn"))["code"] == "RATE_LIMITED"
        # X-Forwarded-For is not trusted by default: a forged header does not give a fresh address.
        forged = await attacker.ok(
            LOGIN, {"i": {"identifier": "member@example.cn", "password": PASSWORD}},
            headers={"X-Forwarded-For": "192.0.2.1"},
        )
        assert error_of(forged["login"])["code"] == "RATE_LIMITED"
        assert (await login(bystander, "member@example.cn"))["userErrors"] == []
        clock.advance(seconds=WINDOW)
        assert (await login(attacker, "member@example.cn"))["userErrors"] == []
    finally:
        await attacker.aclose()
        await bystander.aclose()


async def test_register_then_login_in_one_operation_is_not_a_failed_login(gql, services):
    """register + login in the same document: both succeed and no failure is recorded."""
    data = await gql.ok(
        """
        mutation($r: RegisterInput!, $l: LoginInput!) {
          register(input: $r) { user { id } userErrors { code } }
          login(input: $l) { user { id } userErrors { code } }
        }
        """,
        {
            "r": {"email": "combo@example.cn", "password": PASSWORD, "displayName": "Combo"},
            "l": {"identifier": "combo@example.cn", "password": PASSWORD},
        },
    )
    assert data["register"]["userErrors"] == [] and data["login"]["userErrors"] == []
    assert data["register"]["user"]["id"] == data["login"]["user"]["id"]
    counts = await row_counts(services.db)
    # One row: the address is now known to the account (no failure).
    assert counts["login_attempt"] == 1 and counts["refresh_token"] == 2


async def test_login_needs_no_token_and_ignores_a_bad_one(gql, member):
    # A stale token in the client must not stop the user from logging in again.
    payload = (await gql.ok(LOGIN, {"i": {"identifier": "member@example.cn", "password": PASSWORD}}, token="garbage"))
    assert payload["login"]["userErrors"] == []


class TestForwardedFor:
    @pytest.fixture
    def settings_overrides(self):
        return {"auth": {"login_free_failures_per_address": 2, "trust_forwarded_for": True}}

    async def test_trusted_proxy_header_gives_the_client_address(self, gql, member):
        for _ in range(2):
            body = await gql.ok(
                LOGIN, {"i": {"identifier": f"x{_}@example.cn", "password": "Guess-pass-1"}},
                headers={"X-Forwarded-For": "192.0.2.1, 10.0.0.1"},
            )
            assert error_of(body["login"])["code"] == "INVALID_CREDENTIALS"
        limited = await gql.ok(
            LOGIN, {"i": {"identifier": "member@example.cn", "password": PASSWORD}},
            headers={"X-Forwarded-For": "192.0.2.1"},
        )
        assert error_of(limited["login"])["code"] == "RATE_LIMITED"
        other = await gql.ok(
            LOGIN, {"i": {"identifier": "member@example.cn", "password": PASSWORD}},
            headers={"X-Forwarded-For": "192.0.2.2"},
        )
        assert other["login"]["userErrors"] == []


async def test_concurrent_guesses_cannot_exceed_the_account_limit(app, gql, member, services):
    """Twenty parallel guesses (from twenty addresses) at one account: at most ACCOUNT_FREE of them
    get as far as checking the password; the rest are told to wait."""
    import asyncio

    clients = [GraphQLClient(app, client_address=f"192.0.2.{i}") for i in range(20)]
    try:
        results = await asyncio.gather(*(login(c, "member@example.cn", f"Guess-pass-{i}") for i, c in enumerate(clients)))
    finally:
        for c in clients:
            await c.aclose()
    codes = [error_of(r)["code"] for r in results]
    assert codes.count("INVALID_CREDENTIALS") == ACCOUNT_FREE, codes
    assert codes.count("RATE_LIMITED") == 20 - ACCOUNT_FREE
    # The member never logged in from here: a stranger to the account, so slowed down too.
    assert error_of(await login(gql, "member@example.cn"))["code"] == "RATE_LIMITED"
    assert (await row_counts(services.db))["login_attempt"] == ACCOUNT_FREE


async def test_an_attacker_cannot_lock_the_owner_out(app, gql, member, clock, services):
    """100 failures for account X from address A; X's owner, who logged in from B before, logs in from B
    at once. A stranger's address C is slowed down by the account-wide failures, B is not."""
    owner = GraphQLClient(app, client_address="198.51.100.20")
    attacker = GraphQLClient(app, client_address="203.0.113.66")
    stranger = GraphQLClient(app, client_address="192.0.2.200")
    helpers = [GraphQLClient(app, client_address=f"192.0.2.{i}") for i in range(ACCOUNT_FREE)]
    try:
        assert (await login(owner, "member@example.cn"))["userErrors"] == []
        failures = refusals = 0
        while failures < 100:
            err = error_of(await login(attacker, "member@example.cn", f"Guess-{failures}-2026"))
            if err["code"] == "RATE_LIMITED":
                refusals += 1
                clock.advance(seconds=int(err["message"].split("retry in ")[1].split(" s")[0]))
                continue
            assert err["code"] == "INVALID_CREDENTIALS"
            failures += 1
        assert refusals > 0  # the attacker was slowed down
        # Failures from as many other addresses as the account allows: now every stranger waits.
        for i, helper in enumerate(helpers):
            error_of(await login(helper, "member@example.cn", f"Other-{i}-2026"))
        assert error_of(await login(stranger, "member@example.cn"))["code"] == "RATE_LIMITED"
        assert error_of(await login(attacker, "member@example.cn"))["code"] == "RATE_LIMITED"
        before = await row_counts(services.db)
        payload = await login(owner, "member@example.cn")
        assert payload["userErrors"] == [] and payload["tokens"]["accessToken"]
        assert (await row_counts(services.db))["refresh_token"] == before["refresh_token"] + 1
    finally:
        for c in (owner, attacker, stranger, *helpers):
            await c.aclose()


async def test_a_fuzzers_failures_do_not_slow_a_login_from_another_address(app, clock):
    fuzzer = GraphQLClient(app, client_address="203.0.113.77")
    demo = GraphQLClient(app, client_address="198.51.100.30")
    try:
        await register_member(demo, email="demo@example.cn")
        answered = 0
        for n in range(60):
            err = error_of(await login(fuzzer, f"fuzz{n}@example.cn", "x" * (n % 7)))
            answered += err["code"] == "INVALID_CREDENTIALS"
        assert answered == ADDRESS_LIMIT  # then the fuzzer's own address waits
        assert (await login(demo, "demo@example.cn"))["userErrors"] == []
    finally:
        await fuzzer.aclose()
        await demo.aclose()


async def test_account_limit_counts_email_and_phone_of_one_user_together(gql):
    await register_member(gql, email="two@example.cn", phone="13600000002")
    for ident in ("two@example.cn", "13600000002", "TWO@example.cn"):
        assert error_of(await login(gql, ident, "Wrong-pass-2026"))["code"] == "INVALID_CREDENTIALS"
    assert error_of(await login(gql, "+86 136 0000 0002"))["code"] == "RATE_LIMITED"
    assert error_of(await login(gql, "two@example.cn"))["code"] == "RATE_LIMITED"


async def test_typed_identifiers_cannot_pose_as_another_users_counter(gql, member):
    # "user:1" is how failures of user 1 are keyed internally; typing it must not count against them.
    for _ in range(ACCOUNT_LIMIT):
        error_of(await login(gql, "user:1", "Wrong-pass-2026"))
    assert (await login(gql, "member@example.cn"))["userErrors"] == []


CHANGE = """
mutation($i: ChangePasswordInput!) { changePassword(input: $i) { tokens { accessToken } userErrors { code field } } }
"""


async def test_wrong_current_passwords_in_change_password_are_rate_limited(gql, member, clock, services):
    """A stolen access token must not allow unlimited guesses of the password."""
    for n in range(ACCOUNT_LIMIT):
        body = await gql.ok(
            CHANGE, {"i": {"currentPassword": f"Guess-pass-{n}", "newPassword": "Blue-sky-2027"}}, token=member["token"]
        )
        assert body["changePassword"]["userErrors"] == [{"code": "INVALID_CREDENTIALS", "field": ["input", "currentPassword"]}]
    before = await row_counts(services.db)
    body = await gql.ok(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "Blue-sky-2027"}}, token=member["token"])
    assert body["changePassword"]["userErrors"] == [{"code": "RATE_LIMITED", "field": ["input", "currentPassword"]}]
    assert await row_counts(services.db) == before
    # The same counter guards login.
    assert error_of(await login(gql, "member@example.cn"))["code"] == "RATE_LIMITED"
    clock.advance(seconds=WINDOW)
    body = await gql.ok(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "Blue-sky-2027"}}, token=member["token"])
    assert body["changePassword"]["userErrors"] == []
    # The successful change cleared the counter: one row left, the address known to the account.
    assert (await row_counts(services.db))["login_attempt"] == 1
    assert (await login(gql, "member@example.cn", "Blue-sky-2027"))["userErrors"] == []


async def test_address_limit_covers_an_ipv6_64_network(app, member):
    clients = [GraphQLClient(app, client_address=f"2001:db8:5:6::{n + 1:x}") for n in range(ADDRESS_LIMIT + 1)]
    elsewhere = GraphQLClient(app, client_address="2001:db8:5:7::1")
    try:
        for n in range(ADDRESS_LIMIT):
            # A new address of the same /64 for every guess.
            assert error_of(await login(clients[n], f"victim{n}@example.cn", "Guess-pass-1"))["code"] == "INVALID_CREDENTIALS"
        assert error_of(await login(clients[ADDRESS_LIMIT], "member@example.cn"))["code"] == "RATE_LIMITED"
        assert (await login(elsewhere, "member@example.cn"))["userErrors"] == []
    finally:
        for c in [*clients, elsewhere]:
            await c.aclose()
