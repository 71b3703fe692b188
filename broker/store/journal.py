"""The journal of group commits: its record and frame format, and the queue state that
replaying records builds (sans-I/O: ``journal_file.py`` does the file handling).

Every commit appends one record, a whole ``Batch`` in net form, so one write and one
fdatasync make a batch durable however many messages it holds.  Queue entries and message
bodies live only in the journal; the metadata a record carries is also applied to SQLite,
which keeps the metadata for reading and for compaction.

A frame is ``<payload length u32><crc32 u32><msgpack payload>``.  Replay stops at the first
frame that is short or fails its checksum: that is the torn last write of a crash, and
everything before it was whole when its commit returned.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple

import msgpack

from .base import Batch

HEADER = struct.Struct("<II")
#: message ids (positive, below 2**40) are unique within one run: a body is keyed by
#: ``epoch << EPOCH_SHIFT | id``
EPOCH_SHIFT = 40
#: log operations that change only queue entries, which SQLite does not hold
ENTRY_ONLY_OPS = frozenset({"purge"})


class Record(NamedTuple):
    """One commit.  Applied in the order of ``Batch``: message bodies, then ``log``, then
    ``deletes``, then ``inserts``, then the last-value maps."""

    epoch: int
    log: list  # Batch.log operations, (kind, *params)
    messages: list  # (message id, references added, body)
    deletes: list  # (vhost, queue, first seq, last seq): runs of dequeued entries
    inserts: list  # (vhost, queue, {seq: message id})
    retained: dict
    sessions: dict
    users: dict
    kv: dict

    def metadata(self) -> bool:
        """Whether SQLite has something to apply from this record."""
        return bool(
            self.retained
            or self.sessions
            or self.users
            or self.kv
            or any(op[0] not in ENTRY_ONLY_OPS for op in self.log)
        )


def record_of(batch: Batch, epoch: int) -> Record:
    return Record(
        epoch,
        batch.log,
        batch.new_messages(),
        ranges(batch.deletes) if batch.deletes else [],
        [(vhost, queue, seqs) for (vhost, queue), seqs in batch.inserts.items() if seqs],
        batch.retained,
        batch.sessions,
        batch.users,
        batch.kv,
    )


def rows(record: Record) -> int:
    """The operations a record holds, counted as the store's ``ops`` statistic."""
    return (
        len(record.messages)
        + len(record.log)
        + sum(last - first + 1 for _, _, first, last in record.deletes)
        + sum(len(seqs) for _, _, seqs in record.inserts)
        + len(record.retained)
        + len(record.sessions)
        + len(record.users)
        + len(record.kv)
    )


def ranges(deletes: list[tuple[str, str, int]]) -> list[tuple[str, str, int, int]]:
    """Deleted entries as (vhost, queue, first seq, last seq) runs: consumers ack mostly
    in order, so a batch of acks becomes a few runs."""
    runs: list[tuple[str, str, int, int]] = []
    for (vhost, queue), group in groupby(sorted(deletes), key=itemgetter(0, 1)):
        seqs = [seq for _, _, seq in group]
        first = last = seqs[0]
        for seq in seqs[1:]:
            if seq == last:
                continue
            if seq != last + 1:
                runs.append((vhost, queue, first, last))
                first = seq
            last = seq
        runs.append((vhost, queue, first, last))
    return runs


def encode(record: Record) -> tuple[bytes, bytes]:
    """The frame of a record as (header, payload), to be written with one writev."""
    payload = msgpack.packb(record, use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)), payload


def frames(data: bytes | memoryview) -> Iterator[tuple[int, int, Record]]:
    """(start, end, record) of each whole frame from the start of ``data``, stopping at
    the first torn or corrupt one; the last ``end`` is the journal's good length."""
    view = memoryview(data)
    size = len(view)
    offset = 0
    while offset + HEADER.size <= size:
        length, crc = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        end = start + length
        # a zero length is a zero-filled tail (a size extended before its data landed)
        if length == 0 or end > size:
            return
        payload = view[start:end]
        if zlib.crc32(payload) != crc:
            return
        try:
            record = Record(*msgpack.unpackb(payload, raw=False, strict_map_key=False))
        except (ValueError, TypeError, msgpack.UnpackException):
            return
        yield offset, end, record
        offset = end


