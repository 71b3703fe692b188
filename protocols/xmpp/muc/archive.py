"""A room's message log: the history sent on join (XEP-0045 7.2.15) and the archive the
room answers XEP-0313 queries from, one bounded sequence of groupchat messages.

Each record keeps the reflected message as serialized without a 'to', so delivering it
again (history, query results) only splices an address in.  The room's store keeps the
records of persistent rooms (``RoomStore``); temporary rooms keep them in memory only.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from protocols.xmpp.archive import Record

#: newest messages a room keeps
MAX_RECORDS = 10_000
#: record ids are this run's random prefix and the room's sequence number
_RUN = secrets.token_hex(4)


class RoomLog:
    """A room's messages, oldest first."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.records: deque[Record] = deque(records, maxlen=MAX_RECORDS)

    def add(self, nick_jid: str, stanza: bytes, now: float | None = None) -> Record:
        """Log a message from occupant JID ``nick_jid``; the record (its id goes in the
        message's stanza-id before ``stanza`` is serialized: see ``next_id``)."""
        seq = self.records[-1].seq + 1 if self.records else 1
        record = Record(seq, self.next_id(), time.time() if now is None else now, nick_jid, stanza)
        self.records.append(record)
        return record

    def next_id(self) -> str:
        seq = self.records[-1].seq + 1 if self.records else 1
        return f"{_RUN}-{seq}"

    def oldest_dropped(self) -> Record | None:
        """The record the next ``add`` pushes out, if the log is full."""
        return self.records[0] if len(self.records) == MAX_RECORDS else None

    def history(
        self,
        limit: int,
        maxstanzas: int | None = None,
        maxchars: int | None = None,
        seconds: int | None = None,
        since: float | None = None,
        now: float | None = None,
    ) -> list[Record]:
        """The newest records history on join sends, oldest first: at most ``limit``
        (the room's history length) and ``maxstanzas``, their stanzas together at most
        ``maxchars`` bytes, none older than ``seconds`` ago or ``since``."""
        count = limit if maxstanzas is None else min(limit, maxstanzas)
        oldest = since
        if seconds is not None:
            cutoff = (time.time() if now is None else now) - seconds
            oldest = cutoff if oldest is None else max(oldest, cutoff)
        picked: list[Record] = []
        chars = 0
        for record in reversed(self.records):
            if len(picked) >= count or (oldest is not None and record.stamp < oldest):
                break
            chars += len(record.stanza)
            if maxchars is not None and chars > maxchars:
                break
            picked.append(record)
        picked.reverse()
        return picked


def parse_since(text: str) -> float | None:
    """A XEP-0082 date-time as epoch seconds; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
