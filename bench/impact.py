"""Leaderboard and impact queries at 1,000,000 actions: a bulk seeding command and ratio scenarios.

    python -m bench.impact --db postgresql --members 100000 --actions 1000000   # the target size
    python -m bench.impact --db sqlite --members 2000 --actions 10000            # a quick run

Seeding writes members, organisations (with memberships), impact profiles (cities) and APPROVED actions
with bulk inserts (asyncpg ``COPY`` on PostgreSQL, ``executemany`` in one transaction on SQLite), then
runs ``jingtan_api.impact.service.rebuild`` — the same code as ``jingtan impact rebuild`` — to fill the
maintained aggregates exactly as the approval listeners would have.

Each run seeds a *small* database (``--small-actions``, default 10,000 actions over the same members
ratio) and the *large* one, then measures, in-process (httpx ASGI transport, one request at a time,
``--requests`` per run, ``--rounds`` alternating runs, medians compared):

* ``graphql/direct``: the GraphQL query through the unmodified ``create_app()`` against the same SQL sent
  directly with the driver's connection (the statements the resolvers send, rows to the same JSON);
* ``large/small``: the GraphQL query on the large database against the same query on the small one.

No timing is asserted anywhere; bench/README.md records the figures and the budget.
"""

import argparse
import asyncio
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bench.seed import create_database
from jingtan_api.app import create_app
from jingtan_api.auth.permissions import MEMBER
from jingtan_api.impact import service as impact
from jingtan_api.testing import make_settings

CITIES = ("深圳", "上海", "北京", "广州", "成都")
PLUGINS = (("transit", "transit.metro", 46.7), ("recycling", "recycling.pet", 950.0), ("energy_saving", "grid.cn.2023", 530.6))
LEADERBOARD = (
    "query L($board: LeaderboardBoard!, $period: LeaderboardPeriod!, $organisationId: ID, $city: String) {"
    " leaderboard(board: $board, period: $period, organisationId: $organisationId, city: $city, first: 20) {"
    " entries { edges { node { rank grams actions name anonymous } } } } }"
)
MY_IMPACT = "{ viewer { impact { totalGrams actions byActionType { actionType grams } byMonth { month grams } } } }"


def log(msg: str = "") -> None:
    print(msg, flush=True)


