"""Abuse limits outside GraphQL execution: leaky buckets (rate limits), request-size limits, variables.

* :class:`Buckets` — leaky buckets of points: :class:`MemoryBuckets` (one process) or
  :class:`RedisBuckets` (shared by every process through one Lua script, so two processes can never both
  spend the last points). A bucket holds at most ``maximum`` points and refills continuously at
  ``restore_rate`` points per second; spending more than it holds is refused with the seconds to wait.
* :class:`BodyLimitMiddleware` — refuses POST bodies and GET query strings over ``limits.max_body_bytes``
  with HTTP 413 while reading, before anything is parsed.
* :func:`check_variables` — bounds list lengths and nesting of the variables before strawberry coerces them.

Time is the limiter's own clock (wall-clock seconds by default, injectable for tests), never the app's
business clock: buckets must drain and refill in real time even where the business clock is frozen.
"""

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jingtan_api.settings import BucketSettings, LimitsSettings
from jingtan_api.users.service import address_bucket as _address_bucket

TimeSource = Callable[[], float]

log = logging.getLogger("jingtan.limits")


@dataclass(frozen=True)
class BucketState:
    allowed: bool
    maximum: float
    available: float
    restore_rate: float

    def retry_after(self, cost: float) -> int:
        """Whole seconds until ``cost`` points are available (at least 1 when refused)."""
        missing = cost - self.available
        return max(1, math.ceil(missing / self.restore_rate)) if missing > 0 else 0

    def seconds_to_full(self) -> int:
        return math.ceil((self.maximum - self.available) / self.restore_rate)


class Buckets(Protocol):
    async def spend(self, key: str, cost: float, bucket: BucketSettings) -> BucketState:
        """Take ``cost`` points if the bucket holds them (a negative cost gives points back, up to full)."""
        ...

    async def peek(self, key: str, bucket: BucketSettings) -> BucketState: ...

    async def aclose(self) -> None: ...


def _leak(available: float, stamp: float, now: float, bucket: BucketSettings) -> float:
    return min(bucket.maximum, available + max(0.0, now - stamp) * bucket.restore_rate)


