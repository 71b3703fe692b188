"""SqliteStore's journal on disk: torn tails, compaction, metadata replay, failed writes
and stores written before the journal."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.store import SqliteStore, StoreError, journal_file, sqlite

from .conftest import bad_refcounts, journal_state


def journal_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("journal."))


program = st.lists(
    st.tuples(st.sampled_from(["enqueue", "ack", "fanout"]), st.integers(1, 300)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(program, min_size=1, max_size=6), st.data())
async def test_reopening_after_a_torn_last_write_recovers_the_last_whole_commit(
    commits: list[list[tuple[str, int]]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        store = SqliteStore(directory)
        await store.open()
        live: dict[str, dict[int, bytes]] = {"a": {}, "b": {}}
        seq = 0
        ends, states = [], []
        for ops in commits:
            for kind, size in ops:
                if kind == "ack" and live["a"]:
                    first = min(live["a"])
                    store.dequeue("/", "a", first)
                    del live["a"][first]
                    continue
                seq += 1
                body = bytes([seq % 256]) * size
                for queue in ("a", "b") if kind == "fanout" else ("a",):
                    store.enqueue("/", queue, seq, seq, body)
                    live[queue][seq] = body
            await store.sync()
            assert store._journal is not None
            ends.append(store._journal.size)
            states.append({("/", q): sorted(e.items()) for q, e in live.items() if e})
        path = store._journal.path
        await store.close()

        cut = data.draw(st.integers(0, path.stat().st_size), label="cut")
        os.truncate(path, cut)
        whole = sum(end <= cut for end in ends)
        store = SqliteStore(directory)
        snapshot = await store.open()
        assert snapshot.messages == (states[whole - 1] if whole else {})
        # what comes next follows the last whole frame and is read back too
        store.enqueue("/", "after", 1, 1, b"after the cut")
        await store.close()
        store = SqliteStore(directory)
        snapshot = await store.open()
        assert snapshot.messages.pop(("/", "after")) == [(1, b"after the cut")]
        assert snapshot.messages == (states[whole - 1] if whole else {})
        await store.close()


async def test_compaction_bounds_the_journal_of_a_queue_always_produced_and_consumed(
    tmp_path: Path,
) -> None:
    limit = 16 << 10
    store = SqliteStore(tmp_path, compact_bytes=limit)
    await store.open()
    body = b"x" * 200
    largest = 0
    for seq in range(1, 3001):
        store.enqueue("/", "q", seq, seq, body)
        if seq > 20:
            store.dequeue("/", "q", seq - 20)
        if seq % 10 == 0:
            await store.sync()
            assert store._journal is not None
            largest = max(largest, store._journal.size)
    assert largest < 2 * limit
    assert store._generation > 10
    assert journal_files(tmp_path) == [f"journal.{store._generation}"]
    await store.close()
    store = SqliteStore(tmp_path, compact_bytes=limit)
    snapshot = await store.open()
    assert snapshot.messages == {("/", "q"): [(seq, body) for seq in range(2981, 3001)]}
    assert bad_refcounts(journal_state(tmp_path)) == 0
    await store.close()


async def test_compaction_leaves_a_backlog_alone_until_the_journal_is_twice_it(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path, compact_bytes=1 << 10)
    await store.open()
    for seq in range(1, 201):
        store.enqueue("/", "q", seq, seq, b"y" * 1000)
        await store.sync()
    assert store._generation == 0  # the journal is the backlog: nothing to win
    for seq in range(1, 151):
        store.dequeue("/", "q", seq)
        await store.sync()
        assert store._journal is not None
        assert store._journal.size < 2 * store.queue_state.live_bytes + 1000
    assert store._generation >= 1
    await store.close()


async def test_metadata_sqlite_missed_is_replayed_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()

    def disk_full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(sqlite, "_apply_metadata", disk_full)
        store.put_queue("/", "q", {"durable": True})
        store.set_retained("t", b"kept")
        await store.sync()  # durable in the journal: the waiter is not failed
    store.put_kv("k", b"v")
    await store.sync()  # SQLite takes the missed record with this one
    store._release_sync()  # a crash: no final commit
    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    assert snapshot.queues == [("/", "q", {"durable": True})]
    assert (snapshot.retained, snapshot.kv) == ({"t": b"kept"}, {"k": b"v"})
    await store.close()


async def test_a_crash_between_the_journal_and_sqlite_loses_no_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    monkeypatch.setattr(store, "_apply_pending", lambda: None)
    store.put_exchange("/", "x", {"type": "topic"})
    store.put_binding("/", "x", "queue", "q", "#", {})
    store.enqueue("/", "q", 1, 1, b"m")
    await store.sync()
    store._release_sync()  # a crash: no final commit
    reader = SqliteStore(tmp_path)
    snapshot = await reader.open()
    assert snapshot.exchanges == [("/", "x", {"type": "topic"})]
    assert snapshot.bindings == [("/", "x", "queue", "q", "#", {})]
    assert snapshot.messages == {("/", "q"): [(1, b"m")]}
    await reader.close()


async def test_a_failed_write_is_cut_off_and_the_next_commit_follows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    store.enqueue("/", "q", 1, 1, b"before")
    await store.sync()
    real = os.pwritev

    def half_then_full(fd: int, buffers: list[bytes], offset: int) -> int:
        whole = b"".join(buffers)
        os.pwrite(fd, whole[: len(whole) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(journal_file.os, "pwritev", half_then_full)
        store.enqueue("/", "q", 2, 2, b"lost")
        with pytest.raises(StoreError):
            await store.sync()
    assert os.pwritev is real
    store.enqueue("/", "q", 3, 3, b"after")
    await store.sync()
    await store.close()
    store = SqliteStore(tmp_path)
    assert (await store.open()).messages == {("/", "q"): [(1, b"before"), (3, b"after")]}
    await store.close()


async def test_journals_of_other_generations_are_removed_at_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    store.enqueue("/", "q", 1, 1, b"m")
    await store.close()
    (tmp_path / "journal.7").write_bytes(b"an unfinished compaction")
    store = SqliteStore(tmp_path)
    assert (await store.open()).messages == {("/", "q"): [(1, b"m")]}
    assert journal_files(tmp_path) == ["journal.0"]
    await store.close()


LEGACY_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE messages (
    epoch INTEGER, mid INTEGER, refs INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (epoch, mid)) WITHOUT ROWID;
CREATE TABLE entries (
    vhost TEXT, queue TEXT, seq INTEGER, epoch INTEGER NOT NULL, mid INTEGER NOT NULL,
    PRIMARY KEY (vhost, queue, seq)) WITHOUT ROWID;
INSERT INTO meta VALUES ('epoch', 2);
INSERT INTO messages VALUES (1, 5, 2, X'736861726564'), (2, 5, 1, X'6c61746572');
INSERT INTO entries VALUES ('/', 'a', 1, 1, 5), ('/', 'b', 1, 1, 5), ('/', 'a', 2, 2, 5);
"""


