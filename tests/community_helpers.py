"""Helpers of the community tests (households, organisations, retirements): operations from
schema/operations/{community,organisation,admin}, members with points, row snapshots."""

import uuid
from pathlib import Path

from ledger_helpers import grant

from jingtan_api.testing import register_member, row_counts

OPERATIONS = Path(__file__).resolve().parent.parent / "schema" / "operations"


def op(name: str) -> str:
    """``op("community/CreateHousehold")`` -> the text of that operation file."""
    return (OPERATIONS / f"{name}.graphql").read_text(encoding="utf-8")


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


async def member(gql, name: str = "成员 Member", *, points: int = 0, admin: dict | None = None) -> dict:
    m = await register_member(gql, display_name=name)
    if points:
        assert admin is not None
        await grant(gql, admin, m["id"], points)
    return m


async def call(gql, name: str, variables: dict | None = None, *, token: str) -> dict:
    """Run an operation; return its single root field's payload (GraphQL errors fail the test)."""
    data = await gql.ok(op(name), variables or {}, token=token)
    (value,) = data.values()
    return value


async def ok(gql, name: str, variables: dict | None = None, *, token: str) -> dict:
    """Run a mutation and require that it succeeded (no payload errors)."""
    payload = await call(gql, name, variables, token=token)
    assert payload["errors"] == [], (name, payload["errors"])
    return payload


async def refused(gql, services, name: str, variables: dict | None, *, token: str, code: str) -> dict:
    """Run a mutation that must fail with ``code`` and write nothing at all."""
    before = await row_counts(services.db)
    payload = await call(gql, name, variables, token=token)
    assert [e["code"] for e in payload["errors"]] == [code], payload["errors"]
    assert await row_counts(services.db) == before, "a refused mutation wrote rows"
    return payload


async def household_with_members(gql, owner: dict, *others: dict, name: str = "李家 The Lis") -> str:
    h = (await ok(gql, "community/CreateHousehold", {"input": {"name": name}}, token=owner["token"]))["household"]
    for other in others:
        code = (await ok(gql, "community/CreateHouseholdInvite", {"input": {}}, token=owner["token"]))["code"]
        await ok(gql, "community/JoinHousehold", {"input": {"code": code}}, token=other["token"])
    return h["id"]


PROFILE = {
    "kind": "COMPANY",
    "nameZh": "绿源科技有限公司",
    "nameEn": "Lvyuan Technology Co.",
    "descriptionZh": "一家致力于节能减排的科技公司。",
    "descriptionEn": "A technology company that saves energy.",
    "city": "深圳",
    "district": "南山区",
    "website": "https://lvyuan.example.cn",
}


async def organisation(gql, admin: dict, org_admin: dict | None = None, **profile) -> str:
    payload = await ok(
        gql, "admin/CreateOrganisation",
        {"input": {"profile": {**PROFILE, **profile}, "adminUserId": org_admin["id"] if org_admin else None}},
        token=admin["token"],
    )
    return payload["organisation"]["id"]


async def join_org(gql, org_admin: dict, org_id: str, *members: dict) -> None:
    code = (await ok(gql, "organisation/CreateOrganisationInvite",
                     {"input": {"organisationId": org_id, "maxUses": max(1, len(members))}}, token=org_admin["token"]))["code"]
    for m in members:
        await ok(gql, "community/JoinOrganisation", {"input": {"code": code}}, token=m["token"])
