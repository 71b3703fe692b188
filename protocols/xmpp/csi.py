"""Client state indication (XEP-0352): an inactive client (a phone in a pocket) is not
woken for traffic that can wait.

While the client says it is ``<inactive/>``, its session holds back what is not urgent:
presence updates are coalesced per contact (only the latest counts), other stanzas are
kept in order.  An urgent stanza (a message with a body, or an IQ) sends everything held
first, then itself; ``<active/>`` sends what is held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from protocols.xmpp.connection import XMPPConnection
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import IQ, PRESENCE
from protocols.xmpp.stream import NS_CLIENT, StreamError

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

NS_CSI = "urn:xmpp:csi:0"
#: stanzas held for an inactive client before they go out anyway (bounded memory)
MAX_HELD = 200
#: presence types that are updates of a contact's availability (the latest wins)
AVAILABILITY = (None, "unavailable")


class ClientState:
    """What one inactive session holds back, in order; keys are a contact's JID for
    presence updates and a running number for everything else."""

    __slots__ = ("active", "_held", "_serial")

    def __init__(self) -> None:
        self.active = True
        self._held: dict[str | int, bytes] = {}
        self._serial = 0

    def outgoing(self, data: bytes) -> list[bytes]:
        """The stanzas to write now that ``data`` is to be sent (none when it is held)."""
        if self.active:
            return [data]
        el = etree.fromstring(data)
        if _urgent(el):
            return [*self.release(), data]
        key: str | int
        if el.tag == PRESENCE and el.get("type") in AVAILABILITY:
            key = el.get("from", "")
            self._held.pop(key, None)  # the newer presence replaces it, at the end
        else:
            self._serial += 1
            key = self._serial
        self._held[key] = data
        if len(self._held) > MAX_HELD:
            return self.release()
        return []

    def release(self) -> list[bytes]:
        """Everything held, in order; nothing is held afterwards."""
        held = list(self._held.values())
        self._held.clear()
        return held


def _urgent(el: etree._Element) -> bool:
    """An IQ, or a message with a body (itself or a forwarded copy it carries)."""
    return el.tag == IQ or (el.tag != PRESENCE and el.find(f".//{{{NS_CLIENT}}}body") is not None)


def install(front: XMPPFrontEnd) -> None:
    front.feature_hooks.append(lambda conn: f"<csi xmlns='{NS_CSI}'/>")
    front.nonzas[f"{{{NS_CSI}}}active"] = _active
    front.nonzas[f"{{{NS_CSI}}}inactive"] = _inactive


def _active(conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
    bound = _bound(session)
    if bound.csi is not None:
        bound.csi.active = True
        for data in bound.csi.release():
            bound.write(data)


def _inactive(conn: XMPPConnection, session: Session | None, el: etree._Element) -> None:
    bound = _bound(session)
    if bound.csi is None:
        bound.csi = ClientState()
    bound.csi.active = False


def _bound(session: Session | None) -> Session:
    if session is None:
        raise StreamError("not-authorized", "bind a resource first")
    return session
