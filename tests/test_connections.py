"""Every connection over HTTP, with the one toolkit (graphql/relay.py, db.keyset_page): walking forward
with first/after and backward with last/before visits the same items in the same order, once each;
totalCount is the number of items; bad cursors and page sizes are typed errors."""

import base64
import json
from datetime import timedelta

import pytest
from actions_helpers import submit, trip
from offers_helpers import PROFILE, grant, make_admin, make_member, make_merchant, make_offer, redeem

from jingtan_api.audit import service as audit_service
from jingtan_api.graphql.relay import decode_id, to_global_id
from jingtan_api.merchants import service as merchants_service
from jingtan_api.offers import service as offers_service

PAGE = "totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
ARGS = "first: $first, after: $after, last: $last, before: $before"
VARS = "$first: Int, $after: String, $last: Int, $before: String"


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["transit"]}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Walk:
    """One connection: its query (with $first/$after/$last/$before), where the connection is in the
    data, the token and the other variables."""

    def __init__(self, gql, query: str, pick, *, token: str | None = None, variables: dict | None = None):
        self.gql, self.query, self.pick, self.token, self.variables = gql, query, pick, token, variables or {}

    async def page(self, **args) -> dict:
        return self.pick(await self.gql.ok(self.query, {**self.variables, **args}, token=self.token))

    async def errors(self, **args) -> list[dict]:
        body = await self.gql(self.query, {**self.variables, **args}, token=self.token)
        assert body.get("errors"), body
        return [e["extensions"] for e in body["errors"]]

    async def forward(self, size: int) -> list[str]:
        seen, after = [], None
        for _ in range(200):
            page = await self.page(first=size, after=after)
            ids = [e["node"]["id"] for e in page["edges"]]
            info = page["pageInfo"]
            assert len(ids) <= size
            assert info["hasPreviousPage"] is (after is not None)
            assert info["startCursor"] == (page["edges"][0]["cursor"] if ids else None)
            assert info["endCursor"] == (page["edges"][-1]["cursor"] if ids else None)
            seen += ids
            if not info["hasNextPage"]:
                return seen
            assert len(ids) == size
            after = info["endCursor"]
        raise AssertionError("forward pagination does not end")

    async def backward(self, size: int) -> list[str]:
        seen, before = [], None
        for _ in range(200):
            page = await self.page(last=size, before=before)
            ids = [e["node"]["id"] for e in page["edges"]]
            info = page["pageInfo"]
            assert len(ids) <= size
            assert info["hasNextPage"] is (before is not None)
            seen = ids + seen
            if not info["hasPreviousPage"]:
                return seen
            assert len(ids) == size
            before = info["startCursor"]
        raise AssertionError("backward pagination does not end")

    async def check(self, expected: list[str] | None = None, *, sizes=(1, 3), minimum: int = 2) -> list[str]:
        """Forward and backward walks agree, item for item, for each page size; totalCount matches."""
        everything = [e["node"]["id"] for e in (await self.page(first=100))["edges"]]
        assert len(everything) >= minimum, everything
        assert len(set(everything)) == len(everything)
        if expected is not None:
            assert everything == expected
        for size in sizes:
            assert await self.forward(size) == everything, size
            assert await self.backward(size) == everything, size
        assert (await self.page(first=0))["totalCount"] == len(everything)
        assert (await self.page(last=1))["totalCount"] == len(everything)
        # From a middle item: `first` after it and `last` before it are its neighbours.
        full = (await self.page(first=100))["edges"]
        mid = len(full) // 2
        after = await self.page(first=1, after=full[mid]["cursor"])
        before = await self.page(last=1, before=full[mid]["cursor"])
        assert [e["node"]["id"] for e in after["edges"]] == everything[mid + 1 : mid + 2]
        assert [e["node"]["id"] for e in before["edges"]] == everything[mid - 1 : mid]
        assert before["pageInfo"]["hasNextPage"] is True and before["pageInfo"]["hasPreviousPage"] is (mid > 1)
        return everything

    async def check_bad_arguments(self, *, foreign: list[str] = (), tampered: list[str] = ()) -> None:
        """Typed errors: bad cursors (garbage, too long, ids above 2^31-1, other lists' cursors, tampered
        ones) are INVALID_CURSOR on the argument that carries them; sizes are checked."""
        cursor = (await self.page(first=1))["pageInfo"]["endCursor"]
        huge = [b64("c:3000000000"), b64("c:2147483648"), b64("c:" + "9" * 600)]
        bad = ["garbage", "", "Yzo=", to_global_id("User", 1), "Zm9v" * 200, *huge, *foreign, *tampered]
        for value in bad:
            for arg, size in (("after", "first"), ("before", "last")):
                got = await self.errors(**{arg: value, size: 2})
                assert got == [{"code": "INVALID_CURSOR", "field": arg}], (value, got)
        for args, code, field in (
            ({"first": 2, "last": 2}, "BAD_USER_INPUT", "first"),
            ({"first": 101}, "PAGE_SIZE_EXCEEDED", "first"),
            ({"last": 101}, "PAGE_SIZE_EXCEEDED", "last"),
            ({"first": -1}, "PAGE_SIZE_INVALID", "first"),
            ({"last": -1, "before": cursor}, "PAGE_SIZE_INVALID", "last"),
        ):
            assert await self.errors(**args) == [{"code": code, "field": field}], args
        # The largest page is allowed.
        assert len((await self.page(last=100))["edges"]) <= 100


