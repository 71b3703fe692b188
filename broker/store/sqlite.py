"""The embedded durable store: one SQLite file in WAL mode, written by group commit.

Every commit runs in a worker thread so the event loop never waits on the disk, and uses
``synchronous=FULL`` so a committed batch survives kill -9 and power loss. A message queued
in several queues is one row whose reference count a trigger maintains as entries go.
Message ids are unique only within one run, so each row is keyed by (epoch, message id),
where the epoch is bumped by every ``open()``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import trio

from .base import Batch, Snapshot, WriteBehindStore, unpack

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exchanges (
    vhost TEXT, name TEXT, record BLOB NOT NULL, PRIMARY KEY (vhost, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    vhost TEXT, name TEXT, record BLOB NOT NULL, PRIMARY KEY (vhost, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bindings (
    vhost TEXT, source TEXT, dest_kind TEXT, dest TEXT, routing_key TEXT, arguments BLOB,
    PRIMARY KEY (vhost, source, dest_kind, dest, routing_key, arguments)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bindings_by_dest ON bindings (vhost, dest_kind, dest);
CREATE TABLE IF NOT EXISTS messages (
    epoch INTEGER, mid INTEGER, refs INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (epoch, mid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    vhost TEXT, queue TEXT, seq INTEGER, epoch INTEGER NOT NULL, mid INTEGER NOT NULL,
    PRIMARY KEY (vhost, queue, seq)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_unref AFTER DELETE ON entries BEGIN
    UPDATE messages SET refs = refs - 1 WHERE epoch = OLD.epoch AND mid = OLD.mid;
    DELETE FROM messages WHERE epoch = OLD.epoch AND mid = OLD.mid AND refs <= 0;
END;
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

# recursive_triggers makes INSERT OR REPLACE of an entry release the message it replaces.
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA fullfsync = ON",
    "PRAGMA recursive_triggers = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_size_limit = 67108864",
)

# Statements for each kind of Batch.log operation, run with the operation's parameters.
LOG_SQL: dict[str, tuple[str, ...]] = {
    "put_exchange": ("INSERT OR REPLACE INTO exchanges VALUES (?, ?, ?)",),
    "delete_exchange": (
        "DELETE FROM exchanges WHERE vhost = ?1 AND name = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND source = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND dest_kind = 'exchange' AND dest = ?2",
    ),
    "put_queue": ("INSERT OR REPLACE INTO queues VALUES (?, ?, ?)",),
    "delete_queue": (
        "DELETE FROM entries WHERE vhost = ?1 AND queue = ?2",
        "DELETE FROM queues WHERE vhost = ?1 AND name = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND dest_kind = 'queue' AND dest = ?2",
    ),
    "purge": ("DELETE FROM entries WHERE vhost = ? AND queue = ?",),
    "put_binding": ("INSERT OR IGNORE INTO bindings VALUES (?, ?, ?, ?, ?, ?)",),
    "delete_binding": (
        "DELETE FROM bindings WHERE vhost = ? AND source = ? AND dest_kind = ? AND dest = ?"
        " AND routing_key = ? AND arguments = ?",
    ),
}

# (table, key column, value column) of the last-value maps, by Batch attribute.
MAPS = {
    "retained": ("retained", "topic", "body"),
    "sessions": ("sessions", "key", "blob"),
    "users": ("users", "name", "record"),
    "kv": ("kv", "key", "value"),
}


class SqliteStore(WriteBehindStore):
    """Durable store in ``<data_dir>/broker.db``."""

    def __init__(self, data_dir: str | os.PathLike[str], **options: float) -> None:
        super().__init__(**options)
        self.path = Path(data_dir) / "broker.db"
        self._db: sqlite3.Connection | None = None
        self._epoch = 0

    async def _load(self) -> Snapshot:
        return await trio.to_thread.run_sync(self._load_sync)

    async def _commit(self, batch: Batch) -> int:
        return await trio.to_thread.run_sync(self._write, batch)

    async def _release(self) -> None:
        await trio.to_thread.run_sync(self._release_sync)

    def _load_sync(self) -> Snapshot:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in PRAGMAS:
                db.execute(pragma)
            with _transaction(db):
                _create_schema(db)
                row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
                self._epoch = (row[0] if row else 0) + 1
                db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (self._epoch,))
            snapshot = _read_snapshot(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return snapshot

    def _write(self, batch: Batch) -> int:
        db = self._db
        if db is None:
            raise sqlite3.ProgrammingError("the store is not open")
        epoch = self._epoch
        rows = 0
        with _transaction(db):
            messages = [(epoch, mid, refs, body) for mid, refs, body in batch.new_messages()]
            if messages:
                db.executemany(
                    "INSERT INTO messages VALUES (?, ?, ?, ?) ON CONFLICT (epoch, mid)"
                    " DO UPDATE SET refs = refs + excluded.refs",
                    messages,
                )
                rows += len(messages)
            for kind, ops in groupby(batch.log, key=itemgetter(0)):
                params = [op[1:] for op in ops]
                for sql in LOG_SQL[kind]:
                    db.executemany(sql, params)
                rows += len(params)
            if batch.deletes:
                db.executemany(
                    "DELETE FROM entries WHERE vhost = ? AND queue = ? AND seq BETWEEN ? AND ?",
                    _ranges(batch.deletes),
                )
                rows += len(batch.deletes)
            entries = [(v, q, seq, epoch, mid) for v, q, seq, mid in batch.entry_rows()]
            if entries:
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", entries)
                rows += len(entries)
            for attribute, (table, key, value) in MAPS.items():
                rows += _write_map(db, table, key, value, getattr(batch, attribute))
        return rows

    def _release_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()


def _ranges(deletes: list[tuple[str, str, int]]) -> list[tuple[str, str, int, int]]:
    """Deleted entries as (vhost, queue, first seq, last seq) runs: consumers ack mostly
    in order, so a batch of acks becomes a few range deletes."""
    runs: list[tuple[str, str, int, int]] = []
    for (vhost, queue), group in groupby(sorted(deletes), key=itemgetter(0, 1)):
        seqs = [seq for _, _, seq in group]
        first = last = seqs[0]
        for seq in seqs[1:]:
            if seq != last + 1:
                runs.append((vhost, queue, first, last))
                first = seq
            last = seq
        runs.append((vhost, queue, first, last))
    return runs


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error so no half batch stays open."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _create_schema(db: sqlite3.Connection) -> None:
    # executescript would COMMIT the surrounding transaction, so run statements one by one.
    for statement in _statements(SCHEMA):
        db.execute(statement)


def _statements(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _write_map(
    db: sqlite3.Connection, table: str, key: str, value: str, changes: dict[str, bytes | None]
) -> int:
    if not changes:
        return 0
    puts = [(k, v) for k, v in changes.items() if v is not None]
    deletes = [(k,) for k, v in changes.items() if v is None]
    if puts:
        db.executemany(f"INSERT OR REPLACE INTO {table} ({key}, {value}) VALUES (?, ?)", puts)
    if deletes:
        db.executemany(f"DELETE FROM {table} WHERE {key} = ?", deletes)
    return len(changes)


def _read_snapshot(db: sqlite3.Connection) -> Snapshot:
    bodies = {(e, m): body for e, m, body in db.execute("SELECT epoch, mid, body FROM messages")}
    messages: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
    for vhost, queue, seq, epoch, mid in db.execute(
        "SELECT vhost, queue, seq, epoch, mid FROM entries ORDER BY vhost, queue, seq"
    ):
        messages.setdefault((vhost, queue), []).append((seq, bodies[(epoch, mid)]))
    return Snapshot(
        exchanges=[
            (vhost, name, unpack(record))
            for vhost, name, record in db.execute("SELECT vhost, name, record FROM exchanges")
        ],
        queues=[
            (vhost, name, unpack(record))
            for vhost, name, record in db.execute("SELECT vhost, name, record FROM queues")
        ],
        bindings=[
            (vhost, source, dest_kind, dest, routing_key, unpack(arguments))
            for vhost, source, dest_kind, dest, routing_key, arguments in db.execute(
                "SELECT * FROM bindings"
            )
        ],
        messages=messages,
        retained=dict(db.execute("SELECT topic, body FROM retained")),
        sessions=dict(db.execute("SELECT key, blob FROM sessions")),
        users={name: unpack(record) for name, record in db.execute("SELECT * FROM users")},
        kv=dict(db.execute("SELECT key, value FROM kv")),
    )
