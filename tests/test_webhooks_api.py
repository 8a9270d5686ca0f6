"""The webhooks GraphQL API: admins' platform endpoints, merchant staff's endpoints, deliveries and their
attempts, replay, secret rotation, soft delete, the audit trail, and every refused input (code + nothing
written). Runs the operations of schema/operations/{admin,merchant}/Webhook*.graphql."""

import json

import pytest
from offers_helpers import make_admin, make_member, make_merchant, make_offer, redeem
from sqlalchemy import func, select
from webhooks_helpers import Receiver, verify

from jingtan_api.audit.models import AuditLogEntry
from jingtan_api.graphql.relay import decode_id, to_global_id
from jingtan_api.webhooks import service
from jingtan_api.webhooks.models import WebhookDelivery, WebhookEndpoint

# Operations executed here (tests/test_offers_operations.py checks that every merchant operation runs somewhere).
WEBHOOK_OPERATIONS = {
    "admin": {"WebhookEndpoints", "WebhookDeliveries", "WebhookCreateEndpoint", "WebhookUpdateEndpoint",
              "WebhookDeleteEndpoint", "WebhookRotateSecret", "WebhookReplayDelivery"},
    "merchant": {"WebhookMerchantEndpoints", "WebhookMerchantCreateEndpoint", "WebhookMerchantUpdateEndpoint",
                 "WebhookMerchantRotateSecret", "WebhookMerchantReplayDelivery", "WebhookMerchantDeleteEndpoint"},
}


@pytest.fixture
def settings_overrides() -> dict:
    return {"webhooks": {"max_attempts": 2, "base_backoff_seconds": 0, "timeout_seconds": 2}}


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def op(gql, operation):
    async def run(area: str, name: str, variables: dict, token: str, *, field: str | None = None) -> dict:
        data = await gql.ok(operation(f"{area}/{name}"), variables, token=token)
        return data[field] if field else data
    return run


async def state(services) -> dict:
    """Everything a refused webhook mutation must leave alone."""
    async with services.db.read() as conn:
        endpoints = [dict(r._mapping) for r in await conn.execute(select(WebhookEndpoint.__table__).order_by(WebhookEndpoint.id))]
        deliveries = [dict(r._mapping) for r in await conn.execute(select(WebhookDelivery.__table__).order_by(WebhookDelivery.id))]
        audits = (await conn.execute(select(func.count()).select_from(AuditLogEntry.__table__)
                                     .where(AuditLogEntry.action.like("webhook.%")))).scalar_one()
    return {"endpoints": endpoints, "deliveries": deliveries, "audits": audits}


async def audit_actions(services) -> list[str]:
    async with services.db.read() as conn:
        rows = await conn.execute(select(AuditLogEntry.action).where(AuditLogEntry.action.like("webhook.%"))
                                  .order_by(AuditLogEntry.id))
        return list(rows.scalars())


async def redeem_at(gql, services, clock, merchant: dict) -> None:
    """A real redemption at ``merchant`` (emits redemption.created with its merchant_id)."""
    offer = await make_offer(gql, clock, merchant)
    buyer = await make_member(services, clock, points=500)
    assert (await redeem(gql, buyer, offer["id"]))["userErrors"] == []


