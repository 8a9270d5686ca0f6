"""jingtan_api.futures: settle_from (the done-callback chaining under context.mapped and compiled execution)
and run_to_completion (cleanups that a cancellation must not cut short)."""

import asyncio

import pytest

from jingtan_api.futures import run_to_completion, settle_from


async def _settled(source_value=None, *, ok=None, err=None, raise_=None, cancel=False):
    loop = asyncio.get_running_loop()
    source, out = loop.create_future(), loop.create_future()
    settle_from(source, out, ok, err)
    if cancel:
        source.cancel()
    elif raise_ is not None:
        source.set_exception(raise_)
    else:
        source.set_result(source_value)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return out


async def test_value_through_ok_and_a_followed_future():
    assert (await _settled(2, ok=lambda v: v * 10)).result() == 20
    inner = asyncio.get_running_loop().create_future()
    out = await _settled(1, ok=lambda v: inner)
    assert not out.done()  # waits for the future ok returned
    inner.set_result("later")
    assert await out == "later"


async def test_errors_go_to_err_or_fail_the_future():
    out = await _settled(raise_=ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        out.result()
    assert (await _settled(raise_=ValueError("bad"), err=lambda e: f"handled {e}")).result() == "handled bad"
    assert (await _settled(1, ok=lambda v: 1 / 0, err=lambda e: type(e).__name__)).result() == "ZeroDivisionError"

    def refuse(error: Exception) -> None:
        raise TypeError("non-null") from error

    with pytest.raises(TypeError, match="non-null"):
        (await _settled(raise_=KeyError("k"), err=refuse)).result()


async def test_cancelled_source_cancels_and_a_settled_out_is_left_alone():
    assert (await _settled(cancel=True)).cancelled()
    loop = asyncio.get_running_loop()
    source, out = loop.create_future(), loop.create_future()
    settle_from(source, out, lambda v: v)
    out.set_result("first")
    source.set_result("second")
    await asyncio.sleep(0)
    assert out.result() == "first"


async def test_run_to_completion_finishes_through_repeated_cancellation_then_reraises_it():
    gate, finished = asyncio.Event(), []

    async def cleanup():
        await gate.wait()
        finished.append(True)
        return "done"

    waiter = asyncio.ensure_future(run_to_completion(cleanup()))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    waiter.cancel()  # a second stop request while the cleanup still runs
    await asyncio.sleep(0.01)
    assert not waiter.done() and not finished
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert finished == [True]
    # Not cancelled: the cleanup's result, or its own error as it is.
    assert await run_to_completion(asyncio.sleep(0, "value")) == "value"

    async def failing():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await run_to_completion(failing())
