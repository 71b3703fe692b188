"""A bound resource: one authenticated stream with its full JID and presence state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.jid import JID
from protocols.xmpp.stanza import serialize

if TYPE_CHECKING:
    from protocols.xmpp.csi import ClientState
    from protocols.xmpp.sm_state import StreamState


class Session:
    """What the front end knows about one connected resource.  ``send`` queues a stanza
    on its stream; the adapter writes it out."""

    __slots__ = (
        "conn",
        "jid",
        "bare",
        "jid_text",
        "username",
        "available",
        "priority",
        "presence",
        "roster_requested",
        "directed",
        "extensions",
        "sm",
        "csi",
    )

    def __init__(self, conn: XMPPConnection, jid: JID, username: str) -> None:
        self.conn = conn
        self.jid = jid
        self.bare = jid.bare
        #: the full JID as text, which stamps every stanza the session sends
        self.jid_text = str(jid)
        self.username = username
        #: the resource sent initial presence and has not gone unavailable since
        self.available = False
        self.priority = 0
        #: the last broadcast presence (serialized without 'to'), for probes and newcomers
        self.presence: bytes | None = None
        #: the resource asked for its roster: it gets roster pushes and subscription requests
        self.roster_requested = False
        #: full or bare JIDs that got directed presence (they get our unavailable too)
        self.directed: set[JID] = set()
        #: per-session state of the extensions (carbons, csi, sm...), by extension name
        self.extensions: dict[str, object] = {}
        #: stream management (XEP-0198) once enabled; client state (XEP-0352) once given
        self.sm: StreamState | None = None
        self.csi: ClientState | None = None

    def send(self, stanza: etree._Element | bytes) -> None:
        data = stanza if isinstance(stanza, bytes) else self.serialize(stanza)
        if self.csi is None:
            self.write(data)
            return
        for ready in self.csi.outgoing(data):
            self.write(ready)

    def write(self, data: bytes) -> None:
        """Put a stanza on the stream; with stream management it is counted and kept
        until acked, and only queued while the session hibernates."""
        if self.sm is not None:
            counted = self.sm.outgoing(data)
            if counted is None:
                return
            data = counted
        self.conn.write(data)

    def serialize(self, stanza: etree._Element) -> bytes:
        """Bytes of a stanza this session's stream produced or that is new."""
        return serialize(stanza, self.conn.parser.header_declarations)

    def __repr__(self) -> str:
        return f"Session({self.jid})"
