"""The embedded durable store: a journal for queue entries and message bodies, and one
SQLite file (WAL mode) for everything else, both written by group commit.

Every commit runs in a worker thread so the event loop never waits on the disk.  A commit
appends the whole batch to the journal with one write and one fdatasync: that is the
moment it is durable, and it survives kill -9 and power loss.  The metadata in the batch
(exchanges, queues, bindings, retained values, sessions, users, kv) is then applied to
SQLite without a sync of its own; SQLite records the journal offset its state reaches, so
``open()`` replays the metadata of any later record.  Queue state lives in memory as the
journal built it (``QueueState``), and once the journal is both past ``compact_bytes`` and
twice the live state, the live state is written as a new journal generation that SQLite
then names in one durable commit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import trio

from . import journal_file
from .base import Batch, Snapshot, StoreError, WriteBehindStore, unpack
from .journal import (
    ENTRY_ONLY_OPS,
    EPOCH_SHIFT,
    QueueState,
    Record,
    encode,
    record_of,
    rows,
)
from .journal_file import JournalFile

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

# Metadata commits need no sync of their own (the journal is synced), except the ones that
# make the journal's own state durable: the epoch bump and a generation switch.
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA fullfsync = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_size_limit = 67108864",
)

# Statements for each kind of Batch.log operation that SQLite holds, run with its parameters.
LOG_SQL: dict[str, tuple[str, ...]] = {
    "put_exchange": ("INSERT OR REPLACE INTO exchanges VALUES (?, ?, ?)",),
    "delete_exchange": (
        "DELETE FROM exchanges WHERE vhost = ?1 AND name = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND source = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND dest_kind = 'exchange' AND dest = ?2",
    ),
    "put_queue": ("INSERT OR REPLACE INTO queues VALUES (?, ?, ?)",),
    "delete_queue": (
        "DELETE FROM queues WHERE vhost = ?1 AND name = ?2",
        "DELETE FROM bindings WHERE vhost = ?1 AND dest_kind = 'queue' AND dest = ?2",
    ),
    "put_binding": ("INSERT OR IGNORE INTO bindings VALUES (?, ?, ?, ?, ?, ?)",),
    "delete_binding": (
        "DELETE FROM bindings WHERE vhost = ? AND source = ? AND dest_kind = ? AND dest = ?"
        " AND routing_key = ? AND arguments = ?",
    ),
}

# (table, key column, value column) of the last-value maps, by Record field.
MAPS = {
    "retained": ("retained", "topic", "body"),
    "sessions": ("sessions", "key", "blob"),
    "users": ("users", "name", "record"),
    "kv": ("kv", "key", "value"),
}

#: the journal is compacted once past this size and twice its live state
COMPACT_BYTES = 64 << 20
#: seconds a store waits for another process to release the data dir
LOCK_TIMEOUT = 10.0


class SqliteStore(WriteBehindStore):
    """Durable store in ``<data_dir>/broker.db`` and ``<data_dir>/journal.<generation>``."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        compact_bytes: int = COMPACT_BYTES,
        shared: bool = False,
        **options: float,
    ) -> None:
        """``shared``: if another process (a running broker) has the store open, open it
        beside that one for reading and for users and key-value records alone (the
        command-line tools); otherwise that is an error."""
        super().__init__(**options)
        self.path = Path(data_dir) / "broker.db"
        self.compact_bytes = compact_bytes
        self.shared = shared
        #: open beside the process that owns the journal
        self.secondary = False
        self._lock_fd = -1
        self._db: sqlite3.Connection | None = None
        self._journal: JournalFile | None = None
        self._generation = 0
        self._epoch = 0
        self.queue_state = QueueState()
        # records whose metadata SQLite has not taken yet (a failed metadata commit)
        self._pending: list[Record] = []

    async def _load(self) -> Snapshot:
        return await trio.to_thread.run_sync(self._load_sync)

    async def _commit(self, batch: Batch) -> int:
        """Encode the batch and apply it to the queue state here, on the event loop: the
        worker thread makes one write-with-sync call, so it needs the GIL only briefly."""
        record = record_of(batch, self._epoch)
        count = rows(record)
        if not count:  # everything cancelled out: nothing to make durable
            return 0
        if self.secondary:
            await trio.to_thread.run_sync(self._write_beside, record)
            return count
        if self._journal is None:
            raise sqlite3.ProgrammingError("the store is not open")
        await trio.to_thread.run_sync(self._write, encode(record))
        self.queue_state.apply(record)
        if record.metadata() or self._wants_compaction():
            await trio.to_thread.run_sync(self._after_write, record)
        return count

    async def _release(self) -> None:
        await trio.to_thread.run_sync(self._release_sync)

    def _load_sync(self) -> Snapshot:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        self._own_journal()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except BaseException:
            self._release_sync()
            raise
        self._db, self.queue_state, self._pending = db, QueueState(), []
        try:
            for pragma in PRAGMAS:
                db.execute(pragma)
            if self.secondary:
                return self._load_beside(db)
            with _transaction(db):
                _create_schema(db)
                meta = dict(db.execute("SELECT key, value FROM meta"))
                self._epoch = meta.get("epoch", 0) + 1
                db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (self._epoch,))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('journal', 0)")
            db.execute("PRAGMA synchronous = NORMAL")
            self._generation = meta.get("journal", 0)
            journal_file.remove_others(directory, self._generation)
            path = journal_file.path_of(directory, self._generation)
            if "journal" in meta and not path.exists():
                log.error("store journal %s is missing: its queued messages are lost", path)
            found, size = journal_file.read(path)
            applied = meta.get("applied", 0)
            for start, _, record in found:
                self.queue_state.apply(record)
                if start >= applied and record.metadata():
                    self._pending.append(record)
            self._journal = JournalFile(path, size)
            self._apply_pending()
            legacy = _take_legacy_entries(db, self.queue_state)
            if legacy or self._wants_compaction():
                self._compact(drop_legacy=legacy)
            snapshot = _read_snapshot(db)
        except BaseException:
            self._release_sync()
            raise
        snapshot.messages = self.queue_state.messages()
        return snapshot

    def _own_journal(self) -> None:
        """Own the journal: one process at a time appends, truncates and compacts it.  A
        broker waits a while for its predecessor on the data dir to finish shutting down."""
        fd = os.open(self.path.parent / "store.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        deadline = time.monotonic() + (0 if self.shared else LOCK_TIMEOUT)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                elif self.shared:
                    self.secondary = True
                    break
                else:
                    os.close(fd)
                    raise StoreError(f"{self.path.parent} is in use by another process") from None
        self._lock_fd = fd

    def _load_beside(self, db: sqlite3.Connection) -> Snapshot:
        """Read what the owning process made durable, touching nothing of its journal."""
        meta = dict(db.execute("SELECT key, value FROM meta"))
        path = journal_file.path_of(self.path.parent, meta.get("journal", 0))
        for _, _, record in journal_file.read(path)[0]:
            self.queue_state.apply(record)
        snapshot = _read_snapshot(db)
        snapshot.messages = self.queue_state.messages()
        return snapshot

    def _write_beside(self, record: Record) -> None:
        """Commit users and key-value records straight to SQLite, with its own sync: the
        journal belongs to the owning process."""
        db = self._db
        if db is None:
            raise sqlite3.ProgrammingError("the store is not open")
        if record.log or record.messages or record.inserts or record.deletes:
            raise StoreError("only users and key-value records change beside a running broker")
        db.execute("PRAGMA synchronous = FULL")
        with _transaction(db):
            _apply_metadata(db, record)

    def _write(self, frame: tuple[bytes, bytes]) -> None:
        assert self._journal is not None
        self._journal.append(frame)

    def _after_write(self, record: Record) -> None:
        """Apply the record's metadata to SQLite, and compact the journal when due.  A
        failure fails no waiter: the record is durable in the journal, and SQLite takes
        its metadata with a later commit or at the next open."""
        if record.metadata():
            self._pending.append(record)
            try:
                self._apply_pending()
            except sqlite3.Error as exc:
                log.error("store metadata commit failed, kept in the journal: %r", exc)
        if self._wants_compaction():
            try:
                self._compact()
            except (OSError, sqlite3.Error) as exc:
                log.error("journal compaction failed: %r", exc)

    def _apply_pending(self) -> None:
        """Apply the metadata of journalled records to SQLite, with the journal offset it
        now reaches."""
        if not self._pending:
            return
        db, journal = self._db, self._journal
        assert db is not None and journal is not None
        with _transaction(db):
            for record in self._pending:
                _apply_metadata(db, record)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('applied', ?)", (journal.size,))
        self._pending.clear()

    def _wants_compaction(self) -> bool:
        assert self._journal is not None
        size = self._journal.size
        return size >= self.compact_bytes and size >= 2 * self.queue_state.live_bytes

    def _compact(self, *, drop_legacy: bool = False) -> None:
        """Write the live queue state as the next journal generation and switch to it."""
        db, old = self._db, self._journal
        assert db is not None and old is not None
        generation = self._generation + 1
        path = journal_file.path_of(self.path.parent, generation)
        journal = JournalFile.write(path, self.queue_state.records())
        try:
            db.execute("PRAGMA synchronous = FULL")
            with _transaction(db):
                for record in self._pending:
                    _apply_metadata(db, record)
                db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("journal", generation), ("applied", journal.size)],
                )
                if drop_legacy:
                    for statement in LEGACY_DROP:
                        db.execute(statement)
        except BaseException:
            journal.close()
            path.unlink(missing_ok=True)
            raise
        finally:
            db.execute("PRAGMA synchronous = NORMAL")
        self._pending.clear()
        self._journal, self._generation = journal, generation
        old.close()
        old.path.unlink(missing_ok=True)

    def _release_sync(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
        db, self._db = self._db, None
        try:
            if db is not None:
                if not self.secondary:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.close()
        finally:
            fd, self._lock_fd = self._lock_fd, -1
            if fd >= 0:
                os.close(fd)  # releases the lock
            self.secondary = False


LEGACY_DROP = (
    "DROP TRIGGER IF EXISTS entries_unref",
    "DROP TABLE IF EXISTS entries",
    "DROP TABLE IF EXISTS messages",
)


def _take_legacy_entries(db: sqlite3.Connection, state: QueueState) -> bool:
    """Move queue entries of a store written before the journal into ``state``; True if
    there were legacy tables (the caller compacts and drops them in one commit)."""
    found = db.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
    ).fetchone()[0]
    if not found:
        return False
    bodies = {
        epoch << EPOCH_SHIFT | mid: body
        for epoch, mid, body in db.execute("SELECT epoch, mid, body FROM messages")
    }
    state.add_rows(
        bodies,
        (
            (vhost, queue, seq, epoch << EPOCH_SHIFT | mid)
            for vhost, queue, seq, epoch, mid in db.execute(
                "SELECT vhost, queue, seq, epoch, mid FROM entries"
            )
        ),
    )
    return True


