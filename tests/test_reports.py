"""``jingtan impact report|rebuild`` and ``jingtan challenges settle``: the CLI export matches the GraphQL
report and the actions' recorded grams; bad dates are one-line errors (SQLite and PostgreSQL)."""

import asyncio
import csv
import io
import json

import pytest
from community_helpers import member, op
from impact_helpers import approved_trip

from jingtan_api import cli
from jingtan_api.testing import row_counts


@pytest.fixture
def cli_env(db_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JINGTAN_CONFIG", raising=False)
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    return tmp_path


async def run(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_cli_report_matches_graphql_and_rebuild_keeps_totals(cli_env, gql, services, admin, clock, capsys):
    people = [await member(gql) for _ in range(2)]
    for p in people:
        for k in range(2):
            await approved_trip(gql, p, clock, meters=2500 + 900 * k, minutes_ago=30 + 25 * k)
    rep = (await gql.ok(op("admin/ImpactReport"), {"from": "2026-06-01", "to": "2026-06-30"}, token=admin["token"]))["impactReport"]
    capsys.readouterr()
    assert await run("impact", "report", "--from", "2026-06-01", "--to", "2026-06-30", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totalGrams"] == rep["totalGrams"] > 0 and doc["lines"] == json.loads(rep["json"])["lines"]
    out = cli_env / "report.csv"
    assert await run("impact", "report", "--from", "2026-06-01", "--to", "2026-06-30", "--output", str(out)) == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert int(rows[-1][-1]) == rep["totalGrams"] and rows[1][0] == "transit"
    before = (await gql.ok("{ platformImpact { totalGrams actions } }"))["platformImpact"]
    assert await run("impact", "rebuild") == 0
    assert json.loads(capsys.readouterr().out) == {"actions": 4}
    assert (await gql.ok("{ platformImpact { totalGrams actions } }"))["platformImpact"] == before
    assert await run("challenges", "settle") == 0
    assert json.loads(capsys.readouterr().out) == {"settled": 0}


async def test_cli_report_refuses_bad_periods(cli_env, services, capsys):
    before = await row_counts(services.db)
    assert await run("impact", "report", "--from", "2026-06-02", "--to", "2026-06-01") == 1
    assert "INVALID_PERIOD" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        await run("impact", "report", "--from", "yesterday", "--to", "2026-06-01")
    assert await row_counts(services.db) == before
