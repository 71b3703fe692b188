"""The guard around every protocol connection: peers' faults end it quietly, anything
else is logged, and cleanup runs in order however it ends."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing

from broker.guard import guarded_connection

log = logging.getLogger("test.guard")


def guard(calls: list[str], stream: trio.abc.Stream) -> AbstractAsyncContextManager[None]:
    return guarded_connection(
        log, "test", "peer", stream, lambda: calls.append("lost"), lambda: calls.append("closed")
    )


async def run(body_error: BaseException | None) -> list[str]:
    calls: list[str] = []
    stream, _ = trio.testing.memory_stream_pair()

    async def aclose() -> None:
        calls.append("aclose")

    stream.aclose = aclose  # type: ignore[method-assign]
    async with guard(calls, stream):
        calls.append("body")
        if body_error is not None:
            raise body_error
    return calls


async def test_a_peer_fault_ends_the_connection_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "test.guard")
    assert await run(trio.BrokenResourceError("reset")) == ["body", "lost", "aclose", "closed"]
    assert [r.getMessage() for r in caplog.records] == ["test connection dropped"]


async def test_any_other_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    assert await run(ValueError("bug")) == ["body", "lost", "aclose", "closed"]
    [record] = caplog.records
    assert record.getMessage() == "test connection failed" and record.exc_info is not None


async def test_cancellation_passes_through_after_cleanup() -> None:
    calls: list[str] = []
    stream, _ = trio.testing.memory_stream_pair()
    with trio.CancelScope() as scope:
        async with guard(calls, stream):
            scope.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled
    assert scope.cancelled_caught and calls == ["lost", "closed"]
