"""Run the benchmark scenarios and print req/s ratios against baselines measured in the same run.

    python -m bench                         # every scenario on SQLite
    python -m bench account --db postgresql
    python -m bench ledger-depth --deep-entries 1000000
    python -m bench account --profile       # then a cProfile run of the GraphQL server
    python -m bench memory --memory-n1 2000 --memory-n2 10000   # RSS of one server over many requests

Method: each server is a real uvicorn process (one worker, no access log, log level warning) on a free
127.0.0.1 port; a separate load-generator process (bench/loadgen.py) keeps ``--concurrency`` keep-alive
connections busy for ``--warmup`` + ``--duration`` seconds; runs alternate baseline / subject
(B S B S …, ``--rounds`` pairs) and the medians are compared. No timing is asserted anywhere.
``memory`` is not a ratio of req/s: it reads one GraphQL server's resident set size (``VmRSS`` in
``/proc/<pid>/status``) after a warm-up and after N1 and N2 account-page requests (counted from the end of the warm-up).
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.seed import create_database, seed
from jingtan_api.testing import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("account", "ledger-depth", "grant", "submit", "redeem", "catalogue", "memory")
MEMORY_TARGET = 0.10  # issue #15: a worker's resident memory flat (±10 %) between 10,000 and 100,000 requests

ACCOUNT_QUERY = (
    "query MyAccount { viewer { account { id balance entries(first: 20) { edges { cursor node { id amount "
    "balanceAfter kind memo createdAt } } pageInfo { hasNextPage endCursor } } } } }"
)
PAGE_QUERY = (
    "query AccountPage($after: String) { viewer { account { id balance entries(first: 20, after: $after) "
    "{ edges { cursor node { id amount balanceAfter kind memo createdAt } } pageInfo { hasNextPage endCursor } "
    "} } } }"
)
GRANT_MUTATION = (
    "mutation Grant($input: AdjustPointsInput!) { grantPoints(input: $input) { transaction { id } replayed "
    "userErrors { code message field } } }"
)

# The selection of schema/operations/actions/SubmitTransitTrip.graphql, for a recycling drop-off.
SUBMIT_MUTATION = (
    "mutation SubmitRecycling($input: SubmitActionInput!) { submitAction(input: $input) { replayed action { id "
    "status reasons { code message } calculation { formula gramsCo2e points factors { id value unit source } } } "
    "userErrors { code message field } } }"
)
CATALOGUE_QUERY = (ROOT / "schema" / "operations" / "member" / "Catalogue.graphql").read_text(encoding="utf-8")
REDEEM_MUTATION = (ROOT / "schema" / "operations" / "member" / "RedeemOffer.graphql").read_text(encoding="utf-8")


def log(msg: str = "") -> None:
    print(msg, flush=True)


class Server:
    """One uvicorn process serving ``bench.servers:<factory>``; stopped by its own pid only."""

    def __init__(self, factory: str, env: dict[str, str], *, profile_to: Path | None = None) -> None:
        self.factory = factory
        self.env = env
        self.port = free_port()
        self.profile_to = profile_to
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        target = self.factory if ":" in self.factory else f"bench.servers:{self.factory}"
        if self.profile_to is None:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1", "--no-access-log", "--log-level", "warning"]
        else:
            cmd = [sys.executable, "-m", "bench.profiled", target, str(self.port), str(self.profile_to)]
        self.proc = subprocess.Popen(cmd, env=self.env)
        try:
            wait_until_healthy(self.proc, self.port, describe=lambda: self.factory)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def post(self, spec: dict) -> dict:
        body = spec["body"].replace("@@UNIQUE@@", "0000000000check").encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{spec['path']}",
            data=body,
            headers={"Content-Type": "application/json", **spec.get("headers", {})},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def graphql_spec(query: str, token: str, variables: dict | None = None) -> dict:
    payload: dict = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return {
        "method": "POST",
        "path": "/graphql",
        "headers": {"Authorization": f"Bearer {token}"},
        "body": json.dumps(payload, separators=(",", ":")),
    }


def _cpu(res: dict) -> str:
    """The server's CPU per request in a run (loadgen --server-pid), for the log line."""
    return f"  server CPU {res['server_cpu_ms']:.2f} ms/req" if "server_cpu_ms" in res else ""


