"""Rate limits shared through the real Redis (127.0.0.1:6379, or JINGTAN_TEST_REDIS_URL): the Lua bucket's
arithmetic, atomicity between two clients, and two API server processes (uvicorn subprocesses on one
SQLite database) spending one bucket. Each test uses its own random key prefix and deletes its keys.

Skipped when Redis does not answer, unless JINGTAN_TEST_REQUIRE_REDIS=1 (set by .ci/run)."""

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest
import redis.asyncio as redis_asyncio

from jingtan_api.limits import RedisBuckets
from jingtan_api.settings import BucketSettings
from jingtan_api.testing import free_port, wait_until_healthy

REDIS_URL = os.environ.get("JINGTAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _unreachable_reason() -> str | None:
    client = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


@pytest.fixture
async def prefix():
    reason = await _unreachable_reason()
    if reason:
        if os.environ.get("JINGTAN_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required (JINGTAN_TEST_REQUIRE_REDIS=1): {reason}")
        pytest.skip(reason)
    value = f"jt-test-{uuid.uuid4().hex[:12]}:"
    yield value
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=value + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_redis_bucket_refills_refunds_and_expires(prefix):
    now = [1_000_000.0]
    buckets = RedisBuckets(REDIS_URL, prefix=prefix, clock=lambda: now[0])
    bucket = BucketSettings(maximum=100, window_seconds=10)
    try:
        assert (await buckets.spend("k", 60, bucket)).allowed
        refused = await buckets.spend("k", 60, bucket)
        assert not refused.allowed and refused.available == 40 and refused.retry_after(60) == 2
        now[0] += 2.5
        state = await buckets.spend("k", 60, bucket)
        assert state.allowed and state.available == pytest.approx(5)
        assert (await buckets.spend("k", -1000, bucket)).available == 100
        assert (await buckets.peek("fresh", bucket)).available == 100
        ttl = await buckets.client.pttl(prefix + "k")
        assert 0 < ttl <= 1000 + 1000  # a full bucket expires (a missing key is a full bucket)
    finally:
        await buckets.aclose()


async def test_two_clients_cannot_both_spend_the_last_points(prefix):
    frozen = 2_000_000.0
    first = RedisBuckets(REDIS_URL, prefix=prefix, clock=lambda: frozen)
    second = RedisBuckets(REDIS_URL, prefix=prefix, clock=lambda: frozen)
    bucket = BucketSettings(maximum=10, window_seconds=10_000)
    try:
        results = await asyncio.gather(
            *[(first if i % 2 else second).spend("shared", 1, bucket) for i in range(60)]
        )
        assert sum(r.allowed for r in results) == 10
        assert (await first.peek("shared", bucket)).available == pytest.approx(0, abs=0.1)
    finally:
        await first.aclose()
        await second.aclose()


def _start_server(port: int, env: dict, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "jingtan_api.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def _wait_ready(port: int, proc: subprocess.Popen) -> None:
    await asyncio.to_thread(
        wait_until_healthy, proc, port, describe=lambda: proc.stderr.read().decode() if proc.stderr else ""
    )


@pytest.fixture
def sqlite_url(databases) -> str:
    return databases.sqlite_url()  # sync fixture: migrating runs its own event loop


@pytest.mark.db
async def test_two_server_processes_share_one_bucket(prefix, sqlite_url, tmp_path):
    env = {
        **os.environ,
        "JINGTAN_DATABASE_URL": sqlite_url,
        "JINGTAN_LIMITS__REDIS_URL": REDIS_URL,
        "JINGTAN_LIMITS__REDIS_KEY_PREFIX": prefix,
        "JINGTAN_LIMITS__LOGIN__MAXIMUM": "6",
        "JINGTAN_LIMITS__LOGIN__WINDOW_SECONDS": "100000",
        "JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS": "0",
        "JINGTAN_AUTH__ARGON2_TIME_COST": "1",
        "JINGTAN_AUTH__ARGON2_MEMORY_COST_KIB": "64",
        "JINGTAN_AUTH__ARGON2_PARALLELISM": "1",
        "JINGTAN_LOG__LEVEL": "WARNING",
    }
    env.pop("JINGTAN_CONFIG", None)
    ports = [free_port(), free_port()]
    procs = [_start_server(port, env, tmp_path) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            await _wait_ready(port, proc)
        login = "mutation($i: LoginInput!) { login(input: $i) { userErrors { code } } }"
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(
                *[
                    client.post(
                        f"http://127.0.0.1:{ports[i % 2]}/graphql",
                        json={"query": login, "variables": {"i": {"identifier": f"nobody{i}@example.cn", "password": "Wrong-2026"}}},
                    )
                    for i in range(20)
                ]
            )
        bodies = [r.json() for r in responses]
        limited = [r for r, b in zip(responses, bodies, strict=True) if b.get("errors")]
        answered = [b for b in bodies if not b.get("errors")]
        # Exactly the bucket's 6 attempts got through, whichever process served them.
        assert len(answered) == 6
        assert {b["data"]["login"]["userErrors"][0]["code"] for b in answered} == {"INVALID_CREDENTIALS"}
        assert all(r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED" for r in limited)
        assert all(int(r.headers["Retry-After"]) > 0 for r in limited)
        # Both processes refused some (they shared the bucket rather than each keeping 6).
        served_by = {str(r.url.port) for r in limited}
        assert served_by == {str(p) for p in ports}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
