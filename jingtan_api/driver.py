"""Hot statements (reads, and the hottest writes) on the bare driver, compiled once (issue #15;
docs/architecture.md, "The driver path").

A :class:`DriverStatement` wraps a SQLAlchemy Core ``Select`` whose values are bind parameters. Per dialect
it is compiled ONCE to the driver's SQL text, the order of its positional parameters (with their bind
processors and fixed values) and the result processors of its columns (``UTCDateTime``, JSON, booleans on
SQLite, whatever SQLAlchemy would apply). An execution then only fills a parameter list, sends the text
on the raw driver connection under the SQLAlchemy ``AsyncConnection`` the caller already holds, and turns
the driver's rows into dicts equal, values and types, to ``dict(row._mapping)`` through SQLAlchemy.

* PostgreSQL: the asyncpg connection of the same pooled connection. SQLAlchemy's asyncpg adapter begins
  its transaction lazily, at the first statement (``AsyncAdapt_asyncpg_cursor._prepare_and_execute``:
  under the adapter's ``_execute_mutex``, ``if _transaction is None: await _start_transaction()``);
  :func:`_pg_fetch` does exactly that, under the same mutex, so the statement runs inside the
  transaction ``conn.begin()`` opened and SQLAlchemy's COMMIT/ROLLBACK ends it. The prepared statement
  comes from the adapter's own per-connection cache (``_prepare``), shared with SQLAlchemy's statements.
  A read connection (``Database.read()``, marked with the ``STATEMENT_READS`` execution option) sends no
  BEGIN of its own: each driver statement of a read then runs as its own statement, which under
  PostgreSQL's READ COMMITTED is what it was inside the transaction (every statement takes a fresh
  snapshot), without the BEGIN and COMMIT round trips. A statement through SQLAlchemy on the same
  connection (a server-side cursor, say) still begins the transaction lazily, and later driver
  statements run inside it.
* SQLite: the sqlite3 connection under aiosqlite, called on the event loop's thread (the engine opens
  it with ``check_same_thread=False``), under the adapter's ``_execute_mutex`` so that nothing else runs
  on that connection meanwhile — no thread hop (aiosqlite's ``execute_fetchall`` takes one, SQLAlchemy's
  cursor three). These are the hot statements, answered from SQLite's page cache in microseconds; a
  wait for another process's writer (BEGIN IMMEDIATE when the lock is taken) happens in aiosqlite's
  thread (``jingtan_api.db``). ``Database``'s "begin" hook has already sent BEGIN on that connection (and
  sqlite3's own implicit transactions are off), so the statement runs in the open transaction.

Lists are ONE parameter (:func:`in_list`): ``= ANY($1::INTEGER[])`` on PostgreSQL, ``IN (SELECT value
FROM json_each(?))`` on SQLite, so the SQL text is the same for any length (SQLAlchemy re-renders an
expanding IN on every execution). Statements with expanding or literal-execute parameters are refused.

Driver errors are raised as SQLAlchemy's ``DBAPIError`` family (the same classes ``conn.execute`` raises),
errors of a bind processor as ``StatementError``; the engine's ``before_cursor_execute`` /
``after_cursor_execute`` / ``handle_error`` listeners (statement counters, tracing) still see each
statement. This module knows nothing of GraphQL or of any domain.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy import types
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Executable
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel.sql.sqltypes import UTCDateTime

Processor = Callable[[Any], Any]

# The execution option of a read connection (``Database.read()``): on PostgreSQL its driver statements
# run without a BEGIN of their own (module docstring).
STATEMENT_READS = "jingtan_statement_reads"


# --- lists as one parameter --------------------------------------------------------------------------


class ListParam(types.TypeDecorator[Sequence[Any]]):
    """The type of a list bound as one parameter (:func:`in_list`): an ARRAY of the element type on
    PostgreSQL, a JSON text on SQLite (elements: ints or strings)."""

    impl = types.Text
    cache_ok = True

    def __init__(self, element: types.TypeEngine[Any]) -> None:
        super().__init__()
        self.element = element

    def load_dialect_impl(self, dialect: Dialect) -> types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.element))
        return dialect.type_descriptor(types.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return list(value)
        element = self.element._cached_bind_processor(dialect)
        return json.dumps([element(v) for v in value] if element else list(value))


class _InList(ColumnElement[bool]):
    """``column IN <one list parameter>``, spelled per dialect (see :func:`in_list`)."""

    inherit_cache = True
    type = types.Boolean()
    _is_implicitly_boolean = True  # a predicate already: no "= 1" where booleans are not native

    def __init__(self, column: ColumnElement[Any], param: BindParameter[Any]) -> None:
        self.column = column
        self.param = param

    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("param", InternalTraversal.dp_clauseelement),
    ]

    def get_children(self, **kw: Any) -> Any:
        return (self.column, self.param)


@compiles(_InList)
def _in_list_default(element: _InList, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({compiler.process(element.param, **kw)}))"


@compiles(_InList, "postgresql")
def _in_list_postgresql(element: _InList, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY ({compiler.process(element.param, **kw)})"


def in_list(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column IN :name`` with the whole list as ONE bind parameter ``name`` (give a list, tuple or
    any sequence at execution; empty matches nothing): the SQL text does not depend on its length."""
    return _InList(column, BindParameter(name, type_=ListParam(column.type), required=True))