class Runner:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.tmp = Path(tempfile.mkdtemp(prefix="jt_bench_req_"))
        self.rows: list[dict] = []

    def load(self, server: Server, spec: dict, *, expect: tuple[str, ...] = (), concurrency: int | None = None) -> dict:
        path = self.tmp / f"req-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        cmd = [
            sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--request-file", str(path),
            "--concurrency", str(concurrency or self.args.concurrency), "--duration", str(self.args.duration),
            "--warmup", str(self.args.warmup), "--check-graphql",
        ]
        if sys.platform.startswith("linux"):
            cmd += ["--server-pid", str(server.proc.pid)]
        for fragment in expect:
            cmd += ["--expect", fragment]
        out = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True,
            timeout=self.args.warmup + self.args.duration + 60,
        )
        lines = out.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
        if out.returncode != 0 or "error" in result:
            raise RuntimeError(f"load generator failed against {server.factory}: {result.get('error')}")
        return result

    def compare3(self, scenario: str, what: str, floor, base, subj, target: str, *, concurrency: int | None = None) -> None:
        """Alternate floor / same-stack baseline / GraphQL (F B S F B S …) and record the medians; the
        headline ratio is GraphQL / floor, the second GraphQL / same-stack baseline."""
        runs: dict[str, list[dict]] = {"floor": [], "baseline": [], "subject": []}
        labels = {"floor": "starlette+driver floor", "baseline": "starlette+SQLAlchemy baseline", "subject": "GraphQL"}
        for i in range(self.args.rounds):
            for key, fn in (("floor", floor), ("baseline", base), ("subject", subj)):
                res = fn(i)
                runs[key].append(res)
                log(f"    {labels[key]:<30} {res['rps']:>8.1f} req/s  p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms{_cpu(res)}")
        med = {k: statistics.median(r["rps"] for r in v) for k, v in runs.items()}
        cpu = {k: statistics.median(r["server_cpu_ms"] for r in v) for k, v in runs.items()
               if all("server_cpu_ms" in r for r in v)}
        pct = {k: (statistics.median(r["p50_ms"] for r in v), statistics.median(r["p99_ms"] for r in v))
               for k, v in runs.items()}
        row = {
            "db": self.args.db, "scenario": scenario, "compares": what,
            "floor_rps": round(med["floor"], 1), "baseline_rps": round(med["baseline"], 1),
            "subject_rps": round(med["subject"], 1),
            "floor_p50_ms": round(pct["floor"][0], 2), "floor_p99_ms": round(pct["floor"][1], 2),
            "baseline_p50_ms": round(pct["baseline"][0], 2), "baseline_p99_ms": round(pct["baseline"][1], 2),
            "subject_p50_ms": round(pct["subject"][0], 2), "subject_p99_ms": round(pct["subject"][1], 2),
            "ratio": round(med["subject"] / med["floor"], 3) if med["floor"] else 0.0,
            "ratio_baseline": round(med["subject"] / med["baseline"], 3) if med["baseline"] else 0.0,
            "target": target, "concurrency": concurrency or self.args.concurrency,
        }
        for key in cpu:
            row[f"{key}_server_cpu_ms"] = round(cpu[key], 3)
        self.rows.append(row)
        cpu_note = ""
        if "floor" in cpu and cpu.get("subject"):
            # Floor CPU / GraphQL CPU per request: the ratio without the machine's other load in it.
            row["cpu_ratio"] = round(cpu["floor"] / cpu["subject"], 3)
            cpu_note = f"; by server CPU per request {row['cpu_ratio']:.2f}"
        log(f"  => {scenario} [{what}]: GraphQL / floor = {row['ratio']:.2f}, "
            f"GraphQL / same-stack = {row['ratio_baseline']:.2f}{cpu_note}  (target {target} of the floor)")

    def compare(self, scenario: str, what: str, base_label: str, base, subj_label: str, subj, target: str) -> None:
        """Alternate ``base()`` and ``subj()`` (each returns a loadgen result) and record the medians."""
        b_runs, s_runs = [], []
        for i in range(self.args.rounds):
            b = base(i)
            b_runs.append(b)
            log(f"    {base_label:<28} {b['rps']:>8.1f} req/s  p50 {b['p50_ms']:.2f} ms  p99 {b['p99_ms']:.2f} ms{_cpu(b)}")
            s = subj(i)
            s_runs.append(s)
            log(f"    {subj_label:<28} {s['rps']:>8.1f} req/s  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms{_cpu(s)}")
        b_med = statistics.median(r["rps"] for r in b_runs)
        s_med = statistics.median(r["rps"] for r in s_runs)
        ratio = s_med / b_med if b_med else 0.0
        row = {
            "db": self.args.db, "scenario": scenario, "compares": what, "baseline": base_label,
            "baseline_rps": round(b_med, 1), "subject": subj_label, "subject_rps": round(s_med, 1),
            "ratio": round(ratio, 3), "target": target,
        }
        self.rows.append(row)
        log(f"  => {scenario} [{what}]: {subj_label} / {base_label} = {ratio:.2f}  (target {target})")


# --- scenarios ----------------------------------------------------------------------------------------


def same_data(a: dict, b: dict, label: str) -> None:
    if "errors" in a or "errors" in b or a.get("data") != b.get("data"):
        raise RuntimeError(f"{label}: baseline and subject answers differ:\n{json.dumps(a)[:800]}\n{json.dumps(b)[:800]}")


def scenario_account(r: Runner, fx) -> None:
    log("\n[account] viewer.account + last 20 entries: GraphQL vs minimal Starlette endpoint")
    spec = graphql_spec(ACCOUNT_QUERY, fx.tokens["member"])
    with (Server("bench.floor:floor_account_app", r.env) as floor, Server("baseline_account_app", r.env) as base,
          Server("subject_app", r.env) as subj):
        answer = subj.post(spec)
        same_data(floor.post(spec), answer, "account (floor)")
        same_data(base.post(spec), answer, "account")
        r.compare3("account", "account + 20 entries", lambda i: r.load(floor, spec), lambda i: r.load(base, spec),
                   lambda i: r.load(subj, spec), ">= 0.6")
    if r.args.profile:
        profile_subject(r, "account", spec)


