"""Message archives (XEP-0313) for one-to-one chats: what each user sent and received.

A chat or normal message with a body between local accounts is archived twice, in the
sender's archive and in the recipient's, each copy under an id of its own; the recipient's
id travels in the delivered message as a XEP-0359 ``<stanza-id by='recipient'/>``.  Each
copy is one store record ``xmpp/mam/<user>/<seq>``, written as the message passes, so
archives survive a restart (even ``kill -9``).  Only the newest ``MAX_PER_USER`` copies
per user are kept: older ones are deleted, from memory and store, as new ones arrive.

The query protocol (filters, paging, results) is in ``mam``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

import msgpack
from lxml import etree

from protocols.xmpp.jid import JID
from protocols.xmpp.offline import NS_HINTS
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import serialize
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from broker.store.base import Store

PREFIX = "xmpp/mam/"
#: newest archived messages kept per user
MAX_PER_USER = 10_000
NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
#: disco features of the archive, listed for the server and for accounts
FEATURES = (NS_MAM, NS_SID)
STANZA_ID = f"{{{NS_SID}}}stanza-id"
BODY = f"{{{NS_CLIENT}}}body"
#: archive ids are this run's random prefix and the record's sequence number: unique per
#: archive across restarts, and cheap
_RUN = secrets.token_hex(4)
_END = b"</message>"
Serializer = Callable[[etree._Element], bytes]
_NO_STORE = (f"{{{NS_HINTS}}}no-store", f"{{{NS_HINTS}}}no-permanent-store")


@dataclass(slots=True)
class Record:
    """One archived copy: ``with_jid`` is the other party as addressed (bare or full)."""

    seq: int
    id: str
    stamp: float
    with_jid: str
    stanza: bytes

    @property
    def with_bare(self) -> str:
        return self.with_jid.partition("/")[0]


def archivable(el: etree._Element) -> bool:
    """A one-to-one message worth archiving: chat or normal, with a body, not hinted
    otherwise (XEP-0334).  One pass over the children: lxml's find is slow on this path."""
    if el.get("type", "normal") not in ("chat", "normal"):
        return False
    body = False
    for child in el:
        tag = child.tag
        if tag == BODY:
            body = True
        elif tag in _NO_STORE:
            return False
    return body


def with_stanza_id(
    el: etree._Element, data: bytes, by: JID, record_id: str, reserialize: Serializer
) -> bytes:
    """The message ``el`` (serialized: ``data``) with the recipient archive's stanza-id,
    appended to the bytes as they are; a stanza-id the sender put in claiming to be by
    the same JID (XEP-0359: a forgery) is dropped, through the element."""
    owner = str(by)
    forged = [c for c in el if c.tag == STANZA_ID and c.get("by") == owner]
    if forged or not data.endswith(_END):
        for sid in forged:
            el.remove(sid)
        sid = etree.SubElement(el, STANZA_ID, nsmap={None: NS_SID})
        sid.set("by", owner)
        sid.set("id", record_id)
        return reserialize(el)
    mark = f"<stanza-id xmlns='{NS_SID}' by={quoteattr(owner)} id='{record_id}'/>"
    return b"".join((data[: -len(_END)], mark.encode(), _END))


class Archive:
    """Every user's archive, oldest first, bounded, durable."""

    def __init__(self, store: Store, records: dict[str, bytes]) -> None:
        """``records`` are this archive's records as loaded at start."""
        self._store = store
        self._archives: dict[str, list[Record]] = {}
        self._next_seq: dict[str, int] = {}
        for key, value in sorted(records.items()):
            user, _, seq_text = key[len(PREFIX) :].rpartition("/")
            record_id, stamp, with_jid, stanza = msgpack.unpackb(value)
            seq = int(seq_text)
            self._archives.setdefault(user, []).append(
                Record(seq, record_id, stamp, with_jid, stanza)
            )
            self._next_seq[user] = seq + 1

    def add(self, user: str, with_jid: str, stanza: bytes) -> str:
        """Archive a copy for ``user``; returns its id."""
        seq = self._next_seq.get(user, 1)
        self._next_seq[user] = seq + 1
        record = Record(seq, f"{_RUN}-{seq}", time.time(), with_jid, stanza)
        records = self._archives.setdefault(user, [])
        records.append(record)
        self._store.put_kv(
            _key(user, seq), msgpack.packb([record.id, record.stamp, with_jid, stanza])
        )
        if len(records) > MAX_PER_USER:
            oldest = records.pop(0)
            self._store.put_kv(_key(user, oldest.seq), None)
        return record.id

    def keep_message(
        self, to: JID, el: etree._Element, data: bytes, sender: Session | None
    ) -> bytes:
        """Archive a message to local account ``to`` in the recipient's archive and, when
        a local session sent it, in the sender's; returns the recipient's copy, which
        carries its stanza-id."""
        if sender is not None:
            self.add(sender.bare.local, str(to), data)
        record_id = self.add(to.local, el.get("from", ""), data)
        reserialize = serialize if sender is None else sender.serialize
        return with_stanza_id(el, data, to.bare, record_id, reserialize)

    def records(self, user: str) -> Sequence[Record]:
        return self._archives.get(user, ())


def _key(user: str, seq: int) -> str:
    return f"{PREFIX}{user}/{seq:012d}"
