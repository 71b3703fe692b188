"""Message archives (XEP-0313) for one-to-one chats: what each user sent and received.

A chat or normal message with a body between local accounts is archived twice, in the
sender's archive and in the recipient's, each copy under an id of its own; the recipient's
id travels in the delivered message as a XEP-0359 ``<stanza-id by='recipient'/>``.  Copies
are stored in chunks of ``CHUNK`` consecutive ones per user, one store record
``xmpp/mam/<user>/<chunk>`` each (msgpack values back to back), rewritten as the message
passes: a commit then writes one row per active conversation rather than two per message,
and archives still survive a restart (even ``kill -9``).  Only the newest
``MAX_PER_USER`` copies per user are kept, give or take a chunk: the oldest chunk goes,
from memory and store, once a user has a chunk more than that.

The query protocol (filters, paging, results) is in ``mam``.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
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
#: archived copies per store record
CHUNK = 32
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
_MARK_END = b"'/></message>"
_SID = NS_SID.encode()
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
    forged = [c for c in el if c.tag == STANZA_ID and c.get("by") == owner] if _SID in data else []
    if forged or not data.endswith(_END):
        for sid in forged:
            el.remove(sid)
        sid = etree.SubElement(el, STANZA_ID, nsmap={None: NS_SID})
        sid.set("by", owner)
        sid.set("id", record_id)
        return reserialize(el)
    return b"".join((data[: -len(_END)], _stanza_id_start(owner), record_id.encode(), _MARK_END))


@functools.lru_cache(maxsize=4096)
def _stanza_id_start(owner: str) -> bytes:
    return f"<stanza-id xmlns='{NS_SID}' by={quoteattr(owner)} id='".encode()


class Archive:
    """Every user's archive, oldest first, bounded, durable once ``flush``ed."""

    def __init__(self, store: Store, records: dict[str, bytes]) -> None:
        """``records`` are this archive's store records as loaded at start."""
        self._store = store
        self._archives: dict[str, deque[Record]] = {}
        #: each user's last chunk as stored, which new copies extend
        self._open_chunk: dict[str, bytes] = {}
        #: users with copies not yet handed to the store, and the first such seq of each
        self._unflushed: dict[str, int] = {}
        for key, value in sorted(records.items()):
            user = key[len(PREFIX) :].rpartition("/")[0]
            archive = self._archives.setdefault(user, deque())
            for record in msgpack.Unpacker(BytesIO(value), use_list=False):
                archive.append(Record(*record))
            self._open_chunk[user] = value

    def add(self, user: str, with_jid: str, stanza: bytes) -> str:
        """Archive a copy for ``user``; returns its id.  It reaches the store at the
        next ``flush``."""
        archive = self._archives.get(user)
        if archive is None:
            archive = self._archives[user] = deque()
        seq = archive[-1].seq + 1 if archive else 1
        record_id = f"{_RUN}-{seq}"
        archive.append(Record(seq, record_id, time.time(), with_jid, stanza))
        self._unflushed.setdefault(user, seq)
        return record_id

    def flush(self) -> None:
        """Hand the new copies to the store: one record per chunk they touch, so a read
        full of messages costs a row or two per conversation, not two per message."""
        for user, first in self._unflushed.items():
            archive = self._archives[user]
            start = len(archive) - (archive[-1].seq - first) - 1
            chunk = (first - 1) // CHUNK
            packed = self._open_chunk.get(user, b"") if (first - 1) % CHUNK else b""
            for index in range(start, len(archive)):
                record = archive[index]
                if (record.seq - 1) // CHUNK != chunk:
                    self._store.put_kv(_key(user, chunk), packed)
                    chunk, packed = chunk + 1, b""
                packed += msgpack.packb(
                    (record.seq, record.id, record.stamp, record.with_jid, record.stanza)
                )
            self._store.put_kv(_key(user, chunk), packed)
            self._open_chunk[user] = packed
            while len(archive) >= MAX_PER_USER + CHUNK:
                oldest = (archive[0].seq - 1) // CHUNK
                while archive and (archive[0].seq - 1) // CHUNK == oldest:
                    archive.popleft()
                self._store.put_kv(_key(user, oldest), None)
        self._unflushed.clear()

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

    def records(self, user: str) -> Iterable[Record]:
        return self._archives.get(user, ())


def _key(user: str, chunk: int) -> str:
    return f"{PREFIX}{user}/{chunk:012d}"