def scenario_depth(r: Runner, fx) -> None:
    shallow, deep = fx.entries["shallow"], fx.entries["deep"]
    log(f"\n[ledger-depth] the same GraphQL page, account with {shallow:,} vs {deep:,} entries")
    newest = {n: graphql_spec(PAGE_QUERY, fx.tokens[n], {"after": None}) for n in ("shallow", "deep")}
    middle = {n: graphql_spec(PAGE_QUERY, fx.tokens[n], {"after": fx.mid_cursors[n]}) for n in ("shallow", "deep")}
    with Server("subject_app", r.env) as subj:
        for label, specs in (("newest page", newest), ("middle page (after cursor)", middle)):
            for n in ("shallow", "deep"):
                page = subj.post(specs[n])["data"]["viewer"]["account"]["entries"]
                if len(page["edges"]) != 20 or not page["pageInfo"]["hasNextPage"]:
                    raise RuntimeError(f"ledger-depth: unexpected page for {n}: {json.dumps(page)[:300]}")
            r.compare("ledger-depth", label, f"{shallow:,} entries", lambda i, s=specs: r.load(subj, s["shallow"]),
                      f"{deep:,} entries", lambda i, s=specs: r.load(subj, s["deep"]), "~1.0")


def scenario_grant(r: Runner, fx) -> None:
    log("\n[grant] grantPoints mutation vs adjust_points in db.write behind a minimal Starlette endpoint")

    def spec(label: str) -> dict:
        return graphql_spec(
            GRANT_MUTATION,
            fx.tokens["admin"],
            {"input": {"userId": fx.user_gids["target"], "amount": 5, "reason": "bench grant",
                       "idempotencyKey": f"{label}-@@UNIQUE@@"}},
        )

    def shape(answer: dict) -> dict:
        payload = (answer.get("data") or {}).get("grantPoints")
        if not payload or payload["userErrors"] or payload["replayed"] or not payload["transaction"]["id"]:
            raise RuntimeError(f"grant: unexpected answer {json.dumps(answer)[:800]}")
        return {**payload, "transaction": {"id": "-"}}

    expect = ('"userErrors":[]', '"replayed":false')
    with (Server("bench.floor:floor_grant_app", r.env) as floor, Server("baseline_grant_app", r.env) as base,
          Server("subject_app", r.env) as subj):
        f0, b0, s0 = (shape(x.post(spec(f"check-{k}"))) for k, x in (("f", floor), ("b", base), ("s", subj)))
        if not f0 == b0 == s0:
            raise RuntimeError(f"grant: floor, baseline and subject payloads differ: {f0} / {b0} / {s0}")
        r.compare3("grant", "credit transaction", lambda i: r.load(floor, spec(f"f{i}"), expect=expect),
                   lambda i: r.load(base, spec(f"b{i}"), expect=expect),
                   lambda i: r.load(subj, spec(f"s{i}"), expect=expect), ">= 0.5")
    asyncio.run(check_ledger(r.env["JINGTAN_DATABASE_URL"], "grant"))


def scenario_submit(r: Runner, fx) -> None:
    n = len(fx.submit_tokens)
    log(f"\n[submit] submitAction (recycling drop-off, {n} members in turn) vs the same credit written directly")
    # 100 g of PET -> 95 g CO2e -> 9 points; APPROVED without review. Each request: a new receipt id (the
    # evidence fingerprint is station:receipt) and idempotency key; members in turn, so that each member's
    # daily cap (20,000 g) holds ~210 requests and the cap query sums a few rows, as in real use.
    dropped_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0).isoformat()

    def spec(label: str) -> dict:
        s = graphql_spec(
            SUBMIT_MUTATION,
            fx.submit_tokens[0],
            {"input": {"action": {"recycling": {"material": "PET", "weightGrams": 100, "stationId": "BENCH-STATION-1",
                                                "receiptId": f"{label}-@@UNIQUE@@", "droppedAt": dropped_at}},
                       "idempotencyKey": f"{label}-@@UNIQUE@@"}},
        )
        s["header_variants"] = [{"Authorization": f"Bearer {t}"} for t in fx.submit_tokens]
        return s

    def normalized(answer: dict) -> dict:
        payload = answer["data"]["submitAction"]
        if payload["userErrors"] or payload["replayed"] or payload["action"]["status"] != "APPROVED":
            raise RuntimeError(f"submit: unexpected answer {json.dumps(answer)[:800]}")
        return {**payload, "action": {**payload["action"], "id": "-"}}

    expect = ('"userErrors":[]', '"status":"APPROVED"', '"reasons":[]', '"replayed":false')
    c = r.args.write_concurrency
    with (Server("bench.floor:floor_submit_app", r.env) as floor, Server("baseline_submit_app", r.env) as base,
          Server("subject_app", r.env) as subj):
        # The subject first: its first submit registers the methodology version the others' rows refer to.
        s0 = normalized(subj.post(spec("check-s")))
        b0, f0 = normalized(base.post(spec("check-b"))), normalized(floor.post(spec("check-f")))
        if not b0 == s0 == f0:
            raise RuntimeError(f"submit: floor, baseline and subject payloads differ:\n{f0}\n{b0}\n{s0}")
        asyncio.run(same_submit_rows(r.env["JINGTAN_DATABASE_URL"]))
        r.compare3("submit", "approved action + credit", lambda i: r.load(floor, spec(f"f{i}"), expect=expect, concurrency=c),
                   lambda i: r.load(base, spec(f"b{i}"), expect=expect, concurrency=c),
                   lambda i: r.load(subj, spec(f"s{i}"), expect=expect, concurrency=c), ">= 0.5", concurrency=c)
    if r.args.profile:
        profile_subject(r, "submit", spec("p"), expect)
    asyncio.run(check_ledger(r.env["JINGTAN_DATABASE_URL"], "submit"))