def offer_cursor(order: str, value, pk: int) -> str:
    """A catalogue cursor as clients hold them: base64 of [order, sort value, id]."""
    return b64(json.dumps([order, value, pk], separators=(",", ":")))


# Cursors of a compound keyset given to an id-keyed connection: refused (another list).
FOREIGN_TO_ID_LISTS = [offer_cursor("NEWEST", "2026-06-01T00:00:00+00:00", 1), offer_cursor("POINTS_ASC", 10, 1)]


def tampered_id_cursors(cursor: str) -> list[str]:
    raw = base64.b64decode(cursor).decode()
    assert raw.startswith("c:"), raw
    return [b64(raw + "x"), b64(raw.replace("c:", "c:-")), b64(raw.replace("c:", "d:")), b64("c:0" + raw[2:]), cursor[:-2]]


# --- ledger, actions, audit --------------------------------------------------------------------------


async def test_account_entries(gql, services, clock):
    member = await make_member(services, clock)
    other = await make_member(services, clock)
    for n in range(1, 8):
        await grant(services, clock, member["pk"], n)
        clock.advance(seconds=1)
    await grant(services, clock, other["pk"], 5)
    query = f"query({VARS}) {{ viewer {{ account {{ entries({ARGS}) {{ {PAGE} }} }} }} }}"
    walk = Walk(gql, query, lambda d: d["viewer"]["account"]["entries"], token=member["token"])
    ids = await walk.check(sizes=(1, 2, 3, 7))
    assert len(ids) == 7
    cursor = (await walk.page(first=1))["pageInfo"]["endCursor"]
    await walk.check_bad_arguments(foreign=FOREIGN_TO_ID_LISTS, tampered=tampered_id_cursors(cursor))


@pytest.fixture
async def actions(gql, services, clock):
    """Seven actions of one member (four approved, three waiting for review) and one of another."""
    member = await make_member(services, clock)
    other = await make_member(services, clock)
    ids = []
    for i in range(7):
        needs_review = i % 2 == 1
        data = trip(clock, minutes_ago=60 * (i + 1), meters=30_000 if needs_review else 5_000, duration_min=40 if needs_review else 30)
        out = await submit(gql, member["token"], "transit", data, key=f"walk-{i}")
        assert out["action"]["status"] == ("NEEDS_REVIEW" if needs_review else "APPROVED"), out
        ids.append(out["action"]["id"])
    await submit(gql, other["token"], "transit", trip(clock), key="other")
    return {"member": member, "ids": ids}


