"""The points ledger through GraphQL over HTTP: grant / revoke, rejected input (with proof that nothing
was written), idempotency, the statement (keyset pagination), expiringSoon and the audit log."""

from datetime import datetime, timedelta

import pytest
from ledger_helpers import (
    GRANT,
    REVOKE,
    account_balance,
    adjust_input,
    balance_of,
    grant,
    invariants,
    key,
    pk_of,
    relogin,
    revoke,
    snapshot,
)

from jingtan_api.users import service as users_service
from jingtan_api.accounts import service as ledger
from jingtan_api.graphql.relay import encode_cursor, to_global_id
from jingtan_api.testing import register_member

MAX = 1_000_000  # settings.points.max_single_amount (default)


# --- accounts -----------------------------------------------------------------------------------------


async def test_every_member_gets_an_account_and_platform_accounts_exist(gql, member, services):
    data = await gql.ok("{ viewer { account { id kind balance entries { totalCount } } } }", token=member["token"])
    account = data["viewer"]["account"]
    assert account["kind"] == "MEMBER" and account["balance"] == 0 and account["entries"]["totalCount"] == 0
    async with services.db.read() as conn:
        assert await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        assert await ledger.platform_account_id(conn, ledger.EXPIRED_CODE)
        assert await ledger.member_account_id(conn, pk_of(member["id"])) == pk_of(account["id"])
    assert await invariants(services.db) == []


async def test_grant_then_revoke_moves_points_between_member_and_issuance(gql, admin, member, services):
    db = services.db
    issuance_before = await account_balance(db, code=ledger.ISSUANCE_CODE)
    g = await grant(gql, admin, member["id"], 120, reason="welcome bonus 新人奖励")
    assert g["replayed"] is False
    assert g["transaction"]["kind"] == "GRANT" and g["transaction"]["memo"] == "welcome bonus 新人奖励"
    assert g["account"]["balance"] == 120
    r = await revoke(gql, admin, member["id"], 45, reason="duplicate action 重复提交")
    assert r["userErrors"] == [] and r["transaction"]["kind"] == "REVOKE" and r["account"]["balance"] == 75
    assert await balance_of(gql, member) == 75
    assert await account_balance(db, code=ledger.ISSUANCE_CODE) == issuance_before - 75

    # Admins see both sides of a transaction; they sum to zero.
    data = await gql.ok(
        """query($id: ID!) { node(id: $id) { ... on LedgerTransaction { kind entries { amount } } } }""",
        {"id": r["transaction"]["id"]},
        token=admin["token"],
    )
    amounts = sorted(e["amount"] for e in data["node"]["entries"])
    assert amounts == [-45, 45]
    assert await invariants(db) == []


# --- rejected input: the error AND nothing written -----------------------------------------------------


@pytest.fixture
async def funded(gql, admin, member, services):
    """The member holds 50 points; returns the snapshot taken after funding."""
    await grant(gql, admin, member["id"], 50)
    return await snapshot(services.db)


@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
@pytest.mark.parametrize("amount", [0, -1, -50, MAX + 1, 2**31 - 1], ids=["zero", "minus1", "minus50", "max+1", "2^31-1"])
async def test_bad_amount_is_a_user_error_and_writes_nothing(gql, admin, member, services, funded, mutation, amount):
    query = GRANT if mutation == "grantPoints" else REVOKE
    data = await gql.ok(query, {"i": adjust_input(member["id"], amount)}, token=admin["token"])
    payload = data[mutation]
    assert payload["transaction"] is None and payload["account"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("BAD_USER_INPUT", ["input", "amount"])]
    assert await snapshot(services.db) == funded
    assert await balance_of(gql, member) == 50


@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
@pytest.mark.parametrize(
    "amount", [2.5, 10.0, "10", 2**31, 2**53, None, True], ids=["float", "float-whole", "string", "2^31", "2^53", "null", "bool"]
)
async def test_non_int_amount_is_a_graphql_validation_error_and_writes_nothing(
    gql, admin, member, services, funded, mutation, amount
):
    query = GRANT if mutation == "grantPoints" else REVOKE
    body = await gql(query, {"i": adjust_input(member["id"], amount)}, token=admin["token"])
    # 10.0 is coerced to Int 10 by graphql-core (the spec allows it); everything else must be refused.
    if amount == 10.0 and isinstance(amount, float):
        assert body.get("errors") is None and body["data"][mutation]["userErrors"] == []
        return
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", body["errors"]
    assert "amount" in body["errors"][0]["message"]
    assert await snapshot(services.db) == funded