def scenario_redeem(r: Runner, fx) -> None:
    n = len(fx.redeem_tokens)
    log(f"\n[redeem] redeemOffer (one offer, {n} members in turn, quantity 1) vs the same transaction written directly")
    c = r.args.write_concurrency

    def spec(label: str) -> dict:
        s = graphql_spec(REDEEM_MUTATION, fx.redeem_tokens[0],
                         {"input": {"offerId": fx.redeem_offer_gid, "quantity": 1, "idempotencyKey": f"{label}-@@UNIQUE@@"}})
        s["header_variants"] = [{"Authorization": f"Bearer {t}"} for t in fx.redeem_tokens]
        return s

    def normalized(answer: dict) -> dict:
        payload = (answer.get("data") or {}).get("redeemOffer")
        if not payload or payload["userErrors"] or payload["replayed"] or payload["redemption"]["status"] != "PENDING":
            raise RuntimeError(f"redeem: unexpected answer {json.dumps(answer)[:800]}")
        red = payload["redemption"]
        if len(red["code"]) != 10 or not red["expiresAt"]:
            raise RuntimeError(f"redeem: unexpected redemption {red}")
        # id, code, expiry and the balance differ from one redemption to the next.
        return {**payload, "redemption": {**red, "id": "-", "code": "-", "expiresAt": "-"}, "account": {"balance": "-"}}

    expect = ('"userErrors":[]', '"status":"PENDING"', '"replayed":false')
    with (Server("bench.floor:floor_redeem_app", r.env) as floor, Server("baseline_redeem_app", r.env) as base,
          Server("subject_app", r.env) as subj):
        answers = [normalized(x.post(spec(f"check-{k}"))) for k, x in (("s", subj), ("b", base), ("f", floor))]
        if not answers[0] == answers[1] == answers[2]:
            raise RuntimeError(f"redeem: floor, baseline and subject payloads differ:\n{answers}")
        r.compare3("redeem", "redemption + debit + stock", lambda i: r.load(floor, spec(f"f{i}"), expect=expect, concurrency=c),
                   lambda i: r.load(base, spec(f"b{i}"), expect=expect, concurrency=c),
                   lambda i: r.load(subj, spec(f"s{i}"), expect=expect, concurrency=c), ">= 0.5", concurrency=c)
    if r.args.profile:
        profile_subject(r, "redeem", spec("p"), expect)
    asyncio.run(check_ledger(r.env["JINGTAN_DATABASE_URL"], "redeem", fx))


def scenario_catalogue(r: Runner, fx) -> None:
    log(f"\n[catalogue] Catalogue page (20 of {fx.offers} offers with merchants): GraphQL vs minimal Starlette endpoint")
    spec = graphql_spec(CATALOGUE_QUERY, fx.tokens["member"], {"first": 20})
    with (Server("bench.floor:floor_catalogue_app", r.env) as floor, Server("baseline_catalogue_app", r.env) as base,
          Server("subject_app", r.env) as subj):
        b0, s0 = base.post(spec), subj.post(spec)
        same_data(b0, s0, "catalogue")
        same_data(floor.post(spec), s0, "catalogue (floor)")
        page = s0["data"]["offers"]
        edges = page["edges"]
        if (len(edges) != 20 or not page["pageInfo"]["hasNextPage"] or not all(e["node"]["available"] for e in edges)
                or len({e["node"]["merchant"]["id"] for e in edges}) < 2):
            raise RuntimeError(f"catalogue: unexpected page {json.dumps(s0)[:800]}")
        r.compare3("catalogue", "20 offers + merchants", lambda i: r.load(floor, spec), lambda i: r.load(base, spec),
                   lambda i: r.load(subj, spec), ">= 0.6")
    if r.args.profile:
        profile_subject(r, "catalogue", spec)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (``VmRSS`` of ``/proc/<pid>/status``; Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def send_requests(r: Runner, server: Server, spec: dict, n: int) -> dict:
    """Exactly ``n`` requests over ``--concurrency`` keep-alive connections (loadgen ``--requests``), every
    answer checked (status 200, no GraphQL errors)."""
    path = r.tmp / f"req-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    cap = 3600
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--port", str(server.port), "--request-file", str(path),
         "--concurrency", str(r.args.concurrency), "--duration", str(cap), "--warmup", "0", "--check-graphql",
         "--requests", str(n)],
        env=r.env, capture_output=True, text=True, timeout=cap + 60,
    )
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
    if out.returncode != 0 or "error" in result:
        raise RuntimeError(f"load generator failed against {server.factory}: {result.get('error')}")
    if result["requests"] != n:
        raise RuntimeError(f"memory: {result['requests']} of {n} requests answered within {cap} s")
    return result


