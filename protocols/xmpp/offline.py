"""Offline message storage (XEP-0160): chat and normal messages to an account with no
available resource wait in the store, stamped with a XEP-0203 delay, until the account next
sends available presence of non-negative priority.

Each stored message is one store record ``xmpp/offline/<user>/<seq>``, written when it
arrives and deleted when it is handed over, so a restart (even after ``kill -9``) finds
exactly the messages not yet delivered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.session import Session
from protocols.xmpp.stanza import serialize

if TYPE_CHECKING:
    from broker.store.base import Store

PREFIX = "xmpp/offline/"
#: messages kept per user; beyond it senders get service-unavailable
MAX_PER_USER = 1000
NS_DELAY = "urn:xmpp:delay"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_HINTS = "urn:xmpp:hints"


def worth_storing(el: etree._Element) -> bool:
    """A message with content: not only chat states (XEP-0085 says those are not stored),
    and without the XEP-0334 ``<no-store/>`` hint."""
    if el.find(f"{{{NS_HINTS}}}no-store") is not None:
        return False
    return any(etree.QName(child).namespace != NS_CHATSTATES for child in el)


def stamp_time(when: float) -> str:
    """XEP-0082 date-time in UTC with milliseconds."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{seconds}.{int(when * 1000) % 1000:03d}Z"


def with_delay(data: bytes, domain: str, when: float) -> bytes:
    """The serialized stanza with ``<delay from=domain stamp=when/>`` appended."""
    el = etree.fromstring(data)
    delay = etree.SubElement(el, f"{{{NS_DELAY}}}delay", nsmap={None: NS_DELAY})
    delay.set("from", domain)
    delay.set("stamp", stamp_time(when))
    return serialize(el)


class OfflineStore:
    """The messages waiting for each user, in arrival order, durably."""

    def __init__(self, store: Store, records: dict[str, bytes], domain: str) -> None:
        """``records`` are this store's records as loaded at start (key -> stanza)."""
        self._store = store
        self._domain = domain
        #: user -> seq -> serialized stanza (dicts keep insertion order)
        self._waiting: dict[str, dict[int, bytes]] = {}
        self._next_seq: dict[str, int] = {}
        for key, data in sorted(records.items()):
            user, _, seq = key[len(PREFIX) :].rpartition("/")
            self._waiting.setdefault(user, {})[int(seq)] = data
            self._next_seq[user] = int(seq) + 1

    def keep(self, user: str, el: etree._Element, data: bytes) -> bool:
        """Store message ``el`` (serialized: ``data``) for ``user`` if it has content;
        False when it had to be refused because the user's storage is full."""
        if not worth_storing(el):
            return True
        return self.add(user, with_delay(data, self._domain, time.time()))

    def hand_over(self, session: Session) -> None:
        """Deliver what waits for the session's user if the session now takes messages
        sent to the bare JID (available, non-negative priority)."""
        user = session.bare.local
        if user in self._waiting and session.available and session.priority >= 0:
            for data in self.take(user):
                session.send(data)

    def count(self, user: str) -> int:
        return len(self._waiting.get(user, ()))

    def add(self, user: str, data: bytes) -> bool:
        """Keep a stanza for ``user``; False when the user's storage is full."""
        waiting = self._waiting.setdefault(user, {})
        if len(waiting) >= MAX_PER_USER:
            return False
        seq = self._next_seq.get(user, 1)
        self._next_seq[user] = seq + 1
        waiting[seq] = data
        self._store.put_kv(_key(user, seq), data)
        return True

    def take(self, user: str) -> Iterable[bytes]:
        """Every stanza waiting for ``user``, oldest first; they are deleted."""
        waiting = self._waiting.pop(user, None)
        if not waiting:
            return ()
        del self._next_seq[user]
        for seq in waiting:
            self._store.put_kv(_key(user, seq), None)
        return waiting.values()


def _key(user: str, seq: int) -> str:
    return f"{PREFIX}{user}/{seq:010d}"
