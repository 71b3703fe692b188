"""Random operation sequences give SqliteStore (batched, coalesced) the same recovered state
as MemoryStore (applied at once), wherever the commits and restarts fall."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.store import MemoryStore, Snapshot, SqliteStore, Store

from .conftest import bad_refcounts, journal_state

QUEUES = ["a", "b", "c"]

operation = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(QUEUES), st.integers(0, 4)),
    st.tuples(st.just("dequeue"), st.sampled_from(QUEUES), st.integers(0, 5)),
    st.tuples(st.just("requeue"), st.sampled_from(QUEUES), st.integers(0, 5)),
    st.tuples(st.just("purge"), st.sampled_from(QUEUES)),
    st.tuples(st.just("delete_queue"), st.sampled_from(QUEUES)),
    st.tuples(st.just("bind"), st.sampled_from(QUEUES), st.sampled_from(["k", "x"])),
    st.tuples(st.just("delete_exchange"), st.sampled_from(["k", "x"])),
    st.tuples(st.just("retain"), st.sampled_from(["t1", "t2"]), st.sampled_from([b"v", None])),
    st.tuples(st.just("sync")),
    st.tuples(st.just("restart")),
)


class Driver:
    """Applies one program to a store, choosing seqs and message ids the way a broker does."""

    def __init__(self) -> None:
        self.run = 0
        self.next_seq = dict.fromkeys(QUEUES, 1)
        self.live: dict[str, list[int]] = {queue: [] for queue in QUEUES}

    def apply(self, store: Store, op: tuple) -> None:
        kind, *args = op
        if kind == "enqueue":
            queue, message_id = args
            seq = self.next_seq[queue]
            self.next_seq[queue] += 1
            self.live[queue].append(seq)
            store.enqueue("/", queue, seq, message_id, b"run %d id %d" % (self.run, message_id))
        elif kind in ("dequeue", "requeue"):
            queue, index = args
            if self.live[queue]:
                seq = self.live[queue][index % len(self.live[queue])]
                store.dequeue("/", queue, seq)
                if kind == "requeue":
                    body = b"run %d requeued %d" % (self.run, seq)
                    store.enqueue("/", queue, seq, 100 + seq, body)
                else:
                    self.live[queue].remove(seq)
        elif kind in ("purge", "delete_queue"):
            getattr(store, kind)("/", args[0])
            self.live[args[0]] = []
            if kind == "delete_queue":
                self.next_seq[args[0]] = 1  # a queue declared again numbers from the start
        elif kind == "bind":
            store.put_binding("/", args[1], "queue", args[0], "#", {})
        elif kind == "delete_exchange":
            store.delete_exchange("/", args[0])
        elif kind == "retain":
            store.set_retained(*args)


def normalized(snapshot: Snapshot) -> Snapshot:
    snapshot.bindings.sort()
    return snapshot


async def replay(store: Store, program: list[tuple], snapshots: list[Snapshot]) -> None:
    driver = Driver()
    snapshots.append(normalized(await store.open()))
    for op in program:
        if op[0] == "sync":
            await store.sync()
        elif op[0] == "restart":
            await store.close()
            snapshots.append(normalized(await store.open()))
            driver.run += 1
        else:
            driver.apply(store, op)
    await store.close()
    snapshots.append(normalized(await store.open()))
    await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=60), st.sampled_from([None, 0]))
async def test_sqlite_recovers_what_memory_holds(
    program: list[tuple], compact_bytes: int | None
) -> None:
    """``compact_bytes=0`` compacts the journal whenever it is twice its live state."""
    expected: list[Snapshot] = []
    await replay(MemoryStore(), program, expected)
    with tempfile.TemporaryDirectory() as directory:
        actual: list[Snapshot] = []
        options = {} if compact_bytes is None else {"compact_bytes": compact_bytes}
        await replay(SqliteStore(directory, **options), program, actual)
        assert actual == expected
        assert bad_refcounts(journal_state(Path(directory))) == 0
