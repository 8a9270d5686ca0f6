"""Review findings turned into tests: API-token scopes are enforced on every path that exposes data or
acts for an admin, and out-of-range cursors and dates are typed errors (never a 500)."""

import base64
import json
from datetime import timedelta

from actions_helpers import submit, trip
from offers_helpers import CREATE_OFFER, make_admin, make_member, make_merchant, make_offer

from jingtan_api.auth import tokens


async def api_token(services, clock, user_pk: int, *scopes: str) -> str:
    _, secret = await services.db.write(
        lambda conn: tokens.create_api_token(
            conn, user_id=user_pk, name="scoped", scopes=frozenset(scopes), created_by=None, expires_at=None, now=clock()
        )
    )
    return secret


def codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_a_redeem_only_token_sees_the_balance_but_not_the_statement(gql, services, clock):
    admin = await make_admin(services, clock)
    shop = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop, pointsPrice=40)
    member = await make_member(services, clock, points=100)
    secret = await api_token(services, clock, member["pk"], "offers:redeem")
    redeem = """mutation($i: RedeemOfferInput!) { redeemOffer(input: $i) {
        account { balance entries(first: 5) { nodes { amount } } } userErrors { code } } }"""
    body = await gql(redeem, {"i": {"offerId": offer["id"], "quantity": 1, "idempotencyKey": "s-1"}}, token=secret)
    assert body["data"]["redeemOffer"]["account"] is None or body["data"]["redeemOffer"]["account"]["entries"] is None
    assert "FORBIDDEN" in codes(body)
    balance_only = await gql(
        "mutation($i: RedeemOfferInput!) { redeemOffer(input: $i) { account { balance } replayed } }",
        {"i": {"offerId": offer["id"], "quantity": 1, "idempotencyKey": "s-1"}},
        token=secret,
    )
    assert balance_only["data"]["redeemOffer"] == {"account": {"balance": 60}, "replayed": True}
    # The same token cannot list the member's actions; an actions-only token cannot list redemption codes.
    assert "FORBIDDEN" in codes(await gql("{ viewer { actions { nodes { id } } } }", token=secret))
    actions_only = await api_token(services, clock, member["pk"], "actions:write")
    assert "FORBIDDEN" in codes(await gql("{ viewer { redemptions { nodes { code } } } }", token=actions_only))


async def test_admin_tokens_need_the_scope_of_what_they_do(gql, services, clock):
    admin = await make_admin(services, clock)
    member = await make_member(services, clock)
    done = await submit(gql, member["token"], "transit", trip(clock), key="t-1")
    action_id = done["action"]["id"]
    read_only = await api_token(services, clock, admin["pk"], "users:read", "account:read")

    create = """mutation($i: CreateMerchantInput!) { createMerchant(input: $i) { merchant { id } userErrors { code } } }"""
    profile = {"nameZh": "测试店", "nameEn": "Test shop", "category": "CAFE", "city": "北京", "district": "朝阳",
               "address": "1 Test Road"}
    refused = await gql.ok(create, {"i": {"profile": profile}}, token=read_only)
    assert refused["createMerchant"]["userErrors"][0]["code"] == "FORBIDDEN"
    assert (await gql.ok("{ merchants { nodes { id } } }", token=admin["token"]))["merchants"]["nodes"] == []

    # Another member's action and a ledger transaction are invisible without actions:review / ledger:read.
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert (await gql.ok(node, {"id": action_id}, token=read_only))["node"] is None
    assert (await gql.ok(node, {"id": action_id}, token=admin["token"]))["node"] == {"id": action_id}
    tx = (await gql.ok("query($id: ID!) { node(id: $id) { ... on Action { transaction { id } } } }",
                       {"id": action_id}, token=admin["token"]))["node"]["transaction"]
    assert (await gql.ok(node, {"id": tx["id"]}, token=read_only))["node"] is None
    assert (await gql.ok(node, {"id": tx["id"]}, token=admin["token"]))["node"] == {"id": tx["id"]}


async def test_cursors_beyond_32_bit_ids_are_invalid_cursors(gql, services, clock):
    member = await make_member(services, clock)
    huge = base64.b64encode(b"c:3000000000").decode()
    for query in (
        "query($c: String) { viewer { actions(after: $c) { nodes { id } } } }",
        "query($c: String) { viewer { account { entries(after: $c) { nodes { id } } } } }",
    ):
        assert codes(await gql(query, {"c": huge}, token=member["token"])) == ["INVALID_CURSOR"]
    offer_cursor = base64.b64encode(json.dumps(["NEWEST", "2026-06-01T00:00:00+00:00", 3_000_000_000]).encode()).decode()
    body = await gql("query($c: String) { offers(after: $c) { nodes { id } } }", {"c": offer_cursor}, token=member["token"])
    assert codes(body) == ["INVALID_CURSOR"]


async def test_settlement_refuses_dates_out_of_range(gql, services, clock):
    admin = await make_admin(services, clock)
    shop = await make_merchant(gql, services, clock, admin)
    query = """query($id: ID!, $from: Date!, $to: Date!) { node(id: $id) { ... on Merchant {
        settlement(from: $from, to: $to) { pointsReceived } } } }"""
    for start, end, field in (("0001-01-01", "0001-01-02", "from"), ("2026-06-01", "9999-12-31", "to")):
        body = await gql(query, {"id": shop["id"], "from": start, "to": end}, token=shop["token"])
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["field"] == field
    ok = await gql.ok(query, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-02"}, token=shop["token"])
    assert ok["node"]["settlement"]["pointsReceived"] == 0


async def test_removing_the_merchant_role_ends_staff_rights_at_once(gql, services, clock):
    admin = await make_admin(services, clock)
    shop = await make_merchant(gql, services, clock, admin)
    await make_offer(gql, clock, shop)  # the owner can act
    roles = """mutation($i: SetUserRolesInput!) { setUserRoles(input: $i) { userErrors { code } } }"""
    done = await gql.ok(roles, {"i": {"userId": shop["owner"]["id"], "roles": ["MEMBER"], "reason": "left the shop"}},
                        token=admin["token"])
    assert done["setUserRoles"]["userErrors"] == []
    # The owner's access token still claims MERCHANT, but the database no longer grants it.
    now = clock()
    values = {"titleZh": "豆浆", "titleEn": "Soy milk", "pointsPrice": 10, "totalStock": 1, "perMemberLimit": 1,
              "startsAt": (now - timedelta(days=1)).isoformat(), "endsAt": (now + timedelta(days=30)).isoformat(),
              "status": "ACTIVE", "merchantId": shop["id"]}
    refused = await gql.ok(CREATE_OFFER, {"input": values}, token=shop["token"])
    assert refused["createOffer"]["userErrors"][0]["code"] == "FORBIDDEN", refused
    assert refused["createOffer"]["offer"] is None
