"""The store contract every engine implements, and what engines share: record encoding and
the write-behind core with group commit.

The broker never awaits the store on its hot path: it queues operations with plain method
calls and uses ``await store.sync()`` as a durability barrier before it confirms anything.
Queued operations collect in a ``Batch`` that coalesces them (an enqueue acked before its
commit never reaches the disk); one committer task writes each batch in one transaction and
wakes every ``sync()`` that waited on it.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import trio

log = logging.getLogger(__name__)


class StoreError(Exception):
    """A commit failed (disk full, I/O error, store closed); the waiter decides what to do."""


@dataclass
class Snapshot:
    """Everything durable, as loaded by ``Store.open()`` for recovery."""

    exchanges: list[tuple[str, str, dict]] = field(default_factory=list)
    queues: list[tuple[str, str, dict]] = field(default_factory=list)
    # (vhost, source, dest_kind 'queue'|'exchange', dest, routing_key, arguments)
    bindings: list[tuple[str, str, str, str, str, dict]] = field(default_factory=list)
    # (vhost, queue) -> [(seq, message bytes)] in seq order; a message queued in several
    # queues is one bytes object shared by every list.
    messages: dict[tuple[str, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    retained: dict[str, bytes] = field(default_factory=dict)
    sessions: dict[str, bytes] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    kv: dict[str, bytes] = field(default_factory=dict)


def pack(record: Any) -> bytes:
    """Encode a caller's record now, so later mutation of the caller's dict cannot leak in."""
    return msgpack.packb(record, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack_arguments(arguments: dict) -> bytes:
    """Encode binding arguments canonically: a binding's identity must not depend on key order."""
    return pack(_canonical(arguments))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: repr(item[0]))
        return {key: _canonical(inner) for key, inner in items}
    if isinstance(value, list | tuple):
        return [_canonical(inner) for inner in value]
    return value


class Store(abc.ABC):
    """A durable store of broker state with write-behind operations and a sync barrier."""

    stats: dict[str, Any]
    #: called with each commit's duration in seconds (the /metrics histogram)
    on_commit: Callable[[float], None] | None = None

    @abc.abstractmethod
    async def open(self) -> Snapshot:
        """Create the schema if needed and load everything for recovery; start no task."""

    @abc.abstractmethod
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued operations until cancelled, then commit what is still pending."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit what is pending and release the storage."""

    @abc.abstractmethod
    async def sync(self, mark: object = None) -> None:
        """Return once every operation queued before the call (or, given a ``mark()``,
        before that mark) is durable; raise StoreError if its commit failed."""

    def mark(self) -> object:
        """A token for the operations queued so far.  ``sync(mark)`` later waits for those
        alone, not for what was queued since (another connection's acks, say), which
        would cost a waiter a whole further commit."""
        return None

    @abc.abstractmethod
    def put_exchange(self, vhost: str, name: str, record: dict) -> None: ...

    @abc.abstractmethod
    def delete_exchange(self, vhost: str, name: str) -> None:
        """Delete the exchange and every binding that has it as source or destination."""

    @abc.abstractmethod
    def put_queue(self, vhost: str, name: str, record: dict) -> None: ...

    @abc.abstractmethod
    def delete_queue(self, vhost: str, name: str) -> None:
        """Delete the queue, its messages and every binding to it."""

    @abc.abstractmethod
    def put_binding(
        self,
        vhost: str,
        source: str,
        dest_kind: str,
        dest: str,
        routing_key: str,
        arguments: dict,
    ) -> None: ...

    @abc.abstractmethod
    def delete_binding(
        self,
        vhost: str,
        source: str,
        dest_kind: str,
        dest: str,
        routing_key: str,
        arguments: dict,
    ) -> None: ...

    @abc.abstractmethod
    def enqueue(self, vhost: str, queue: str, seq: int, message_id: int, message: bytes) -> None:
        """Add a message at ``seq`` (increasing per queue, never reused while present).

        A ``message_id`` is unique within one run (one ``open()``); the same id enqueued in
        several queues is stored once and dropped when its last queue entry goes.
        """

    @abc.abstractmethod
    def dequeue(self, vhost: str, queue: str, seq: int) -> None: ...

    @abc.abstractmethod
    def purge(self, vhost: str, queue: str) -> None: ...

    @abc.abstractmethod
    def set_retained(self, topic: str, message: bytes | None) -> None:
        """Set the retained message of a topic; None clears it."""

    @abc.abstractmethod
    def put_session(self, key: str, blob: bytes | None) -> None: ...

    @abc.abstractmethod
    def put_user(self, name: str, record: dict | None) -> None: ...

    @abc.abstractmethod
    def put_kv(self, key: str, value: bytes | None) -> None: ...


