"""Engine and transactions.

Services work on SQLAlchemy Core ``AsyncConnection`` objects (the ORM adds ~0.5 ms per query and the
ledger is a hot path). Two kinds of transaction exist:

* ``db.read()`` — a plain transaction for reads (on PostgreSQL its hot statements send no BEGIN of
  their own: ``jingtan_api.driver``).
* ``db.write(fn)`` — runs ``await fn(conn)`` in a write transaction and commits. On SQLite the
  transaction starts with ``BEGIN IMMEDIATE`` (Python's sqlite3 otherwise sends BEGIN only before the
  first write, so a read-then-write would not be atomic); on PostgreSQL the whole function is retried on
  serialization failure (40001) or deadlock (40P01). ``fn`` must therefore be safe to re-run: it may
  only touch the database through ``conn``.

Timestamps are aware UTC ``datetime`` values everywhere (SQLModel's ``UTCDateTime`` column type stores
them as ``timestamptz`` on PostgreSQL and as UTC text on SQLite).
"""

import asyncio
import contextvars
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Integer, Select, and_, bindparam, event, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.engine import Connection, Transaction, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_, greenlet_spawn
from sqlmodel import SQLModel

from jingtan_api import events
from jingtan_api.driver import STATEMENT_READS, DriverStatement, sqlite_connection
from jingtan_api.errors import Conflict
from jingtan_api.futures import run_to_completion
from jingtan_api.observability import metrics, tracing

jobs_log = logging.getLogger("jingtan.jobs")
log = logging.getLogger("jingtan.db")

T = TypeVar("T")

# Deterministic constraint names keep migrations portable (SQLite batch mode needs named constraints).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_IN_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("jingtan_in_write", default=False)

RETRYABLE_SQLSTATES = {"40001", "40P01"}
WRITE_OPTION = "jingtan_write"


def utcnow() -> datetime:
    """Current time, aware, in UTC."""
    return datetime.now(UTC)


def dialect_insert(conn: AsyncConnection, table):
    """``INSERT`` of the connection's dialect, which offers ``on_conflict_do_nothing`` (PostgreSQL and
    SQLite spell ON CONFLICT the same way)."""
    return dialect_insert_for(conn.dialect.name, table)