async def test_admin_platform_endpoint_story(op, gql, services, clock, receiver):
    admin = await make_admin(services, clock)
    t = admin["token"]
    created = await op("admin", "WebhookCreateEndpoint", {"input": {
        "url": receiver.url, "eventTypes": ["USER_REGISTERED", "LEDGER_POSTED"], "description": "CRM 同步"}}, t,
        field="createWebhookEndpoint")
    assert created["userErrors"] == []
    secret = created["secret"]
    endpoint = created["endpoint"]
    assert secret.startswith("whsec_") and endpoint["merchant"] is None and endpoint["enabled"] is True
    assert sorted(endpoint["eventTypes"]) == ["LEDGER_POSTED", "USER_REGISTERED"]
    # The secret is not a field of the endpoint: asking for it is a validation error.
    body = await gql("query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { secret } } }", {"id": endpoint["id"]}, token=t)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    listed = await op("admin", "WebhookEndpoints", {"first": 10}, t, field="webhookEndpoints")
    assert listed["totalCount"] == 1 and listed["nodes"][0]["id"] == endpoint["id"]

    await make_member(services, clock)  # emits user.registered in the registration's transaction
    assert (await service.deliver_due(services))["delivered"] == 1
    headers, raw = receiver.received[0]
    assert verify(secret, headers["Jingtan-Signature"], raw)
    assert json.loads(raw)["type"] == "user.registered" == headers["Jingtan-Event-Type"]
    event_id = headers["Jingtan-Event-Id"]

    log = await op("admin", "WebhookDeliveries", {"id": endpoint["id"], "status": "SUCCEEDED"}, t, field="node")
    [delivery] = log["deliveries"]["nodes"]
    assert delivery["eventId"] == event_id and delivery["status"] == "SUCCEEDED" and delivery["attemptCount"] == 1
    assert delivery["nextAttemptAt"] is None and delivery["payload"] == raw.decode()
    assert [(a["number"], a["statusCode"], a["error"]) for a in delivery["attempts"]] == [(1, 200, None)]
    assert (await op("admin", "WebhookDeliveries", {"id": endpoint["id"], "status": "FAILED"}, t,
                     field="node"))["deliveries"]["totalCount"] == 0

    rotated = await op("admin", "WebhookRotateSecret", {"input": {"id": endpoint["id"]}}, t, field="rotateWebhookSecret")
    assert rotated["userErrors"] == [] and rotated["secret"].startswith("whsec_") and rotated["secret"] != secret

    replayed = await op("admin", "WebhookReplayDelivery", {"input": {"id": delivery["id"]}}, t, field="replayWebhookDelivery")
    assert replayed["userErrors"] == [] and replayed["delivery"]["status"] == "PENDING"
    assert replayed["delivery"]["eventId"] == event_id
    assert (await service.deliver_due(services))["delivered"] == 1
    headers2, raw2 = receiver.received[1]
    assert headers2["Jingtan-Event-Id"] == event_id and raw2 == raw
    assert verify(rotated["secret"], headers2["Jingtan-Signature"], raw2)
    assert not verify(secret, headers2["Jingtan-Signature"], raw2)
    # A pending delivery cannot be replayed again.
    again = await op("admin", "WebhookReplayDelivery", {"input": {"id": delivery["id"]}}, t, field="replayWebhookDelivery")
    assert again["userErrors"] == []  # it was delivered meanwhile: SUCCEEDED again, so replayable
    before = await state(services)
    twice = await op("admin", "WebhookReplayDelivery", {"input": {"id": delivery["id"]}}, t, field="replayWebhookDelivery")
    assert [e["code"] for e in twice["userErrors"]] == ["CONFLICT"] and await state(services) == before
    assert (await service.deliver_due(services))["delivered"] == 1

    paused = await op("admin", "WebhookUpdateEndpoint", {"input": {"id": endpoint["id"], "enabled": False,
                                                                    "eventTypes": ["USER_REGISTERED"]}}, t,
                      field="updateWebhookEndpoint")
    assert paused["userErrors"] == [] and paused["endpoint"]["enabled"] is False
    assert paused["endpoint"]["eventTypes"] == ["USER_REGISTERED"]
    await make_member(services, clock)  # a paused endpoint gets no new deliveries
    assert (await op("admin", "WebhookDeliveries", {"id": endpoint["id"]}, t, field="node"))["deliveries"]["totalCount"] == 1

    deleted = await op("admin", "WebhookDeleteEndpoint", {"input": {"id": endpoint["id"]}}, t, field="deleteWebhookEndpoint")
    assert deleted["userErrors"] == [] and deleted["endpoint"]["deletedAt"] is not None
    assert (await op("admin", "WebhookEndpoints", {}, t, field="webhookEndpoints"))["totalCount"] == 0
    # The history stays readable; the deleted endpoint cannot be changed or replayed.
    history = await op("admin", "WebhookDeliveries", {"id": endpoint["id"]}, t, field="node")
    assert history["deletedAt"] is not None and len(history["deliveries"]["nodes"][0]["attempts"]) == 3
    before = await state(services)
    gone = await op("admin", "WebhookRotateSecret", {"input": {"id": endpoint["id"]}}, t, field="rotateWebhookSecret")
    assert [e["code"] for e in gone["userErrors"]] == ["NOT_FOUND"] and gone["secret"] is None
    replay_gone = await op("admin", "WebhookReplayDelivery", {"input": {"id": delivery["id"]}}, t, field="replayWebhookDelivery")
    assert [e["code"] for e in replay_gone["userErrors"]] == ["CONFLICT"]
    assert await state(services) == before

    assert await audit_actions(services) == ["webhook.create", "webhook.rotate_secret", "webhook.replay", "webhook.replay",
                                             "webhook.update", "webhook.delete"]
    async with services.db.read() as conn:
        details = " ".join((await conn.execute(select(AuditLogEntry.details))).scalars().all())
    assert "whsec_" not in details and receiver.url in details  # the URL is audited, never a secret


