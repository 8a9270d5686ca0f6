"""Chaining asyncio futures with done-callbacks instead of coroutines (no task per step), and running a
cleanup to completion through cancellations.

Used by ``jingtan_api.context.mapped`` (a resolver's DataLoader future, transformed) and by compiled
execution (jingtan_api/graphql/compiled.py), which completes fields this way."""

import asyncio
from asyncio import Future
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def settle_from(
    source: "Future[Any]",
    out: "Future[Any]",
    ok: Callable[[Any], Any] | None = None,
    err: Callable[[Exception], Any] | None = None,
) -> None:
    """When ``source`` settles, settle ``out`` with ``ok(value)`` (the value itself without ``ok``; a
    future it returns is followed the same way). An exception of ``source``, of ``ok`` or of a followed
    future goes to ``err`` — its return value settles ``out``, what it raises fails it — or, without
    ``err``, fails ``out``. A cancelled ``source`` cancels ``out``; a settled ``out`` is left alone."""

    def fail(error: BaseException) -> None:
        if err is None or not isinstance(error, Exception):
            out.set_exception(error)
            return
        try:
            value = err(error)
        except Exception as raised:  # noqa: BLE001 - e.g. null propagation: settles the future
            out.set_exception(raised)
            return
        out.set_result(value)

    def done(fut: "Future[Any]") -> None:
        if out.done():
            return
        if fut.cancelled():
            out.cancel()
            return
        error = fut.exception()
        if error is not None:
            fail(error)
            return
        try:
            value = fut.result() if ok is None else ok(fut.result())
        except Exception as raised:  # noqa: BLE001 - handled as the source's own error would be
            fail(raised)
            return
        if isinstance(value, Future):
            settle_from(value, out, None, err)
        else:
            out.set_result(value)

    source.add_done_callback(done)


async def run_to_completion(coro: Awaitable[T]) -> T:
    """Run ``coro`` in a task of its own and wait for it even if the caller is cancelled meanwhile (once or
    more), then re-raise the cancellation: for what must not be cut short — a connection returned to the
    pool half-closed (as ``sqlalchemy.ext.asyncio``'s context managers do on exit), a job's lease left
    unreleased at a shutdown. ``coro``'s own error is raised as it is."""
    task = asyncio.ensure_future(coro)
    cancelled: BaseException | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as err:
            if task.done():
                raise
            cancelled = err
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result
