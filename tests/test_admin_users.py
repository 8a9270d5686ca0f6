"""Admins find users by phone, e-mail or name (exact and prefix) and suspend/reactivate them with a reason,
through GraphQL over HTTP on SQLite and PostgreSQL."""

import pytest

from jingtan_api.testing import register_member
from tests.actions_helpers import trip
from jingtan_api.plugins.testing import SUBMIT

USERS = """
query($s: String, $m: UserSearchMatch, $role: Role, $status: UserStatus, $first: Int) {
  users(search: $s, match: $m, role: $role, status: $status, first: $first) {
    totalCount nodes { id displayName email phone roles status }
  }
}
"""
SUSPEND = """
mutation($i: UserStatusInput!) { suspendUser(input: $i) { user { id status } userErrors { code field } errors { code } } }
"""
REACTIVATE = """
mutation($i: UserStatusInput!) { reactivateUser(input: $i) { user { id status } userErrors { code field } errors { code } } }
"""
LOGIN = """
mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken refreshToken } userErrors { code } } }
"""


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["transit"]}}


@pytest.fixture
async def people(gql):
    return {
        "li": await register_member(gql, phone="13800138001", display_name="李小明 Li Xiaoming"),
        "wang": await register_member(gql, email="Wang.Fang@Example.cn", display_name="王芳 Wang Fang"),
        "chen": await register_member(gql, email="chen@example.cn", phone="13900139003", display_name="陈杰 Chen Jie"),
        "odd": await register_member(gql, email="percent_user@example.cn", display_name="100% green"),
    }


async def find(gql, admin, **variables) -> dict:
    return (await gql.ok(USERS, variables, token=admin["token"]))["users"]


async def test_search_by_phone_email_and_name(gql, admin, people):
    exact_phone = await find(gql, admin, s="13800138001", m="EXACT")
    assert [n["id"] for n in exact_phone["nodes"]] == [people["li"]["id"]]
    node = exact_phone["nodes"][0]
    assert node["phone"] == "+8613800138001" and node["roles"] == ["MEMBER"] and node["status"] == "ACTIVE"
    assert [n["id"] for n in (await find(gql, admin, s="+8613800138001", m="EXACT"))["nodes"]] == [people["li"]["id"]]
    prefix_phone = await find(gql, admin, s="138")
    assert {n["id"] for n in prefix_phone["nodes"]} == {people["li"]["id"]}
    assert {n["id"] for n in (await find(gql, admin, s="1"))["nodes"]} == {
        people["li"]["id"], people["chen"]["id"], people["odd"]["id"]}  # phones 138…, 139… and "100% green"
    # e-mail: case-insensitive, exact and prefix
    assert [n["id"] for n in (await find(gql, admin, s="wang.fang@example.CN", m="EXACT"))["nodes"]] == [people["wang"]["id"]]
    assert [n["id"] for n in (await find(gql, admin, s="WANG."))["nodes"]] == [people["wang"]["id"]]
    assert (await find(gql, admin, s="wang.fang@", m="EXACT"))["totalCount"] == 0
    # names, Chinese and English
    assert [n["id"] for n in (await find(gql, admin, s="陈"))["nodes"]] == [people["chen"]["id"]]
    assert [n["id"] for n in (await find(gql, admin, s="王芳 Wang Fang", m="EXACT"))["nodes"]] == [people["wang"]["id"]]
    # wildcards are literal
    assert [n["id"] for n in (await find(gql, admin, s="100%"))["nodes"]] == [people["odd"]["id"]]
    assert (await find(gql, admin, s="%"))["totalCount"] == 0
    assert (await find(gql, admin, s="_"))["totalCount"] == 0
    # filters and the whole list
    assert (await find(gql, admin, role="ADMIN"))["totalCount"] == 1
    everyone = await find(gql, admin, first=2)
    assert everyone["totalCount"] == 5 and len(everyone["nodes"]) == 2


@pytest.mark.parametrize("variables,code", [
    ({"s": ""}, "BAD_USER_INPUT"), ({"s": "x" * 101}, "BAD_USER_INPUT"), ({"first": -1}, "PAGE_SIZE_INVALID"),
])
async def test_bad_search_arguments_are_typed_errors(gql, admin, variables, code):
    body = await gql(USERS, variables, token=admin["token"])
    assert body["errors"][0]["extensions"]["code"] == code and body["data"] is None