async def test_merchant_staff_story(op, gql, services, clock, receiver):
    admin = await make_admin(services, clock)
    merchant = await make_merchant(gql, services, clock, admin)
    t = merchant["token"]
    merchant_pk = decode_id(merchant["id"], "Merchant")
    other = await make_merchant(gql, services, clock, admin)
    created = await op("merchant", "WebhookMerchantCreateEndpoint", {"input": {
        "url": receiver.url, "eventTypes": ["REDEMPTION_CONFIRMED", "REDEMPTION_CREATED"], "merchantId": merchant["id"]}},
        t, field="createWebhookEndpoint")
    assert created["userErrors"] == [] and created["endpoint"]["merchant"]["id"] == merchant["id"]
    secret = created["secret"]
    # A platform endpoint for the same event type: the admin's.
    await op("admin", "WebhookCreateEndpoint", {"input": {"url": receiver.url, "eventTypes": ["REDEMPTION_CREATED"]}},
             admin["token"])

    await redeem_at(gql, services, clock, merchant)
    await redeem_at(gql, services, clock, other)
    # Ours goes to our endpoint and the platform's; the other merchant's only to the platform's.
    assert (await service.deliver_due(services))["delivered"] == 3
    ours = [(h, b) for h, b in receiver.received if verify(secret, h["Jingtan-Signature"], b)]
    assert [json.loads(b)["data"]["merchant_id"] for _, b in ours] == [merchant_pk]

    listed = await op("merchant", "WebhookMerchantEndpoints", {"merchantId": merchant["id"]}, t, field="node")
    [endpoint] = listed["webhookEndpoints"]["nodes"]  # only the merchant's own, not the platform endpoint
    [delivery] = endpoint["deliveries"]["nodes"]
    assert delivery["status"] == "SUCCEEDED" and delivery["attempts"][0]["statusCode"] == 200

    replayed = await op("merchant", "WebhookMerchantReplayDelivery", {"input": {"id": delivery["id"]}}, t,
                        field="replayWebhookDelivery")
    assert replayed["userErrors"] == [] and replayed["delivery"]["status"] == "PENDING"
    rotated = await op("merchant", "WebhookMerchantRotateSecret", {"input": {"id": endpoint["id"]}}, t,
                       field="rotateWebhookSecret")
    assert rotated["userErrors"] == [] and rotated["secret"] != secret
    updated = await op("merchant", "WebhookMerchantUpdateEndpoint", {"input": {
        "id": endpoint["id"], "url": receiver.url + "/v2", "eventTypes": ["REDEMPTION_EXPIRED"]}}, t,
        field="updateWebhookEndpoint")
    assert updated["userErrors"] == [] and updated["endpoint"]["eventTypes"] == ["REDEMPTION_EXPIRED"]
    deleted = await op("merchant", "WebhookMerchantDeleteEndpoint", {"input": {"id": endpoint["id"]}}, t,
                       field="deleteWebhookEndpoint")
    assert deleted["userErrors"] == [] and deleted["endpoint"]["deletedAt"] is not None
    async with services.db.read() as conn:
        row = (await conn.execute(select(WebhookDelivery.__table__).where(WebhookDelivery.id == decode_id(delivery["id"], "WebhookDelivery")))).one()
    assert row.status == "FAILED" and row.last_error == "ENDPOINT_DELETED"  # the replayed one was still pending
    assert (await op("merchant", "WebhookMerchantEndpoints", {"merchantId": merchant["id"]}, t,
                     field="node"))["webhookEndpoints"]["totalCount"] == 0
    assert await audit_actions(services) == ["webhook.create", "webhook.create", "webhook.replay", "webhook.rotate_secret",
                                             "webhook.update", "webhook.delete"]


