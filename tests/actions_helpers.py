"""Shared helpers of the action tests."""

from datetime import datetime, timedelta

from jingtan_api.plugins.testing import SUBMIT

BALANCE = "{ viewer { account { balance } } }"


def iso(dt: datetime) -> str:
    return dt.isoformat()


def trip(clock, *, mode="METRO", minutes_ago=60, duration_min=30, meters=10_000, **extra) -> dict:
    end = clock() - timedelta(minutes=minutes_ago)
    start = end - timedelta(minutes=duration_min)
    return {"mode": mode, "startedAt": iso(start), "endedAt": iso(end), "distanceMeters": meters, **extra}


async def submit(gql, token, field, data, *, key, evidence=None) -> dict:
    variables = {"input": {"action": {field: data}, "idempotencyKey": key}}
    if evidence is not None:
        variables["input"]["evidence"] = evidence
    body = await gql(SUBMIT, variables, token=token)
    assert "errors" not in body, body
    return body["data"]["submitAction"]


async def balance(gql, token) -> int:
    return (await gql.ok(BALANCE, token=token))["viewer"]["account"]["balance"]


async def ledger_ok(services) -> None:
    from jingtan_api.accounts.service import check_invariants

    async with services.db.read() as conn:
        assert await check_invariants(conn) == []


async def count_actions(services) -> int:
    from sqlalchemy import func, select

    from jingtan_api.actions.models import Action

    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(Action.__table__))).scalar_one()
