"""The catalogue's statement is built once per filter shape (``jingtan_api.db.StatementCache``): requests
that differ only in values (city, cursor, page size, viewer) reuse it and still get their own rows."""

from offers_helpers import make_member, make_merchant, make_offer

from jingtan_api.offers import service as offers

PAGE = """query($city: String, $after: String, $first: Int) {
  offers(first: $first, after: $after, filter: {city: $city}) {
    edges { cursor node { titleEn merchant { city } } } pageInfo { hasNextPage endCursor } } }"""


async def test_one_statement_per_shape_and_the_values_still_count(gql, services, clock, admin):
    shanghai = await make_merchant(gql, services, clock, admin)
    beijing = await make_merchant(gql, services, clock, admin, profile={"city": "北京", "nameZh": "北京店", "nameEn": "Beijing"})
    for shop, n in ((shanghai, 3), (beijing, 2)):
        for i in range(n):
            await make_offer(gql, clock, shop, titleEn=f"{shop['id'][-4:]}-{i}")
    member = await make_member(services, clock)
    cache = offers._CATALOGUE_STATEMENTS
    before = len(cache)
    first = await gql.ok(PAGE, {"city": "上海", "first": 2}, token=member["token"])
    page = first["offers"]
    assert [e["node"]["merchant"]["city"] for e in page["edges"]] == ["上海", "上海"] and page["pageInfo"]["hasNextPage"]
    built = len(cache)
    assert built <= before + 1
    rest = await gql.ok(PAGE, {"city": "上海", "first": 2, "after": page["pageInfo"]["endCursor"]}, token=member["token"])
    after_shape = len(cache)  # a cursor is another shape (one more WHERE), built once
    assert [e["node"]["merchant"]["city"] for e in rest["offers"]["edges"]] == ["上海"]
    assert not rest["offers"]["pageInfo"]["hasNextPage"]
    other = await gql.ok(PAGE, {"city": "北京", "first": 5}, token=member["token"])  # same shape, other values
    assert [e["node"]["merchant"]["city"] for e in other["offers"]["edges"]] == ["北京", "北京"]
    again = await gql.ok(PAGE, {"city": "北京", "first": 1, "after": other["offers"]["edges"][0]["cursor"]},
                         token=member["token"])
    assert [e["node"]["titleEn"] for e in again["offers"]["edges"]] == [other["offers"]["edges"][1]["node"]["titleEn"]]
    assert len(cache) == after_shape  # no new statement for new values
    titles = {e["node"]["titleEn"] for e in first["offers"]["edges"] + rest["offers"]["edges"]}
    assert len(titles) == 3  # every Shanghai offer once across the pages