CREATE = "admin/WebhookCreateEndpoint"


@pytest.mark.parametrize(("url", "types", "merchant", "code"), [
    ("https://hooks.example.cn/x", [], False, "NO_EVENT_TYPES"),
    ("ftp://hooks.example.cn/x", ["USER_REGISTERED"], False, "INVALID_URL"),
    ("javascript:alert(1)", ["USER_REGISTERED"], False, "INVALID_URL"),
    # a merchant's endpoint asking for a platform-only event type
    ("https://hooks.example.cn/x", ["REDEMPTION_CREATED", "USER_REGISTERED"], True, "UNKNOWN_EVENT_TYPE"),
    ("https://hooks.example.cn/x", ["LEDGER_POSTED"], True, "UNKNOWN_EVENT_TYPE"),
])
async def test_refused_endpoint_writes_nothing(gql, operation, services, clock, url, types, merchant, code):
    admin = await make_admin(services, clock)
    variables = {"url": url, "eventTypes": types}
    token = admin["token"]
    if merchant:
        m = await make_merchant(gql, services, clock, admin)
        variables["merchantId"], token = m["id"], m["token"]
    before = await state(services)
    data = await gql.ok(operation(CREATE), {"input": variables}, token=token)
    payload = data["createWebhookEndpoint"]
    assert [e["code"] for e in payload["userErrors"]] == [code] and payload["secret"] is None
    assert [e["code"] for e in payload["errors"]] == [code]
    assert await state(services) == before


async def test_unknown_merchant_is_not_found(gql, operation, services, clock):
    admin = await make_admin(services, clock)
    before = await state(services)
    payload = (await gql.ok(operation(CREATE), {"input": {
        "url": "https://hooks.example.cn/", "eventTypes": ["REDEMPTION_CREATED"], "merchantId": to_global_id("Merchant", 999)}},
        token=admin["token"]))["createWebhookEndpoint"]
    assert [e["code"] for e in payload["userErrors"]] == ["NOT_FOUND"]
    assert await state(services) == before


async def test_unknown_event_type_is_refused_by_the_schema(gql, operation, services, clock):
    admin = await make_admin(services, clock)
    before = await state(services)
    body = await gql(operation(CREATE), {"input": {"url": "https://hooks.example.cn/", "eventTypes": ["USER_EXPLODED"]}},
                     token=admin["token"])
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" and body.get("data") is None
    assert await state(services) == before


@pytest.mark.parametrize("settings_overrides", [{"webhooks": {"allow_private_addresses": False}}])
@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.0.0.7/hook", "http://169.254.169.254/latest",
                                 "http://[::1]/hook", "http://localhost/hook"])
async def test_private_address_refused_when_not_allowed(gql, operation, services, clock, url, settings_overrides):
    admin = await make_admin(services, clock)
    before = await state(services)
    payload = (await gql.ok(operation(CREATE), {"input": {"url": url, "eventTypes": ["USER_REGISTERED"]}},
                            token=admin["token"]))["createWebhookEndpoint"]
    assert [e["code"] for e in payload["userErrors"]] == ["UNSAFE_ADDRESS"]
    assert await state(services) == before


async def test_unsafe_url_refused_on_update_too(op, gql, operation, services, clock, receiver):
    admin = await make_admin(services, clock)
    created = await op("admin", "WebhookCreateEndpoint", {"input": {"url": receiver.url, "eventTypes": ["USER_REGISTERED"]}},
                       admin["token"], field="createWebhookEndpoint")
    services.settings.webhooks.allow_private_addresses = False
    before = await state(services)
    payload = await op("admin", "WebhookUpdateEndpoint", {"input": {"id": created["endpoint"]["id"], "url": "http://10.1.1.1/"}},
                       admin["token"], field="updateWebhookEndpoint")
    assert [e["code"] for e in payload["userErrors"]] == ["UNSAFE_ADDRESS"] and payload["endpoint"] is None
    empty = await op("admin", "WebhookUpdateEndpoint", {"input": {"id": created["endpoint"]["id"], "eventTypes": []}},
                     admin["token"], field="updateWebhookEndpoint")
    assert [e["code"] for e in empty["userErrors"]] == ["NO_EVENT_TYPES"]
    assert await state(services) == before