class QueueState:
    """Live queue entries and the message bodies they reference, as records build them.

    Bodies are keyed by ``epoch << EPOCH_SHIFT | message id`` so ids of earlier runs never
    meet this run's; a body goes with its last reference.
    """

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], dict[int, int]] = {}
        self.bodies: dict[int, list] = {}  # key -> [body, references]
        #: bytes a compacted journal would hold, near enough
        self.live_bytes = 0

    def apply(self, record: Record) -> None:
        base = record.epoch << EPOCH_SHIFT
        bodies = self.bodies
        for mid, refs, body in record.messages:
            held = bodies.get(base + mid)
            if held is None:
                bodies[base + mid] = [body, refs]
                self.live_bytes += len(body) + 16
            else:
                held[1] += refs
        for op in record.log:
            if op[0] == "purge" or op[0] == "delete_queue":
                self._drop(op[1], op[2])
        queues = self.queues
        for vhost, queue, first, last in record.deletes:
            entries = queues.get((vhost, queue))
            if entries:
                self._release(filter(None, map(entries.pop, range(first, last + 1), repeat(0))))
                if not entries:
                    del queues[(vhost, queue)]
        for vhost, queue, seqs in record.inserts:
            entries = queues.get((vhost, queue))
            if entries is None:
                entries = queues[(vhost, queue)] = {}
            replaced = None
            if not entries.keys().isdisjoint(seqs):
                replaced = [entries[seq] for seq in seqs if seq in entries]
            entries.update(zip(seqs, map(base.__add__, seqs.values()), strict=True))
            self.live_bytes += 16 * len(seqs)
            if replaced:
                self._release(replaced)

    def _release(self, keys: Iterable[int]) -> None:
        """Drop one reference per key (one per entry gone); a body goes with its last."""
        bodies = self.bodies
        freed = 0
        for key in keys:
            held = bodies[key]
            freed += 16
            if held[1] <= 1:
                del bodies[key]
                freed += len(held[0]) + 16
            else:
                held[1] -= 1
        self.live_bytes -= freed

    def _drop(self, vhost: str, queue: str) -> None:
        entries = self.queues.pop((vhost, queue), None)
        if entries:
            self._release(entries.values())

    def messages(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        """The snapshot form: (vhost, queue) -> [(seq, body)] in seq order."""
        bodies = self.bodies
        return {
            name: [(seq, bodies[key][0]) for seq, key in sorted(entries.items())]
            for name, entries in self.queues.items()
            if entries
        }

    def records(self, chunk_bytes: int = 1 << 24) -> Iterator[Record]:
        """Records that rebuild this state from nothing, each about ``chunk_bytes`` at most
        (epoch 0: the keys are already whole)."""
        messages: list[tuple[int, int, bytes]] = []
        size = 0
        for key, (body, refs) in self.bodies.items():
            messages.append((key, refs, body))
            size += len(body) + 16
            if size >= chunk_bytes:
                yield Record(0, [], messages, [], [], {}, {}, {}, {})
                messages, size = [], 0
        if messages:
            yield Record(0, [], messages, [], [], {}, {}, {}, {})
        for (vhost, queue), entries in self.queues.items():
            items = list(entries.items())
            step = max(1, chunk_bytes // 16)
            for index in range(0, len(items), step):
                part = dict(items[index : index + step])
                yield Record(0, [], [], [], [(vhost, queue, part)], {}, {}, {}, {})

    def add_rows(self, bodies: dict[int, bytes], entries: Iterator[Any]) -> None:
        """Take in entries of the former SQLite tables: (vhost, queue, seq, key) rows."""
        for vhost, queue, seq, key in entries:
            held = self.bodies.get(key)
            if held is None:
                held = self.bodies[key] = [bodies[key], 0]
                self.live_bytes += len(held[0]) + 16
            held[1] += 1
            self.queues.setdefault((vhost, queue), {})[seq] = key
            self.live_bytes += 16