class MemoryBuckets:
    """Buckets of one process. Operations do not await, so on one event loop they are atomic."""

    MAX_KEYS = 100_000

    def __init__(self, clock: TimeSource = time.time) -> None:
        self.clock = clock
        # key -> (available, stamp, maximum, restore rate)
        self._state: dict[str, tuple[float, float, float, float]] = {}

    def _prune(self, now: float) -> None:
        # Forget buckets that are full again (a full bucket and a missing one are the same); if that is
        # not enough, forget the fullest half.
        def level(entry: tuple[float, float, float, float]) -> float:
            available, stamp, maximum, rate = entry
            return (available + max(0.0, now - stamp) * rate) / maximum

        for k in [k for k, e in self._state.items() if level(e) >= 1]:
            del self._state[k]
        if len(self._state) >= self.MAX_KEYS:
            ordered = sorted(self._state, key=lambda k: level(self._state[k]), reverse=True)
            for k in ordered[: len(ordered) // 2]:
                del self._state[k]

    async def spend(self, key: str, cost: float, bucket: BucketSettings) -> BucketState:
        now = self.clock()
        available, stamp, _, _ = self._state.get(key, (bucket.maximum, now, 0.0, 0.0))
        available = _leak(available, stamp, now, bucket)
        allowed = cost <= available
        if allowed:
            available = min(bucket.maximum, available - cost)
        if key not in self._state and len(self._state) >= self.MAX_KEYS:
            self._prune(now)
        self._state[key] = (available, max(stamp, now), bucket.maximum, bucket.restore_rate)
        return BucketState(allowed, bucket.maximum, available, bucket.restore_rate)

    async def peek(self, key: str, bucket: BucketSettings) -> BucketState:
        now = self.clock()
        available, stamp, _, _ = self._state.get(key, (bucket.maximum, now, 0.0, 0.0))
        return BucketState(True, bucket.maximum, _leak(available, stamp, now, bucket), bucket.restore_rate)

    async def aclose(self) -> None:
        return None


# KEYS[1] bucket; ARGV: maximum, restore rate (points/s), now (s), cost. Returns {allowed, available}.
# Numbers go back as strings: Redis turns Lua numbers into integers.
_SPEND = """
local maximum = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'a', 't')
local available = tonumber(state[1])
local stamp = tonumber(state[2])
if available == nil or stamp == nil then
  available = maximum
  stamp = now
end
if now > stamp then
  available = math.min(maximum, available + (now - stamp) * rate)
  stamp = now
end
local allowed = 0
if cost <= available then
  available = math.min(maximum, available - cost)
  allowed = 1
end
redis.call('HSET', KEYS[1], 'a', tostring(available), 't', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil((maximum - available) / rate * 1000) + 1000)
return {allowed, tostring(available)}
"""


class RedisBuckets:
    """Buckets shared by every process that uses the same Redis (``limits.redis_url``). When Redis does
    not answer, requests are allowed (fail open) and a warning is logged."""

    def __init__(self, url: str, *, prefix: str, clock: TimeSource = time.time) -> None:
        self.client = redis_asyncio.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self.clock = clock
        self._spend = self.client.register_script(_SPEND)

    async def spend(self, key: str, cost: float, bucket: BucketSettings) -> BucketState:
        try:
            allowed, available = await self._spend(
                keys=[self.prefix + key], args=[bucket.maximum, bucket.restore_rate, repr(self.clock()), cost]
            )
        except (RedisError, OSError) as exc:
            # Fail open: an unreachable Redis must not take the API down with it (logged, every time).
            log.warning("rate-limit store unreachable, request allowed", extra={"error": type(exc).__name__})
            return BucketState(True, bucket.maximum, bucket.maximum, bucket.restore_rate)
        return BucketState(bool(int(allowed)), bucket.maximum, float(available), bucket.restore_rate)

    async def peek(self, key: str, bucket: BucketSettings) -> BucketState:
        return await self.spend(key, 0, bucket)

    async def aclose(self) -> None:
        await self.client.aclose()


def make_buckets(limits: LimitsSettings, clock: TimeSource = time.time) -> Buckets:
    if limits.redis_url:
        return RedisBuckets(limits.redis_url, prefix=limits.redis_key_prefix, clock=clock)
    return MemoryBuckets(clock)


def rate_limit_headers(state: BucketState, *, retry_after: int | None = None) -> dict[str, str]:
    """``RateLimit-*`` headers of the query bucket (and ``Retry-After`` on a refusal)."""
    headers = {
        "RateLimit-Limit": str(int(state.maximum)),
        "RateLimit-Remaining": str(max(0, int(state.available))),
        "RateLimit-Reset": str(state.seconds_to_full()),
    }
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


@dataclass
class RequestLimits:
    """One request's view of the limits: who is charged (``client``: ``user:<id>``, ``token:<id>`` or
    ``addr:<address or /64>``; ``address``: always the address), the objects answered so far (counted by
    the execution context) and the response headers to set."""

    settings: LimitsSettings
    buckets: Buckets
    client: str
    address: str
    headers: MutableHeaders | None = None
    objects: int = 0


# A pure function of the address text (ipaddress parsing on every request otherwise); bounded.
address_bucket = functools.lru_cache(maxsize=4096)(_address_bucket)


def request_address(request: Request | None, *, trust_forwarded_for: bool) -> str:
    """The client's address as the limits count it: IPv4, or the /64 of an IPv6 address (see
    ``users.service.address_bucket``); the first ``X-Forwarded-For`` entry only behind a trusted proxy."""
    if request is None:
        return "local"
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return address_bucket(forwarded.split(",")[0].strip()[:64])
    return address_bucket(request.client.host if request.client else "unknown")


# --- request size ----------------------------------------------------------------------------------


def _error_body(message: str, *, code: str, **extensions: Any) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def _too_large(limit: int, what: str) -> dict[str, Any]:
    return _error_body(
        f"The {what} is larger than {limit} bytes / 请求过大（超过 {limit} 字节）", code="REQUEST_TOO_LARGE", limit=limit
    )


class BodyLimitMiddleware:
    """Pure ASGI: bodies and query strings over ``max_bytes`` get HTTP 413 and a JSON error before the
    app sees them. The body is read up to the limit (a ``Content-Length`` above it is refused at once,
    chunked bodies are counted while they arrive), then replayed to the app."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, what: str) -> None:
        body = json.dumps(_too_large(self.max_bytes, what), ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string") or b"") > self.max_bytes:
            await self._refuse(send, "query string")
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, "request body")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, "request body")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# --- variables -------------------------------------------------------------------------------------


class VariablesTooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_variables(variables: Any, *, max_list_length: int, max_depth: int) -> None:
    """Raise VariablesTooLarge for a list longer than ``max_list_length`` or nesting deeper than
    ``max_depth`` anywhere in the variables (iterative: a deep document cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(variables, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list | dict):
            if depth > max_depth:
                raise VariablesTooLarge(
                    f"Variables are nested deeper than {max_depth} levels / 变量嵌套超过 {max_depth} 层"
                )
            if isinstance(value, list):
                if len(value) > max_list_length:
                    raise VariablesTooLarge(
                        f"A list in the variables has {len(value)} entries, more than {max_list_length} / "
                        f"变量中的列表超过 {max_list_length} 项"
                    )
                stack.extend((v, depth + 1) for v in value)
            else:
                stack.extend((v, depth + 1) for v in value.values())