async def test_forbidden(op, gql, operation, services, clock, receiver):
    admin = await make_admin(services, clock)
    mine = await make_merchant(gql, services, clock, admin)
    theirs = await make_merchant(gql, services, clock, admin)
    member = await make_member(services, clock)
    ep = await op("merchant", "WebhookMerchantCreateEndpoint", {"input": {
        "url": receiver.url, "eventTypes": ["REDEMPTION_CREATED"], "merchantId": theirs["id"]}}, theirs["token"],
        field="createWebhookEndpoint")
    platform = await op("admin", "WebhookCreateEndpoint", {"input": {"url": receiver.url, "eventTypes": ["USER_REGISTERED"]}},
                        admin["token"], field="createWebhookEndpoint")
    await redeem_at(gql, services, clock, theirs)
    await service.deliver_due(services)
    delivery_id = (await op("admin", "WebhookDeliveries", {"id": ep["endpoint"]["id"]}, admin["token"],
                            field="node"))["deliveries"]["nodes"][0]["id"]
    before = await state(services)
    attempts = [
        # another merchant's staff, on their endpoint
        ("merchant/WebhookMerchantCreateEndpoint", {"url": receiver.url, "eventTypes": ["REDEMPTION_CREATED"],
                                                    "merchantId": theirs["id"]}, mine, "createWebhookEndpoint"),
        ("merchant/WebhookMerchantUpdateEndpoint", {"id": ep["endpoint"]["id"], "enabled": False}, mine, "updateWebhookEndpoint"),
        ("merchant/WebhookMerchantRotateSecret", {"id": ep["endpoint"]["id"]}, mine, "rotateWebhookSecret"),
        ("merchant/WebhookMerchantDeleteEndpoint", {"id": ep["endpoint"]["id"]}, mine, "deleteWebhookEndpoint"),
        ("merchant/WebhookMerchantReplayDelivery", {"id": delivery_id}, mine, "replayWebhookDelivery"),
        # merchant staff on a platform endpoint; members without rights
        ("merchant/WebhookMerchantCreateEndpoint", {"url": receiver.url, "eventTypes": ["REDEMPTION_CREATED"]}, mine,
         "createWebhookEndpoint"),
        ("merchant/WebhookMerchantRotateSecret", {"id": platform["endpoint"]["id"]}, mine, "rotateWebhookSecret"),
        ("merchant/WebhookMerchantCreateEndpoint", {"url": receiver.url, "eventTypes": ["REDEMPTION_CREATED"],
                                                    "merchantId": mine["id"]}, member, "createWebhookEndpoint"),
        ("admin/WebhookCreateEndpoint", {"url": receiver.url, "eventTypes": ["USER_REGISTERED"]}, member,
         "createWebhookEndpoint"),
        ("merchant/WebhookMerchantReplayDelivery", {"id": delivery_id}, member, "replayWebhookDelivery"),
    ]
    for name, variables, who, field in attempts:
        payload = (await gql.ok(operation(name), {"input": variables}, token=who["token"]))[field]
        assert [e["code"] for e in payload["userErrors"]] == ["FORBIDDEN"], (name, who, payload)
    assert await state(services) == before

    # Reads: the other merchant's endpoints, the admin list, node lookups.
    body = await gql(operation("merchant/WebhookMerchantEndpoints"), {"merchantId": theirs["id"]}, token=mine["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(operation("admin/WebhookEndpoints"), {}, token=mine["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(operation("admin/WebhookDeliveries"), {"id": ep["endpoint"]["id"]}, token=mine["token"])
    assert body["data"]["node"] is None
    body = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": delivery_id}, token=member["token"])
    assert body["data"]["node"] is None
    body = await gql("query($id: ID!) { node(id: $id) { id } }", {"id": delivery_id}, token=theirs["token"])
    assert body["data"]["node"] == {"id": delivery_id}