async def test_actions_review_queue_and_users_actions(gql, admin, actions):
    newest_first = list(reversed(actions["ids"]))
    mine = Walk(
        gql, f"query({VARS}) {{ viewer {{ actions({ARGS}) {{ {PAGE} }} }} }}", lambda d: d["viewer"]["actions"],
        token=actions["member"]["token"],
    )
    assert await mine.check(newest_first) == newest_first
    everything = Walk(gql, f"query({VARS}) {{ actions({ARGS}) {{ {PAGE} }} }}", lambda d: d["actions"], token=admin["token"])
    assert len(await everything.check()) == 8
    approved = Walk(
        gql, f"query({VARS}, $s: ActionStatus) {{ actions({ARGS}, status: $s) {{ {PAGE} }} }}", lambda d: d["actions"],
        token=admin["token"], variables={"s": "APPROVED"},
    )
    assert len(await approved.check()) == 5
    queue = Walk(gql, f"query({VARS}) {{ reviewQueue({ARGS}) {{ {PAGE} }} }}", lambda d: d["reviewQueue"], token=admin["token"])
    waiting = [i for i in newest_first if actions["ids"].index(i) % 2 == 1]
    assert await queue.check(waiting) == waiting
    cursor = (await queue.page(first=1))["pageInfo"]["endCursor"]
    for walk in (mine, queue):
        await walk.check_bad_arguments(foreign=FOREIGN_TO_ID_LISTS, tampered=tampered_id_cursors(cursor))


async def test_audit_log(gql, admin, services, clock):
    actor = await make_member(services, clock)

    async def record(conn):
        for i in range(9):
            await audit_service.record(
                conn, actor_user_id=actor["pk"], action="test.even" if i % 2 == 0 else "test.odd", target_type="User",
                target_id=admin["pk"], reason=f"entry {i}", now=clock(),
            )

    await services.db.write(record)
    log = Walk(gql, f"query({VARS}) {{ auditLog({ARGS}) {{ {PAGE} }} }}", lambda d: d["auditLog"], token=admin["token"])
    everything = await log.check(sizes=(1, 4))
    assert len(everything) >= 9
    even = Walk(
        gql, f"query({VARS}, $a: String) {{ auditLog({ARGS}, action: $a) {{ {PAGE} }} }}", lambda d: d["auditLog"],
        token=admin["token"], variables={"a": "test.even"},
    )
    assert len(await even.check(sizes=(2,))) == 5
    by_actor = Walk(
        gql, f"query({VARS}, $u: ID) {{ auditLog({ARGS}, actorId: $u) {{ {PAGE} }} }}", lambda d: d["auditLog"],
        token=admin["token"], variables={"u": actor["id"]},
    )
    assert await by_actor.check(sizes=(4,)) == everything[:9]  # the newest nine
    cursor = (await log.page(first=1))["pageInfo"]["endCursor"]
    await log.check_bad_arguments(foreign=FOREIGN_TO_ID_LISTS, tampered=tampered_id_cursors(cursor))


# --- merchants, offers, redemptions ------------------------------------------------------------------

CATALOGUE = f"""query({VARS}, $filter: OfferFilter, $orderBy: OfferOrder!) {{
  offers({ARGS}, filter: $filter, orderBy: $orderBy) {{ {PAGE} }} }}"""


@pytest.fixture
async def shop(gql, services, clock):
    admin = await make_admin(services, clock)
    return await make_merchant(gql, services, clock, admin)