async def test_only_admins_search(gql, member, people):
    body = await gql(USERS, {"s": "138"}, token=member["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(USERS, {"s": "138"})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def audit_count(gql, admin) -> int:
    return (await gql.ok("{ auditLog(first: 0) { totalCount } }", token=admin["token"]))["auditLog"]["totalCount"]


async def test_suspend_and_reactivate(gql, admin, people, clock):
    wang = people["wang"]
    out = (await gql.ok(SUSPEND, {"i": {"userId": wang["id"], "reason": "reported for fake receipts"}},
                        token=admin["token"]))["suspendUser"]
    assert out["userErrors"] == [] and out["user"]["status"] == "SUSPENDED"
    # no login, the access token and the refresh token are refused, nothing can be submitted
    login = (await gql.ok(LOGIN, {"i": {"identifier": wang["email"], "password": wang["password"]}}))["login"]
    assert login["tokens"] is None and login["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
    # The access token is stateless: reads work until it expires (at most auth.access_token_ttl_seconds),
    # but every mutation checks the status first.
    viewer = await gql("{ viewer { id } }", token=wang["token"])
    assert viewer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # viewer checks the status itself
    refreshed = await gql("mutation($i: RefreshTokenInput!) { refreshToken(input: $i) { tokens { accessToken } userErrors { code } } }",
                          {"i": {"refreshToken": wang["refresh"]}})
    assert refreshed["data"]["refreshToken"]["tokens"] is None
    submitted = await gql(SUBMIT, {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "s-1"}}, token=wang["token"])
    payload = submitted["data"]["submitAction"]
    assert payload["action"] is None and [e["code"] for e in payload["userErrors"]] == ["UNAUTHENTICATED"]
    # found by status; audited with the reason
    assert [n["id"] for n in (await find(gql, admin, status="SUSPENDED"))["nodes"]] == [wang["id"]]
    log = await gql.ok('{ auditLog(first: 1, action: "user.suspend") { nodes { targetId reason details } } }',
                       token=admin["token"])
    assert log["auditLog"]["nodes"] == [{"targetId": wang["id"], "reason": "reported for fake receipts",
                                         "details": {"from": "ACTIVE", "to": "SUSPENDED"}}]
    # suspending twice: a typed conflict, nothing written
    before = await audit_count(gql, admin)
    again = (await gql.ok(SUSPEND, {"i": {"userId": wang["id"], "reason": "again"}}, token=admin["token"]))["suspendUser"]
    assert again["errors"] == [{"code": "INVALID_STATUS_TRANSITION"}] and again["user"] is None
    assert await audit_count(gql, admin) == before
    # reactivation: login works again; the old refresh token stays revoked
    back = (await gql.ok(REACTIVATE, {"i": {"userId": wang["id"], "reason": "appeal upheld"}}, token=admin["token"]))
    assert back["reactivateUser"]["user"]["status"] == "ACTIVE"
    login = (await gql.ok(LOGIN, {"i": {"identifier": wang["email"], "password": wang["password"]}}))["login"]
    assert login["userErrors"] == [] and login["tokens"]["accessToken"]
    stale = await gql("mutation($i: RefreshTokenInput!) { refreshToken(input: $i) { tokens { accessToken } } }",
                      {"i": {"refreshToken": wang["refresh"]}})
    assert stale["data"]["refreshToken"]["tokens"] is None


async def test_suspension_refuses_bad_input_and_writes_nothing(gql, admin, member, people):
    before = await audit_count(gql, admin)
    cases = [
        (admin["token"], {"userId": admin["id"], "reason": "testing myself"}, "INVALID_STATUS_TRANSITION"),
        (admin["token"], {"userId": people["li"]["id"], "reason": "no"}, "BAD_USER_INPUT"),
        (admin["token"], {"userId": "nope", "reason": "a fine reason"}, "NOT_FOUND"),
        (member["token"], {"userId": people["li"]["id"], "reason": "a fine reason"}, "FORBIDDEN"),
    ]
    for token, variables, code in cases:
        out = (await gql.ok(SUSPEND, {"i": variables}, token=token))["suspendUser"]
        assert out["errors"] == [{"code": code}], (variables, out)
    reactivate_active = (await gql.ok(REACTIVATE, {"i": {"userId": people["li"]["id"], "reason": "not suspended"}},
                                      token=admin["token"]))["reactivateUser"]
    assert reactivate_active["errors"] == [{"code": "INVALID_STATUS_TRANSITION"}]
    assert await audit_count(gql, admin) == before
    assert {n["status"] for n in (await find(gql, admin))["nodes"]} == {"ACTIVE"}