async def seed(url: str, *, members: int, actions: int, orgs: int, seed_value: int = 7) -> dict[str, Any]:
    """Bulk rows; returns ids the scenarios use. Days are spread over the 56 days before now."""
    from jingtan_api.services import Services

    rng = random.Random(seed_value)
    settings = make_settings(url)
    services = Services.build(settings)
    db = services.db
    now = datetime.now(UTC).replace(microsecond=0)
    users = [(i + 1, f"bench{i + 1}@example.cn", f"成员{i + 1} Member {i + 1}", "x", "MEMBER", "ACTIVE",
              now - timedelta(days=90), now - timedelta(days=90)) for i in range(members)]
    org_rows = [(i + 1, "COMMUNITY" if i % 3 == 0 else "COMPANY", f"组织{i + 1}", f"Organisation {i + 1}", "", "",
                 CITIES[i % len(CITIES)], "", "", "", "ACTIVE", now - timedelta(days=120), "") for i in range(orgs)]
    per_org = max(1, members // (orgs * 2)) if orgs else 0
    memberships = []
    for o in range(orgs):
        for uid in rng.sample(range(1, members + 1), min(per_org, members)):
            memberships.append((o + 1, uid, o + 1, "MEMBER", now - timedelta(days=100), "INVITE"))
    profiles = [(uid, CITIES[uid % len(CITIES)], uid % 20 == 0, now) for uid in range(1, members + 1)]
    t0 = time.perf_counter()

    def action_rows():
        for i in range(actions):
            uid = rng.randrange(1, members + 1)
            code, factor, value = PLUGINS[i % 3]
            grams = rng.randrange(40, 1200)
            start = now - timedelta(days=rng.randrange(0, 56), minutes=rng.randrange(0, 1440))
            factors = json.dumps([{"id": factor, "value": str(value), "unit": "g", "source": "bench"}])
            yield (uid, code, "1.0.0", "{}", "{}", start, start + timedelta(minutes=20), "APPROVED", "[]", grams,
                   grams // 10, json.dumps([factor]), factors, "bench", start + timedelta(minutes=30))

    user_cols = ("id", "email", "display_name", "password_hash", "roles", "status", "created_at", "password_changed_at")
    org_cols = ("id", "kind", "name_zh", "name_en", "description_zh", "description_en", "city", "district", "website",
                "registration_number", "status", "created_at", "review_reason")
    om_cols = ("organisation_id", "user_id", "active_organisation_id", "role", "joined_at", "joined_via")
    prof_cols = ("user_id", "city", "leaderboard_opt_out", "updated_at")
    action_cols = ("user_id", "plugin_code", "plugin_version", "input", "evidence", "occurred_from", "occurred_to",
                   "status", "reasons", "grams_co2e", "points", "factor_ids", "factors", "formula", "created_at")
    if db.is_postgresql:
        import asyncpg

        from jingtan_api.testing import _plain_url, postgres_admin_url

        name = db.url.database
        conn = await asyncpg.connect(_plain_url(postgres_admin_url(), name))
        try:
            naive = lambda rows: [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in r) for r in rows]  # noqa: E731
            await conn.copy_records_to_table("user_account", records=naive(users), columns=user_cols)
            await conn.copy_records_to_table("organisation", records=naive(org_rows), columns=org_cols)
            await conn.copy_records_to_table("organisation_member", records=naive(memberships), columns=om_cols)
            await conn.copy_records_to_table("impact_profile", records=naive(profiles), columns=prof_cols)
            batch: list[tuple] = []
            for row in action_rows():
                batch.append(row)
                if len(batch) >= 50_000:
                    await conn.copy_records_to_table("action", records=naive(batch), columns=action_cols)
                    batch.clear()
            if batch:
                await conn.copy_records_to_table("action", records=naive(batch), columns=action_cols)
            for table in ("user_account", "organisation"):
                await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        finally:
            await conn.close()
    else:
        import sqlite3

        raw = sqlite3.connect(db.url.database)
        try:
            iso = lambda rows: [tuple(v.isoformat(sep=" ").replace("+00:00", "") if isinstance(v, datetime) else v for v in r) for r in rows]  # noqa: E731
            with raw:
                for table, cols, rows in (("user_account", user_cols, users), ("organisation", org_cols, org_rows),
                                          ("organisation_member", om_cols, memberships),
                                          ("impact_profile", prof_cols, profiles)):
                    raw.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                    iso(rows))
                raw.executemany(f"INSERT INTO action ({', '.join(action_cols)}) VALUES ({', '.join('?' * len(action_cols))})",
                                iso(list(action_rows())))
        finally:
            raw.close()
    loaded = time.perf_counter() - t0
    t1 = time.perf_counter()
    counted = await db.write(lambda conn: impact.rebuild(conn, tz=ZoneInfo(settings.actions.timezone)))
    rebuilt = time.perf_counter() - t1
    if db.is_postgresql:
        async with db.engine.connect() as c:
            await (await c.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql("ANALYZE")
    token = services.access_tokens.issue(1, frozenset({MEMBER}), datetime.now(UTC))[0]
    await db.dispose()
    assert counted == actions
    return {"token": token, "load_s": round(loaded, 1), "rebuild_s": round(rebuilt, 1)}


async def _direct(app: Any, variables: dict) -> bytes:
    """The SQL the leaderboard resolvers send (page, ranks, names), on the driver's connection, as JSON."""
    services = app.state.services
    board, key = variables["board"], variables.get("city") or ""
    if board == "ORGANISATION":
        key = "1"
    period = impact.period_key(variables["period"], impact.local_day(datetime.now(UTC), ZoneInfo("Asia/Shanghai")))
    async with services.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if services.db.is_postgresql:
            rows = await driver.fetch(
                "SELECT id, entrant_id, grams, actions FROM impact_total WHERE board=$1 AND board_key=$2 AND period=$3 "
                "ORDER BY grams DESC, id DESC LIMIT 21", board, key, period)
            top = rows[0]["grams"] if rows else 0
            await driver.fetchrow("SELECT sum(CASE WHEN grams > $4 THEN 1 ELSE 0 END), count(*) FROM impact_total "
                                  "WHERE board=$1 AND board_key=$2 AND period=$3 AND grams >= $4", board, key, period, top)
            names = {r["id"]: r for r in await driver.fetch(
                "SELECT u.id, u.display_name, p.leaderboard_opt_out FROM user_account u LEFT JOIN impact_profile p "
                "ON p.user_id = u.id WHERE u.id = ANY($1::int[])", [r["entrant_id"] for r in rows[:20]])}
        else:
            cur = await driver.execute(
                "SELECT id, entrant_id, grams, actions FROM impact_total WHERE board=? AND board_key=? AND period=? "
                "ORDER BY grams DESC, id DESC LIMIT 21", (board, key, period))
            rows = [dict(zip(("id", "entrant_id", "grams", "actions"), r, strict=True)) for r in await cur.fetchall()]
            top = rows[0]["grams"] if rows else 0
            cur = await driver.execute("SELECT sum(CASE WHEN grams > ? THEN 1 ELSE 0 END), count(*) FROM impact_total "
                                       "WHERE board=? AND board_key=? AND period=? AND grams >= ?",
                                       (top, board, key, period, top))
            await cur.fetchone()
            ids = [r["entrant_id"] for r in rows[:20]]
            cur = await driver.execute(
                f"SELECT u.id, u.display_name, p.leaderboard_opt_out FROM user_account u LEFT JOIN impact_profile p "
                f"ON p.user_id = u.id WHERE u.id IN ({', '.join('?' * len(ids)) or 'NULL'})", ids)
            names = {r[0]: {"display_name": r[1], "leaderboard_opt_out": r[2]} for r in await cur.fetchall()}
    edges = [{"node": {"rank": i + 1, "grams": r["grams"], "actions": r["actions"],
                       "name": names.get(r["entrant_id"], {}).get("display_name", ""), "anonymous": False}}
             for i, r in enumerate(rows[:20])]
    return json.dumps({"data": {"leaderboard": {"entries": {"edges": edges}}}}, ensure_ascii=False).encode()


async def _rate(fn, n: int) -> float:
    await fn()
    t = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - t)


