"""Write-behind and group commit of SqliteStore: coalescing, sync semantics, failures."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from broker.store import SqliteStore, StoreError
from broker.store.base import Batch

from .conftest import journal_state


class GatedStore(SqliteStore):
    """Holds each commit in its worker thread until the test lets it through."""

    def __init__(self, data_dir: Path, **options: float) -> None:
        super().__init__(data_dir, **options)
        self.entered = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def _write(self, batch: Batch) -> int:
        self.entered.release()
        self.gate.acquire()
        return super()._write(batch)

    async def commit_started(self) -> None:
        await trio.to_thread.run_sync(self.entered.acquire)

    async def let_commit_finish(self) -> None:
        self.gate.release()


async def test_enqueue_then_dequeue_in_one_batch_never_reaches_disk(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    store.enqueue("/", "q", 1, 1, b"acked before commit")
    store.enqueue("/", "fan", 1, 2, b"shared")
    store.enqueue("/", "out", 1, 2, b"shared")
    store.dequeue("/", "q", 1)
    store.dequeue("/", "fan", 1)
    await store.sync()
    # one message and one entry: the cancelled pairs wrote nothing
    assert store.stats["last_batch_ops"] == 2
    state = journal_state(tmp_path)
    assert len(state.bodies) == 1
    assert state.queues == {("/", "out"): {1: next(iter(state.bodies))}}
    await store.close()


async def test_repeated_last_value_writes_keep_only_the_last(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    for value in (b"1", b"2", b"3"):
        store.set_retained("t", value)
        store.put_session("s", value)
    await store.sync()
    assert store.stats["last_batch_ops"] == 2
    await store.close()
    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    assert (snapshot.retained, snapshot.sessions) == ({"t": b"3"}, {"s": b"3"})
    await store.close()


async def test_sync_with_nothing_pending_returns_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    with trio.testing.assert_no_checkpoints():
        await store.sync()
    assert store.stats["commits"] == 0
    await store.close()


async def test_sync_waits_for_the_commit_that_holds_its_operations(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store = GatedStore(tmp_path)
    await store.open()
    await nursery.start(store.run)
    returned: list[str] = []
    four_returned = trio.Event()

    async def sync(name: str) -> None:
        await store.sync()
        returned.append(name)
        if len(returned) == 4:
            four_returned.set()

    store.put_kv("a", b"1")
    nursery.start_soon(sync, "queued a")
    await store.commit_started()
    nursery.start_soon(sync, "queued nothing since")  # waits for the running commit only
    await trio.testing.wait_all_tasks_blocked()
    store.put_kv("b", b"2")
    nursery.start_soon(sync, "queued b")
    nursery.start_soon(sync, "queued nothing, b pending")
    await trio.testing.wait_all_tasks_blocked()

    await store.let_commit_finish()
    await store.commit_started()
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(returned) == ["queued a", "queued nothing since"]
    assert store.stats["commits"] == 1

    await store.let_commit_finish()
    with trio.fail_after(10):
        await four_returned.wait()
    assert store.stats["commits"] == 2
    await store.close()


async def test_waiters_that_arrive_during_a_commit_share_the_next_one(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store = GatedStore(tmp_path)
    await store.open()
    await nursery.start(store.run)
    confirmed = 0
    all_confirmed = trio.Event()

    async def publish(seq: int) -> None:
        nonlocal confirmed
        store.enqueue("/", "q", seq, seq, b"x" * 64)
        await store.sync()
        confirmed += 1
        if confirmed == 50:
            all_confirmed.set()

    nursery.start_soon(publish, 0)
    await store.commit_started()
    for seq in range(1, 50):
        nursery.start_soon(publish, seq)
    await trio.testing.wait_all_tasks_blocked()
    await store.let_commit_finish()
    await store.commit_started()
    await store.let_commit_finish()
    with trio.fail_after(10):  # an event, not a busy loop: that would starve the commit
        await all_confirmed.wait()
    assert store.stats["commits"] == 2
    assert store.stats["last_batch_ops"] == 49 * 2  # a message row and an entry row each
    await store.close()


@pytest.mark.parametrize("committer", [False, True])
async def test_failed_commit_raises_store_error_in_every_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, committer: bool
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    healthy = store._write

    def disk_full(batch: Batch) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_write", disk_full)
    errors: list[BaseException] = []
    three_failed = trio.Event()

    async def sync() -> None:
        try:
            await store.sync()
        except StoreError as exc:
            errors.append(exc)
            if len(errors) == 3:
                three_failed.set()

    async with trio.open_nursery() as nursery:
        if committer:
            await nursery.start(store.run)
        store.enqueue("/", "q", 1, 1, b"lost")
        for _ in range(3):
            nursery.start_soon(sync)
        with trio.fail_after(10):
            await three_failed.wait()
        assert all(isinstance(exc.__cause__, sqlite3.OperationalError) for exc in errors)
        assert store.stats["errors"] == 1

        monkeypatch.setattr(store, "_write", healthy)
        store.enqueue("/", "q", 2, 2, b"kept")
        await store.sync()
        nursery.cancel_scope.cancel()
    await store.close()
    store = SqliteStore(tmp_path)
    assert (await store.open()).messages == {("/", "q"): [(2, b"kept")]}
    await store.close()


async def test_cancelling_the_committer_commits_what_is_pending(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, flush_delay=3600)
    await store.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        store.enqueue("/", "q", 1, 1, b"pending at shutdown")
        await trio.testing.wait_all_tasks_blocked()
        assert store.stats["commits"] == 0
        nursery.cancel_scope.cancel()
    assert store.stats["commits"] == 1
    await store.close()
    reader = SqliteStore(tmp_path)
    assert (await reader.open()).messages == {("/", "q"): [(1, b"pending at shutdown")]}
    await reader.close()


async def test_committer_writes_behind_without_sync(tmp_path: Path, nursery: trio.Nursery) -> None:
    store = SqliteStore(tmp_path, flush_delay=0.01)
    await store.open()
    await nursery.start(store.run)
    store.dequeue("/", "q", 1)
    with trio.fail_after(10):
        while store.stats["commits"] == 0:
            await trio.sleep(0.01)
    await store.close()


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    store.put_queue("/", "q", {"durable": True})
    await store.close()
    store = SqliteStore(tmp_path)
    assert (await store.open()).queues == [("/", "q", {"durable": True})]
    await store.close()


async def test_sync_to_a_mark_waits_for_its_operations_alone(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    store = GatedStore(tmp_path)
    await store.open()
    await nursery.start(store.run)
    synced: list[str] = []
    first_synced = trio.Event()

    async def sync(name: str, mark: object) -> None:
        await store.sync(mark)
        synced.append(name)
        if name == "first":
            first_synced.set()

    store.enqueue("/", "q", 1, 1, b"first")
    first = store.mark()
    nursery.start_soon(sync, "everything", None)
    await store.commit_started()
    # queued while the first commit is on disk: only a mark-less sync waits for it too
    store.enqueue("/", "q", 2, 2, b"second")
    nursery.start_soon(sync, "first", first)
    nursery.start_soon(sync, "second", store.mark())
    await trio.testing.wait_all_tasks_blocked()
    await store.let_commit_finish()
    with trio.fail_after(10):
        await first_synced.wait()
    await store.commit_started()
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(synced) == ["everything", "first"]
    await store.let_commit_finish()
    await store.close()
    assert sorted(synced) == ["everything", "first", "second"]


async def test_a_mark_with_nothing_pending_syncs_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    store.put_kv("k", b"v")
    await store.sync()
    mark = store.mark()
    store.put_kv("k", b"w")  # queued after the mark: not waited for
    with trio.testing.assert_no_checkpoints():
        await store.sync(mark)
    assert store.stats["commits"] == 1
    await store.close()


async def test_sync_to_the_mark_of_a_failed_commit_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()

    def disk_full(frame: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "_write", disk_full)
    store.enqueue("/", "q", 1, 1, b"lost")
    mark = store.mark()
    with pytest.raises(StoreError):
        await store.sync()
    with pytest.raises(StoreError):
        await store.sync(mark)
    await store.close()
