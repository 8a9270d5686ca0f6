"""Access tokens (JWT), rotating refresh tokens, logout and password changes, through GraphQL."""

from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select, update

from jingtan_api.auth.models import RefreshToken
from jingtan_api.testing import register_member, row_counts
from jingtan_api.users.service import U

PASSWORD = "Green-leaf-2026"
RT = RefreshToken.__table__

VIEWER = "{ viewer { id email } }"
LOGIN = """
mutation($i: LoginInput!) {
  login(input: $i) { tokens { accessToken refreshToken } user { id } userErrors { code message field } }
}
"""
REFRESH = """
mutation($t: String!) {
  refreshToken(input: {refreshToken: $t}) {
    tokens { accessToken refreshToken refreshTokenExpiresAt } user { id } userErrors { code message field }
  }
}
"""
LOGOUT = """
mutation($i: LogoutInput!) { logout(input: $i) { ok userErrors { code message field } } }
"""
CHANGE = """
mutation($i: ChangePasswordInput!) {
  changePassword(input: $i) { tokens { accessToken refreshToken } user { id } userErrors { code message field } }
}
"""


async def login(gql, identifier="member@example.cn", password=PASSWORD) -> dict:
    payload = (await gql.ok(LOGIN, {"i": {"identifier": identifier, "password": password}}))["login"]
    return payload


async def refresh(gql, token: str) -> dict:
    return (await gql.ok(REFRESH, {"t": token}))["refreshToken"]


def only_error(payload: dict) -> dict:
    assert payload.get("tokens") is None, payload
    assert len(payload["userErrors"]) == 1, payload
    return payload["userErrors"][0]


async def assert_viewer_refused(gql, token: str, reason: str) -> None:
    body = await gql(VIEWER, token=token)
    assert body["data"] == {"viewer": None}
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert error["extensions"]["reason"] == reason, error
    assert error["path"] == ["viewer"]


# --- access tokens -----------------------------------------------------------------------------------


async def test_anonymous_viewer_is_null_without_error(gql):
    body = await gql(VIEWER)
    assert body["data"] == {"viewer": None} and "errors" not in body


async def test_access_token_expires_on_the_app_clock(gql, member, clock, settings):
    ttl = settings.auth.access_token_ttl_seconds
    clock.advance(seconds=ttl - 1)
    assert (await gql.ok(VIEWER, token=member["token"]))["viewer"]["id"] == member["id"]
    clock.advance(seconds=1)
    await assert_viewer_refused(gql, member["token"], "TOKEN_EXPIRED")
    # The refresh token still works and gives a fresh access token.
    payload = await refresh(gql, member["refresh"])
    assert (await gql.ok(VIEWER, token=payload["tokens"]["accessToken"]))["viewer"]["id"] == member["id"]


