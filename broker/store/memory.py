"""An in-memory store for unit tests and for running without durability.

Operations apply at once, so ``sync()`` never waits and no committer is needed. State lives
as long as the object: ``close()`` then ``open()`` on the same instance acts as a restart.
Records are packed with msgpack like the durable engines do, so a record those engines
could not store fails here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from .base import Snapshot, Store, StoreError, pack, pack_arguments, unpack


class MemoryStore(Store):
    def __init__(self) -> None:
        self.stats: dict[str, Any] = {"commits": 0, "ops": 0}  # nothing is ever committed
        self._closed = True
        self._epoch = 0
        self._exchanges: dict[tuple[str, str], bytes] = {}
        self._queues: dict[tuple[str, str], bytes] = {}
        self._bindings: dict[tuple[str, str, str, str, str, bytes], None] = {}
        # (vhost, queue) -> {seq: (epoch, message_id)}; message ids only last one run.
        self._entries: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
        # (epoch, message_id) -> [body, references]
        self._messages: dict[tuple[int, int], list] = {}
        self._retained: dict[str, bytes] = {}
        self._sessions: dict[str, bytes] = {}
        self._users: dict[str, bytes] = {}
        self._kv: dict[str, bytes] = {}

    async def open(self) -> Snapshot:
        self._epoch += 1
        self._closed = False
        messages = {
            key: [(seq, self._messages[ref][0]) for seq, ref in sorted(entries.items())]
            for key, entries in self._entries.items()
            if entries
        }
        return Snapshot(
            exchanges=[(v, n, unpack(r)) for (v, n), r in self._exchanges.items()],
            queues=[(v, n, unpack(r)) for (v, n), r in self._queues.items()],
            bindings=[(*key[:5], unpack(key[5])) for key in self._bindings],
            messages=messages,
            retained=dict(self._retained),
            sessions=dict(self._sessions),
            users={name: unpack(record) for name, record in self._users.items()},
            kv=dict(self._kv),
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def close(self) -> None:
        self._closed = True

    async def sync(self, mark: object = None) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def put_exchange(self, vhost: str, name: str, record: dict) -> None:
        self._exchanges[(vhost, name)] = pack(record)

    def delete_exchange(self, vhost: str, name: str) -> None:
        self._exchanges.pop((vhost, name), None)
        self._drop_bindings(
            lambda b: b[0] == vhost and (b[1] == name or (b[2] == "exchange" and b[3] == name))
        )

    def put_queue(self, vhost: str, name: str, record: dict) -> None:
        self._queues[(vhost, name)] = pack(record)

    def delete_queue(self, vhost: str, name: str) -> None:
        self._queues.pop((vhost, name), None)
        self.purge(vhost, name)
        self._entries.pop((vhost, name), None)
        self._drop_bindings(lambda b: b[0] == vhost and b[2] == "queue" and b[3] == name)

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
        self._bindings[key] = None

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
        self._bindings.pop(key, None)

    def enqueue(self, vhost: str, queue: str, seq: int, message_id: int, message: bytes) -> None:
        ref = (self._epoch, message_id)
        held = self._messages.get(ref)
        if held is None:
            self._messages[ref] = [bytes(message), 1]
        else:
            held[1] += 1
        entries = self._entries.setdefault((vhost, queue), {})
        replaced = entries.get(seq)
        entries[seq] = ref
        if replaced is not None:
            self._unref(replaced)

    def dequeue(self, vhost: str, queue: str, seq: int) -> None:
        entries = self._entries.get((vhost, queue))
        if entries is not None:
            ref = entries.pop(seq, None)
            if ref is not None:
                self._unref(ref)

    def purge(self, vhost: str, queue: str) -> None:
        entries = self._entries.get((vhost, queue))
        if entries:
            for ref in entries.values():
                self._unref(ref)
            entries.clear()

    def set_retained(self, topic: str, message: bytes | None) -> None:
        _put(self._retained, topic, message)

    def put_session(self, key: str, blob: bytes | None) -> None:
        _put(self._sessions, key, blob)

    def put_user(self, name: str, record: dict | None) -> None:
        _put(self._users, name, None if record is None else pack(record))

    def put_kv(self, key: str, value: bytes | None) -> None:
        _put(self._kv, key, value)

    def _unref(self, ref: tuple[int, int]) -> None:
        held = self._messages[ref]
        held[1] -= 1
        if held[1] == 0:
            del self._messages[ref]

    def _drop_bindings(self, matches: Callable[[tuple], bool]) -> None:
        for key in [key for key in self._bindings if matches(key)]:
            del self._bindings[key]


def _put(table: dict[str, bytes], key: str, value: bytes | None) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
