"""Live updates under load: many WebSocket subscribers on one server process.

    python -m bench.live --db postgresql --subscribers 1000 --duration 10   # the issue's figure
    python -m bench.live --db sqlite --subscribers 200 --duration 5          # a quick run

One uvicorn process (``jingtan_api.app:create_app``, the real app) on a fresh database with
``--subscribers`` members. The load generator (this process, one asyncio loop) sends ``grantPoints``
mutations from ``--concurrency`` workers to random members, over HTTP, for ``--duration`` seconds:

1. **baseline**: no subscriber is connected — grants per second of the bare write path;
2. **subscribed**: every member holds one WebSocket connection (graphql-transport-ws, token in
   connection_init) with a ``balanceChanged`` subscription, and each grant is pushed to its member.

Reported: grants/s in both runs and their ratio (what the pushing costs the writes), pushes received per
second, push latency (p50/p99) from the moment the mutation was *sent* to the moment its push arrived —
an upper bound of commit-to-client, since the commit happens inside the mutation — and the mutation's
own p50 for comparison, the server's resident memory before and after the connections (per
connection), and pushes missing at the end (must be 0). No figure is asserted anywhere; bench/README.md
and bench/RESULTS.md record them.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from bench.__main__ import GRANT_MUTATION, ROOT, Server, log
from bench.seed import create_database, seed
from jingtan_api.graphql.relay import to_global_id

PROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = "subscription { balanceChanged { balance } }"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def user_of(token: str) -> int:
    claims = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Pushes:
    """Send times per member (FIFO) and the latencies of the pushes that answered them."""

    def __init__(self) -> None:
        self.sent: dict[int, deque[float]] = defaultdict(deque)
        self.latencies: list[float] = []
        self.received = 0

    def arrived(self, user_id: int) -> None:
        now = time.perf_counter()
        self.received += 1
        if self.sent[user_id]:
            self.latencies.append(now - self.sent[user_id].popleft())


async def subscriber(url: str, token: str, user_id: int, pushes: Pushes, ready: asyncio.Event,
                     stop: asyncio.Event) -> None:
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=60, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
        ready.set()
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                pushes.arrived(user_id)
            else:
                raise RuntimeError(f"unexpected message {message}")


async def grants(port: int, admin: str, members: list[int], *, concurrency: int, duration: float,
                 pushes: Pushes | None) -> tuple[int, list[float]]:
    """Grant 1 point to random members for ``duration`` s; (grants done, mutation latencies)."""
    done = 0
    latencies: list[float] = []
    end = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                user_id = random.choice(members)
                variables = {"input": {"userId": to_global_id("User", user_id), "amount": 1,
                                       "reason": "bench live push", "idempotencyKey": uuid.uuid4().hex}}
                started = time.perf_counter()
                if pushes is not None:
                    pushes.sent[user_id].append(started)
                r = await http.post("/graphql", json={"query": GRANT_MUTATION, "variables": variables},
                                    headers={"Authorization": f"Bearer {admin}"})
                body = r.json()
                if r.status_code != 200 or body.get("errors") or body["data"]["grantPoints"]["userErrors"]:
                    raise RuntimeError(f"grant failed: {r.status_code} {body}")
                latencies.append(time.perf_counter() - started)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, latencies


async def run(args: argparse.Namespace, port: int, pid: int, tokens: list[str], admin: str) -> dict:
    members = [user_of(t) for t in tokens]
    ws_url = f"ws://127.0.0.1:{port}/graphql"
    await grants(port, admin, members, concurrency=args.concurrency, duration=1.0, pushes=None)  # warm-up
    base_done, base_lat = await grants(port, admin, members, concurrency=args.concurrency,
                                       duration=args.duration, pushes=None)
    rss_before = rss_kib(pid)
    pushes = Pushes()
    stop = asyncio.Event()
    tasks = []
    started = time.perf_counter()
    for i in range(0, len(tokens), 50):  # connect in batches, as clients arrive
        batch = []
        for token, user_id in zip(tokens[i:i + 50], members[i:i + 50], strict=True):
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(subscriber(ws_url, token, user_id, pushes, ready, stop)))
            batch.append(ready.wait())
        await asyncio.gather(*batch)
    connect_s = time.perf_counter() - started
    await asyncio.sleep(1.0)  # the subscriptions are registered with the broker
    rss_after = rss_kib(pid)
    sub_started = time.perf_counter()
    sub_done, sub_lat = await grants(port, admin, members, concurrency=args.concurrency,
                                     duration=args.duration, pushes=pushes)
    deadline = time.perf_counter() + 30
    while pushes.received < sub_done and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - sub_started
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t.exception() for t in tasks if t.exception() is not None]
    return {
        "db": args.db, "subscribers": len(tokens), "concurrency": args.concurrency, "duration_s": args.duration,
        "baseline_grants_per_s": base_done / args.duration,
        "subscribed_grants_per_s": sub_done / args.duration,
        "ratio": (sub_done / args.duration) / (base_done / args.duration),
        "pushes_per_s": pushes.received / elapsed,
        "push_latency_p50_ms": pct(pushes.latencies, 0.5) * 1000,
        "push_latency_p99_ms": pct(pushes.latencies, 0.99) * 1000,
        "mutation_p50_ms": statistics.median(sub_lat) * 1000 if sub_lat else float("nan"),
        "baseline_mutation_p50_ms": statistics.median(base_lat) * 1000 if base_lat else float("nan"),
        "connect_s": connect_s,
        "rss_before_mib": rss_before / 1024, "rss_after_mib": rss_after / 1024,
        "kib_per_connection": (rss_after - rss_before) / max(1, len(tokens)),
        "missing_pushes": sub_done - pushes.received, "failed_subscribers": len(failed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="grant workers (HTTP connections)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    log(f"bench live: {args.subscribers} subscribers on {args.db}, {args.concurrency} grant workers, "
        f"{args.duration:g} s per run; {os.cpu_count()} CPUs")
    # Each subscriber is a socket here and one in the server (which inherits this limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * args.subscribers + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    db = create_database(args.db)
    workdir = Path(tempfile.mkdtemp(prefix="jt_bench_live_"))
    try:
        secret = secrets.token_urlsafe(32)
        fx = asyncio.run(seed(db.url, secret, submitters=args.subscribers, log=log))
        env = {
            **os.environ,
            "JINGTAN_DATABASE_URL": db.url, "JINGTAN_SECRET_KEY": secret, "JINGTAN_LOG__LEVEL": "WARNING",
            "JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS": "0", "JINGTAN_LIMITS__RATE_LIMITING": "false",
            "JINGTAN_LIVE__MAX_CONNECTIONS_PER_PROCESS": str(args.subscribers + 100),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        env.pop("JINGTAN_CONFIG", None)
        os.chdir(workdir)  # no developer's ./jingtan.toml configures the server
        with Server("jingtan_api.app:create_app", env) as server:
            assert server.proc is not None
            result = asyncio.run(run(args, server.port, server.proc.pid, fx.submit_tokens, fx.tokens["admin"]))
    finally:
        os.chdir(ROOT)
        db.drop()
    log("")
    for key, value in result.items():
        log(f"  {key:<26} {value:.2f}" if isinstance(value, float) else f"  {key:<26} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0 if result["missing_pushes"] == 0 and result["failed_subscribers"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