async def measure(url: str, token: str, *, requests: int, rounds: int, direct: bool) -> dict[str, dict[str, float]]:
    app = create_app(make_settings(url))
    out: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
        headers = {"Authorization": f"Bearer {token}"}
        scenarios = {
            "city-all-time": (LEADERBOARD, {"board": "CITY", "period": "ALL_TIME", "city": CITIES[1]}),
            "platform-week": (LEADERBOARD, {"board": "PLATFORM", "period": "WEEK"}),
            "organisations-month": (LEADERBOARD, {"board": "ORGANISATIONS", "period": "MONTH"}),
            "my-impact": (MY_IMPACT, {}),
        }
        for name, (query, variables) in scenarios.items():
            async def subject(q=query, v=variables) -> None:
                r = await client.post("/graphql", json={"query": q, "variables": v}, headers=headers)
                assert r.status_code == 200 and "errors" not in r.json(), r.text

            async def baseline(v=variables) -> None:
                await _direct(app, v)

            subj, base = [], []
            for _ in range(rounds):
                if direct and query is LEADERBOARD and variables["board"] != "ORGANISATIONS":
                    base.append(await _rate(baseline, requests))
                subj.append(await _rate(subject, requests))
            out[name] = {"subject": statistics.median(subj)}
            if base:
                out[name]["direct"] = statistics.median(base)
        await client.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--actions", type=int, default=1_000_000)
    ap.add_argument("--small-actions", type=int, default=10_000)
    ap.add_argument("--orgs", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the result rows here")
    args = ap.parse_args()
    results: dict[str, Any] = {"db": args.db, "members": args.members, "actions": args.actions}
    small_members = max(100, args.members * args.small_actions // max(1, args.actions))
    dbs = {}
    try:
        for label, members, actions in (("small", small_members, args.small_actions), ("large", args.members, args.actions)):
            db = dbs[label] = create_database(args.db)
            log(f"seeding {label}: {members} members, {actions} actions on {args.db} …")
            info = asyncio.run(seed(db.url, members=members, actions=actions, orgs=args.orgs))
            log(f"  bulk load {info['load_s']} s, rebuild (aggregates) {info['rebuild_s']} s")
            results[label] = {"seed": info, "runs": []}
        # Rounds alternate small / large (the machine is shared: neighbours' load shifts between runs).
        for _ in range(args.rounds):
            for label in ("small", "large"):
                results[label]["runs"].append(asyncio.run(measure(
                    dbs[label].url, results[label]["seed"]["token"], requests=args.requests, rounds=1,
                    direct=label == "large")))
    finally:
        for db in dbs.values():
            db.drop()
    for label in ("small", "large"):
        runs = results[label]["runs"]
        results[label]["rates"] = {
            name: {k: statistics.median(r[name][k] for r in runs) for k in runs[0][name]} for name in runs[0]
        }
    log(f"\n{'scenario':22} {'graphql/direct (large)':>20} {'large/small':>12}   req/s large / small / direct")
    for name, large in results["large"]["rates"].items():
        small = results["small"]["rates"][name]
        direct = large.get("direct")
        ratio = f"{large['subject'] / direct:.2f}" if direct else "-"
        log(f"{name:22} {ratio:>20} {large['subject'] / small['subject']:>12.2f}   "
            f"{large['subject']:.0f} / {small['subject']:.0f} / {direct or 0:.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