async def _offers(services, clock, merchant_gid: str, n: int) -> list[dict]:
    """n offers created in one transaction with repeating prices, end times and creation times (ties
    that only the id breaks), plus one draft that the catalogue does not list."""
    merchant_id = decode_id(merchant_gid, "Merchant")
    actor = merchants_service.Actor(user_id=0, is_admin=True, merchant_id=None)
    now = clock()
    specs = [
        {"price": 10 * (1 + i % 3), "ends": now + timedelta(days=3 + i % 4), "created": now - timedelta(minutes=n - i // 2)}
        for i in range(n)
    ]

    async def tx(conn):
        for i, spec in enumerate([*specs, {**specs[0], "draft": True}]):
            spec["pk"] = await offers_service.create_offer(
                conn, actor=actor, merchant_id=merchant_id, status="DRAFT" if spec.get("draft") else "ACTIVE",
                now=spec["created"],
                fields={
                    "title_zh": f"优惠 {i}", "points_price": spec["price"], "total_stock": 5, "per_member_limit": 1,
                    "starts_at": now - timedelta(days=1), "ends_at": spec["ends"],
                },
            )

    await services.db.write(tx)
    return specs


SORTS = {
    "NEWEST": lambda s: (-s["created"].timestamp(), -s["pk"]),
    "POINTS_ASC": lambda s: (s["price"], s["pk"]),
    "POINTS_DESC": lambda s: (-s["price"], -s["pk"]),
    "ENDING_SOON": lambda s: (s["ends"], s["pk"]),
}


def _offer_ids(specs: list[dict], order: str) -> list[str]:
    return [to_global_id("Offer", s["pk"]) for s in sorted(specs, key=SORTS[order])]


@pytest.mark.parametrize("order", list(SORTS))
async def test_offer_catalogue_in_each_order(gql, services, clock, shop, order):
    specs = await _offers(services, clock, shop["id"], 9)
    walk = Walk(gql, CATALOGUE, lambda d: d["offers"], variables={"orderBy": order})
    await walk.check(_offer_ids(specs, order), sizes=(1, 2, 4))
    other_order = "POINTS_DESC" if order != "POINTS_DESC" else "NEWEST"
    foreign = [
        (await Walk(gql, CATALOGUE, lambda d: d["offers"], variables={"orderBy": other_order}).page(first=1))["pageInfo"]["endCursor"],
        b64("c:1"),  # an id cursor (entries, actions, ...)
    ]
    raw = json.loads(base64.b64decode((await walk.page(first=1))["pageInfo"]["endCursor"]))
    assert raw[0] == order and len(raw) == 3
    tampered = [
        b64(json.dumps([raw[0], raw[1], 3_000_000_000])),
        b64(json.dumps([raw[0], raw[1], -1])),
        b64(json.dumps([raw[0], raw[1]])),
        b64(json.dumps([raw[0].lower(), raw[1], raw[2]])),
        b64(json.dumps([raw[0], "2026-06-01T00:00:00" if isinstance(raw[1], str) else str(raw[1]), raw[2]])),
        b64(json.dumps([raw[0], 10**12 if isinstance(raw[1], int) else "2026-13-01T00:00:00+00:00", raw[2]])),
    ]
    await walk.check_bad_arguments(foreign=foreign, tampered=tampered)


async def test_offer_catalogue_with_filters_and_merchant_offers(gql, services, clock, shop):
    specs = await _offers(services, clock, shop["id"], 6)
    admin = await make_admin(services, clock)
    bikes = await make_merchant(gql, services, clock, admin, profile={"nameZh": "北京单车", "category": "BIKE_SHOP", "city": "北京"})
    await _offers(services, clock, bikes["id"], 3)
    cheap = [s for s in specs if s["price"] <= 20]
    walk = Walk(gql, CATALOGUE, lambda d: d["offers"], variables={"orderBy": "POINTS_ASC", "filter": {"city": "上海"}})
    assert await walk.check(_offer_ids(specs, "POINTS_ASC")) == _offer_ids(specs, "POINTS_ASC")
    everything = Walk(gql, CATALOGUE, lambda d: d["offers"], variables={"orderBy": "ENDING_SOON"})
    assert len(await everything.check(sizes=(4,))) == 9
    member = await make_member(services, clock, points=20)
    affordable = Walk(
        gql, CATALOGUE, lambda d: d["offers"], token=member["token"],
        variables={"orderBy": "POINTS_DESC", "filter": {"affordable": True, "merchantId": shop["id"]}},
    )
    assert await affordable.check(_offer_ids(cheap, "POINTS_DESC")) == _offer_ids(cheap, "POINTS_DESC")
    # Staff see their drafts too.
    staff = Walk(
        gql, CATALOGUE, lambda d: d["offers"], token=shop["token"],
        variables={"orderBy": "NEWEST", "filter": {"merchantId": shop["id"], "includeUnavailable": True}},
    )
    assert len(await staff.check()) == 7

    # merchant(id) { offers }: newest first, redeemable ones for the public, every one for its staff.
    own = f"query({VARS}, $m: ID!) {{ merchant(id: $m) {{ offers({ARGS}) {{ {PAGE} }} }} }}"
    public = Walk(gql, own, lambda d: d["merchant"]["offers"], variables={"m": shop["id"]})
    assert await public.check(_offer_ids(specs, "NEWEST")) == _offer_ids(specs, "NEWEST")
    mine = Walk(gql, own, lambda d: d["merchant"]["offers"], token=shop["token"], variables={"m": shop["id"]})
    assert len(await mine.check()) == 7
    # Its cursors are the catalogue's NEWEST cursors: another order's are refused.
    by_price = (await walk.page(first=1))["pageInfo"]["endCursor"]
    await public.check_bad_arguments(foreign=[by_price, b64("c:1")])


async def test_merchants(gql, services, clock):
    admin = await make_admin(services, clock)
    ids = [
        (await make_merchant(gql, services, clock, admin, profile={"nameZh": f"商户 {i}", "city": "北京" if i % 2 else "上海"}))["id"]
        for i in range(5)
    ]
    applicant = await make_member(services, clock)
    await gql.ok(
        "mutation($i: ApplyForMerchantInput!) { applyForMerchant(input: $i) { userErrors { code } } }",
        {"i": {"profile": PROFILE}}, token=applicant["token"],
    )
    query = f"query({VARS}, $city: String, $status: MerchantStatus! = ACTIVE) {{ merchants({ARGS}, city: $city, status: $status) {{ {PAGE} }} }}"
    walk = Walk(gql, query, lambda d: d["merchants"])
    assert await walk.check(ids, sizes=(1, 2)) == ids  # oldest first
    beijing = Walk(gql, query, lambda d: d["merchants"], variables={"city": "北京"})
    assert await beijing.check(ids[1::2]) == ids[1::2]
    pending = Walk(gql, query, lambda d: d["merchants"], token=admin["token"], variables={"status": "PENDING"})
    assert (await pending.page(first=0))["totalCount"] == 1
    cursor = (await walk.page(first=1))["pageInfo"]["endCursor"]
    await walk.check_bad_arguments(foreign=FOREIGN_TO_ID_LISTS, tampered=tampered_id_cursors(cursor))


async def test_redemptions_of_a_member_and_of_a_merchant(gql, services, clock, shop):
    offer = await make_offer(gql, clock, shop, pointsPrice=1, perMemberLimit=10)
    member = await make_member(services, clock, points=100)
    other = await make_member(services, clock, points=100)
    mine = []
    for _ in range(7):
        out = await redeem(gql, member, offer["id"])
        assert out["userErrors"] == [], out
        mine.append(out["redemption"]["id"])
    assert (await redeem(gql, other, offer["id"]))["userErrors"] == []
    users = Walk(
        gql, f"query({VARS}) {{ viewer {{ redemptions({ARGS}) {{ {PAGE} }} }} }}", lambda d: d["viewer"]["redemptions"],
        token=member["token"],
    )
    assert await users.check(mine[::-1], sizes=(1, 3)) == mine[::-1]  # newest first
    query = f"query({VARS}, $m: ID!, $s: RedemptionStatus) {{ merchant(id: $m) {{ redemptions({ARGS}, status: $s) {{ {PAGE} }} }} }}"
    shops = Walk(gql, query, lambda d: d["merchant"]["redemptions"], token=shop["token"], variables={"m": shop["id"]})
    assert len(await shops.check(sizes=(2, 5))) == 8
    pending = Walk(
        gql, query, lambda d: d["merchant"]["redemptions"], token=shop["token"], variables={"m": shop["id"], "s": "PENDING"}
    )
    assert len(await pending.check(sizes=(3,))) == 8
    cursor = (await users.page(first=1))["pageInfo"]["endCursor"]
    for walk in (users, shops):
        await walk.check_bad_arguments(foreign=FOREIGN_TO_ID_LISTS, tampered=tampered_id_cursors(cursor))