@pytest.mark.parametrize("literal", ["1.5", '"7"', "2147483648", "-0.0"])
async def test_inline_non_int_literal_is_a_validation_error(gql, admin, member, services, funded, literal):
    query = (
        f'mutation {{ grantPoints(input: {{userId: "{member["id"]}", amount: {literal}, reason: "inline", '
        f'idempotencyKey: "{key()}"}}) {{ replayed }} }}'
    )
    body = await gql(query, token=admin["token"])
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert await snapshot(services.db) == funded


async def test_max_single_amount_itself_is_accepted(gql, admin, member, services):
    g = await grant(gql, admin, member["id"], MAX)
    assert g["account"]["balance"] == MAX
    r = await revoke(gql, admin, member["id"], MAX)
    assert r["userErrors"] == [] and r["account"]["balance"] == 0
    assert await invariants(services.db) == []


class TestSmallerConfiguredMaximum:
    @pytest.fixture
    def settings_overrides(self):
        return {"points": {"max_single_amount": 500}}

    async def test_limit_comes_from_settings(self, gql, admin, member, services):
        before = await snapshot(services.db)
        data = await gql.ok(GRANT, {"i": adjust_input(member["id"], 501)}, token=admin["token"])
        errors = data["grantPoints"]["userErrors"]
        assert errors[0]["code"] == "BAD_USER_INPUT" and "500" in errors[0]["message"]
        assert await snapshot(services.db) == before
        assert (await grant(gql, admin, member["id"], 500))["account"]["balance"] == 500


async def test_revoke_above_balance_is_insufficient_points_and_writes_nothing(gql, admin, member, services, funded):
    r = await revoke(gql, admin, member["id"], 51)
    assert [e["code"] for e in r["userErrors"]] == ["INSUFFICIENT_POINTS"]
    assert r["transaction"] is None
    assert await snapshot(services.db) == funded
    # The whole balance can be taken, exactly.
    r = await revoke(gql, admin, member["id"], 50)
    assert r["userErrors"] == [] and r["account"]["balance"] == 0
    r = await revoke(gql, admin, member["id"], 1)
    assert [e["code"] for e in r["userErrors"]] == ["INSUFFICIENT_POINTS"]
    assert await invariants(services.db) == []


async def test_failed_request_does_not_burn_its_idempotency_key(gql, admin, member, services, funded):
    idem = key()
    r = await revoke(gql, admin, member["id"], 80, idem=idem)
    assert r["userErrors"][0]["code"] == "INSUFFICIENT_POINTS"
    assert await snapshot(services.db) == funded
    await grant(gql, admin, member["id"], 30)
    r = await revoke(gql, admin, member["id"], 80, idem=idem)
    assert r["userErrors"] == [] and r["replayed"] is False and r["account"]["balance"] == 0


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("reason", "", "BAD_USER_INPUT"),
        ("reason", "  x ", "BAD_USER_INPUT"),
        ("reason", "y" * 501, "BAD_USER_INPUT"),
        ("idempotencyKey", "", "BAD_USER_INPUT"),
        ("idempotencyKey", "   ", "BAD_USER_INPUT"),
        ("idempotencyKey", "k" * 129, "BAD_USER_INPUT"),
        ("idempotencyKey", "bad\nkey", "BAD_USER_INPUT"),
    ],
)
@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
async def test_bad_reason_or_key_writes_nothing(gql, admin, member, services, funded, mutation, field, value, code):
    i = adjust_input(member["id"], 5)
    i[field] = value
    data = await gql.ok(GRANT if mutation == "grantPoints" else REVOKE, {"i": i}, token=admin["token"])
    assert [(e["code"], e["field"]) for e in data[mutation]["userErrors"]] == [(code, ["input", field])]
    assert await snapshot(services.db) == funded