def dialect_insert_for(dialect: str, table):
    """:func:`dialect_insert` by dialect name (for statements built once and kept)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if candidate is None:
            continue
        for attr in ("sqlstate", "pgcode"):
            value = getattr(candidate, attr, None)
            if isinstance(value, str):
                return value
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if _sqlstate(exc) in RETRYABLE_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


class Database:
    """One async engine plus the transaction helpers above."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        busy_timeout_ms: int = 30000,
        max_retries: int = 8,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.max_retries = max_retries
        # The app's domain-event receivers (Services.build registers them); see jingtan_api.events.
        self.events = events.EventBus()
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread: the hot statements run on the loop's thread, on the connection aiosqlite
            # opened in its own (jingtan_api.driver), never at the same time as a statement there.
            kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        else:
            # Up to 2 × pool_size connections, opened on demand and all kept: with overflow connections
            # (pool_size kept + pool_size overflow) every checkin beyond pool_size closed a connection
            # that the next request opened again — at 16 concurrent requests on the account page that
            # churn (connect, TLS attempt, authentication) took a third of the server's CPU.
            kwargs.update(pool_size=2 * pool_size, max_overflow=0, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # The same pool and listeners; its connections carry the read option (jingtan_api.driver).
        self._read_engine = self.engine.sync_engine.execution_options(**{STATEMENT_READS: True})
        self._pool_capacity = 0 if self.is_sqlite else 2 * pool_size
        metrics.instrument_engine(self.engine, capacity=self._pool_capacity)
        tracing.instrument_engine(self.engine, system=self.dialect)
        # SQLite has one writer at a time. Writers of this process queue on an asyncio lock (one per
        # event loop) instead of all sending BEGIN IMMEDIATE and polling in sqlite's busy handler,
        # whose sleeps (up to 100 ms each) made 16 concurrent grants run at ~60/s with p99 > 2 s.
        # Other processes are still kept out by BEGIN IMMEDIATE and the busy timeout.
        self._write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        if self.is_sqlite:
            self._install_sqlite_hooks(busy_timeout_ms)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def _install_sqlite_hooks(self, busy_timeout_ms: int) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
            # Take BEGIN away from the driver so that we can send BEGIN IMMEDIATE ourselves.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn) -> None:  # pragma: no cover - driver callback
            if conn.get_execution_options().get(WRITE_OPTION):
                # Writers of this process are already serialised by the write lock, so BEGIN IMMEDIATE only
                # waits for another process's writer. Try it on the loop's thread without waiting; only
                # when another process holds the lock, wait for it (up to the busy timeout) in aiosqlite's
                # thread, so that the event loop is never blocked by the wait.
                fairy = conn.connection
                try:
                    if not _sqlite_try_begin_immediate(sqlite_connection(fairy.dbapi_connection), busy_timeout_ms):
                        await_(_sqlite_begin_immediate(fairy.dbapi_connection))
                except fairy.dbapi_connection.dbapi.Error as exc:
                    raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, conn.dialect.loaded_dbapi.Error,
                                              dialect=conn.dialect) from exc
            else:
                # A read's BEGIN on the loop's thread (a deferred BEGIN takes no lock; a cursor through
                # SQLAlchemy takes three hops to aiosqlite's thread), errors raised as SQLAlchemy's.
                fairy = conn.connection
                try:
                    sqlite_connection(fairy.dbapi_connection).execute("BEGIN")
                except fairy.dbapi_connection.dbapi.Error as exc:
                    raise DBAPIError.instance("BEGIN", (), exc, conn.dialect.loaded_dbapi.Error,
                                              dialect=conn.dialect) from exc

        # The pool rolls a connection back when it is returned, even after its transaction committed; on
        # SQLite that is one more hop to aiosqlite's thread, where sqlite3 then does nothing (it sends
        # ROLLBACK only inside a transaction). Ask sqlite3 first (``in_transaction`` is a flag read).
        dialect = self.engine.dialect
        do_rollback = dialect.do_rollback

        def _rollback_if_in_transaction(dbapi_connection) -> None:
            # sqlite_connection raises sqlite3's OperationalError (a DBAPI error) on a closed connection.
            if getattr(dbapi_connection, "driver_connection", None) is None or \
                    sqlite_connection(dbapi_connection).in_transaction:
                do_rollback(dbapi_connection)

        dialect.do_rollback = _rollback_if_in_transaction  # type: ignore[method-assign]

        # COMMIT on the loop's thread, as the sqlite3 floor does (no hop while a writer holds the write
        # lock). A read's COMMIT writes nothing; a write's appends to the WAL without fsync
        # (synchronous=NORMAL), except that every ~1,000 WAL pages the committing connection also runs
        # SQLite's passive auto-checkpoint, a short stall of this process's loop (docs/architecture.md).
        def _commit_if_in_transaction(dbapi_connection) -> None:
            if getattr(dbapi_connection, "driver_connection", None) is None:
                dbapi_connection.commit()
                return
            raw = sqlite_connection(dbapi_connection)
            if raw.in_transaction:
                raw.commit()

        dialect.do_commit = _commit_if_in_transaction  # type: ignore[method-assign]

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; the time spent getting it is the pool wait metric."""
        conn = self.engine.connect()
        start = time.perf_counter()
        await conn.start()
        metrics.DB_POOL_WAIT.observe(time.perf_counter() - start)
        try:
            yield conn
        finally:
            await conn.__aexit__(None, None, None)  # closes it as `async with engine.connect()` does

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read transaction: what ``async with engine.connect() as c, c.begin():`` does, in two greenlet
        switches instead of four (pool checkout and BEGIN in one, COMMIT/ROLLBACK and checkin in the
        other, which runs to completion even if the request is cancelled, as SQLAlchemy's close does)."""
        start = time.perf_counter()
        sync, trans, connected = await greenlet_spawn(self._open_read)
        metrics.DB_POOL_WAIT.observe(connected - start)
        try:
            yield AsyncConnection(self.engine, sync)
        except BaseException as exc:
            await run_to_completion(greenlet_spawn(_close_read, sync, trans, type(exc), exc, exc.__traceback__))
            raise
        await run_to_completion(greenlet_spawn(_close_read, sync, trans, None, None, None))

    def _open_read(self) -> tuple[Connection, Transaction, float]:
        sync = self._read_engine.connect()
        connected = time.perf_counter()
        try:
            trans = sync.begin()
            trans.__enter__()
        except BaseException:
            sync.close()
            raise
        return sync, trans, connected

    @asynccontextmanager
    async def _write_tx(self) -> AsyncIterator[AsyncConnection]:
        async with self._connect() as conn:
            conn = await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    async def write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``fn`` in one write transaction, retrying it whole on serialization failures.

        Calling ``write`` from inside ``fn`` is refused: it would be a second, independent transaction
        (and on SQLite it would wait forever for the writer lock the outer call holds). Pass the
        connection down instead."""
        if _IN_WRITE.get():
            raise RuntimeError("Database.write() called inside another write transaction; use its connection")
        token = _IN_WRITE.set(True)
        try:
            return await self._write_with_retries(fn)
        finally:
            _IN_WRITE.reset(token)

    async def _write_with_retries(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            attempt += 1
            # Events emitted by this attempt are published only once it has committed (jingtan_api.events).
            token = events.begin(self.events)
            committed = False
            try:
                if not self.is_sqlite:
                    async with self._write_tx() as conn:
                        result = await fn(conn)
                        await events.run_before_commit(conn)
                else:
                    async with self._sqlite_write_lock():
                        async with self._write_tx() as conn:
                            result = await fn(conn)
                            await events.run_before_commit(conn)
                committed = True
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise
                if attempt >= self.max_retries:
                    metrics.DB_WRITE_GAVE_UP.inc()
                    log.warning("write transaction gave up after retries", extra={"attempts": attempt})
                    # Typed, so a mutation answers with a userError the client can retry on, not a 500.
                    raise Conflict(
                        "The service is busy: please try again / 服务繁忙，请稍后重试", code="TRY_AGAIN"
                    ) from exc
                metrics.DB_WRITE_RETRIES.labels(reason=metrics.retry_reason(_sqlstate(exc))).inc()
                delay = min(0.2, 0.005 * 2**attempt) * (0.5 + random.random())
                log.info("retrying write transaction", extra={"attempt": attempt, "sqlstate": _sqlstate(exc)})
                await asyncio.sleep(delay)
            finally:
                emitted = events.end(token)
            if committed:
                if emitted and self.events.has_publishers:
                    await self.events.publish_committed(emitted)
                return result

    def _sqlite_write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            lock = self._write_locks[loop] = asyncio.Lock()
        return lock

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        metrics.release_engine(self._pool_capacity)
        self._pool_capacity = 0


async def _sqlite_begin_immediate(adapted: Any) -> None:
    """BEGIN IMMEDIATE in aiosqlite's thread, waiting (busy timeout) for another process's writer. Run to
    completion even if the request is cancelled meanwhile: the statement goes on in that thread anyway,
    and the connection must not go back to the pool (nor be used on the loop's thread) while it does —
    once it is done, the pool's reset sees the transaction it may have begun and rolls it back."""
    async def begin() -> None:
        async with adapted._execute_mutex:  # as SQLAlchemy's aiosqlite cursor does
            await adapted.driver_connection.execute_fetchall("BEGIN IMMEDIATE")

    await run_to_completion(begin())


def _close_read(sync: Connection, trans: Transaction, exc_type: Any, exc: Any, tb: Any) -> None:
    """End a read transaction as leaving ``with sync.begin():`` does (commit, or roll back on an error),
    then return the connection to the pool."""
    try:
        trans.__exit__(exc_type, exc, tb)
    finally:
        sync.close()


def _sqlite_try_begin_immediate(raw: Any, busy_timeout_ms: int) -> bool:
    """``BEGIN IMMEDIATE`` on the loop's thread without waiting: False when another connection holds the
    write lock (the caller then waits for it elsewhere)."""
    import sqlite3

    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        busy = getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or \
            "locked" in str(error)
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # restored before waiting elsewhere
        if busy:
            return False
        raise
    # If this fails the write fails with it (and the pool's reset rolls the transaction back).
    raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return True


async def run_batched(
    db: Database,
    *,
    fetch: Callable[[AsyncConnection, int], Awaitable[list[int]]],
    process: Callable[[AsyncConnection, int], Awaitable[int]],
    batch_size: int,
    what: str,
) -> tuple[int, int]:
    """The shape every background job shares: walk items in keyset batches, one write transaction per
    item, log and skip an item that fails (the next run tries it again) instead of stalling every later
    item. ``fetch(conn, after)`` returns up to ``batch_size`` ids greater than ``after``, ascending;
    ``process(conn, id)`` handles one in its own write transaction and returns an amount (0 = nothing
    done). Returns (items that did something, total amount)."""
    done = total = 0
    after = 0
    while True:
        async with db.read() as conn:
            batch = await fetch(conn, after)
        for item in batch:
            try:
                amount = await db.write(lambda conn, i=item: process(conn, i))
            except Exception:  # noqa: BLE001 - one bad item must not stall the job for all others
                jobs_log.exception(f"{what} failed", extra={"item_id": item})
                continue
            if amount:
                done += 1
                total += amount
        if len(batch) < batch_size:
            return done, total
        after = batch[-1]


# --- keyset pages ------------------------------------------------------------------------------------

Key = tuple[Any, ...]
"""A row's position in a list's order: its sort values, then its id (``(id,)`` for lists ordered by id)."""


@dataclass(frozen=True)
class PageArgs:
    """Which page of a list to read. Exactly one of ``first`` (forward, from ``after``) and ``last``
    (backward, up to ``before``) is set; ``after``/``before`` are keys of rows in the list's order, and
    both may be given. Built from a connection's arguments by ``graphql.relay.page_args``."""

    first: int | None = None
    after: Key | None = None
    last: int | None = None
    before: Key | None = None

    @property
    def backward(self) -> bool:
        return self.last is not None and self.first is None


@dataclass(frozen=True)
class Page:
    """One page of rows in the list's order, each row's key, and whether rows lie beyond either end."""

    rows: list[dict]
    keys: list[Key]
    has_next: bool
    has_previous: bool


Order = Sequence[tuple[ColumnElement[Any], bool]]
"""A list's order: (column, descending) pairs, the last one unique (the id)."""


def _beyond(order: Order, key: Key, *, later: bool) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in ``order`` (``later``) or strictly before it: the lexicographic
    comparison spelled out, (a > x) OR (a = x AND b > y) ..., so each column may have its own direction."""
    if len(key) != len(order):
        raise ValueError(f"key {key!r} does not match an order of {len(order)} columns")
    clauses = []
    for i, (column, desc) in enumerate(order):
        step = column < key[i] if desc == later else column > key[i]
        clauses.append(and_(*(c == k for (c, _), k in zip(order[:i], key[:i], strict=True)), step))
    return or_(*clauses)


class StatementCache:
    """Hot-path statements built once per *shape* (which filters are present, sort order, page
    direction), every value a bind parameter, then executed with a parameter dict.

    Building a SELECT per request costs twice: constructing the element tree, and SQLAlchemy's cache-key
    traversal of that new tree before it may reuse the compiled SQL (~0.9 ms for the catalogue's
    statement with its segment predicate, measured with cProfile). A statement object kept here is
    traversed once: its cache key is memoized on the object, so each execution goes straight to the
    compiled form. (Chosen over ``lambda_stmt``, whose closure analysis does not fit statements composed
    by helper functions.) ``keyset_page_cached`` keeps :class:`~jingtan_api.driver.DriverStatement` objects
    here: compiled once per dialect and run as driver-prepared statements (asyncpg's, through SQLAlchemy's
    adapter, inside the pooled connection's read transaction; aiosqlite on SQLite), which skips SQLAlchemy's
    execution layer too (docs/architecture.md, "The driver path"). Shapes are few and fixed by code, so the
    cache is bounded by construction; ``maxsize`` guards against a caller that puts values in a shape."""

    def __init__(self, maxsize: int = 512) -> None:
        self.maxsize = maxsize
        self._items: dict[Any, Any] = {}

    def get(self, shape: Any, build: Callable[[], Any]) -> Any:
        stmt = self._items.get(shape)
        if stmt is None:
            stmt = build()
            if len(self._items) < self.maxsize:
                self._items[shape] = stmt
        return stmt

    def __len__(self) -> int:
        return len(self._items)


def _key_params(order: Order, prefix: str) -> tuple[Any, ...]:
    return tuple(bindparam(f"{prefix}{i}", type_=column.type) for i, (column, _) in enumerate(order))


async def keyset_page_cached(
    conn: AsyncConnection, cache: StatementCache, shape: Any, build: Callable[[], Select[Any]], order: Order,
    args: PageArgs, params: dict[str, Any],
) -> Page:
    """:func:`keyset_page` for a statement built once per ``shape`` by ``build()`` (its values as bind
    parameters named in ``params``): the same rows, keys and flags, without building SQL per request. The
    statement is a :class:`~jingtan_api.driver.DriverStatement`: compiled once, run on the bare driver."""
    backward = args.backward

    def full() -> DriverStatement:
        stmt = build()
        if args.after is not None:
            stmt = stmt.where(_beyond(order, _key_params(order, "_after_"), later=True))
        if args.before is not None:
            stmt = stmt.where(_beyond(order, _key_params(order, "_before_"), later=False))
        ordering = [column.asc() if desc == backward else column.desc() for column, desc in order]
        driver = DriverStatement(stmt.order_by(*ordering).limit(bindparam("_page_limit", type_=Integer)))
        driver.page_keys = tuple(driver.key_of(column) for column, _ in order)
        return driver

    stmt: DriverStatement = cache.get((shape, args.after is not None, args.before is not None, backward), full)
    values = dict(params)
    for prefix, key in (("_after_", args.after), ("_before_", args.before)):
        if key is not None:
            if len(key) != len(order):
                raise ValueError(f"key {key!r} does not match an order of {len(order)} columns")
            values.update({f"{prefix}{i}": k for i, k in enumerate(key)})
    size = (args.last if backward else args.first) or 0
    values["_page_limit"] = size + 1
    rows = await stmt.all(conn, values)
    names = stmt.page_keys
    if len(names) == 1:
        (name,) = names
        return _page([(r, (r[name],)) for r in rows], args, size)
    key = itemgetter(*names)  # a tuple for two names or more
    return _page([(r, key(r)) for r in rows], args, size)


async def keyset_page(conn: AsyncConnection, stmt: Select[Any], order: Order, args: PageArgs) -> Page:
    """One page of ``stmt`` (a SELECT with its filters, no ORDER BY or LIMIT) in ``order``, by keyset:
    ``first`` rows after ``args.after``, or the ``last`` rows before ``args.before``, returned in the
    list's order. One statement, reading one row more than the page to tell whether more lie beyond;
    the other end's flag is "a cursor was given" (the row it names lies there), as Relay allows.
    The order's columns must be in the SELECT (each row's key is read from them)."""
    if args.after is not None:
        stmt = stmt.where(_beyond(order, args.after, later=True))
    if args.before is not None:
        stmt = stmt.where(_beyond(order, args.before, later=False))
    backward = args.backward
    size = (args.last if backward else args.first) or 0
    ordering = [column.asc() if desc == backward else column.desc() for column, desc in order]
    rows = (await conn.execute(stmt.order_by(*ordering).limit(size + 1))).all()
    return _page([(dict(r._mapping), tuple(r._mapping[column] for column, _ in order)) for r in rows], args, size)


def _page(rows: list[tuple[dict, Key]], args: PageArgs, size: int) -> Page:
    """The page of ``rows`` (each with its key) read in page order with one row more than ``size`` (the
    "more" probe)."""
    backward = args.backward
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    return Page(
        rows=[r for r, _ in rows],
        keys=[k for _, k in rows],
        has_next=args.before is not None if backward else more,
        has_previous=more if backward else args.after is not None,
    )
