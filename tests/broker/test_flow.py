"""Publisher flow control: wait while a sink is backlogged, never on a slow one for long."""

from __future__ import annotations

import trio
import trio.testing

from broker.flow import SLOW_AFTER, FlowControl


async def test_wait_returns_at_once_without_backlog() -> None:
    flow = FlowControl()
    assert not flow.backlogged
    with trio.fail_after(1):
        await flow.wait()


async def test_publishers_wait_until_the_sink_drains(nursery: trio.Nursery) -> None:
    flow = FlowControl()
    sink = object()
    flow.backlog(sink)
    released = trio.Event()

    async def publisher() -> None:
        await flow.wait()
        released.set()

    nursery.start_soon(publisher)
    await trio.testing.wait_all_tasks_blocked()
    assert not released.is_set()
    flow.drained(sink)
    with trio.fail_after(1):
        await released.wait()
    assert not flow.backlogged


async def test_a_sink_that_does_not_drain_is_slow_and_not_waited_for_again() -> None:
    flow = FlowControl()
    sink = object()
    flow.backlog(sink)
    with trio.fail_after(SLOW_AFTER * 20):
        await flow.wait()
    flow.backlog(sink)
    assert not flow.backlogged
    flow.drained(sink)
    flow.backlog(sink)
    assert flow.backlogged


async def test_forgotten_sinks_release_waiters() -> None:
    flow = FlowControl()
    sink = object()
    flow.backlog(sink)
    flow.forget(sink)
    assert not flow.backlogged
