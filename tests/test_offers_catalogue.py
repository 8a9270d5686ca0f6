"""The offer catalogue: visibility, filters, keyset pagination per sort order, bounded SQL statements."""

from datetime import timedelta

import pytest
from offers_helpers import make_admin, make_member, make_merchant, make_offer, redeem
from sqlalchemy import event

from jingtan_api.graphql.relay import decode_id, to_global_id
from jingtan_api.merchants import service as merchants
from jingtan_api.offers import service


@pytest.fixture
async def admin(services, clock):
    return await make_admin(services, clock)


CATALOGUE = """
query Catalogue($first: Int, $after: String, $filter: OfferFilter, $orderBy: OfferOrder! = NEWEST) {
  offers(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    edges { cursor node { id titleZh pointsPrice stock endsAt available merchant { id nameZh city category } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def _all_pages(gql, *, order: str, first: int, flt: dict | None = None, token: str | None = None) -> list[dict]:
    nodes, after = [], None
    for _ in range(100):
        data = await gql.ok(CATALOGUE, {"first": first, "after": after, "filter": flt, "orderBy": order}, token=token)
        page = data["offers"]
        nodes += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination does not end")


async def _bulk_offers(services, clock, merchant_gid: str, n: int, *, price=lambda i: 10 + i % 7 * 10, days=lambda i: 5 + i % 11):
    """Create offers through the service in one transaction (fast), a second apart."""
    merchant_id = decode_id(merchant_gid, "Merchant")
    actor = merchants.Actor(user_id=0, is_admin=True, merchant_id=None)
    now = clock()

    async def tx(conn):
        ids = []
        for i in range(n):
            ids.append(
                await service.create_offer(
                    conn, actor=actor, merchant_id=merchant_id, status="ACTIVE", now=now + timedelta(seconds=i - n),
                    fields={
                        "title_zh": f"优惠 {i}", "points_price": price(i), "total_stock": 5, "per_member_limit": 1,
                        "starts_at": now - timedelta(days=1), "ends_at": now + timedelta(days=days(i)),
                    },
                )
            )
        return ids

    return [to_global_id("Offer", pk) for pk in await services.db.write(tx)]


async def test_only_redeemable_offers_are_listed(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    now = clock()
    visible = await make_offer(gql, clock, shop, titleZh="可兑换")
    await make_offer(gql, clock, shop, titleZh="草稿", status="DRAFT")
    await make_offer(gql, clock, shop, titleZh="未开始", startsAt=(now + timedelta(days=2)).isoformat())
    sold = await make_offer(gql, clock, shop, titleZh="售罄", totalStock=1)
    member = await make_member(services, clock, points=1000)
    assert (await redeem(gql, member, sold["id"]))["userErrors"] == []
    paused = await make_offer(gql, clock, shop, titleZh="暂停")
    await gql.ok(
        "mutation($i: SetOfferStatusInput!) { setOfferStatus(input: $i) { userErrors { code } } }",
        {"i": {"offerId": paused["id"], "status": "PAUSED"}}, token=shop["token"],
    )
    # An offer of a merchant whose application is still pending is not listed either.
    applicant = await make_member(services, clock)
    from offers_helpers import PROFILE

    await gql.ok(
        "mutation($i: ApplyForMerchantInput!) { applyForMerchant(input: $i) { userErrors { code } } }",
        {"i": {"profile": PROFILE}}, token=applicant["token"],
    )

    listed = await _all_pages(gql, order="NEWEST", first=10)
    assert [n["titleZh"] for n in listed] == ["可兑换"]
    assert (await gql.ok("{ offers(first: 0) { totalCount } }"))["offers"]["totalCount"] == 1
    assert listed[0]["available"] is True and listed[0]["merchant"]["nameZh"] == "绿叶咖啡"

    # Staff (and admins) may ask for everything of their merchant; others may not.
    everything = await _all_pages(gql, order="NEWEST", first=3, flt={"merchantId": shop["id"], "includeUnavailable": True}, token=shop["token"])
    counted = await gql.ok(
        "query($f: OfferFilter) { offers(first: 1, filter: $f) { totalCount } }",
        {"f": {"merchantId": shop["id"], "includeUnavailable": True}}, token=shop["token"],
    )
    assert counted["offers"]["totalCount"] == 5
    assert sorted(n["titleZh"] for n in everything) == sorted(["可兑换", "草稿", "未开始", "售罄", "暂停"])
    by_admin = await _all_pages(gql, order="NEWEST", first=10, flt={"includeUnavailable": True}, token=admin["token"])
    assert len(by_admin) == 5
    refused = await gql(CATALOGUE, {"filter": {"merchantId": shop["id"], "includeUnavailable": True}}, token=member["token"])
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # The merchant's own view lists all its offers for staff, redeemable ones for the public.
    own = "query($id: ID!) { merchant(id: $id) { offers(first: 20) { nodes { titleZh } } } }"
    staff_view = await gql.ok(own, {"id": shop["id"]}, token=shop["token"])
    assert len(staff_view["merchant"]["offers"]["nodes"]) == 5
    public_view = await gql.ok(own, {"id": shop["id"]})
    assert public_view["merchant"]["offers"]["nodes"] == [{"titleZh": "可兑换"}]

    # Drafts are not visible by id to the public.
    draft_id = everything[[n["titleZh"] for n in everything].index("草稿")]["id"]
    assert (await gql.ok("query($id: ID!) { offer(id: $id) { id } }", {"id": draft_id}))["offer"] is None
    assert (await gql.ok("query($id: ID!) { node(id: $id) { id } }", {"id": visible["id"]}))["node"] == {"id": visible["id"]}


@pytest.mark.parametrize("order", ["NEWEST", "POINTS_ASC", "POINTS_DESC", "ENDING_SOON"])
async def test_keyset_pages_follow_each_sort_order(gql, services, clock, admin, order):
    shop = await make_merchant(gql, services, clock, admin)
    ids = await _bulk_offers(services, clock, shop["id"], 23)
    everything = await _all_pages(gql, order=order, first=100)
    assert len(everything) == 23 and {n["id"] for n in everything} == set(ids)

    pk = {n["id"]: decode_id(n["id"], "Offer") for n in everything}
    if order == "NEWEST":
        expected = sorted(everything, key=lambda n: -pk[n["id"]])  # created a second apart, in id order
    elif order == "POINTS_ASC":
        expected = sorted(everything, key=lambda n: (n["pointsPrice"], pk[n["id"]]))
    elif order == "POINTS_DESC":
        expected = sorted(everything, key=lambda n: (-n["pointsPrice"], -pk[n["id"]]))
    else:
        expected = sorted(everything, key=lambda n: (n["endsAt"], pk[n["id"]]))
    assert [n["id"] for n in everything] == [n["id"] for n in expected]

    paged = await _all_pages(gql, order=order, first=4)
    assert [n["id"] for n in paged] == [n["id"] for n in expected]


async def test_cursor_of_another_order_is_refused(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    await _bulk_offers(services, clock, shop["id"], 3)
    data = await gql.ok(CATALOGUE, {"first": 1, "orderBy": "NEWEST"})
    cursor = data["offers"]["pageInfo"]["endCursor"]
    wrong = await gql(CATALOGUE, {"first": 1, "after": cursor, "orderBy": "POINTS_ASC"})
    assert wrong["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    junk = await gql(CATALOGUE, {"first": 1, "after": "bm90IGEgY3Vyc29y"})
    assert junk["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    too_many = await gql(CATALOGUE, {"first": 101})
    assert too_many["errors"][0]["extensions"]["code"] == "PAGE_SIZE_EXCEEDED"


async def test_filters(gql, services, clock, admin):
    cafe = await make_merchant(gql, services, clock, admin)
    bikes = await make_merchant(gql, services, clock, admin, profile={"nameZh": "北京单车", "category": "BIKE_SHOP", "city": "北京"})
    await _bulk_offers(services, clock, cafe["id"], 6, price=lambda i: 50 * (i + 1), days=lambda i: 2 + i * 3)
    await _bulk_offers(services, clock, bikes["id"], 4, price=lambda i: 100, days=lambda i: 30)

    async def titles(flt, token=None):
        return sorted((n["merchant"]["nameZh"], n["pointsPrice"]) for n in await _all_pages(gql, order="POINTS_ASC", first=50, flt=flt, token=token))

    assert len(await titles({"city": "北京"})) == 4
    assert len(await titles({"category": "CAFE"})) == 6
    assert len(await titles({"merchantId": bikes["id"], "category": "BIKE_SHOP"})) == 4
    assert await titles({"city": "北京", "category": "CAFE"}) == []
    # Ending within 7 days: the café's offers ending in 2 and 5 days.
    assert await titles({"endingWithinDays": 7}) == [("绿叶咖啡", 50), ("绿叶咖啡", 100)]
    member = await make_member(services, clock, points=120)
    assert await titles({"affordable": True}, token=member["token"]) == [("北京单车", 100)] * 4 + [("绿叶咖啡", 50), ("绿叶咖啡", 100)]
    anonymous = await gql(CATALOGUE, {"filter": {"affordable": True}})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    bad = await gql(CATALOGUE, {"filter": {"endingWithinDays": 0}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_catalogue_runs_a_bounded_number_of_statements(gql, services, clock, admin):
    merchants = [
        await make_merchant(gql, services, clock, admin, profile={"nameZh": f"商户 {i}", "city": "上海"}) for i in range(5)
    ]
    for m in merchants:
        await _bulk_offers(services, clock, m["id"], 20)
    member = await make_member(services, clock, points=10_000)

    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = {}
        for size in (10, 100):
            statements.clear()
            data = await gql.ok(
                CATALOGUE, {"first": size, "filter": {"city": "上海", "affordable": True}, "orderBy": "ENDING_SOON"},
                token=member["token"],
            )
            assert len(data["offers"]["edges"]) == size
            assert len({e["node"]["merchant"]["id"] for e in data["offers"]["edges"]}) >= (2 if size == 10 else 5)
            counts[size] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert counts[10] == counts[100] and counts[100] <= 6, (counts, statements)


async def test_the_pages_merchants_are_read_once_and_only_when_selected(gql, services, clock, admin):
    # offer_connection prefetches the page's merchants when `merchant` or `available` is selected
    # (through fragments too), so every offer's fields are answered from one batch; a page that selects
    # neither reads no merchant at all.
    merchants_made = [await make_merchant(gql, services, clock, admin, profile={"nameZh": f"商户 {i}"}) for i in range(3)]
    for m in merchants_made:
        await _bulk_offers(services, clock, m["id"], 4)
    member = await make_member(services, clock, points=10)
    queries = {
        "fields": "{ offers(first: 12) { edges { node { id available merchant { id nameZh } } } } }",
        "fragment": "{ offers(first: 12) { ...Page } } fragment Page on OfferConnection { edges { ... on OfferEdge { node { ...O } } } } "
                    "fragment O on Offer { id merchant { id nameZh } }",
        "available only": "{ offers(first: 12) { edges { node { id available } } } }",
        "neither": "{ offers(first: 12) { edges { node { id titleZh } } } }",
    }
    seen: dict[str, list[str]] = {}

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.setdefault(current, []).append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for current, query in queries.items():
            data = await gql.ok(query, token=member["token"])
            edges = data["offers"]["edges"]
            assert len(edges) == 12, data
            if "merchant" in query.split("fragment O")[-1] or current == "fields":
                assert len({e["node"]["merchant"]["id"] for e in edges}) == 3
    finally:
        event.remove(engine, "before_cursor_execute", count)
    reads_merchants = {name: sum(1 for s in stmts if "FROM merchant" in s and "offer" not in s) for name, stmts in seen.items()}
    assert reads_merchants == {"fields": 1, "fragment": 1, "available only": 1, "neither": 0}, seen


@pytest.mark.parametrize("settings_overrides", [{"graphql": {"compiled_execution": True}}])
async def test_compiled_execution_chains_no_future_per_offer(gql, services, clock, admin, monkeypatch):
    # With the merchants prefetched, each offer's `merchant` and `available` are answered at once: the
    # future hops of compiled execution (chains and gathers) are the same for 3 offers as for 12.
    from jingtan_api.graphql.compiled import CompiledExecutionContext

    assert services.settings.compiled_execution_enabled
    merchants_made = [await make_merchant(gql, services, clock, admin, profile={"nameZh": f"商户 {i}"}) for i in range(3)]
    for m in merchants_made:
        await _bulk_offers(services, clock, m["id"], 4)
    member = await make_member(services, clock, points=10)
    hops = {"then": 0, "gather": 0}
    real_then, real_gather = CompiledExecutionContext._then, CompiledExecutionContext._gather

    def then(self, *args):
        hops["then"] += 1
        return real_then(self, *args)

    def gather(self, *args):
        hops["gather"] += 1
        return real_gather(self, *args)

    monkeypatch.setattr(CompiledExecutionContext, "_then", then)
    monkeypatch.setattr(CompiledExecutionContext, "_gather", gather)
    counts = {}
    for first in (3, 12):
        hops.update(then=0, gather=0)
        data = await gql.ok(CATALOGUE, {"first": first}, token=member["token"])
        assert len(data["offers"]["edges"]) == first and all(e["node"]["merchant"]["id"] for e in data["offers"]["edges"])
        counts[first] = dict(hops)
    assert counts[3] == counts[12], counts


async def test_a_failed_prefetch_fails_the_fields_that_read_it_not_the_page(gql, services, clock, admin, monkeypatch):
    # The prefetch must not change answers: when the merchants cannot be read, the error is located at
    # each offer's `merchant` field, as it is without the prefetch, not at `offers`.
    made = await make_merchant(gql, services, clock, admin, profile={"nameZh": "商户"})
    await _bulk_offers(services, clock, made["id"], 2)
    member = await make_member(services, clock, points=10)

    async def broken(conn, ids):
        raise RuntimeError("merchants unavailable")

    monkeypatch.setattr(merchants, "merchants_by_ids", broken)
    answer = await gql("{ offers(first: 2) { edges { node { id merchant { id } } } } }", token=member["token"])
    paths = sorted(tuple(e["path"]) for e in answer["errors"])
    assert paths and all(p[:2] == ("offers", "edges") and p[-1] == "merchant" for p in paths), answer


def test_selects_walks_fields_fragments_and_inline_fragments():
    from types import SimpleNamespace

    from graphql import parse

    from jingtan_api.graphql.relay import selects

    def info(query: str):
        doc = parse(query)
        operation = doc.definitions[0]
        fragments = {d.name.value: d for d in doc.definitions[1:]}
        root = operation.selection_set.selections[0]
        return SimpleNamespace(_raw_info=SimpleNamespace(field_nodes=[root], fragments=fragments))

    names = frozenset({"merchant", "available"})
    assert selects(info("{ offers { edges { node { merchant { id } } } } }"), ("edges", "node"), names)
    assert selects(info("{ offers { e: edges { n: node { a: available } } } }"), ("edges", "node"), names)
    assert not selects(info("{ offers { edges { node { id } } pageInfo { hasNextPage } } }"), ("edges", "node"), names)
    assert not selects(info("{ offers { edges { cursor } merchant: pageInfo { hasNextPage } } }"), ("edges", "node"), names)
    assert selects(info("{ offers { ...P } } fragment P on C { edges { ... on E { node { ...N } } } } fragment N on O { available }"),
                   ("edges", "node"), names)
    assert not selects(info("{ offers { ...P ...P } } fragment P on C { edges { node { id } } }"), ("edges", "node"), names)
    # A cycle of spreads (invalid, refused by validation) does not loop.
    assert not selects(info("{ offers { ...P } } fragment P on C { ...P }"), ("edges", "node"), names)


async def test_redemption_lists_run_a_bounded_number_of_statements(gql, services, clock, admin):
    shops = [await make_merchant(gql, services, clock, admin, profile={"nameZh": f"商户 {i}"}) for i in range(3)]
    offers = [await make_offer(gql, clock, shop, pointsPrice=1, perMemberLimit=10) for shop in shops for _ in range(2)]
    few = await make_member(services, clock, points=1000)
    many = await make_member(services, clock, points=1000)
    await redeem(gql, few, offers[0]["id"])
    for offer in offers:
        for _ in range(3):
            assert (await redeem(gql, many, offer["id"]))["userErrors"] == []

    query = """{ viewer { redemptions(first: 50) { totalCount nodes { code status offer { titleZh } merchant { nameZh } member { displayName } } } } }"""
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = {}
        for who in (few, many):
            statements.clear()
            data = await gql.ok(query, token=who["token"])
            assert data["viewer"]["redemptions"]["totalCount"] == len(data["viewer"]["redemptions"]["nodes"])
            counts[who["pk"]] = len([s for s in statements if s != "BEGIN"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # user, redemptions page, count, offers, merchants, members: the same for 1 and 18 redemptions.
    assert counts[few["pk"]] == counts[many["pk"]] <= 6, (counts, statements)
