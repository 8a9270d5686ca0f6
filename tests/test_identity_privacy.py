"""PIPL rights through GraphQL over HTTP on SQLite and PostgreSQL: data export behind a signed, expiring,
single-use link; account deletion with code confirmation, cooling-off, anonymisation, a balanced ledger
and intact carbon statistics; the admin queue; the audit trail."""

import csv
import io
import json
import zipfile

from sqlalchemy import func, select

from actions_helpers import submit, trip
from identity_helpers import ERR, outbox, unchanged_except
from jingtan_api.accounts import service as ledger
from jingtan_api.actions.models import Action
from jingtan_api.audit.models import AuditLogEntry
from jingtan_api.testing import register_member, row_counts
from offers_helpers import grant, make_admin, make_merchant, make_offer, redeem

EXPORT = f"""mutation {{ requestDataExport {{ downloadUrl export {{ id status expiresAt sizeBytes }} {ERR} }} }}"""
REQUEST_DELETE = f"mutation {{ requestAccountDeletion {{ channel expiresAt {ERR} }} }}"
CONFIRM_DELETE = f"""mutation($i: ConfirmAccountDeletionInput!) {{ confirmAccountDeletion(input: $i) {{
  request {{ id status balanceChoice dueAt }} {ERR} }} }}"""
CANCEL_DELETE = f"mutation {{ cancelAccountDeletion {{ request {{ id status }} {ERR} }} }}"
COMPLETE = f"""mutation($i: CompleteAccountDeletionInput!) {{ completeAccountDeletion(input: $i) {{
  request {{ id status pointsDisposed completedAt }} {ERR} }} }}"""
QUEUE = """query($s: DeletionStatus) { accountDeletionRequests(status: $s, first: 10) {
  totalCount nodes { id status balanceChoice dueAt } } }"""
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { userErrors { code } } }"
REFRESH = "mutation($i: RefreshTokenInput!) { refreshToken(input: $i) { userErrors { code } } }"


async def _member_with_history(gql, services, clock, email="pipl@example.cn"):
    member = await register_member(gql, email=email, display_name="韩梅梅 Han Meimei")
    from jingtan_api.graphql.relay import decode_id

    member["pk"] = decode_id(member["id"], "User")
    await grant(services, clock, member["pk"], 300)
    out = await submit(gql, member["token"], "transit", trip(clock, meters=8000), key="pipl-trip")
    assert out["userErrors"] == [], out
    return member


async def _get(gql, url):
    return await gql.http.get(url)


async def test_data_export_downloads_once(gql, services, clock):
    member = await _member_with_history(gql, services, clock)
    data = await gql.ok(EXPORT, token=member["token"])
    payload = data["requestDataExport"]
    assert payload["userErrors"] == [] and payload["export"]["status"] == "READY"
    url = payload["downloadUrl"]
    assert url.startswith("/privacy/exports/") and "signature=" in url and "expires=" in url
    response = await _get(gql, url)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["data.json", "statement.csv"]
    exported = json.loads(archive.read("data.json"))
    assert exported["profile"]["email"] == "pipl@example.cn" and "password_hash" not in exported["profile"]
    assert exported["profile"]["display_name"] == "韩梅梅 Han Meimei"
    assert [c["document"] for c in exported["consents"]] == ["TERMS", "PRIVACY"]
    [action] = exported["actions"]
    assert action["plugin_code"] == "transit" and action["grams_co2e"] > 0 and action["formula"]
    assert isinstance(action["factors"], list) and action["factors"]
    kinds = [row["kind"] for row in exported["ledger_statement"]]
    assert kinds[0] == "GRANT" and len(kinds) == 2
    assert exported["sessions"] and exported["redemptions"] == [] and exported["memberships"] == []
    rows = list(csv.DictReader(io.StringIO(archive.read("statement.csv").decode("utf-8-sig"))))
    assert [int(r["amount"]) for r in rows] == [e["amount"] for e in exported["ledger_statement"]]
    # Used twice: 410, nothing written.
    before = await row_counts(services.db)
    again = await _get(gql, url)
    assert again.status_code == 410 and again.json()["errors"][0]["extensions"]["code"] == "EXPORT_LINK_USED"
    await unchanged_except(services, before)
    data = await gql.ok("query { viewer { dataExports { status downloadedAt } } }", token=member["token"])
    assert data["viewer"]["dataExports"][0]["status"] == "DOWNLOADED"


