"""Leaderboard and impact queries at 1,000,000 actions: a bulk seeding command and ratio scenarios.

    python -m bench.impact --db postgresql --members 100000 --actions 1000000   # the target size (~11 min seeding)
    python -m bench.impact --db sqlite --members 2000 --actions 20000 --small-actions 2000 --duration 3 --rounds 1

Seeding writes members, organisations (with memberships), impact profiles (cities) and APPROVED actions
with bulk inserts (asyncpg ``COPY`` on PostgreSQL, ``executemany`` in one transaction on SQLite), then
runs ``jingtan_api.impact.service.rebuild`` — the same code as ``jingtan impact rebuild`` — to fill the
maintained aggregates exactly as the approval listeners would have.

Each run seeds a *small* database (``--small-actions``, default 10,000 actions over the same members
ratio) and the *large* one, then serves each with two uvicorn processes — the unmodified GraphQL app
(``bench.servers:subject_app``) and the floor (``bench.floor:floor_impact_app``: Starlette on the bare
driver, the resolvers' statements, the same JWT check and ``data``, checked equal before measuring) — and
measures them with the load generator (``bench/loadgen.py``, ``--concurrency`` keep-alive connections,
``--warmup`` + ``--duration`` seconds a run; ``--rounds`` rounds of small floor, small GraphQL, large
floor, large GraphQL; medians compared):

* ``large/small``: the GraphQL query on the large database against the same query on the small one (the
  issue's target: within 1.5×), and the same for the floor;
* ``graphql/floor``: GraphQL against the floor on the same database.

No timing is asserted anywhere; bench/README.md records the figures and the budget.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.seed import bench_settings, create_database
from jingtan_api.auth.permissions import MEMBER
from jingtan_api.impact import service as impact

ROOT = Path(__file__).resolve().parent.parent

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


async def seed(url: str, secret_key: str, *, members: int, actions: int, orgs: int, seed_value: int = 7) -> dict[str, Any]:
    """Bulk rows; returns ids the scenarios use. Days are spread over the 56 days before now."""
    from jingtan_api.services import Services

    rng = random.Random(seed_value)
    settings = bench_settings(url, secret_key)  # the servers' secret; tokens valid for a day
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


SCENARIOS = {
    "city-all-time": (LEADERBOARD, {"board": "CITY", "period": "ALL_TIME", "city": CITIES[1]}),
    "platform-week": (LEADERBOARD, {"board": "PLATFORM", "period": "WEEK"}),
    "organisations-month": (LEADERBOARD, {"board": "ORGANISATIONS", "period": "MONTH"}),
    "my-impact": (MY_IMPACT, {}),
}


def server_env(url: str, secret: str) -> dict[str, str]:
    """The environment of the uvicorn servers (as ``python -m bench`` sets it)."""
    env = {
        **os.environ,
        "JINGTAN_DATABASE_URL": url,
        "JINGTAN_SECRET_KEY": secret,
        "JINGTAN_LOG__LEVEL": "WARNING",
        "JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS": "0",
        "JINGTAN_LIMITS__RATE_LIMITING": "false",
        "JINGTAN_GRAPHQL__COMPILED_EXECUTION": "true",
        # As in production: the collector tuned at startup (operations.gc_tuning, jingtan_api.app.tune_gc).
        "JINGTAN_OPERATIONS__GC_TUNING": "true",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("JINGTAN_CONFIG", None)
    return env


def measure(args: argparse.Namespace, dbs: dict[str, Any], seeded: dict[str, dict], secret: str) -> dict[str, dict]:
    """For every scenario: check the floor's ``data`` equal to the GraphQL answer on both databases, then
    ``--rounds`` rounds of (small floor, small GraphQL, large floor, large GraphQL) load-generator runs;
    the medians (req/s, p50, p99) of each of the four."""
    from bench.__main__ import Runner, Server, graphql_spec, same_data

    envs = {label: server_env(db.url, secret) for label, db in dbs.items()}
    runner = Runner(argparse.Namespace(concurrency=args.concurrency, duration=args.duration, warmup=args.warmup), envs["small"])
    out: dict[str, dict] = {}
    cwd = os.getcwd()
    os.chdir(runner.tmp)  # a developer's ./jingtan.toml must not configure the servers under test
    try:
        with contextlib.ExitStack() as stack:
            servers = {(label, kind): stack.enter_context(Server(factory, envs[label]))
                       for label in dbs for kind, factory in (("floor", "bench.floor:floor_impact_app"),
                                                              ("graphql", "subject_app"))}
            for name, (query, variables) in SCENARIOS.items():
                log(f"\n[{name}]")
                specs = {label: graphql_spec(query, seeded[label]["token"], variables) for label in dbs}
                for label in dbs:
                    answer = servers[(label, "graphql")].post(specs[label])
                    same_data(servers[(label, "floor")].post(specs[label]), answer, f"{name} ({label}, floor)")
                    data = answer["data"]
                    if not (data.get("leaderboard", {}).get("entries", {}).get("edges")
                            or (data.get("viewer") or {}).get("impact", {}).get("actions")):
                        raise RuntimeError(f"{name} ({label}): an empty answer measures nothing: {json.dumps(answer)[:300]}")
                runs: dict[tuple[str, str], list[dict]] = {key: [] for key in servers}
                for _ in range(args.rounds):
                    for label in dbs:
                        for kind in ("floor", "graphql"):
                            res = runner.load(servers[(label, kind)], specs[label])
                            runs[(label, kind)].append(res)
                            cpu = f"  server CPU {res['server_cpu_ms']:.2f} ms/req" if "server_cpu_ms" in res else ""
                            log(f"    {label:<6} {kind:<8} {res['rps']:>8.1f} req/s  p50 {res['p50_ms']:.2f} ms  "
                                f"p99 {res['p99_ms']:.2f} ms{cpu}")
                # Server CPU per request (Linux, loadgen --server-pid) moves little when other processes
                # share the machine, unlike req/s: the figure to compare across runs taken under load.
                out[name] = {f"{label}_{kind}": {m: round(statistics.median(r[m] for r in rs), 2)
                                                 for m in ("rps", "p50_ms", "p99_ms", "server_cpu_ms")
                                                 if all(m in r for r in rs)}
                             for (label, kind), rs in runs.items()}
    finally:
        os.chdir(cwd)
        shutil.rmtree(runner.tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--actions", type=int, default=1_000_000, help="actions of the large database (target: 1000000)")
    ap.add_argument("--small-actions", type=int, default=10_000, help="actions of the small database (target: 10000)")
    ap.add_argument("--orgs", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8, help="load-generator connections")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the result rows here")
    args = ap.parse_args()
    if not (1 <= args.concurrency <= 99 and 0 < args.duration <= 600 and 1 <= args.rounds <= 20
            and 0 < args.small_actions <= args.actions):
        ap.error("concurrency 1-99, duration 0-600 s, rounds 1-20, 0 < --small-actions <= --actions")
    results: dict[str, Any] = {"db": args.db, "members": args.members, "actions": args.actions,
                               "small_actions": args.small_actions, "concurrency": args.concurrency}
    small_members = max(100, args.members * args.small_actions // max(1, args.actions))
    secret = secrets.token_urlsafe(32)
    dbs: dict[str, Any] = {}
    seeded: dict[str, dict] = {}
    try:
        for label, members, actions in (("small", small_members, args.small_actions), ("large", args.members, args.actions)):
            db = dbs[label] = create_database(args.db)
            log(f"seeding {label}: {members} members, {actions} actions on {args.db} …")
            seeded[label] = asyncio.run(seed(db.url, secret, members=members, actions=actions, orgs=args.orgs))
            log(f"  bulk load {seeded[label]['load_s']} s, rebuild (aggregates) {seeded[label]['rebuild_s']} s")
        results["seed"] = {label: {k: v for k, v in info.items() if k != "token"} for label, info in seeded.items()}
        results["rates"] = measure(args, dbs, seeded, secret)
    finally:
        for db in dbs.values():
            db.drop()
    log(f"\n{args.db}, {args.small_actions:,} vs {args.actions:,} actions, {args.concurrency} connections (medians)")
    log(f"{'scenario':22} {'graphql large/small':>19} {'floor large/small':>17} {'graphql/floor':>21}   req/s (small / large)")
    for name, r in results["rates"].items():
        sg, lg, sf, lf = (r[k]["rps"] for k in ("small_graphql", "large_graphql", "small_floor", "large_floor"))
        log(f"{name:22} {lg / sg:>19.2f} {lf / sf:>17.2f} {sg / sf:>10.2f} / {lg / lf:<10.2f}   "
            f"graphql {sg:.0f} / {lg:.0f}, floor {sf:.0f} / {lf:.0f}")
        if all("server_cpu_ms" in r[k] for k in ("small_graphql", "large_graphql", "small_floor", "large_floor")):
            cs, cl = r["small_graphql"]["server_cpu_ms"], r["large_graphql"]["server_cpu_ms"]
            fs, fl = r["small_floor"]["server_cpu_ms"], r["large_floor"]["server_cpu_ms"]
            log(f"{'':22} server CPU ms/request: graphql {cs:.2f} / {cl:.2f} (large/small {cl / cs:.2f}), "
                f"floor {fs:.2f} / {fl:.2f} (large/small {fl / fs:.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