def scenario_memory(r: Runner, fx) -> None:
    n1, n2, warm = r.args.memory_n1, r.args.memory_n2, r.args.memory_warmup
    log(f"\n[memory] RSS of one GraphQL server: {warm:,} warm-up requests, then readings after {n1:,} and {n2:,} account pages "
        f"({r.args.concurrency} connections)")
    spec = graphql_spec(ACCOUNT_QUERY, fx.tokens["member"])
    with Server("subject_app", r.env) as subj:
        assert subj.proc is not None
        pid = subj.proc.pid
        page = subj.post(spec)["data"]["viewer"]["account"]["entries"]
        if len(page["edges"]) != 20:
            raise RuntimeError(f"memory: unexpected account page {json.dumps(page)[:300]}")
        started = rss_kib(pid)
        send_requests(r, subj, spec, warm)
        warmed = rss_kib(pid)
        log(f"    RSS at start {started / 1024:8.1f} MiB, after {warm:,} warm-up requests {warmed / 1024:8.1f} MiB")
        res1 = send_requests(r, subj, spec, n1)
        at_n1 = rss_kib(pid)
        log(f"    after {n1:>9,} requests          {at_n1 / 1024:8.1f} MiB  ({res1['rps']:.0f} req/s)")
        res2 = send_requests(r, subj, spec, n2 - n1)
        at_n2 = rss_kib(pid)
        log(f"    after {n2:>9,} requests          {at_n2 / 1024:8.1f} MiB  ({res2['rps']:.0f} req/s)")
    ratio = at_n2 / at_n1
    within = abs(ratio - 1) <= MEMORY_TARGET
    row = {
        "db": r.args.db, "scenario": "memory", "compares": f"RSS after {n2:,} / after {n1:,} requests",
        "warmup_requests": warm, "n1": n1, "n2": n2, "rss_start_kib": started, "rss_warm_kib": warmed,
        "rss_n1_kib": at_n1, "rss_n2_kib": at_n2, "ratio": round(ratio, 3),
        "target": f"1.00 ± {MEMORY_TARGET:.2f}", "within_target": within,
    }
    r.rows.append(row)
    log(f"  => memory: RSS({n2:,}) / RSS({n1:,}) = {ratio:.3f}  (target 1.00 ± {MEMORY_TARGET:.2f}: "
        f"{'within' if within else 'OUTSIDE'})")


async def same_submit_rows(url: str) -> None:
    """The floor's, the baseline's and the subject's first submits wrote the same rows: the action (apart
    from its id, receipt, fingerprint, request-dependent times and transaction), its credit transaction
    (memo apart from the id), two entries and one lot of the same amounts."""
    from sqlalchemy import text

    from jingtan_api.db import Database

    db = Database(url)
    varying = {"id", "input", "evidence_fingerprint", "evidence_fingerprint_seen", "created_at", "transaction_id",
               "occurred_from", "occurred_to"}
    try:
        async with db.read() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(text(
                "SELECT * FROM action WHERE evidence_fingerprint LIKE 'BENCH-STATION-1:check-%' ORDER BY id"))]
            shapes = []
            for row in rows:
                tx = (await conn.execute(text("SELECT kind, memo, actor_user_id, acting_admin_id, reverses_id "
                                              "FROM ledger_transaction WHERE id = :t"), {"t": row["transaction_id"]})).one()
                entries = (await conn.execute(text(
                    "SELECT e.amount, a.kind, (SELECT count(*) FROM points_lot l WHERE l.entry_id = e.id) "
                    "FROM ledger_entry e JOIN account a ON a.id = e.account_id WHERE e.transaction_id = :t "
                    "ORDER BY e.amount"), {"t": row["transaction_id"]})).all()
                gid = base64.b64encode(f"Action:{row['id']}".encode()).decode()
                shapes.append(({k: v for k, v in row.items() if k not in varying and k != "user_id"},
                               (tx.kind, tx.memo.replace(gid, "<gid>"), tx.actor_user_id, tx.acting_admin_id,
                                tx.reverses_id), [tuple(e) for e in entries],
                               sorted(json.loads(row["input"]))))
    finally:
        await db.dispose()
    if len(shapes) != 3 or not shapes[0] == shapes[1] == shapes[2]:
        raise RuntimeError("submit: the three servers wrote different rows:\n" + "\n".join(map(str, shapes)))
    log("  floor, baseline and subject wrote the same action, transaction, entries and lot")