async def test_export_link_expired_or_tampered(gql, services, clock):
    member = await _member_with_history(gql, services, clock)
    url = (await gql.ok(EXPORT, token=member["token"]))["requestDataExport"]["downloadUrl"]
    before = await row_counts(services.db)
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    response = await _get(gql, tampered)
    assert response.status_code == 403 and response.json()["errors"][0]["extensions"]["code"] == "EXPORT_LINK_INVALID"
    other_id = url.replace("/privacy/exports/", "/privacy/exports/9")
    assert (await _get(gql, other_id)).status_code == 403
    assert (await _get(gql, url.split("?")[0])).status_code == 403
    later = url.replace("expires=", "expires=9")  # a later expiry does not match the signature
    assert (await _get(gql, later)).status_code == 403
    clock.advance(days=1, seconds=1)
    response = await _get(gql, url)
    assert response.status_code == 410 and response.json()["errors"][0]["extensions"]["code"] == "EXPORT_LINK_EXPIRED"
    await unchanged_except(services, before)


async def test_export_limits_and_privacy(gql, services, clock):
    member = await _member_with_history(gql, services, clock)
    first = (await gql.ok(EXPORT, token=member["token"]))["requestDataExport"]["downloadUrl"]
    for _ in range(2):
        assert (await gql.ok(EXPORT, token=member["token"]))["requestDataExport"]["userErrors"] == []
    # A newer export voids the older link.
    assert (await _get(gql, first)).status_code == 410
    before = await row_counts(services.db)
    data = await gql.ok(EXPORT, token=member["token"])
    assert data["requestDataExport"]["errors"] == [{"code": "RATE_LIMITED"}]
    body = await gql(EXPORT)
    assert body["data"]["requestDataExport"]["errors"] == [{"code": "UNAUTHENTICATED"}]
    stranger = await register_member(gql, email="nosy@example.cn")
    body = await gql("query($id: ID!) { node(id: $id) { ... on User { dataExports { id } } } }",
                     {"id": member["id"]}, token=stranger["token"])
    assert body["data"]["node"] is None  # other members are not visible at all
    await unchanged_except(services, before, {"user_account", "account", "refresh_token", "auth_session",
                                              "user_consent"})


async def _schedule(gql, services, member, choice):
    data = await gql.ok(REQUEST_DELETE, token=member["token"])
    assert data["requestAccountDeletion"]["userErrors"] == [], data
    code = outbox(services).last_code(member["email"], "DELETE_ACCOUNT")
    return await gql.ok(CONFIRM_DELETE, {"i": {"code": code, "balanceChoice": choice}}, token=member["token"])


async def _grams(services):
    A = Action.__table__
    async with services.db.read() as conn:
        return (await conn.execute(select(func.sum(A.c.grams_co2e)).where(A.c.status == "APPROVED"))).scalar_one()