@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
async def test_non_admin_is_forbidden_and_writes_nothing(gql, admin, member, services, funded, mutation):
    other = await register_member(gql, email="other@example.cn")
    before = await snapshot(services.db)
    query = GRANT if mutation == "grantPoints" else REVOKE
    for token, code in ((member["token"], "FORBIDDEN"), (other["token"], "FORBIDDEN"), (None, "UNAUTHENTICATED")):
        data = await gql.ok(query, {"i": adjust_input(member["id"], 10)}, token=token)
        assert [e["code"] for e in data[mutation]["userErrors"]] == [code]
        assert data[mutation]["transaction"] is None
    assert await snapshot(services.db) == before
    assert before["counts"] == funded["counts"]


@pytest.mark.parametrize(
    "user_id",
    [
        to_global_id("User", 987654),
        to_global_id("Account", 1),
        to_global_id("User", "abc"),
        "not-base64!",
        "",
    ],
    ids=["missing-user", "wrong-type", "non-numeric", "garbage", "empty"],
)
@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
async def test_unknown_user_is_not_found_and_writes_nothing(gql, admin, member, services, funded, mutation, user_id):
    data = await gql.ok(GRANT if mutation == "grantPoints" else REVOKE, {"i": adjust_input(user_id, 5)}, token=admin["token"])
    assert [(e["code"], e["field"]) for e in data[mutation]["userErrors"]] == [("NOT_FOUND", ["input", "userId"])]
    assert await snapshot(services.db) == funded


# --- idempotency ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mutation", ["grantPoints", "revokePoints"])
async def test_same_key_same_input_replays_first_result_with_one_effect(gql, admin, member, services, funded, mutation):
    query = GRANT if mutation == "grantPoints" else REVOKE
    i = adjust_input(member["id"], 20, idem="same-key-1")
    first = (await gql.ok(query, {"i": i}, token=admin["token"]))[mutation]
    assert first["userErrors"] == [] and first["replayed"] is False
    after_first = await snapshot(services.db)
    for _ in range(3):
        again = (await gql.ok(query, {"i": i}, token=admin["token"]))[mutation]
        assert again["replayed"] is True and again["userErrors"] == []
        assert again["transaction"] == first["transaction"]
    assert await snapshot(services.db) == after_first
    expected = 70 if mutation == "grantPoints" else 30
    assert await balance_of(gql, member) == expected
    assert after_first["counts"]["ledger_transaction"] == funded["counts"]["ledger_transaction"] + 1
    assert after_first["counts"]["audit_log"] == funded["counts"]["audit_log"] + 1
    # Whitespace around the key and the reason is normalised, so it is the same request.
    i2 = {**i, "idempotencyKey": "  same-key-1 ", "reason": "  test   adjustment 测试 "}
    again = (await gql.ok(query, {"i": i2}, token=admin["token"]))[mutation]
    assert again["replayed"] is True and again["transaction"] == first["transaction"]
    assert await snapshot(services.db) == after_first


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 21},
        {"reason": "a different reason"},
        {"mutation": "revokePoints"},
        {"user": "other"},
    ],
    ids=["amount", "reason", "operation", "user"],
)
async def test_same_key_different_input_is_rejected_and_writes_nothing(gql, admin, member, services, funded, change):
    other = await register_member(gql, email="someone@example.cn")
    i = adjust_input(member["id"], 20, idem="reused-key")
    first = (await gql.ok(GRANT, {"i": i}, token=admin["token"]))["grantPoints"]
    assert first["userErrors"] == []
    before = await snapshot(services.db)
    mutation = change.get("mutation", "grantPoints")
    i2 = dict(i)
    if "amount" in change:
        i2["amount"] = change["amount"]
    if "reason" in change:
        i2["reason"] = change["reason"]
    if "user" in change:
        i2["userId"] = other["id"]
    data = await gql.ok(GRANT if mutation == "grantPoints" else REVOKE, {"i": i2}, token=admin["token"])
    payload = data[mutation]
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])]
    assert payload["transaction"] is None
    assert await snapshot(services.db) == before
    assert await balance_of(gql, member) == 70


