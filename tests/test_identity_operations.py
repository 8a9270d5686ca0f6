"""Executes every operation in schema/operations/identity/ as the member app and the admin console would,
on SQLite and PostgreSQL."""

import re
from pathlib import Path

from identity_helpers import outbox
from jingtan_api.testing import register_member

OPS = Path(__file__).resolve().parent.parent / "schema" / "operations" / "identity"


def _ops() -> dict[str, str]:
    out = {}
    for path in sorted(OPS.glob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^(?:query|mutation|subscription)\s+(\w+)", text, flags=re.MULTILINE)
        assert names == [path.stem], f"{path.name} must hold one operation named {path.stem}"
        out[path.stem] = text
    return out


async def test_every_identity_operation_runs(gql, services, clock, admin):
    ops = _ops()
    done = set()

    async def run(name, variables=None, token=None):
        done.add(name)
        data = await gql.ok(ops[name], variables or {}, token=token)
        payload = next(iter(data.values()))
        assert not (isinstance(payload, dict) and payload.get("errors")), (name, payload)
        return data

    member = await register_member(gql, phone="13800138701", email="ops@example.cn")
    token = member["token"]
    await run("RequestContactVerification", {"input": {"channel": "SMS"}}, token)
    code = outbox(services).last_code("+8613800138701", "VERIFY_PHONE")
    out = await run("VerifyContact", {"input": {"channel": "SMS", "code": code}}, token)
    assert out["verifyContact"]["user"]["phoneVerifiedAt"]
    await run("RequestLoginCode", {"input": {"identifier": "ops@example.cn"}})
    code = outbox(services).last_code("ops@example.cn", "LOGIN")
    out = await run("LoginWithCode", {"input": {"identifier": "ops@example.cn", "code": code, "deviceName": "iPad"}})
    token = out["loginWithCode"]["tokens"]["accessToken"]
    clock.advance(seconds=61)
    await run("RequestPasswordReset", {"input": {"identifier": "ops@example.cn"}})
    code = outbox(services).last_code("ops@example.cn", "RESET_PASSWORD")
    out = await run("ResetPassword", {"input": {"identifier": "ops@example.cn", "code": code,
                                                 "newPassword": "Fresh-bamboo-77"}})
    token = out["resetPassword"]["tokens"]["accessToken"]
    await run("RequestPhoneChange", {"input": {"newPhone": "13900139701"}}, token)
    code = outbox(services).last_code("+8613900139701", "CHANGE_PHONE")
    out = await run("ConfirmPhoneChange", {"input": {"newPhone": "13900139701", "code": code}}, token)
    assert out["confirmPhoneChange"]["user"]["phone"] == "+8613900139701"
    await register_member(gql, email="ops@example.cn".replace("ops", "ops2"))
    sessions = (await run("MySessions", {"first": 10}, token))["viewer"]["sessions"]
    assert sessions["totalCount"] == 1  # the reset ended the others
    second = await gql.ok("mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
                          {"i": {"identifier": "ops@example.cn", "password": "Fresh-bamboo-77", "deviceName": "PC"}})
    sessions = (await run("MySessions", {"first": 10}, token))["viewer"]["sessions"]
    await run("EndSession", {"input": {"id": sessions["nodes"][0]["id"]}}, token)
    assert second["login"]["tokens"]["accessToken"]
    consent = await run("MyConsent", {}, token)
    docs = consent["legalDocuments"]
    await run("AcceptConsent", {"input": docs}, token)
    out = await run("RequestDataExport", {}, token)
    assert out["requestDataExport"]["downloadUrl"]
    clock.advance(seconds=61)  # one code per destination per minute, whatever the purpose
    await run("RequestAccountDeletion", {}, token)
    code = outbox(services).last_code("+8613900139701", "DELETE_ACCOUNT")
    out = await run("ConfirmAccountDeletion", {"input": {"code": code, "balanceChoice": "DONATE"}}, token)
    await run("CancelAccountDeletion", {}, token)
    clock.advance(seconds=61)
    await gql.ok(ops["RequestAccountDeletion"], {}, token=token)
    code = outbox(services).last_code("+8613900139701", "DELETE_ACCOUNT")
    out = await run("ConfirmAccountDeletion", {"input": {"code": code, "balanceChoice": "EXPIRE"}}, token)
    queue = await run("AccountDeletionQueue", {"status": "SCHEDULED", "first": 10}, admin["token"])
    assert queue["accountDeletionRequests"]["totalCount"] == 1
    clock.advance(days=16)
    admin_token, _ = services.access_tokens.issue(admin["pk"], frozenset({"MEMBER", "ADMIN"}), clock())
    out = await run("CompleteAccountDeletion", {"input": {"id": queue["accountDeletionRequests"]["nodes"][0]["id"]}},
                    admin_token)
    assert out["completeAccountDeletion"]["request"]["status"] == "COMPLETED"
    assert done == set(ops), set(ops) - done