# --- the statement -----------------------------------------------------------------------------------


def _utc_processor(type_: UTCDateTime, dialect: Dialect, coltype: Any) -> Processor:
    """``UTCDateTime``'s result processor (the impl's, then ``process_result_value``) without the
    TypeDecorator's layers for the two cases the hot paths see: a datetime already aware in UTC (asyncpg's
    timestamptz: ``astimezone(UTC)`` returns it as it is) and a naive one (SQLite's text, which the type
    defines as UTC). Anything else goes through ``process_result_value`` itself; the differential tests
    (tests/test_driver_statements.py) pin the results to SQLAlchemy's."""
    typed = type_.dialect_impl(dialect)
    impl = typed.impl_instance.result_processor(dialect, coltype)  # type: ignore[attr-defined]
    slow = typed.process_result_value  # type: ignore[attr-defined]

    def process(value: Any) -> Any:
        if impl is not None:
            value = impl(value)
        if value is None:
            return None
        if type(value) is datetime:
            if value.tzinfo is UTC:
                return value
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
        return slow(value, dialect)

    return process


class _Compiled:
    """One dialect's form of a statement: SQL text, parameter slots, result keys and processors."""

    __slots__ = ("sql", "fixed", "slots", "required", "keys", "procs", "types", "_attrs", "dialect")

    def __init__(self, stmt: Executable, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError(
                "DriverStatement needs one fixed SQL text: use driver.in_list() instead of an expanding IN "
                "and bind parameters instead of literal-execute values")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            # SQLAlchemy computes those columns' Python-side defaults per execution; the driver path does not.
            raise ValueError("DriverStatement writes need every column with a Python-side default given a value")
        self.dialect = dialect
        self.sql: str = compiled.string
        names = compiled.positiontup or []
        processors = compiled._bind_processors
        self.fixed: list[Any] = []
        self.slots: dict[str, tuple[tuple[int, ...], Processor | None]] = {}
        self.required: frozenset[str] = frozenset(
            name for name, bind in ((n, compiled.binds[n]) for n in names) if bind.required)
        positions: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            positions.setdefault(name, []).append(i)
            bind = compiled.binds[name]
            value = None if bind.required else bind.effective_value
            proc = processors.get(name)
            self.fixed.append(proc(value) if proc is not None and value is not None else value)
        for name, indices in positions.items():
            self.slots[name] = (tuple(indices), processors.get(name))
        columns = compiled._result_columns
        self.keys: tuple[str, ...] = tuple(c.keyname for c in columns)
        if len(set(self.keys)) != len(self.keys):
            raise ValueError(f"DriverStatement needs distinct column keys, got {self.keys}: label the duplicates")
        self.types = tuple(c.type for c in columns)
        # (key, processor) of the columns that have one; on PostgreSQL they depend on the column's type
        # oid (as SQLAlchemy's do), so they are taken at the first execution, from the statement's attributes.
        self._attrs: dict[int, tuple[Any, tuple[tuple[str, Processor], ...]]] = {}
        self.procs: tuple[tuple[str, Processor], ...] = ()
        if dialect.name != "postgresql":
            self.procs = self._result_processors([None] * len(columns))

    def _result_processors(self, coltypes: Sequence[Any]) -> tuple[tuple[str, Processor], ...]:
        out = []
        for key, type_, coltype in zip(self.keys, self.types, coltypes, strict=True):
            if isinstance(type_, UTCDateTime):
                out.append((key, _utc_processor(type_, self.dialect, coltype)))
                continue
            proc = type_._cached_result_processor(self.dialect, coltype)
            if proc is not None:
                out.append((key, proc))
        return tuple(out)

    def pg_processors(self, attrs: Any) -> tuple[tuple[str, Processor], ...]:
        """The processors for the column types of one connection's prepared statement (``attrs``: each
        pooled connection prepares its own; kept here with the processors, so an id is never reused)."""
        known = self._attrs.get(id(attrs))
        if known is not None:
            return known[1]
        procs = self._result_processors([a.type.oid for a in attrs])
        if len(self._attrs) >= 64:  # statements re-prepared after schema changes: drop the old ones
            self._attrs.clear()
        self._attrs[id(attrs)] = (attrs, procs)
        return procs

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        missing = self.required.difference(params)
        if missing:  # as SQLAlchemy says it: a StatementError wrapping InvalidRequestError, before any SQL
            error = sa_exc.InvalidRequestError(f"A value is required for bind parameter {sorted(missing)[0]!r}")
            raise sa_exc.StatementError(f"(sqlalchemy.exc.InvalidRequestError) {error}", self.sql, dict(params), error)
        args = self.fixed.copy()
        for name, value in params.items():
            slot = self.slots.get(name)
            if slot is None:
                continue  # not a parameter of this statement: ignored, as SQLAlchemy does
            indices, proc = slot
            if proc is not None and value is not None:
                try:
                    value = proc(value)
                except Exception as error:
                    raise sa_exc.StatementError(
                        f"({type(error).__module__}.{type(error).__name__}) {error}", self.sql, dict(params), error,
                    ) from error
            for i in indices:
                args[i] = value
        return tuple(args)  # as SQLAlchemy passes positional parameters to the driver and its listeners

    def rows(self, records: Sequence[Any], procs: tuple[tuple[str, Processor], ...]) -> list[dict[str, Any]]:
        keys = self.keys
        out = [dict(zip(keys, r, strict=True)) for r in records]
        if procs:
            for row in out:
                for key, proc in procs:
                    row[key] = proc(row[key])
        return out


class DriverStatement:
    """A ``Select`` — or an ``Insert``/``Update``/``Delete``, whose RETURNING columns are its rows — compiled
    once per dialect and run on the raw driver connection (module docstring).

    ``await stmt.all(conn, params)`` returns the rows as dicts; ``key_of(column)`` names a selected column's
    key in them. ``compilations`` counts how often the SQL was compiled (once per dialect). A write's
    values must all be bind parameters or SQL expressions, and every column with a Python-side default
    must be given (refused at the first compilation otherwise); there is no row count: use RETURNING."""

    def __init__(self, stmt: Executable) -> None:
        self.statement = stmt
        self._forms: dict[tuple[str, str], _Compiled] = {}
        self.compilations = 0
        self.page_keys: tuple[str, ...] = ()  # the row keys of a keyset page's order (db.keyset_page_cached)

    def compiled(self, dialect: Dialect) -> _Compiled:
        form = self._forms.get((dialect.name, dialect.paramstyle))
        if form is None:
            form = self._forms[(dialect.name, dialect.paramstyle)] = _Compiled(self.statement, dialect)
            self.compilations += 1
        return form

    def sql(self, dialect: Dialect) -> str:
        return self.compiled(dialect).sql

    def key_of(self, column: ColumnElement[Any]) -> str:
        """The row key of a selected column (the key ``row._mapping[column]`` reads)."""
        for selected in self.statement.selected_columns:  # type: ignore[attr-defined]
            if selected is column or selected.compare(column):
                return str(selected.key)
        raise KeyError(f"{column} is not selected by this statement")

    async def all(self, conn: AsyncConnection, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        form = self.compiled(conn.dialect)
        args = form.args(params or {})
        if conn.dialect.name == "postgresql":
            records, attrs = await _run(conn, form, args, _pg_fetch)
            return form.rows(records, form.pg_processors(attrs))
        records, _ = await _run(conn, form, args, _sqlite_fetch)
        return form.rows(records, form.procs)


# --- statements of n rows ---------------------------------------------------------------------------


def column_binds(table: Any, columns: Sequence[str]) -> dict[str, BindParameter[Any]]:
    """The VALUES of a one-row write: a bind parameter named after each column, with the column's type
    (its bind processor applies): ``insert(table).values(column_binds(table, cols))``."""
    return {c: bindparam(c, type_=table.c[c].type) for c in columns}


def row_binds(table: Any, columns: Sequence[str], n: int) -> list[dict[str, BindParameter[Any]]]:
    """The VALUES of an ``n``-row ``insert(table).values(...)`` as bind parameters ``<column>_<i>``: a
    statement compiled once per row count (a ``.values([...])`` of literal rows has no cache key and
    SQLAlchemy would compile it on every execution). Fill it with :func:`row_params`."""
    return [{c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns} for i in range(n)]


def row_params(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    return {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}


# Rows per statement of :func:`row_binds`: bounds the parameters of one statement (asyncpg takes at most
# 32,767, older SQLite builds 32,766) and the statements kept per shape (one per row count up to this).
MAX_ROWS = 64


def row_chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    """``rows`` in consecutive chunks of at most :data:`MAX_ROWS` (order kept: callers sort rows so that
    concurrent writers lock them in one order)."""
    return [rows[i:i + MAX_ROWS] for i in range(0, len(rows), MAX_ROWS)]


# --- execution on the raw connection -----------------------------------------------------------------


class _Execution:
    """What the engine's cursor-execute listeners get as ``context`` (they may set attributes on it)."""

    def __init__(self, statement: str) -> None:
        self.statement = statement


async def _pg_fetch(adapted: Any, dialect: Any, sql: str, args: tuple[Any, ...], begin: bool) -> tuple[Any, Any]:
    # As AsyncAdapt_asyncpg_cursor._prepare_and_execute does (sqlalchemy/dialects/postgresql/asyncpg.py),
    # except on a read connection (``begin`` false), where a statement needs no transaction of its own.
    async with adapted._execute_mutex:
        if begin and adapted._transaction is None:
            await adapted._start_transaction()  # raises the adapter's DBAPI error itself
        try:
            prepared, attrs = await adapted._prepare(sql, dialect._invalidate_schema_cache_asof)
            return await prepared.fetch(*args), attrs
        except Exception as error:
            adapted._handle_exception(error)  # raises it as the adapter's DBAPI error class
            raise  # pragma: no cover - _handle_exception always raises


async def _sqlite_fetch(adapted: Any, dialect: Any, sql: str, args: tuple[Any, ...], begin: bool) -> tuple[Any, Any]:
    # On the loop's thread (module docstring); the mutex keeps SQLAlchemy's own statements on this
    # connection (which run in aiosqlite's thread) from running at the same time.
    async with adapted._execute_mutex:
        return sqlite_connection(adapted).execute(sql, args).fetchall(), None


def sqlite_connection(adapted: Any) -> Any:
    """The ``sqlite3.Connection`` under SQLAlchemy's aiosqlite adapter (aiosqlite's ``_conn``; it raises
    ``ValueError`` once the connection is closed, turned into sqlite3's ``OperationalError`` here as
    SQLAlchemy's adapter does)."""
    try:
        return adapted.driver_connection._conn
    except ValueError as error:
        import sqlite3

        raise sqlite3.OperationalError(str(error)) from error


async def _run(conn: AsyncConnection, form: _Compiled, args: tuple[Any, ...], fetch: Any) -> tuple[Any, Any]:
    sync = conn.sync_connection
    if sync is None or sync.closed or sync.invalidated:
        fairy = await conn.get_raw_connection()  # raises as SQLAlchemy would
    else:
        fairy = sync.connection
    dialect = conn.dialect
    adapted = fairy.dbapi_connection
    events = sync is not None and (sync._has_events or sync.engine._has_events)
    begin = sync is None or not sync.get_execution_options().get(STATEMENT_READS, False)
    context = _Execution(form.sql)
    if events:
        sync.dispatch.before_cursor_execute(sync, None, form.sql, args, context, False)
    try:
        result = await fetch(adapted, dialect, form.sql, args, begin)
    except dialect.loaded_dbapi.Error as error:
        disconnect = dialect.is_disconnect(error, adapted, None)
        wrapped = sa_exc.DBAPIError.instance(
            form.sql, args, error, dialect.loaded_dbapi.Error, dialect=dialect, connection_invalidated=disconnect,
        )
        raised = _handle_error(sync, dialect, error, wrapped, form.sql, args, context, disconnect)
        if disconnect:
            await conn.invalidate(error)
        raise raised from error
    if events:
        sync.dispatch.after_cursor_execute(sync, None, form.sql, args, context, False)
    return result


def _handle_error(sync: Any, dialect: Any, error: Exception, wrapped: Exception, sql: str, args: tuple[Any, ...],
                  context: _Execution, disconnect: bool) -> BaseException:
    """The dialect's ``handle_error`` listeners, as ``Connection._handle_dbapi_exception`` calls them (a
    listener may return another exception to raise instead, or raise one)."""
    listeners = dialect.dispatch.handle_error
    if not listeners:
        return wrapped
    from sqlalchemy.engine.base import ExceptionContextImpl

    ctx = ExceptionContextImpl(error, wrapped, sync.engine, dialect, sync, None, sql, args, context,  # type: ignore[arg-type]
                               disconnect, False, False)
    raised: BaseException = wrapped
    for fn in listeners:
        try:
            chained = fn(ctx)
        except Exception as exc:  # noqa: BLE001 - a listener that raises replaces the error, as in SQLAlchemy
            return exc
        if chained is not None:
            ctx.chained_exception = raised = chained
    return raised
