"""A ``backend`` fixture that runs a test on MemoryStore and on SqliteStore alike."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from broker.store import MemoryStore, Snapshot, SqliteStore, Store, journal_file
from broker.store.journal import QueueState


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
        return len(journal_state(self.path).bodies)


def journal_state(path: Path) -> QueueState:
    """The queue state the journal on disk replays to (read-only, beside a running store)."""
    db = sqlite3.connect(path / "broker.db")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'journal'").fetchone()
    finally:
        db.close()
    state = QueueState()
    found, _ = journal_file.read(journal_file.path_of(path, row[0] if row else 0))
    for _, _, record in found:
        state.apply(record)
    return state


def bad_refcounts(state: QueueState) -> int:
    """Bodies whose reference count differs from the entries that use them."""
    uses = Counter(key for entries in state.queues.values() for key in entries.values())
    return sum(refs != uses[key] for key, (_, refs) in state.bodies.items()) + sum(
        key not in state.bodies for key in uses
    )


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)
