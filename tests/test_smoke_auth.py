async def test_register_and_viewer(gql, member):
    data = await gql.ok("{ viewer { displayName account { balance } } }", token=member["token"])
    assert data["viewer"] == {"displayName": "李雷 Li Lei", "account": {"balance": 0}}
