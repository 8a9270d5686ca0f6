"""Prometheus series of the API, one set per process.

**Multi-worker:** with several worker processes (``jingtan serve --workers N``, gunicorn) the series
are written through prometheus-client's *multiprocess mode*: ``PROMETHEUS_MULTIPROC_DIR`` names a
directory every worker maps its values into, and ``/metrics`` (served by whichever worker the scrape
reaches) adds up all of them. ``jingtan serve`` with more than one worker creates that directory when the
variable is not set. Chosen over one metrics port per worker because a scrape then sees the whole host
through the one port it already reaches, behind any process manager, and counters survive a worker's
restart. Gauges say how they combine across workers (``livesum``: pool connections; ``mostrecent``:
ledger totals; ``max``: last job success). Without the variable (one process: tests, ``uvicorn``) the
default registry is used.

Nothing here runs SQL: a request only increments counters in memory.
"""

import contextvars
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # an operator's directory that does not exist yet
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess  # noqa: E402

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRAPHQL_REQUESTS = Counter(
    "jingtan_graphql_requests", "GraphQL operations by name, type and outcome (ok, error, refused)",
    ["operation", "type", "outcome"],
)
GRAPHQL_DURATION = Histogram(
    "jingtan_graphql_duration_seconds", "Time from parsing to the result, per operation name",
    ["operation"], buckets=_LATENCY,
)
GRAPHQL_ERRORS = Counter("jingtan_graphql_errors", "GraphQL errors by extensions.code", ["code"])
GRAPHQL_COST = Histogram(
    "jingtan_graphql_query_cost", "Requested (static) query cost per operation name", ["operation"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
GRAPHQL_SQL = Histogram(
    "jingtan_graphql_sql_statements", "SQL statements one operation ran", ["operation"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 50, 100),
)
RATE_LIMIT_REFUSALS = Counter("jingtan_rate_limit_refusals", "Operations refused by a rate-limit bucket", ["bucket"])
HTTP_REQUESTS = Counter("jingtan_http_requests", "HTTP requests by route and status", ["route", "status"])

DB_POOL_CONNECTIONS = Gauge(
    "jingtan_db_pool_connections", "Open database connections (all pools of the process)", multiprocess_mode="livesum"
)
DB_POOL_IN_USE = Gauge("jingtan_db_pool_in_use", "Connections checked out of the pool", multiprocess_mode="livesum")
DB_POOL_CAPACITY = Gauge(
    "jingtan_db_pool_capacity", "Connections the pools may open (pool size + overflow)", multiprocess_mode="livesum"
)
DB_POOL_WAIT = Histogram(
    "jingtan_db_pool_wait_seconds", "Time to get a connection from the pool",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
DB_WRITE_RETRIES = Counter(
    "jingtan_db_write_retries", "Write transactions retried, by reason (serialization, deadlock, locked)", ["reason"]
)
DB_WRITE_GAVE_UP = Counter("jingtan_db_write_gave_up", "Write transactions that failed after every retry (TRY_AGAIN)")

PLUGIN_DURATION = Histogram(
    "jingtan_plugin_duration_seconds", "Plugin verify + calculate time per action type", ["action_type"],
    buckets=_LATENCY,
)
PLUGIN_FAILURES = Counter(
    "jingtan_plugin_failures", "Plugin failures per action type (timeout, error)", ["action_type", "reason"]
)

JOB_RUNS = Counter("jingtan_job_runs", "Periodic job runs by outcome (ok, failed)", ["job", "outcome"])
JOB_ITEMS = Counter("jingtan_job_items", "What job runs reported doing, by kind", ["job", "kind"])
JOB_DURATION = Histogram("jingtan_job_duration_seconds", "Duration of a job run", ["job"], buckets=_LATENCY)
JOB_LAST_SUCCESS = Gauge(
    "jingtan_job_last_success_timestamp_seconds", "Unix time of the last successful run", ["job"],
    multiprocess_mode="max",
)

LEDGER_POINTS = Gauge(
    "jingtan_ledger_points", "Ledger totals: issued (net), redeemed (merchant balances), expired, outstanding "
    "(member balances)", ["total"], multiprocess_mode="mostrecent",
)
LEDGER_REFRESHED = Gauge(
    "jingtan_ledger_refreshed_timestamp_seconds", "When the ledger totals were last read", multiprocess_mode="max"
)

# Statements run by the current operation (set by the GraphQL extension): a one-item list, so the count
# is shared with the tasks the operation's resolvers run in.
SQL_COUNTER: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("jingtan_sql_count", default=None)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})


_CHILDREN: dict[tuple, Any] = {}


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, remembered: prometheus-client answers the same child object for the
    same values every time (nothing here removes children), and ``labels()`` (argument checks, a lock)
    was a noticeable part of a small request's CPU. Label values are bounded, as they must be anyway."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def operation_label(name: str | None, *, seen: set[str], limit: int = 200) -> str:
    """A bounded label for an operation name: ``anonymous`` without one, ``invalid`` for a strange one,
    ``other`` once ``limit`` distinct names are in ``seen`` (one set per app: clients choose names)."""
    if not name:
        return "anonymous"
    if not _NAME.match(name):
        return "invalid"
    if name not in seen:
        if len(seen) >= limit:
            return "other"
        seen.add(name)
    return name


def code_label(code: object) -> str:
    return code if isinstance(code, str) and _CODE.match(code) else "OTHER"


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


def retry_reason(sqlstate: str | None) -> str:
    return {"40001": "serialization", "40P01": "deadlock"}.get(sqlstate or "", "locked")


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - start)


def instrument_engine(engine, *, capacity: int) -> None:
    """Pool gauges from the engine's pool events (no SQL, nothing per statement)."""
    from sqlalchemy import event

    DB_POOL_CAPACITY.inc(capacity)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _connect(*_: object) -> None:
        DB_POOL_CONNECTIONS.inc()

    @event.listens_for(sync_engine, "close")
    def _close(*_: object) -> None:
        DB_POOL_CONNECTIONS.dec()

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _statement(*_: object) -> None:
        counter = SQL_COUNTER.get()
        if counter is not None:
            counter[0] += 1

    @event.listens_for(sync_engine, "checkout")
    def _checkout(*_: object) -> None:
        DB_POOL_IN_USE.inc()

    @event.listens_for(sync_engine, "checkin")
    def _checkin(*_: object) -> None:
        DB_POOL_IN_USE.dec()


def release_engine(capacity: int) -> None:
    DB_POOL_CAPACITY.dec(capacity)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir() -> str:
    """For ``jingtan serve --workers N``: a fresh directory for the workers' values, exported in the
    environment the workers inherit (an operator's own ``PROMETHEUS_MULTIPROC_DIR`` is emptied and used).
    Must run before the workers import prometheus-client."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for entry in os.listdir(path):
            if entry.endswith(".db"):
                os.unlink(os.path.join(path, entry))
    else:
        path = tempfile.mkdtemp(prefix="jingtan-metrics-")
        os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mark_process_dead() -> None:
    """At a worker's exit: its ``livesum`` gauges stop counting."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())


def exposition() -> tuple[bytes, str]:
    """The text format of every series (all workers' in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
