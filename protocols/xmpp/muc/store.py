"""Persistent rooms in the store: what a restart (even after ``kill -9``) brings back.

A persistent room is one record ``xmpp/muc/room/<room>`` (msgpack: configuration,
affiliations, subject) rewritten whenever one of them changes, and, while its archive is
on (``mam``), its message log one record per message, ``xmpp/muc/log/<room>/<seq>``,
written as the message is logged and deleted when it falls out of the log (a room without
an archive keeps its history in memory, as Prosody and ejabberd do).  Temporary rooms,
and rooms still locked for their first configuration, are not stored; a room made
temporary or destroyed leaves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgpack

from protocols.xmpp.archive import Record
from protocols.xmpp.muc.config import RoomConfig

if TYPE_CHECKING:
    from broker.store.base import Store
    from protocols.xmpp.muc.room import Room

PREFIX = "xmpp/muc/"
_ROOM = f"{PREFIX}room/"
_LOG = f"{PREFIX}log/"


@dataclass
class StoredRoom:
    """A persistent room as loaded at start."""

    config: RoomConfig
    affiliations: dict[str, str]
    subject: tuple[str, str]
    log: list[Record] = field(default_factory=list)


class RoomStore:
    def __init__(self, store: Store, records: dict[str, bytes]) -> None:
        """``records`` are this store's records as loaded at start."""
        self._store = store
        #: the rooms this store has a record of
        self._stored: set[str] = set()
        self.loaded: dict[str, StoredRoom] = {}
        for key, value in records.items():
            if key.startswith(_ROOM):
                record = msgpack.unpackb(value)
                name = key[len(_ROOM) :]
                self.loaded[name] = StoredRoom(
                    RoomConfig.from_record(record["config"]),
                    dict(record["affiliations"]),
                    tuple(record["subject"]),  # type: ignore[arg-type]
                )
                self._stored.add(name)
        for key, value in sorted(records.items()):
            if key.startswith(_LOG):
                name = key[len(_LOG) :].rpartition("/")[0]
                room = self.loaded.get(name)
                if room is None:  # a log whose room record went: left from a crash
                    store.put_kv(key, None)
                else:
                    room.log.append(Record(*msgpack.unpackb(value)))

    def save(self, room: Room) -> bool:
        """Store the room's state if it is persistent, or forget it if it no longer is;
        True when the store changed (a client told of it waits for the store)."""
        name = room.jid.local
        if not room.config.persistent or room.locked:
            return self.forget(room)
        record = {
            "config": room.config.to_record(),
            "affiliations": room.affiliations,
            "subject": list(room.subject),
        }
        first = name not in self._stored
        self._stored.add(name)
        if first:  # the log so far goes with the room's first record
            for kept in room.log.records:
                self.log(room, kept, None)
        self._store.put_kv(f"{_ROOM}{name}", msgpack.packb(record))
        return True

    def log(self, room: Room, record: Record, dropped: Record | None) -> None:
        name = room.jid.local
        if name not in self._stored or not room.config.mam:
            return
        self._store.put_kv(
            _log_key(name, record.seq),
            msgpack.packb((record.seq, record.id, record.stamp, record.with_jid, record.stanza)),
        )
        if dropped is not None:
            self._store.put_kv(_log_key(name, dropped.seq), None)

    def forget(self, room: Room) -> bool:
        name = room.jid.local
        if name not in self._stored:
            return False
        self._stored.discard(name)
        self._store.put_kv(f"{_ROOM}{name}", None)
        for record in room.log.records:
            self._store.put_kv(_log_key(name, record.seq), None)
        return True


def _log_key(room: str, seq: int) -> str:
    return f"{_LOG}{room}/{seq:012d}"