async def check_ledger(url: str, scenario: str, fx=None) -> None:
    """Ledger invariants; after ``submit`` also: every action APPROVED, credited by its own ACTION_CREDIT
    transaction of exactly its points, and one idempotency record per action; after ``redeem``: stock +
    redeemed = total stock, every redemption debited by its own REDEMPTION transaction of its points (the
    merchant credited the same), points conserved (the redeemers' balances + the merchant's = what they
    were granted), the lot consumptions of each debit = its points, one idempotency record per redemption."""
    from sqlalchemy import func, select, text

    from jingtan_api.accounts import service as ledger
    from jingtan_api.accounts.idempotency import T as IDEM
    from jingtan_api.actions.models import Action
    from jingtan_api.db import Database

    db = Database(url)
    try:
        async with db.read() as conn:
            problems = await ledger.check_invariants(conn)
            if scenario == "submit":
                act = Action.__table__
                member_entry = ledger.E.join(ledger.A, ledger.A.c.id == ledger.E.c.account_id)
                credited = (
                    select(ledger.E.c.transaction_id, ledger.E.c.amount)
                    .select_from(member_entry)
                    .where(ledger.A.c.kind == ledger.MEMBER)
                    .subquery()
                )
                actions, approved = (await conn.execute(
                    select(func.count(), func.count().filter(act.c.status == "APPROVED")).select_from(act)
                )).one()
                matched = (await conn.execute(
                    select(func.count()).select_from(act.join(ledger.TX, ledger.TX.c.id == act.c.transaction_id)
                                                     .join(credited, credited.c.transaction_id == ledger.TX.c.id))
                    .where(ledger.TX.c.kind == "ACTION_CREDIT", credited.c.amount == act.c.points, act.c.points > 0)
                )).scalar_one()
                credits = (await conn.execute(
                    select(func.count()).select_from(ledger.TX).where(ledger.TX.c.kind == "ACTION_CREDIT")
                )).scalar_one()
                keys = (await conn.execute(
                    select(func.count()).select_from(IDEM).where(IDEM.c.scope.like("submitAction:%"),
                                                                  IDEM.c.result_type == "Action")
                )).scalar_one()
                if not actions == approved == matched == credits == keys:
                    problems.append(f"{actions} actions, {approved} approved, {matched} credited with their points, "
                                    f"{credits} ACTION_CREDIT transactions, {keys} idempotency records")
                else:
                    log(f"  {actions} actions, all APPROVED and credited once with their points")
            if scenario == "grant":
                grants, audits, keys = (await conn.execute(text(
                    "SELECT (SELECT count(*) FROM ledger_transaction WHERE kind = 'GRANT' AND memo = 'bench grant'),"
                    " (SELECT count(*) FROM audit_log WHERE action = 'points.grant' AND reason = 'bench grant'),"
                    " (SELECT count(*) FROM idempotency_record WHERE scope LIKE :scope "
                    "  AND result_type = 'LedgerTransaction' AND key NOT LIKE 'seed-%')"), {"scope": "admin:%:points"})).one()
                if not grants == audits == keys:
                    problems.append(f"{grants} GRANT transactions, {audits} audit rows, {keys} idempotency records")
                else:
                    log(f"  {grants} grants, each with its audit row and idempotency record")
            if scenario == "redeem":
                offer_id = int(base64.b64decode(fx.redeem_offer_gid).decode().split(":")[1])
                q = lambda sql, **kw: conn.execute(text(sql), {"o": offer_id, **kw})  # noqa: E731
                stock, total = (await q("SELECT stock, total_stock FROM offer WHERE id = :o")).one()
                count, redeemed, points = (await q(
                    "SELECT count(*), coalesce(sum(quantity), 0), coalesce(sum(points), 0) FROM redemption "
                    "WHERE offer_id = :o")).one()
                matched = (await q(
                    "SELECT count(*) FROM redemption r JOIN ledger_transaction t ON t.id = r.transaction_id "
                    "WHERE r.offer_id = :o AND t.kind = 'REDEMPTION' AND r.status = 'PENDING' "
                    "AND (SELECT sum(e.amount) FROM ledger_entry e JOIN account a ON a.id = e.account_id "
                    "     WHERE e.transaction_id = t.id AND a.kind = 'MEMBER') = -r.points "
                    "AND (SELECT sum(e.amount) FROM ledger_entry e JOIN account a ON a.id = e.account_id "
                    "     WHERE e.transaction_id = t.id AND a.kind = 'MERCHANT') = r.points "
                    "AND (SELECT sum(c.amount) FROM lot_consumption c JOIN ledger_entry e ON e.id = c.entry_id "
                    "     WHERE e.transaction_id = t.id) = r.points")).scalar_one()
                merchant_balance = (await q(
                    "SELECT a.balance FROM offer o JOIN merchant m ON m.id = o.merchant_id "
                    "JOIN account a ON a.id = m.account_id WHERE o.id = :o")).scalar_one()
                members, balances = (await q(
                    "SELECT count(*), coalesce(sum(a.balance), 0) FROM account a JOIN user_account u ON u.id = a.user_id "
                    "WHERE u.email LIKE 'redeemer%' AND a.kind = 'MEMBER'")).one()
                keys = (await conn.execute(select(func.count()).select_from(IDEM).where(
                    IDEM.c.scope.like("redeem:%"), IDEM.c.result_type == "Redemption"))).scalar_one()
                granted = members * fx.redeem_points
                if not (stock + redeemed == total and count == redeemed == matched == keys
                        and merchant_balance == points and balances + points == granted):
                    problems.append(f"stock {stock} + redeemed {redeemed} vs total {total}; {count} redemptions, "
                                    f"{matched} debited/credited/consumed with their points, {keys} idempotency "
                                    f"records; merchant balance {merchant_balance} vs {points} points redeemed; "
                                    f"redeemers hold {balances} + {points} redeemed vs {granted} granted")
                else:
                    log(f"  {count} redemptions: stock {stock} + {redeemed} redeemed = {total}; each debited once "
                        f"with its points (lots consumed alike), {points} points moved to the merchant, none lost")
    finally:
        await db.dispose()
    if problems:
        raise RuntimeError(f"invariants violated after the {scenario} runs: {problems[:5]}")
    log(f"  ledger invariants hold after the {scenario} runs")