async def test_entries_of_a_store_from_before_the_journal_move_into_it(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "broker.db")
    db.executescript(LEGACY_SCHEMA)
    db.close()
    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    expected = {("/", "a"): [(1, b"shared"), (2, b"later")], ("/", "b"): [(1, b"shared")]}
    assert snapshot.messages == expected
    assert snapshot.messages[("/", "a")][0][1] is snapshot.messages[("/", "b")][0][1]
    store.dequeue("/", "a", 1)
    await store.close()
    db = sqlite3.connect(tmp_path / "broker.db")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert not tables & {"messages", "entries"}
    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    assert snapshot.messages == {("/", "a"): [(2, b"later")], ("/", "b"): [(1, b"shared")]}
    assert bad_refcounts(journal_state(tmp_path)) == 0
    await store.close()


async def test_one_process_owns_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LOCK_TIMEOUT", 0.2)
    owner = SqliteStore(tmp_path)
    await owner.open()
    with pytest.raises(StoreError, match="in use"):
        await SqliteStore(tmp_path).open()
    await owner.close()
    store = SqliteStore(tmp_path, shared=True)
    await store.open()
    assert not store.secondary  # nobody else has it: a shared opener owns it
    await store.close()


async def test_tools_change_users_beside_a_running_broker(tmp_path: Path) -> None:
    owner = SqliteStore(tmp_path)
    await owner.open()
    owner.enqueue("/", "q", 1, 1, b"queued")
    owner.put_user("alice", {"tags": []})
    await owner.sync()
    tool = SqliteStore(tmp_path, shared=True)
    snapshot = await tool.open()
    assert tool.secondary
    assert snapshot.messages == {("/", "q"): [(1, b"queued")]}
    assert snapshot.users == {"alice": {"tags": []}}
    tool.put_user("bob", {"tags": ["administrator"]})
    await tool.sync()
    tool.enqueue("/", "q", 2, 2, b"refused")
    with pytest.raises(StoreError):
        await tool.sync()
    await tool.close()
    owner.enqueue("/", "q", 2, 2, b"after")
    await owner.close()
    store = SqliteStore(tmp_path)
    snapshot = await store.open()
    assert set(snapshot.users) == {"alice", "bob"}
    assert snapshot.messages == {("/", "q"): [(1, b"queued"), (2, b"after")]}
    await store.close()
