"""What a new admin tripped over, through GraphQL over HTTP on SQLite and PostgreSQL: audit details and
ledger memos name objects by global ID (memos bilingual), page sizes out of range say the range."""

import pytest

from jingtan_api.graphql.relay import to_global_id
from tests.actions_helpers import submit, trip


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["transit"]}}


GRANT = """
mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { transaction { id } userErrors { code } } }
"""


async def test_action_credit_memo_is_bilingual_with_the_global_id(gql, member, admin, clock):
    out = await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="memo-1")
    action_id = out["action"]["id"]
    data = await gql.ok("query($id: ID!) { node(id: $id) { ... on Action { transaction { id memo } } } }",
                        {"id": action_id}, token=admin["token"])
    memo = data["node"]["transaction"]["memo"]
    assert memo == f"Low-carbon trip action {action_id} / 绿色出行行为 {action_id}"
    assert action_id.startswith(to_global_id("Action", 1)[:6])  # "QWN0aW" = base64 of "Action:"


async def test_audit_details_name_objects_by_global_id(gql, member, admin):
    body = await gql(GRANT, {"i": {"userId": member["id"], "amount": 50, "reason": "welcome points",
                                   "idempotencyKey": "g-1"}}, token=admin["token"])
    assert "errors" not in body, body
    tx_id = body["data"]["grantPoints"]["transaction"]["id"]
    log = await gql.ok('{ auditLog(first: 1) { nodes { action targetId details } } }', token=admin["token"])
    (entry,) = log["auditLog"]["nodes"]
    assert entry["details"]["transactionId"] == tx_id
    assert entry["details"]["amount"] == 50
    # the global ID it shows is one node(id:) resolves
    node = await gql.ok("query($id: ID!) { node(id: $id) { id } }", {"id": tx_id}, token=admin["token"])
    assert node["node"]["id"] == tx_id


@pytest.mark.parametrize("args,code", [
    ("first: -1", "PAGE_SIZE_INVALID"), ("last: -5", "PAGE_SIZE_INVALID"), ("first: 101", "PAGE_SIZE_EXCEEDED"),
])
async def test_page_sizes_out_of_range_say_the_range(gql, admin, args, code):
    body = await gql(f"{{ auditLog({args}) {{ totalCount }} }}", token=admin["token"])
    (error,) = body["errors"]
    assert error["extensions"]["code"] == code
    assert "must be between 1 and 100" in error["message"] and "1 到 100" in error["message"]
    assert body["data"] is None or body["data"].get("auditLog") is None


async def test_first_zero_still_answers_the_total(gql, admin):
    data = await gql.ok("{ auditLog(first: 0) { totalCount edges { cursor } } }", token=admin["token"])
    assert data["auditLog"]["edges"] == []