def profile_subject(r: Runner, scenario: str, spec: dict, expect: tuple[str, ...] = ()) -> None:
    """py-spy (sampling, low overhead) when it is installed in the venv, else cProfile."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if py_spy.exists():
        profile_py_spy(r, scenario, spec, py_spy, expect)
        return
    import pstats

    out = r.tmp / f"{scenario}.prof"
    log(f"\n[profile] GraphQL {scenario} scenario under cProfile (one {r.args.duration:g} s run)")
    with Server("subject_app", r.env, profile_to=out) as subj:
        res = r.load(subj, spec, expect=expect)
    log(f"  {res['rps']} req/s under the profiler; stats in {out}")
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(r.args.profile_lines)


def profile_py_spy(r: Runner, scenario: str, spec: dict, py_spy: Path, expect: tuple[str, ...]) -> None:
    out = r.tmp / f"{scenario}.collapsed"
    log(f"\n[profile] GraphQL {scenario} scenario sampled by py-spy (one {r.args.duration:g} s run)")
    with Server("subject_app", r.env) as subj:
        sampler = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(subj.proc.pid), "--format", "raw", "--output", str(out),
             "--duration", str(int(r.args.warmup + r.args.duration)), "--rate", "250", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        res = r.load(subj, spec, expect=expect)
        _, err = sampler.communicate(timeout=60)
    log(f"  {res['rps']} req/s while sampled; collapsed stacks in {out}")
    if not out.exists():
        log(f"  py-spy failed: {err.strip()[-500:]}")
        return
    summarize_stacks(out, r.args.profile_lines)


def summarize_stacks(path: Path, lines: int) -> None:
    """Self and inclusive share of samples per function (idle event-loop samples excluded)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = idle = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        # The event loop waiting in epoll, aiosqlite's worker waiting on its queue: idle, not work.
        if "select (selectors.py" in frames[-1] or "_connection_worker_thread (aiosqlite/core.py:59)" in frames[-1]:
            idle += count
            continue
        total += count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    log(f"  {total} busy samples, {idle} idle (event loop in epoll, aiosqlite worker waiting for work)")

    def short(frame: str) -> str:
        return frame.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")

    log("  -- self time --")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:lines]:
        log(f"  {100 * n / total:5.1f}%  {short(frame)[:150]}")
    log("  -- inclusive time (jingtan_api, strawberry, graphql, sqlalchemy, starlette, uvicorn frames) --")
    keep = ("jingtan_api", "strawberry/", "graphql/", "sqlalchemy/", "starlette/", "uvicorn/", "aiosqlite", "asyncpg", "jwt/")
    ranked = [(f, n) for f, n in incl.items() if any(k in f for k in keep)]
    for frame, n in sorted(ranked, key=lambda kv: -kv[1])[: lines * 2]:
        log(f"  {100 * n / total:5.1f}%  {short(frame)[:150]}")