async def test_deletion_with_cooling_off_donation_and_anonymisation(gql, services, clock):
    member = await _member_with_history(gql, services, clock)
    admin = await make_admin(services, clock)
    data = await gql.ok("{ viewer { account { balance } } }", token=member["token"])
    held = data["viewer"]["account"]["balance"]
    assert held > 300
    grams = await _grams(services)
    data = await _schedule(gql, services, member, "DONATE")
    request = data["confirmAccountDeletion"]["request"]
    assert request["status"] == "SCHEDULED" and request["balanceChoice"] == "DONATE"
    # Not due yet: the admin cannot complete it; nothing written.
    before = await row_counts(services.db)
    data = await gql.ok(COMPLETE, {"i": {"id": request["id"]}}, token=admin["token"])
    assert data["completeAccountDeletion"]["errors"] == [{"code": "NOT_DUE"}]
    data = await _schedule_again(gql, services, member)
    assert data == [{"code": "DELETION_PENDING"}]
    await unchanged_except(services, before)
    data = await gql.ok(QUEUE, {"s": "SCHEDULED"}, token=admin["token"])
    assert data["accountDeletionRequests"]["totalCount"] == 1
    body = await gql(QUEUE, {"s": None}, token=member["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    clock.advance(days=15, seconds=1)
    admin["token"], _ = services.access_tokens.issue(admin["pk"], frozenset({"MEMBER", "ADMIN"}), clock())
    data = await gql.ok(COMPLETE, {"i": {"id": request["id"]}}, token=admin["token"])
    assert data["completeAccountDeletion"]["userErrors"] == [], data
    done = data["completeAccountDeletion"]["request"]
    assert done["status"] == "COMPLETED" and done["pointsDisposed"] == held
    async with services.db.read() as conn:
        assert await ledger.check_invariants(conn) == []
        public = (await ledger.accounts_by_ids(conn, [await ledger.platform_account_id(conn, "platform:public-good")]))
        assert list(public.values())[0]["balance"] == held
        member_account = (await ledger.accounts_by_user_ids(conn, [member["pk"]]))[member["pk"]]
        assert member_account["balance"] == 0
    assert await _grams(services) == grams  # carbon statistics intact
    body = await gql("query($id: ID!) { node(id: $id) { ... on User { displayName email phone } } }",
                     {"id": member["id"]}, token=admin["token"])
    assert body["data"]["node"] == {"displayName": "已注销用户 Deleted member", "email": None, "phone": None}
    data = await gql.ok(LOGIN, {"i": {"identifier": member["email"], "password": member["password"]}})
    assert data["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    data = await gql.ok(REFRESH, {"i": {"refreshToken": member["refresh"]}})
    assert data["refreshToken"]["userErrors"][0]["code"] in ("INVALID_REFRESH_TOKEN", "ACCOUNT_DISABLED")
    # The address is free again.
    again = await register_member(gql, email=member["email"])
    assert again["id"] != member["id"]
    AL = AuditLogEntry.__table__
    async with services.db.read() as conn:
        actions = {r.action for r in await conn.execute(select(AL.c.action).where(AL.c.action.like("privacy.%")))}
    assert actions == {"privacy.deletion_scheduled", "privacy.deletion_completed"}


async def _schedule_again(gql, services, member):
    data = await gql.ok(REQUEST_DELETE, token=member["token"])
    return data["requestAccountDeletion"]["errors"]


async def test_deletion_cancel_expire_choice_and_the_periodic_job(gql, services, clock):
    from jingtan_api.jobs import run_expiry_once

    member = await _member_with_history(gql, services, clock, email="leaving@example.cn")
    data = await _schedule(gql, services, member, "EXPIRE")
    assert data["confirmAccountDeletion"]["request"]["status"] == "SCHEDULED"
    data = await gql.ok(CANCEL_DELETE, token=member["token"])
    assert data["cancelAccountDeletion"]["request"]["status"] == "CANCELLED"
    before = await row_counts(services.db)
    data = await gql.ok(CANCEL_DELETE, token=member["token"])
    assert data["cancelAccountDeletion"]["errors"] == [{"code": "NO_DELETION_PENDING"}]
    await unchanged_except(services, before)
    clock.advance(seconds=61)
    data = await _schedule(gql, services, member, "EXPIRE")
    assert data["confirmAccountDeletion"]["userErrors"] == []
    clock.advance(days=16)
    result = await run_expiry_once(services.db, now=clock(), settings=services.settings)
    assert result["deletions"] == 1
    async with services.db.read() as conn:
        assert await ledger.check_invariants(conn) == []
        assert (await ledger.accounts_by_user_ids(conn, [member["pk"]]))[member["pk"]]["balance"] == 0
    # An access token issued just before the deletion: `viewer` refuses it (the account is not ACTIVE).
    token, _ = services.access_tokens.issue(member["pk"], frozenset({"MEMBER"}), clock())
    body = await gql("query { viewer { id } }", token=token)
    assert body["errors"][0]["extensions"]["reason"] == "REVOKED_TOKEN"


async def test_deletion_bad_inputs(gql, services, clock):
    member = await _member_with_history(gql, services, clock, email="holder@example.cn")
    await gql.ok(REQUEST_DELETE, token=member["token"])
    code = outbox(services).last_code(member["email"], "DELETE_ACCOUNT")
    wrong = "000000" if code != "000000" else "999999"
    before = await row_counts(services.db)
    data = await gql.ok(CONFIRM_DELETE, {"i": {"code": wrong, "balanceChoice": "EXPIRE"}}, token=member["token"])
    assert data["confirmAccountDeletion"]["errors"] == [{"code": "INVALID_CODE"}]
    await unchanged_except(services, before)  # only the code's attempt counter moved
    # A pending redemption: refused (cancel or use it first), at the request and at the confirmation.
    admin = await make_admin(services, clock)
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=5, perMemberLimit=2)
    assert (await redeem(gql, member, offer["id"]))["userErrors"] == []
    before = await row_counts(services.db)
    data = await gql.ok(CONFIRM_DELETE, {"i": {"code": code, "balanceChoice": "EXPIRE"}}, token=member["token"])
    assert data["confirmAccountDeletion"]["errors"] == [{"code": "PENDING_REDEMPTIONS"}]
    clock.advance(seconds=61)
    data = await gql.ok(REQUEST_DELETE, token=member["token"])
    assert data["requestAccountDeletion"]["errors"] == [{"code": "PENDING_REDEMPTIONS"}]
    await unchanged_except(services, before)
    body = await gql(CONFIRM_DELETE, {"i": {"code": code, "balanceChoice": "BURN"}}, token=member["token"])
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"  # not an enum value
    data = await gql.ok(COMPLETE, {"i": {"id": "QWNjb3VudERlbGV0aW9uUmVxdWVzdDo5OTk="}}, token=admin["token"])
    assert data["completeAccountDeletion"]["errors"] == [{"code": "NOT_FOUND"}]
    body = await gql(COMPLETE, {"i": {"id": "QWNjb3VudERlbGV0aW9uUmVxdWVzdDo5OTk="}}, token=member["token"])
    assert body["data"]["completeAccountDeletion"]["errors"] == [{"code": "FORBIDDEN"}]
    await unchanged_except(services, before)


async def test_redemptions_made_during_the_cooling_off_are_cancelled_at_completion(gql, services, clock):
    member = await _member_with_history(gql, services, clock, email="late-shopper@example.cn")
    admin = await make_admin(services, clock)
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=5, perMemberLimit=2)
    data = await _schedule(gql, services, member, "DONATE")
    assert data["confirmAccountDeletion"]["userErrors"] == []
    assert (await redeem(gql, member, offer["id"]))["userErrors"] == []  # still allowed while cancellable
    held = (await gql.ok("{ viewer { account { balance } } }", token=member["token"]))["viewer"]["account"]["balance"]
    clock.advance(days=15, minutes=1)
    admin["token"], _ = services.access_tokens.issue(admin["pk"], frozenset({"MEMBER", "ADMIN"}), clock())
    queue = await gql.ok(QUEUE, {"s": "SCHEDULED"}, token=admin["token"])
    request_id = queue["accountDeletionRequests"]["nodes"][0]["id"]
    data = await gql.ok(COMPLETE, {"i": {"id": request_id}}, token=admin["token"])
    assert data["completeAccountDeletion"]["request"]["pointsDisposed"] == held + 100  # the refund is donated too
    from offers_helpers import db_state

    state = await db_state(services, offer["id"])
    assert state["problems"] == [] and state["stock"] == 5


async def test_api_tokens_cannot_export_or_delete(gql, services, clock):
    member = await _member_with_history(gql, services, clock, email="scripted@example.cn")
    data = await gql.ok("""mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret } }""",
                        {"i": {"name": "script", "scopes": ["account:read"]}}, token=member["token"])
    secret = data["createApiToken"]["secret"]
    before = await row_counts(services.db)
    for mutation in (EXPORT, REQUEST_DELETE):
        body = await gql(mutation, token=secret)
        payload = next(iter(body["data"].values()))
        assert payload["errors"] == [{"code": "FORBIDDEN"}]
    await unchanged_except(services, before)