def _apply_metadata(db: sqlite3.Connection, record: Record) -> None:
    for kind, ops in groupby(record.log, key=itemgetter(0)):
        if kind in ENTRY_ONLY_OPS:
            continue
        params = [op[1:] for op in ops]
        for sql in LOG_SQL[kind]:
            db.executemany(sql, params)
    for attribute, (table, key, value) in MAPS.items():
        _write_map(db, table, key, value, getattr(record, attribute))


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
) -> None:
    if not changes:
        return
    puts = [(k, v) for k, v in changes.items() if v is not None]
    deletes = [(k,) for k, v in changes.items() if v is None]
    if puts:
        db.executemany(f"INSERT OR REPLACE INTO {table} ({key}, {value}) VALUES (?, ?)", puts)
    if deletes:
        db.executemany(f"DELETE FROM {table} WHERE {key} = ?", deletes)


def _read_snapshot(db: sqlite3.Connection) -> Snapshot:
    """Everything SQLite holds (the messages come from the journal)."""
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
        retained=dict(db.execute("SELECT topic, body FROM retained")),
        sessions=dict(db.execute("SELECT key, blob FROM sessions")),
        users={name: unpack(record) for name, record in db.execute("SELECT * FROM users")},
        kv=dict(db.execute("SELECT key, value FROM kv")),
    )