# --- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(SCENARIOS)} (default: all but memory)")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/subject pairs per comparison")
    parser.add_argument("--shallow-entries", type=int, default=10_000)
    parser.add_argument("--deep-entries", type=int, default=200_000,
                        help="entries of the deep account (target: 1000000; seeding takes longer)")
    parser.add_argument("--submitters", type=int, default=400,
                        help="members taking turns in the submit scenario (each has a daily cap)")
    parser.add_argument("--redeemers", type=int, default=200,
                        help="members taking turns in the redeem scenario (each granted 100,000 points)")
    parser.add_argument("--write-concurrency", type=int, default=8,
                        help="connections of the submit and redeem scenarios (issue #15: 8 concurrent clients)")
    parser.add_argument("--merchants", type=int, default=20, help="merchants of the catalogue scenario")
    parser.add_argument("--offers-per-merchant", type=int, default=10, help="active offers per merchant")
    parser.add_argument("--profile", action="store_true", help="after each account/submit/catalogue comparison, profile its GraphQL server (py-spy if installed, else cProfile)")
    parser.add_argument("--profile-lines", type=int, default=30, help="functions listed per profile table")
    parser.add_argument("--compiled", choices=["on", "off"], default="on",
                        help="[graphql] compiled_execution of the GraphQL server (on, as in production; off: graphql-core's execution)")
    parser.add_argument("--memory-warmup", type=int, default=1_000, help="memory: requests before the first reading")
    parser.add_argument("--memory-n1", type=int, default=10_000, help="memory: requests after the warm-up at the second reading")
    parser.add_argument("--memory-n2", type=int, default=100_000, help="memory: requests after the warm-up at the third reading")
    parser.add_argument("--json", type=Path, help="also write the result rows to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    # memory (100,000 requests by default) runs only when named
    chosen = [s for s in SCENARIOS if s in args.scenarios] if args.scenarios else [s for s in SCENARIOS if s != "memory"]
    if not (1 <= args.concurrency <= 99 and 1 <= args.write_concurrency <= 99 and 0 < args.duration <= 600 and 1 <= args.rounds <= 20):
        parser.error("concurrency 1-99, duration 0-600 s, rounds 1-20")
    if not (1000 <= args.shallow_entries <= args.deep_entries <= 10_000_000):
        parser.error("need 1000 <= --shallow-entries <= --deep-entries <= 10000000")
    if not (0 < args.memory_warmup and 0 < args.memory_n1 < args.memory_n2 <= 10_000_000):
        parser.error("need --memory-warmup > 0 and 0 < --memory-n1 < --memory-n2 <= 10000000")

    log(f"jingtan bench: {', '.join(chosen)} on {args.db}; {args.concurrency} connections, "
        f"{args.warmup:g}+{args.duration:g} s per run, {args.rounds} rounds; {os.cpu_count()} CPUs")
    started = time.perf_counter()
    db = create_database(args.db)
    try:
        secret = secrets.token_urlsafe(32)
        log(f"database {db.name} migrated; seeding")
        depth = (args.shallow_entries, args.deep_entries) if "ledger-depth" in chosen else None
        fx = asyncio.run(seed(
            db.url, secret, depth=depth, log=log,
            submitters=args.submitters if "submit" in chosen else 0,
            redeemers=args.redeemers if "redeem" in chosen else 0,
            offers=(args.merchants, args.offers_per_merchant) if "catalogue" in chosen else None,
        ))
        env = {
            **os.environ,
            "JINGTAN_DATABASE_URL": db.url,
            "JINGTAN_SECRET_KEY": secret,
            "JINGTAN_LOG__LEVEL": "WARNING",
            "JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS": "0",
            # The load generator is one client sending thousands of requests: the rate limits would
            # answer most of them with RATE_LIMITED and the run would measure refusals.
            "JINGTAN_LIMITS__RATE_LIMITING": "false",
            # Compiled execution is on in production mode; the bench servers run in development mode.
            "JINGTAN_GRAPHQL__COMPILED_EXECUTION": "true" if args.compiled == "on" else "false",
            # As in production: the collector tuned at startup (operations.gc_tuning, jingtan_api.app.tune_gc).
            "JINGTAN_OPERATIONS__GC_TUNING": "true",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        env.pop("JINGTAN_CONFIG", None)
        runner = Runner(args, env)
        # Servers and load generators run in a scratch directory: a developer's ./jingtan.toml must
        # not configure the apps under test.
        os.chdir(runner.tmp)
        funcs = {"account": scenario_account, "ledger-depth": scenario_depth, "grant": scenario_grant,
                 "submit": scenario_submit, "redeem": scenario_redeem, "catalogue": scenario_catalogue, "memory": scenario_memory}
        for name in chosen:
            funcs[name](runner, fx)
    finally:
        os.chdir(ROOT)
        db.drop()
    if not args.profile:
        shutil.rmtree(runner.tmp, ignore_errors=True)
    log(f"\nsummary ({args.db}, {time.perf_counter() - started:.0f} s total; ratio = subject / floor req/s where a "
        "floor ran, else subject / baseline)")
    log(f"  {'scenario':<14} {'compares':<28} {'baseline req/s':>15} {'subject req/s':>14} {'ratio':>6}  target")
    for row in runner.rows:
        if row["scenario"] == "memory":
            log(f"  {row['scenario']:<14} RSS {row['rss_warm_kib'] / 1024:.1f} MiB warm, {row['rss_n1_kib'] / 1024:.1f} MiB "
                f"after {row['n1']:,}, {row['rss_n2_kib'] / 1024:.1f} MiB after {row['n2']:,} requests; "
                f"ratio {row['ratio']:.3f}  target {row['target']}")
            continue
        floor = f"  floor {row['floor_rps']:.1f} req/s, subject/baseline {row['ratio_baseline']:.2f}" if "floor_rps" in row else ""
        log(f"  {row['scenario']:<14} {row['compares']:<28} {row['baseline_rps']:>15.1f} "
            f"{row['subject_rps']:>14.1f} {row['ratio']:>6.2f}  {row['target']}{floor}")
    if args.json:
        args.json.write_text(json.dumps(runner.rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
