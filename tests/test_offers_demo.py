"""The demo data (`jingtan seed-demo`) includes merchants and a browsable catalogue."""

from offers_helpers import db_state

from jingtan_api.demo import seed_demo


async def test_seed_demo_creates_a_catalogue(gql, services, clock):
    assert await seed_demo(services, if_empty=True) == 0
    data = await gql.ok("{ offers(first: 50) { totalCount nodes { titleZh merchant { nameZh city } } } }")
    assert data["offers"]["totalCount"] == 4
    assert {n["merchant"]["city"] for n in data["offers"]["nodes"]} == {"上海", "北京"}
    login = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
        {"i": {"identifier": "cafe@demo.jingtan.org", "password": "Jingtan-demo-2026"}},
    )
    token = login["login"]["tokens"]["accessToken"]
    mine = await gql.ok("{ viewer { merchant { nameEn offers { totalCount } } } }", token=token)
    assert mine["viewer"]["merchant"] == {"nameEn": "Green Leaf Café", "offers": {"totalCount": 2}}
    assert (await db_state(services))["problems"] == []
