"""A ``backend`` fixture that runs a test on MemoryStore and on SqliteStore alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker.store import MemoryStore, Snapshot, SqliteStore, Store


class Backend:
    """Makes stores of one kind over one persistent location, so a test can restart them."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._memory = MemoryStore()

    def make(self) -> Store:
        # MemoryStore keeps its state in the object, so a restart reuses the instance.
        return self._memory if self.kind == "memory" else SqliteStore(self.path)

    async def open(self) -> tuple[Store, Snapshot]:
        store = self.make()
        return store, await store.open()

    async def reopen(self, store: Store) -> tuple[Store, Snapshot]:
        await store.close()
        return await self.open()

    def stored_messages(self) -> int:
        """How many message bodies the backend holds, however many queues share them."""
        if self.kind == "memory":
            return len(self._memory._messages)
        return count_rows(self.path, "messages")


def count_rows(path: Path, table: str) -> int:
    db = sqlite3.connect(path / "broker.db")
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def bad_refcounts(path: Path) -> int:
    """Message rows whose reference count differs from the entries that use them."""
    db = sqlite3.connect(path / "broker.db")
    try:
        return db.execute(
            "SELECT COUNT(*) FROM messages AS m WHERE refs != (SELECT COUNT(*) FROM entries AS e"
            " WHERE e.epoch = m.epoch AND e.mid = m.mid)"
        ).fetchone()[0]
    finally:
        db.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)