def _claims(member_pk: int, settings, clock, **changes) -> dict:
    now = int(clock().timestamp())
    claims = {
        "sub": str(member_pk),
        "roles": ["MEMBER", "ADMIN"],
        "iss": settings.auth.jwt_issuer,
        "aud": settings.auth.jwt_audience,
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _pk(global_id: str) -> int:
    import base64

    return int(base64.b64decode(global_id).decode().split(":")[1])


def _forged_tokens(pk: int, settings, clock) -> dict[str, tuple[str, str]]:
    """Each token claims to be the member *with ADMIN*; none may authenticate anyone.
    name -> (token, expected reason)."""
    import base64
    import json
    import warnings

    key = settings.secret_key
    good = _claims(pk, settings, clock)

    def hs256(claims):
        return jwt.encode(claims, key, algorithm="HS256")

    def without(name):
        return {k: v for k, v in good.items() if k != name}

    signed = hs256(good).split(".")
    upper_none = base64.urlsafe_b64encode(json.dumps({"alg": "NONE", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that our test key is short for HS512
        hs512 = jwt.encode(good, key, algorithm="HS512")
    invalid = {
        "wrong-key": jwt.encode(good, "not-the-server-key-" * 3, algorithm="HS256"),
        "wrong-audience": hs256(_claims(pk, settings, clock, aud="someone-else")),
        "wrong-issuer": hs256(_claims(pk, settings, clock, iss="evil")),
        "alg-none": jwt.encode(good, None, algorithm="none"),
        "alg-none-uppercase": f"{upper_none}.{signed[1]}.",
        "alg-none-keeping-signature": f"{jwt.encode(good, None, algorithm='none').split('.')[0]}.{signed[1]}.{signed[2]}",
        "hs512": hs512,
        "no-exp": hs256(without("exp")),
        "no-aud": hs256(without("aud")),
        "no-iss": hs256(without("iss")),
        "no-sub": hs256(without("sub")),
        "refresh-typ": hs256(_claims(pk, settings, clock, typ="refresh")),
        "sub-not-a-number": hs256(_claims(pk, settings, clock, sub="²")),
        "truncated-signature": hs256(good)[:-4],
        "swapped-payload": f"{signed[0]}.{hs256(_claims(pk + 1, settings, clock)).split('.')[1]}.{signed[2]}",
        "garbage": "not.a.jwt",
    }
    tokens = {name: (token, "INVALID_TOKEN") for name, token in invalid.items()}
    tokens["expired"] = (hs256(_claims(pk, settings, clock, exp=int(clock().timestamp()) - 1)), "TOKEN_EXPIRED")
    return tokens


async def test_forged_or_broken_access_tokens_are_refused(gql, services, member, settings, clock):
    forged = _forged_tokens(_pk(member["id"]), settings, clock)
    before = await row_counts(services.db)
    for name, (token, reason) in forged.items():
        body = await gql(VIEWER, token=token)
        assert body["data"] == {"viewer": None}, name
        assert [e["extensions"] for e in body["errors"]] == [{"code": "UNAUTHENTICATED", "reason": reason}], name
        # Fields that need a user refuse too, and mutations report it as a user error.
        body = await gql("{ auditLog(first: 1) { totalCount } }", token=token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", name
        payload = await gql.ok(
            CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "Another-pass-2027"}}, token=token
        )
        assert payload["changePassword"]["userErrors"][0]["code"] == "UNAUTHENTICATED", name
    assert await row_counts(services.db) == before
    # The same claims, correctly signed, do authenticate (the checks above were not vacuous).
    genuine = jwt.encode(_claims(_pk(member["id"]), settings, clock), settings.secret_key, algorithm="HS256")
    assert (await gql.ok(VIEWER, token=genuine))["viewer"]["id"] == member["id"]


async def test_malformed_authorization_header_is_refused(gql):
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "bearer not-a-token"):
        body = await gql(VIEWER, headers={"Authorization": header})
        assert body["data"] == {"viewer": None}, header
        assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": "INVALID_TOKEN"}, header


async def test_valid_token_of_a_disabled_user_is_refused_by_viewer(gql, services, member):
    await services.db.write(lambda conn: conn.execute(update(U).values(status="DISABLED")))
    await assert_viewer_refused(gql, member["token"], "REVOKED_TOKEN")


async def test_valid_token_of_an_unknown_user_is_refused_by_viewer(gql, settings, clock):
    token = jwt.encode(_claims(424242, settings, clock), settings.secret_key, algorithm="HS256")
    await assert_viewer_refused(gql, token, "REVOKED_TOKEN")


# --- refresh tokens ----------------------------------------------------------------------------------


async def test_refresh_rotates_and_the_old_token_stops_working(gql, services, member, clock):
    clock.advance(minutes=5)
    first = await refresh(gql, member["refresh"])
    assert first["userErrors"] == [] and first["user"]["id"] == member["id"]
    assert first["tokens"]["refreshToken"] != member["refresh"]
    assert first["tokens"]["refreshTokenExpiresAt"].startswith("2026-07-01T08:05:00")
    second = await refresh(gql, first["tokens"]["refreshToken"])
    assert second["userErrors"] == []
    assert (await gql.ok(VIEWER, token=second["tokens"]["accessToken"]))["viewer"]["id"] == member["id"]


async def test_reuse_after_rotation_revokes_the_whole_family(gql, services, member):
    other_session = await login(gql)  # a second, independent login of the same member
    rotated = await refresh(gql, member["refresh"])
    successor = rotated["tokens"]["refreshToken"]
    # The old token is presented again: it leaked. The whole family is revoked...
    reuse = only_error(await refresh(gql, member["refresh"]))
    assert reuse["code"] == "REFRESH_TOKEN_REUSED"
    # ...including the successor that the legitimate client (or the thief) holds.
    assert only_error(await refresh(gql, successor))["code"] == "INVALID_REFRESH_TOKEN"
    assert only_error(await refresh(gql, member["refresh"]))["code"] in ("INVALID_REFRESH_TOKEN", "REFRESH_TOKEN_REUSED")
    # The other login is a different family and keeps working.
    assert (await refresh(gql, other_session["tokens"]["refreshToken"]))["userErrors"] == []
    async with services.db.read() as conn:
        reasons = {r.revoked_reason for r in await conn.execute(select(RT).where(RT.c.revoked_at.is_not(None)))}
    assert reasons == {"reuse-detected"}


async def test_concurrent_refresh_with_one_token_yields_at_most_one_session(app, services, member):
    import asyncio

    from jingtan_api.testing import GraphQLClient

    clients = [GraphQLClient(app) for _ in range(8)]
    try:
        results = await asyncio.gather(*(refresh(c, member["refresh"]) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    winners = [r for r in results if r["userErrors"] == []]
    assert len(winners) <= 1
    for r in results:
        if r["userErrors"]:
            assert r["userErrors"][0]["code"] in ("REFRESH_TOKEN_REUSED", "INVALID_REFRESH_TOKEN")
    if len(winners) == 1 and len(results) > 1:
        # Someone else presented the same token: the family is gone, the winner's successor too.
        async with services.db.read() as conn:
            live = (await conn.execute(select(RT).where(RT.c.revoked_at.is_(None)))).all()
        assert live == []


async def test_refresh_token_expires(gql, member, clock, settings):
    clock.advance(days=settings.auth.refresh_token_ttl_days)
    assert only_error(await refresh(gql, member["refresh"]))["code"] == "INVALID_REFRESH_TOKEN"


async def test_unknown_refresh_token_writes_nothing(gql, services, member):
    before = await row_counts(services.db)
    for token in ("", "nonsense", "x" * 5000, member["refresh"][:-1]):
        assert only_error(await refresh(gql, token))["code"] == "INVALID_REFRESH_TOKEN", token
    assert await row_counts(services.db) == before
    assert (await refresh(gql, member["refresh"]))["userErrors"] == []


async def test_access_token_cannot_be_used_as_refresh_token(gql, member):
    assert only_error(await refresh(gql, member["token"]))["code"] == "INVALID_REFRESH_TOKEN"


async def test_refresh_of_a_disabled_user_fails_and_revokes_the_family(gql, services, member):
    await services.db.write(lambda conn: conn.execute(update(U).values(status="DISABLED")))
    assert only_error(await refresh(gql, member["refresh"]))["code"] == "ACCOUNT_DISABLED"
    await services.db.write(lambda conn: conn.execute(update(U).values(status="ACTIVE")))
    assert only_error(await refresh(gql, member["refresh"]))["code"] == "INVALID_REFRESH_TOKEN"


async def test_refreshed_access_token_carries_current_roles(gql, services, member, admin):
    await gql.ok(
        """mutation($i: SetUserRolesInput!) { setUserRoles(input: $i) { userErrors { code } } }""",
        {"i": {"userId": member["id"], "roles": ["MEMBER", "MERCHANT"], "reason": "joined a café"}},
        token=admin["token"],
    )
    payload = await refresh(gql, member["refresh"])
    data = await gql.ok("{ viewer { roles } }", token=payload["tokens"]["accessToken"])
    assert data["viewer"]["roles"] == ["MEMBER", "MERCHANT"]


# --- logout ------------------------------------------------------------------------------------------


async def test_logout_ends_only_this_session(gql, member):
    other = await login(gql)
    out = (await gql.ok(LOGOUT, {"i": {"refreshToken": member["refresh"]}}, token=member["token"]))["logout"]
    assert out == {"ok": True, "userErrors": []}
    assert only_error(await refresh(gql, member["refresh"]))["code"] == "INVALID_REFRESH_TOKEN"
    assert (await refresh(gql, other["tokens"]["refreshToken"]))["userErrors"] == []


async def test_logout_revokes_the_rotated_successor_too(gql, member):
    rotated = (await refresh(gql, member["refresh"]))["tokens"]
    # Logging out with the (used) original token still ends the session it started.
    out = (await gql.ok(LOGOUT, {"i": {"refreshToken": member["refresh"]}}))["logout"]
    assert out["ok"] is True
    assert only_error(await refresh(gql, rotated["refreshToken"]))["code"] == "INVALID_REFRESH_TOKEN"


async def test_logout_all_sessions(gql, member):
    sessions = [await login(gql) for _ in range(3)]
    out = (await gql.ok(LOGOUT, {"i": {"allSessions": True}}, token=member["token"]))["logout"]
    assert out == {"ok": True, "userErrors": []}
    for s in [*sessions, {"tokens": {"refreshToken": member["refresh"]}}]:
        assert only_error(await refresh(gql, s["tokens"]["refreshToken"]))["code"] == "INVALID_REFRESH_TOKEN"


async def test_logout_all_sessions_needs_a_user(gql, services, member):
    before = await row_counts(services.db)
    out = (await gql.ok(LOGOUT, {"i": {"allSessions": True}}))["logout"]
    assert out["ok"] is False and out["userErrors"][0]["code"] == "UNAUTHENTICATED"
    assert (await refresh(gql, member["refresh"]))["userErrors"] == []
    assert await row_counts(services.db) == {**before, "refresh_token": before["refresh_token"] + 1}


async def test_logout_with_someone_elses_refresh_token_is_refused(gql, member):
    other = await register_member(gql, email="other@example.cn")
    out = (await gql.ok(LOGOUT, {"i": {"refreshToken": other["refresh"]}}, token=member["token"]))["logout"]
    assert out["ok"] is False
    assert out["userErrors"][0]["code"] == "INVALID_REFRESH_TOKEN"
    assert (await refresh(gql, other["refresh"]))["userErrors"] == []


async def test_logout_with_unknown_token_is_refused(gql, member):
    out = (await gql.ok(LOGOUT, {"i": {"refreshToken": "nope"}}, token=member["token"]))["logout"]
    assert out["ok"] is False and out["userErrors"][0]["code"] == "INVALID_REFRESH_TOKEN"
    out = (await gql.ok(LOGOUT, {"i": {}}, token=member["token"]))["logout"]
    assert out["ok"] is False and out["userErrors"][0]["code"] == "INVALID_REFRESH_TOKEN"


# --- change password -------------------------------------------------------------------------------


async def test_change_password_signs_out_other_sessions(gql, services, member, clock):
    other = await login(gql)
    clock.advance(minutes=1)
    payload = (
        await gql.ok(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "Blue-sky-2027"}}, token=member["token"])
    )["changePassword"]
    assert payload["userErrors"] == [] and payload["user"]["id"] == member["id"]
    # Every earlier refresh token is revoked; the new session works.
    for token in (member["refresh"], other["tokens"]["refreshToken"]):
        assert only_error(await refresh(gql, token))["code"] == "INVALID_REFRESH_TOKEN"
    assert (await refresh(gql, payload["tokens"]["refreshToken"]))["userErrors"] == []
    assert (await gql.ok(VIEWER, token=payload["tokens"]["accessToken"]))["viewer"]["id"] == member["id"]
    # The old password no longer works, the new one does.
    assert only_error(await login(gql))["code"] == "INVALID_CREDENTIALS"
    assert (await login(gql, password="Blue-sky-2027"))["userErrors"] == []
    async with services.db.read() as conn:
        changed = (await conn.execute(select(U.c.password_changed_at))).scalar_one()
    assert changed == clock()


@pytest.mark.parametrize(
    "current, new, code, field",
    [
        ("Wrong-pass-2026", "Blue-sky-2027", "INVALID_CREDENTIALS", "currentPassword"),
        (PASSWORD, PASSWORD, "WEAK_PASSWORD", "newPassword"),
        (PASSWORD, "short", "WEAK_PASSWORD", "newPassword"),
        (PASSWORD, "member-Pass-2027", "WEAK_PASSWORD", "newPassword"),  # contains the email's local part
        (PASSWORD, "qwerty123", "WEAK_PASSWORD", "newPassword"),
    ],
)
async def test_change_password_refusals_write_nothing(gql, services, member, current, new, code, field):
    before = await row_counts(services.db)
    async with services.db.read() as conn:
        hash_before = (await conn.execute(select(U.c.password_hash))).scalar_one()
    payload = (await gql.ok(CHANGE, {"i": {"currentPassword": current, "newPassword": new}}, token=member["token"]))
    error = only_error(payload["changePassword"])
    assert error["code"] == code and error["field"] == ["input", field]
    after = await row_counts(services.db)
    # A wrong current password counts as a failed login attempt; nothing else is written.
    attempts = 1 if code == "INVALID_CREDENTIALS" else 0
    assert after == {**before, "login_attempt": before["login_attempt"] + attempts}
    async with services.db.read() as conn:
        assert (await conn.execute(select(U.c.password_hash))).scalar_one() == hash_before
    assert (await refresh(gql, member["refresh"]))["userErrors"] == []


async def test_change_password_needs_a_login(gql, services, member):
    before = await row_counts(services.db)
    payload = await gql.ok(CHANGE, {"i": {"currentPassword": PASSWORD, "newPassword": "Blue-sky-2027"}})
    assert only_error(payload["changePassword"])["code"] == "UNAUTHENTICATED"
    assert await row_counts(services.db) == before


async def test_access_tokens_stay_valid_until_expiry_after_logout(gql, member, clock, settings):
    """Access tokens are stateless: documented behaviour, kept short (default 15 minutes)."""
    await gql.ok(LOGOUT, {"i": {"allSessions": True}}, token=member["token"])
    assert (await gql.ok(VIEWER, token=member["token"]))["viewer"]["id"] == member["id"]
    clock.advance(seconds=settings.auth.access_token_ttl_seconds)
    await assert_viewer_refused(gql, member["token"], "TOKEN_EXPIRED")


def test_settings_keep_the_access_token_short():
    from jingtan_api.settings import AuthSettings

    assert AuthSettings().access_token_ttl_seconds <= int(timedelta(minutes=15).total_seconds())


# --- the cache of verified claims (AccessTokens.decode) ---------------------------------------------


def test_verified_claims_cache_keeps_every_check():
    """A remembered token is still refused once it expires (the app's clock), a token with ``nbf`` is
    never remembered, a tampered or refused token is not remembered, and the cache stays bounded."""
    from datetime import UTC, datetime

    from jingtan_api.auth import tokens as tokens_module
    from jingtan_api.auth.tokens import AccessTokens
    from jingtan_api.testing import FrozenClock, make_settings

    clock = FrozenClock()
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    access = AccessTokens(settings, clock)
    token, _ = access.issue(7, frozenset({"MEMBER"}), clock())
    first = access.decode(token)
    assert first.user_id == 7 and first.auth_error is None
    assert token in access._verified
    assert access.decode(token) == first  # from the cache
    clock.advance(seconds=settings.auth.access_token_ttl_seconds + 1)
    assert access.decode(token).auth_error == "TOKEN_EXPIRED"

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert access.decode(tampered).auth_error == "INVALID_TOKEN"
    assert tampered not in access._verified

    now = int(clock().timestamp())
    claims = {"sub": "8", "roles": [], "iss": access.issuer, "aud": access.audience, "iat": now,
              "exp": now + 600, "typ": "access", "nbf": int(datetime.now(UTC).timestamp()) + 3600}
    with_nbf = jwt.encode(claims, access.key, algorithm="HS256")
    assert access.decode(with_nbf).auth_error == "INVALID_TOKEN"  # not yet valid (PyJWT, real time)
    assert with_nbf not in access._verified

    size = tokens_module.VERIFIED_CACHE_SIZE
    try:
        tokens_module.VERIFIED_CACHE_SIZE = 3
        for user_id in range(10, 16):
            access.decode(access.issue(user_id, frozenset(), clock())[0])
        assert len(access._verified) == 3
    finally:
        tokens_module.VERIFIED_CACHE_SIZE = size