class Batch:
    """Operations queued since the last commit, reduced to their net effect.

    Queue entries are kept apart from the ordered log of metadata changes so the hot path is
    a couple of dict operations and the engine can write entries with one statement each.
    An engine applies a batch in this order, which preserves every caller-visible outcome:
    new message bodies, then ``log`` in call order (deleting a queue or purging it drops the
    entries this batch had added to it), then ``deletes``, then ``inserts``, then the
    last-value maps.
    """

    __slots__ = (
        "log",
        "messages",
        "inserts",
        "deletes",
        "retained",
        "sessions",
        "users",
        "kv",
        "done",
        "error",
    )

    def __init__(self) -> None:
        # ("put_exchange"|"delete_exchange"|"put_queue"|"delete_queue"|"purge"|"put_binding"|
        #  "delete_binding", *params); records and arguments already packed.
        self.log: list[tuple] = []
        # message_id -> [body, number of surviving inserts of this batch that reference it]
        self.messages: dict[int, list] = {}
        # (vhost, queue) -> {seq: message_id}
        self.inserts: dict[tuple[str, str], dict[int, int]] = {}
        # (vhost, queue, seq) of entries committed earlier
        self.deletes: list[tuple[str, str, int]] = []
        self.retained: dict[str, bytes | None] = {}
        self.sessions: dict[str, bytes | None] = {}
        self.users: dict[str, bytes | None] = {}
        self.kv: dict[str, bytes | None] = {}
        self.done = trio.Event()
        self.error: BaseException | None = None

    def __bool__(self) -> bool:
        return bool(
            self.log
            or self.messages
            or self.deletes
            or self.retained
            or self.sessions
            or self.users
            or self.kv
        )

    def enqueue(self, vhost: str, queue: str, seq: int, message_id: int, message: bytes) -> None:
        held = self.messages.get(message_id)
        if held is None:
            self.messages[message_id] = [message, 1]
        else:
            held[1] += 1
        entries = self.inserts.get((vhost, queue))
        if entries is None:
            entries = self.inserts[(vhost, queue)] = {}
        replaced = entries.get(seq)
        if replaced is not None:
            self.messages[replaced][1] -= 1
        entries[seq] = message_id

    def dequeue(self, vhost: str, queue: str, seq: int) -> None:
        entries = self.inserts.get((vhost, queue))
        if entries is not None:
            message_id = entries.pop(seq, None)
            if message_id is not None:
                self.messages[message_id][1] -= 1
                return
        self.deletes.append((vhost, queue, seq))

    def drop_entries(self, vhost: str, queue: str) -> None:
        """Forget the entries this batch added to a queue that is being purged or deleted."""
        entries = self.inserts.pop((vhost, queue), None)
        if entries:
            for message_id in entries.values():
                self.messages[message_id][1] -= 1

    def new_messages(self) -> list[tuple[int, int, bytes]]:
        """(message_id, references added, body) of every message some surviving insert uses."""
        return [(mid, refs, body) for mid, (body, refs) in self.messages.items() if refs > 0]


#: the mark taken when nothing was pending: everything queued before it is durable
DURABLE = object()


