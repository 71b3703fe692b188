"""Durable broker state: exchanges, queues, bindings, messages, retained values, sessions,
users and other records, behind one interface with write-behind operations and ``sync()``."""

from .base import Snapshot, Store, StoreError
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["MemoryStore", "Snapshot", "SqliteStore", "Store", "StoreError"]
