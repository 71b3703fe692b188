"""The shared coalescing tick: every waiter wakes at the next tick, and it keeps ticking."""

from __future__ import annotations

import trio

from broker.ticker import Ticker


async def test_waiters_wake_together_at_the_next_tick(nursery: trio.Nursery) -> None:
    ticker = Ticker(0.001)
    nursery.start_soon(ticker.run)
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await ticker.wait()
        woken.append(n)

    with trio.fail_after(5):
        async with trio.open_nursery() as waiters:
            for n in range(3):
                waiters.start_soon(waiter, n)
    assert sorted(woken) == [0, 1, 2]
    with trio.fail_after(5):
        for _ in range(5):
            await ticker.wait()


async def test_sleeping_fallback_where_there_is_no_timerfd(
    nursery: trio.Nursery, monkeypatch
) -> None:
    monkeypatch.setattr("broker.ticker._timerfd_api", lambda: None)
    ticker = Ticker(0.001)
    nursery.start_soon(ticker.run)
    with trio.fail_after(5):
        for _ in range(3):
            await ticker.wait()