async def test_idempotency_keys_are_scoped_per_admin(gql, admin, member, services):
    second = await users_service.create_admin(
        services,
        email="admin2@example.cn", phone=None, password="Carbon-keeper-2026", display_name="Admin 2", now=services.clock()
    )
    login = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
        {"i": {"identifier": "admin2@example.cn", "password": "Carbon-keeper-2026"}},
    )
    admin2 = {"pk": second, "token": login["login"]["tokens"]["accessToken"]}
    a = await grant(gql, admin, member["id"], 10, idem="shared")
    b = await grant(gql, admin2, member["id"], 10, idem="shared")
    assert a["transaction"]["id"] != b["transaction"]["id"] and not b["replayed"]
    assert await balance_of(gql, member) == 20


# --- statement: keyset pagination ----------------------------------------------------------------------

ENTRIES = """
query($first: Int, $after: String, $last: Int, $before: String) {
  viewer { account { entries(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { id amount balanceAfter kind memo createdAt transaction { id kind } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } } }
}
"""


@pytest.fixture
async def history(gql, admin, member, clock):
    """Eight movements: grants of 1..7 points then a revoke of 3, one minute apart."""
    for n in range(1, 8):
        await grant(gql, admin, member["id"], n, reason=f"grant {n}")
        clock.advance(minutes=1)
    assert (await revoke(gql, admin, member["id"], 3, reason="revoke 3"))["userErrors"] == []
    return [("REVOKE", -3, 25)] + [("GRANT", n, n * (n + 1) // 2) for n in range(7, 0, -1)]


async def entries(gql, member, **args) -> dict:
    return (await gql.ok(ENTRIES, args, token=member["token"]))["viewer"]["account"]["entries"]


async def test_statement_lists_entries_newest_first(gql, member, history):
    page = await entries(gql, member, first=100)
    assert page["totalCount"] == 8
    got = [(e["node"]["kind"], e["node"]["amount"], e["node"]["balanceAfter"]) for e in page["edges"]]
    assert got == history
    assert page["edges"][0]["node"]["memo"] == "revoke 3"
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": page["edges"][0]["cursor"],
        "endCursor": page["edges"][-1]["cursor"],
    }
    times = [datetime.fromisoformat(e["node"]["createdAt"]) for e in page["edges"]]
    assert times == sorted(times, reverse=True)
    assert all(e["node"]["transaction"]["kind"] == e["node"]["kind"] for e in page["edges"])
    # Default page size (20) when neither first nor last is given.
    assert len((await entries(gql, member))["edges"]) == 8


@pytest.mark.parametrize("size", [1, 3, 4, 8])
async def test_forward_pages_cover_everything_once(gql, member, history, size):
    full = [e["node"]["id"] for e in (await entries(gql, member, first=100))["edges"]]
    seen, after, pages = [], None, 0
    while True:
        page = await entries(gql, member, first=size, after=after)
        pages += 1
        seen += [e["node"]["id"] for e in page["edges"]]
        assert len(page["edges"]) <= size
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert page["totalCount"] == 8
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert len(page["edges"]) == size
        after = page["pageInfo"]["endCursor"]
    assert seen == full
    assert pages == -(-8 // size)
    # Past the end: empty, no cursors.
    tail = await entries(gql, member, first=size, after=(await entries(gql, member, first=100))["pageInfo"]["endCursor"])
    assert tail["edges"] == [] and tail["pageInfo"]["hasNextPage"] is False
    assert tail["pageInfo"]["startCursor"] is None and tail["pageInfo"]["endCursor"] is None


@pytest.mark.parametrize("size", [1, 3, 8])
async def test_backward_pages_cover_everything_once(gql, member, history, size):
    full = [e["node"]["id"] for e in (await entries(gql, member, first=100))["edges"]]
    seen, before = [], None
    while True:
        page = await entries(gql, member, last=size, before=before)
        ids = [e["node"]["id"] for e in page["edges"]]
        # Each page is still in list order (newest first) and sits right before the previous one.
        assert ids == [i for i in full if i in ids]
        seen = ids + seen
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        assert len(ids) == size
        before = page["pageInfo"]["startCursor"]
    assert seen == full


async def test_last_is_the_oldest_entries_and_before_is_newer_ones(gql, member, history):
    full = (await entries(gql, member, first=100))["edges"]
    last2 = await entries(gql, member, last=2)
    assert [e["node"]["amount"] for e in last2["edges"]] == [2, 1]
    assert last2["pageInfo"]["hasPreviousPage"] is True and last2["pageInfo"]["hasNextPage"] is False
    before = await entries(gql, member, last=2, before=full[3]["cursor"])
    assert [e["node"]["id"] for e in before["edges"]] == [full[1]["node"]["id"], full[2]["node"]["id"]]
    assert before["pageInfo"]["hasNextPage"] is True and before["pageInfo"]["hasPreviousPage"] is True
    after = await entries(gql, member, first=2, after=full[3]["cursor"])
    assert [e["node"]["id"] for e in after["edges"]] == [full[4]["node"]["id"], full[5]["node"]["id"]]
    assert (await entries(gql, member, first=0))["edges"] == []


@pytest.mark.parametrize(
    "args,code",
    [
        ({"after": "garbage"}, "INVALID_CURSOR"),
        ({"after": encode_cursor("x")}, "INVALID_CURSOR"),
        ({"before": "Yzo="}, "INVALID_CURSOR"),
        ({"after": to_global_id("User", 1)}, "INVALID_CURSOR"),
        ({"first": 101}, "PAGE_SIZE_EXCEEDED"),
        ({"last": 101}, "PAGE_SIZE_EXCEEDED"),
        ({"first": -1}, "PAGE_SIZE_INVALID"),
        ({"first": 2, "last": 2}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_page_arguments_are_typed_errors(gql, member, history, args, code):
    body = await gql(ENTRIES, args, token=member["token"])
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]
    assert body["data"]["viewer"]["account"] is None


async def test_first_100_is_allowed(gql, member, history):
    assert len((await entries(gql, member, first=100))["edges"]) == 8


async def test_statement_of_another_member_is_not_visible(gql, admin, member, services):
    other = await register_member(gql, email="nosy@example.cn")
    await grant(gql, admin, member["id"], 5)
    body = await gql(
        "query($id: ID!) { node(id: $id) { ... on User { account { balance } } } }",
        {"id": member["id"]},
        token=other["token"],
    )
    assert not body.get("data", {}).get("node"), body


# --- expiringSoon -------------------------------------------------------------------------------------

EXPIRING = """query($days: Int) { viewer { account { balance expiringSoon(days: $days) { points expiresAt } } } }"""


async def expiring(gql, member, days=None):
    body = await gql.ok(EXPIRING, {"days": days}, token=member["token"])
    return [(e["points"], datetime.fromisoformat(e["expiresAt"])) for e in body["viewer"]["account"]["expiringSoon"]]


async def test_expiring_soon_lists_lots_within_horizon_soonest_first(gql, admin, member, clock):
    t0 = clock()
    await grant(gql, admin, member["id"], 100)
    assert await expiring(gql, member) == []  # 365 days away, horizon 30
    clock.advance(days=200)
    await relogin(gql, admin, member)
    await grant(gql, admin, member["id"], 40)
    assert await expiring(gql, member) == []
    clock.advance(days=140)  # first lot now 25 days from expiry
    await relogin(gql, admin, member)
    assert await expiring(gql, member) == [(100, t0 + timedelta(days=365))]
    assert await expiring(gql, member, days=400) == [
        (100, t0 + timedelta(days=365)),
        (40, t0 + timedelta(days=565)),
    ]
    # A revoke consumes the soonest-expiring lot first.
    assert (await revoke(gql, admin, member["id"], 30))["userErrors"] == []
    assert await expiring(gql, member) == [(70, t0 + timedelta(days=365))]
    assert (await revoke(gql, admin, member["id"], 80))["userErrors"] == []
    assert await expiring(gql, member, days=400) == [(30, t0 + timedelta(days=565))]


@pytest.mark.parametrize("days", [0, -1, 3651])
async def test_expiring_soon_rejects_bad_horizon(gql, member, days):
    body = await gql(EXPIRING, {"days": days}, token=member["token"])
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- audit log ----------------------------------------------------------------------------------------

AUDIT = """
query($first: Int, $after: String, $action: String, $actorId: ID, $targetId: ID) {
  auditLog(first: $first, after: $after, action: $action, actorId: $actorId, targetId: $targetId) {
    edges { cursor node { id action targetType targetId reason details requestId createdAt actor { id } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


async def audit(gql, admin, **args) -> dict:
    return (await gql.ok(AUDIT, args, token=admin["token"]))["auditLog"]


async def test_audit_log_records_who_what_when_why(gql, admin, member, services, clock):
    other = await register_member(gql, email="b@example.cn")
    g = await grant(gql, admin, member["id"], 10, reason="survey reward 问卷奖励", idem="audit-1")
    clock.advance(minutes=5)
    await grant(gql, admin, other["id"], 20, reason="volunteer day 志愿活动")
    clock.advance(minutes=5)
    r = await revoke(gql, admin, member["id"], 4, reason="mistake 误发")
    # Rejected and replayed requests are not audited twice.
    await revoke(gql, admin, member["id"], 999)
    await grant(gql, admin, member["id"], 10, reason="survey reward 问卷奖励", idem="audit-1")

    page = await audit(gql, admin, action=None)
    nodes = [e["node"] for e in page["edges"] if e["node"]["action"].startswith("points.")]
    assert [(n["action"], n["reason"], n["details"]["amount"]) for n in nodes] == [
        ("points.revoke", "mistake 误发", 4),
        ("points.grant", "volunteer day 志愿活动", 20),
        ("points.grant", "survey reward 问卷奖励", 10),
    ]
    newest, _, oldest = nodes
    assert newest["actor"]["id"] == admin["id"]
    assert newest["targetType"] == "User" and newest["targetId"] == member["id"]
    assert newest["details"]["transactionId"] == r["transaction"]["id"]  # a global ID
    assert oldest["details"]["transactionId"] == g["transaction"]["id"]
    assert oldest["details"]["idempotencyKey"] == "audit-1"
    assert datetime.fromisoformat(newest["createdAt"]) == clock()
    assert datetime.fromisoformat(oldest["createdAt"]) == clock() - timedelta(minutes=10)
    assert newest["requestId"]

    # Filters.
    revokes = await audit(gql, admin, action="points.revoke")
    assert [e["node"]["reason"] for e in revokes["edges"]] == ["mistake 误发"]
    for_member = await audit(gql, admin, targetId=member["id"])
    assert [e["node"]["action"] for e in for_member["edges"]] == ["points.revoke", "points.grant"]
    by_admin = await audit(gql, admin, actorId=admin["id"], action="points.grant")
    assert len(by_admin["edges"]) == 2
    assert (await audit(gql, admin, actorId=member["id"]))["edges"] == []

    # Pagination (keyset, newest first).
    p1 = await audit(gql, admin, first=2, action="points.grant")
    assert len(p1["edges"]) == 2 and p1["pageInfo"]["hasNextPage"] is False
    p1 = await audit(gql, admin, first=1, action="points.grant")
    assert p1["pageInfo"]["hasNextPage"] is True and p1["pageInfo"]["hasPreviousPage"] is False
    p2 = await audit(gql, admin, first=1, after=p1["pageInfo"]["endCursor"], action="points.grant")
    assert p2["pageInfo"]["hasNextPage"] is False and p2["pageInfo"]["hasPreviousPage"] is True
    assert [e["node"]["reason"] for e in p1["edges"] + p2["edges"]] == ["volunteer day 志愿活动", "survey reward 问卷奖励"]


async def test_audit_log_is_admin_only(gql, admin, member):
    await grant(gql, admin, member["id"], 10)
    for token, code in ((member["token"], "FORBIDDEN"), (None, "UNAUTHENTICATED")):
        body = await gql(AUDIT, {}, token=token)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == [code]


@pytest.mark.parametrize(
    "args,code",
    [({"first": 101}, "PAGE_SIZE_EXCEEDED"), ({"after": "nope"}, "INVALID_CURSOR"), ({"actorId": "nope"}, "NOT_FOUND")],
)
async def test_audit_log_bad_arguments(gql, admin, args, code):
    body = await gql(AUDIT, args, token=admin["token"])
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]