class WriteBehindStore(Store):
    """Queues operations into a ``Batch`` and group-commits batches through an engine.

    Engines implement ``_load``, ``_commit`` and ``_release``. The committer (``run``) wakes
    on the first operation of a batch, waits up to ``flush_delay`` for a ``sync()`` to ask
    for it, and commits; operations queued during a commit go into the next batch, so one
    commit serves every waiter that arrived while the previous one was on disk. Without a
    running committer, ``sync()`` commits inline, which keeps tools and tests simple.
    """

    def __init__(self, *, flush_delay: float = 0.05, shutdown_timeout: float = 10.0) -> None:
        self.flush_delay = flush_delay
        self.shutdown_timeout = shutdown_timeout
        self.stats = {
            "commits": 0,
            "ops": 0,
            "errors": 0,
            "last_batch_ops": 0,
            "last_commit_seconds": 0.0,
            "max_commit_seconds": 0.0,
            "total_commit_seconds": 0.0,
        }
        self._batch = Batch()
        self._inflight: Batch | None = None
        self._dirty = False
        self._dirty_event = trio.Event()
        self._kick = trio.Event()
        self._lock = trio.Lock()
        self._running = False
        self._closed = True

    @abc.abstractmethod
    async def _load(self) -> Snapshot:
        """Open the storage, create the schema if needed and read everything."""

    @abc.abstractmethod
    async def _commit(self, batch: Batch) -> int:
        """Write the batch atomically and durably; return the number of rows written."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Release the storage after the final commit."""

    async def open(self) -> Snapshot:
        if not self._closed:
            raise RuntimeError("the store is already open")
        await self._commit_pending()  # fails whatever was queued while closed
        snapshot = await self._load()
        self._closed = False
        return snapshot

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError("the committer is already running")
        self._running = True
        task_status.started()
        try:
            while True:
                await self._dirty_event.wait()
                with trio.move_on_after(self.flush_delay):
                    await self._kick.wait()
                await self._commit_pending()
        finally:
            self._running = False
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.shutdown_timeout
                await self._commit_pending()

    async def close(self) -> None:
        if self._closed:
            return
        with trio.CancelScope(shield=True):
            await self._commit_pending()
            self._closed = True
            await self._release()

    def mark(self) -> object:
        if self._batch:
            return self._batch
        return self._inflight or DURABLE

    async def sync(self, mark: object = None) -> None:
        if mark is DURABLE:
            return
        batch = self._batch
        if isinstance(mark, Batch) and mark is not batch:
            # the marked operations went into a commit that is running or has finished
            await mark.done.wait()
            if mark.error is not None:
                raise StoreError(f"commit failed: {mark.error!r}") from mark.error
            return
        if batch:
            if self._closed:
                raise StoreError("the store is closed")
            if self._running:
                self._kick.set()
            else:
                await self._commit_pending()
        else:
            inflight = self._inflight
            if inflight is None:
                return
            batch = inflight
        await batch.done.wait()
        if batch.error is not None:
            raise StoreError(f"commit failed: {batch.error!r}") from batch.error

    async def _commit_pending(self) -> None:
        async with self._lock:
            batch = self._batch
            if not batch:
                return
            self._batch = Batch()
            self._dirty = False
            self._dirty_event = trio.Event()
            self._kick = trio.Event()
            if self._closed:
                batch.error = StoreError("the store is closed")
                batch.done.set()
                return
            self._inflight = batch
            started = time.perf_counter()
            try:
                # a commit in a worker thread cannot be abandoned; shielding keeps a cancel
                # from failing (and dropping) a batch whose commit has not yet started
                with trio.CancelScope(shield=True):
                    rows = await self._commit(batch)
            except BaseException as exc:
                batch.error = exc
                self.stats["errors"] += 1
                log.error("store commit failed: %r", exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._account(rows, time.perf_counter() - started)
            finally:
                self._inflight = None
                batch.done.set()

    def _account(self, rows: int, seconds: float) -> None:
        stats = self.stats
        stats["commits"] += 1
        stats["ops"] += rows
        stats["last_batch_ops"] = rows
        stats["last_commit_seconds"] = seconds
        stats["total_commit_seconds"] += seconds
        stats["max_commit_seconds"] = max(stats["max_commit_seconds"], seconds)
        if self.on_commit is not None:
            self.on_commit(seconds)

    def _touch(self) -> None:
        self._dirty = True
        self._dirty_event.set()

    def put_exchange(self, vhost: str, name: str, record: dict) -> None:
        self._batch.log.append(("put_exchange", vhost, name, pack(record)))
        self._touch()

    def delete_exchange(self, vhost: str, name: str) -> None:
        self._batch.log.append(("delete_exchange", vhost, name))
        self._touch()

    def put_queue(self, vhost: str, name: str, record: dict) -> None:
        self._batch.log.append(("put_queue", vhost, name, pack(record)))
        self._touch()

    def delete_queue(self, vhost: str, name: str) -> None:
        batch = self._batch
        batch.drop_entries(vhost, name)
        batch.log.append(("delete_queue", vhost, name))
        self._touch()

    def put_binding(
        self,
        vhost: str,
        source: str,
        dest_kind: str,
        dest: str,
        routing_key: str,
        arguments: dict,
    ) -> None:
        key = (vhost, source, dest_kind, dest, routing_key, pack_arguments(arguments))
        self._batch.log.append(("put_binding", *key))
        self._touch()

    def delete_binding(
        self,
        vhost: str,
        source: str,
        dest_kind: str,
        dest: str,
        routing_key: str,
        arguments: dict,
    ) -> None:
        key = (vhost, source, dest_kind, dest, routing_key, pack_arguments(arguments))
        self._batch.log.append(("delete_binding", *key))
        self._touch()

    def enqueue(self, vhost: str, queue: str, seq: int, message_id: int, message: bytes) -> None:
        self._batch.enqueue(vhost, queue, seq, message_id, message)
        if not self._dirty:
            self._touch()

    def dequeue(self, vhost: str, queue: str, seq: int) -> None:
        self._batch.dequeue(vhost, queue, seq)
        if not self._dirty:
            self._touch()

    def purge(self, vhost: str, queue: str) -> None:
        batch = self._batch
        batch.drop_entries(vhost, queue)
        batch.log.append(("purge", vhost, queue))
        self._touch()

    def set_retained(self, topic: str, message: bytes | None) -> None:
        self._batch.retained[topic] = message
        self._touch()

    def put_session(self, key: str, blob: bytes | None) -> None:
        self._batch.sessions[key] = blob
        self._touch()

    def put_user(self, name: str, record: dict | None) -> None:
        self._batch.users[name] = None if record is None else pack(record)
        self._touch()

    def put_kv(self, key: str, value: bytes | None) -> None:
        self._batch.kv[key] = value
        self._touch()
