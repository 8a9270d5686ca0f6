"""Near me: merchants and catalogue offers within a radius, nearest first, with the distance; validation
of the point and the radius; pagination; the haversine against known distances."""

import math

import pytest
from sqlalchemy import event

from jingtan_api.merchants import geo
from tests.offers_helpers import make_member, make_merchant, make_offer

MERCHANTS_NEAR = """
query Near($near: NearInput!, $first: Int, $after: String, $last: Int, $before: String, $category: MerchantCategory) {
  merchantsNear(near: $near, first: $first, after: $after, last: $last, before: $before, category: $category) {
    totalCount
    edges { cursor distanceMeters node { id nameZh } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
OFFERS_NEAR = """
query OffersNear($near: NearInput!, $first: Int, $after: String) {
  offersNear(near: $near, first: $first, after: $after) {
    totalCount
    edges { cursor distanceMeters node { id titleEn merchant { nameZh } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# People's Square, Shanghai
HOME = {"latitude": 31.2304, "longitude": 121.4737}


def _offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = math.degrees(north_m / geo.EARTH_RADIUS_M)
    dlng = math.degrees(east_m / (geo.EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lng + dlng


async def _shops(gql, services, clock, admin):
    shops = {}
    for name, north, east in (("A 300m", 300, 0), ("B 1200m", 0, -1200), ("C 2500m", -2500, 0), ("D 9km", 9000, 0)):
        lat, lng = _offset(HOME["latitude"], HOME["longitude"], north, east)
        shops[name] = await make_merchant(gql, services, clock, admin,
                                          profile={"nameZh": name, "latitude": lat, "longitude": lng})
    await make_merchant(gql, services, clock, admin, profile={"nameZh": "no coordinates", "latitude": None, "longitude": None})
    return shops


def test_haversine_against_known_distances():
    # Beijing (Tiananmen) to Shanghai (People's Square): about 1 067 km
    assert abs(geo.haversine_m(39.9087, 116.3975, 31.2304, 121.4737) - 1_067_000) < 5_000
    assert geo.haversine_m(31.0, 121.0, 31.0, 121.0) == 0
    assert abs(geo.haversine_m(0, 0, 0, 1) - 111_195) < 10  # one degree on the equator
    box = geo.Near(89.99, 10.0, 5000).box()
    assert box[1] == 90.0 and box[2] == -180.0 and box[3] == 180.0  # the box widens to all longitudes at a pole
    assert geo.Near(0.0, 179.99, 5000).box()[2:] == (-180.0, 180.0)  # and across the antimeridian
    lo_lat, hi_lat, lo_lng, hi_lng = geo.Near(31.0, 121.0, 1000).box()
    assert lo_lat < 31.0 < hi_lat and lo_lng < 121.0 < hi_lng and hi_lng - lo_lng < 0.03


async def test_merchants_near_sorted_with_distance_and_radius(gql, services, clock, admin):
    await _shops(gql, services, clock, admin)
    data = await gql.ok(MERCHANTS_NEAR, {"near": {**HOME, "radiusMeters": 3000}, "first": 10})
    page = data["merchantsNear"]
    assert [e["node"]["nameZh"] for e in page["edges"]] == ["A 300m", "B 1200m", "C 2500m"]
    assert [round(e["distanceMeters"], -1) for e in page["edges"]] == [300, 1200, 2500]
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"] is False
    wider = await gql.ok(MERCHANTS_NEAR, {"near": {**HOME, "radiusMeters": 10_000}, "first": 10})
    assert wider["merchantsNear"]["totalCount"] == 4
    none = await gql.ok(MERCHANTS_NEAR, {"near": {**HOME, "radiusMeters": 100}, "first": 10})
    assert none["merchantsNear"] == {"totalCount": 0, "edges": [], "pageInfo": {
        "hasNextPage": False, "hasPreviousPage": False, "startCursor": None, "endCursor": None}}
    other_category = await gql.ok(MERCHANTS_NEAR, {"near": {**HOME, "radiusMeters": 10_000}, "category": "BIKE_SHOP"})
    assert other_category["merchantsNear"]["totalCount"] == 0


async def test_pages_forward_and_backward(gql, services, clock, admin):
    await _shops(gql, services, clock, admin)
    near = {**HOME, "radiusMeters": 10_000}
    first = (await gql.ok(MERCHANTS_NEAR, {"near": near, "first": 2}))["merchantsNear"]
    assert [e["node"]["nameZh"] for e in first["edges"]] == ["A 300m", "B 1200m"] and first["pageInfo"]["hasNextPage"]
    second = (await gql.ok(MERCHANTS_NEAR, {"near": near, "first": 2, "after": first["pageInfo"]["endCursor"]}))["merchantsNear"]
    assert [e["node"]["nameZh"] for e in second["edges"]] == ["C 2500m", "D 9km"]
    assert not second["pageInfo"]["hasNextPage"] and second["pageInfo"]["hasPreviousPage"]
    back = (await gql.ok(MERCHANTS_NEAR, {"near": near, "last": 2, "before": second["pageInfo"]["startCursor"]}))["merchantsNear"]
    assert [e["node"]["nameZh"] for e in back["edges"]] == ["A 300m", "B 1200m"]
    body = await gql(MERCHANTS_NEAR, {"near": near, "after": "Yzox"})  # an id cursor of another list
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_offers_near_only_catalogue_offers_nearest_first(gql, services, clock, admin):
    shops = await _shops(gql, services, clock, admin)
    await make_offer(gql, clock, shops["C 2500m"], titleEn="far latte")
    await make_offer(gql, clock, shops["A 300m"], titleEn="near latte")
    await make_offer(gql, clock, shops["A 300m"], titleEn="draft", status="DRAFT")
    await make_offer(gql, clock, shops["D 9km"], titleEn="out of radius")
    member = await make_member(services, clock)
    data = await gql.ok(OFFERS_NEAR, {"near": {**HOME, "radiusMeters": 5000}, "first": 10}, token=member["token"])
    edges = data["offersNear"]["edges"]
    assert [e["node"]["titleEn"] for e in edges] == ["near latte", "far latte"]
    assert edges[0]["distanceMeters"] < edges[1]["distanceMeters"] and data["offersNear"]["totalCount"] == 2


@pytest.mark.parametrize(("near", "code", "field"), [
    ({**HOME, "radiusMeters": 0}, "INVALID_RADIUS", "near.radiusMeters"),
    ({**HOME, "radiusMeters": -5}, "INVALID_RADIUS", "near.radiusMeters"),
    ({**HOME, "radiusMeters": 50_001}, "INVALID_RADIUS", "near.radiusMeters"),
    ({**HOME, "radiusMeters": 10**9}, "INVALID_RADIUS", "near.radiusMeters"),
    ({"latitude": 91, "longitude": 121, "radiusMeters": 1000}, "INVALID_COORDINATES", "near.latitude"),
    ({"latitude": -90.5, "longitude": 121, "radiusMeters": 1000}, "INVALID_COORDINATES", "near.latitude"),
    ({"latitude": 31, "longitude": 180.01, "radiusMeters": 1000}, "INVALID_COORDINATES", "near.longitude"),
    ({"latitude": 31, "longitude": -1e308, "radiusMeters": 1000}, "INVALID_COORDINATES", "near.longitude"),
])
@pytest.mark.parametrize("query", [MERCHANTS_NEAR, OFFERS_NEAR])
async def test_bad_point_or_radius_is_a_typed_error(gql, near, code, field, query):
    body = await gql(query, {"near": near})
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": code, "field": field}, body


async def test_near_me_runs_one_statement_per_page(gql, services, clock, admin):
    shops = await _shops(gql, services, clock, admin)
    for shop in shops.values():
        for i in range(3):
            await make_offer(gql, clock, shop, titleEn=f"o{i}")
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = {}
        for size in (2, 12):
            statements.clear()
            data = await gql.ok(OFFERS_NEAR, {"near": {**HOME, "radiusMeters": 10_000}, "first": size})
            assert len(data["offersNear"]["edges"]) == size
            counts[size] = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # the page (bounding box + catalogue filters), then the merchants of the page in one batch
    assert len(counts[2]) == len(counts[12]) == 2, counts
    assert "latitude BETWEEN" in counts[12][0] or "latitude between" in counts[12][0].lower()
