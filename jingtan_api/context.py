"""The per-request GraphQL context (``info.context``); the app-wide dependencies are ``Services``."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from strawberry.dataloader import DataLoader

from jingtan_api.auth.permissions import Viewer
from jingtan_api.futures import settle_from
from jingtan_api.limits import RequestLimits
from jingtan_api.services import Services

def mapped(source: "asyncio.Future[Any]", fn: Callable[[Any], Any]) -> Any:
    """``fn(value of source)``: at once when ``source`` (a DataLoader's future) already holds its value —
    a key loaded earlier in the request, or prefetched (:meth:`Context.prefetch`) — else a future of it
    (``source``'s exception, or ``fn``'s, fails it), made with a done-callback instead of a coroutine.
    A synchronous resolver can return either: graphql-core awaits the future like any awaitable, and
    compiled execution chains it without a task per field (jingtan_api.graphql.compiled)."""
    if source.done() and not source.cancelled() and source.exception() is None:
        return fn(source.result())
    out: asyncio.Future[Any] = source.get_loop().create_future()
    settle_from(source, out, fn)
    return out


class Context:
    """``info.context`` of every resolver."""

    def __init__(self, services: Services, request: Request | None, viewer: Viewer, request_id: str) -> None:
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.request = request
        self.viewer = viewer
        self.request_id = request_id
        self._loaders: dict[Hashable, DataLoader] = {}
        self._now: datetime | None = None
        # Set by the HTTP view when the request carries one operation (not a batch); only then may a
        # query operation run all its reads in one shared read transaction (see ``read``).
        self.single_operation = False
        self.limits: RequestLimits | None = None  # set by the HTTP view (app.py)
        self._share_reads = False
        self._shared: AsyncConnection | None = None
        self._shared_cm: contextlib.AbstractAsyncContextManager[AsyncConnection] | None = None
        self._shared_lock: asyncio.Lock | None = None

    def now(self) -> datetime:
        """One clock reading per request, so every resolver sees the same 'now'."""
        if self._now is None:
            self._now = self.services.clock()
        return self._now

    def reset_request_caches(self) -> None:
        """Forget the DataLoaders and the clock reading: a WebSocket connection keeps one context for its
        lifetime, and each value a subscription pushes is resolved as if it were a new request."""
        self._loaders.clear()
        self._now = None

    def loader(self, name: Hashable, batch: Callable[[Sequence[Any]], Awaitable[dict[Any, Any]]]) -> DataLoader:
        """A per-request DataLoader; ``batch(keys)`` returns {key: value} (missing keys load as None)."""
        loader = self._loaders.get(name)
        if loader is None:

            async def load_fn(keys: list[Any]) -> list[Any]:
                found = await batch(keys)
                return [found.get(k) for k in keys]

            loader = self._loaders[name] = DataLoader(load_fn=load_fn)
        return loader

    async def read(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(conn, ...)`` in a read transaction.

        During a query operation (``begin_shared_reads``) every read of the request uses ONE read
        transaction, taken at the first read and released when the operation ends: one pool checkout,
        BEGIN and COMMIT per request instead of one per DataLoader batch (on SQLite each of those is a
        round trip to aiosqlite's thread). (On SQLite that is one snapshot; PostgreSQL runs at READ
        COMMITTED, where each statement sees what was committed when it started.) Reads of one
        request are then serialised, which is what they mostly are anyway (viewer -> account -> page).
        Mutations and batches keep one transaction per read, so a read after a write sees the write."""
        if not self._share_reads:
            async with self.db.read() as conn:
                return await fn(conn, *args, **kwargs)
        if self._shared_lock is None:
            self._shared_lock = asyncio.Lock()
        async with self._shared_lock:
            if self._shared is None:
                cm = self.db.read()
                self._shared = await cm.__aenter__()
                self._shared_cm = cm
            try:
                return await fn(self._shared, *args, **kwargs)
            except (DBAPIError, asyncio.CancelledError) as exc:
                # The database refused a statement (on PostgreSQL the transaction is now aborted) or
                # the request was cancelled mid-statement: roll this transaction back; later reads of
                # the request start a fresh one.
                await self._release_shared(exc)
                raise

    async def prefetch(self, loader: DataLoader, keys: Sequence[Any]) -> None:
        """Load ``keys`` into ``loader`` now, in one batch: a page's resolver calls it with its rows' keys
        when the selection reads them (e.g. the catalogue's merchants), so each item's field finds its
        value loaded and is answered synchronously instead of through one future per item. A failed load
        is not raised here: the loader keeps it, and each field that reads the key fails with it, exactly
        as without the prefetch."""
        pending = [loader.load(key) for key in dict.fromkeys(keys)]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def begin_shared_reads(self) -> None:
        self._share_reads = True

    async def end_shared_reads(self) -> None:
        self._share_reads = False
        if self._shared_lock is None:
            await self._release_shared()
            return
        async with self._shared_lock:
            await self._release_shared()

    async def _release_shared(self, exc: BaseException | None = None) -> None:
        cm, self._shared_cm, self._shared = self._shared_cm, None, None
        if cm is None:
            return
        if exc is None:
            await cm.__aexit__(None, None, None)
            return
        with contextlib.suppress(Exception):  # the original error is what the caller must see
            await cm.__aexit__(type(exc), exc, exc.__traceback__)
