"""The multi-user chat service on ``conference.<domain>`` (XEP-0045): the front end's
component for every stanza to the service, a room or an occupant.

It finds (or, for a join, creates) the room a stanza is for and hands it over; answers
refusals with stanza errors; answers disco, self-pings (XEP-0410) and archive queries
(XEP-0313 on the room's log); keeps persistent rooms in the store (``RoomStore``) and
bridges rooms to their topics (``RoomBridge``).  Any local user may create a room: its
first occupant becomes its owner, and the room stays locked until the owner submits the
configuration form (an empty submission makes it an instant room, XEP-0045 10.1.2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from broker.log import event
from protocols.xmpp import rsm
from protocols.xmpp.archive import NS_MAM, NS_SID, Record
from protocols.xmpp.disco import NS_INFO, NS_ITEMS, info
from protocols.xmpp.forms import FormError
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.mam import DEFAULT_PAGE, MAX_PAGE, BadQuery, parse_filter, send_page
from protocols.xmpp.muc import config as room_config
from protocols.xmpp.muc.bridge import RoomBridge
from protocols.xmpp.muc.config import UnacceptableValue
from protocols.xmpp.muc.room import (
    NS_ADMIN,
    NS_MUC,
    NS_OWNER,
    NS_USER,
    RANK,
    X_USER,
    MucError,
    Occupant,
    Room,
)
from protocols.xmpp.muc.store import PREFIX, RoomStore
from protocols.xmpp.ping import NS_PING
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import MESSAGE, PRESENCE, error_reply, iq_result
from protocols.xmpp.stream import NS_CLIENT

if TYPE_CHECKING:
    from protocols.xmpp.frontend import XMPPFrontEnd

log = logging.getLogger("broker.xmpp")

NS_SELF_PING = f"{NS_MUC}#self-ping-optimization"
SERVICE_IDENTITY = ("conference", "text", "Chat rooms")
SERVICE_FEATURES = {NS_MUC, NS_INFO, NS_ITEMS, NS_PING}
ROOM_FEATURES = {NS_MUC, NS_INFO, NS_ITEMS, NS_SID, NS_SELF_PING, NS_PING}
DATA_X = "{jabber:x:data}x"


class MUCService:
    """The component; ``rooms`` by room name (the JID's local part)."""

    def __init__(self, front: XMPPFrontEnd) -> None:
        self.front = front
        self.domain = f"conference.{front.domain}"
        self.rooms: dict[str, Room] = {}
        #: rooms each full JID has joined (stale entries are skipped, and go with it)
        self._joined: dict[JID, set[str]] = {}
        self.store = RoomStore(front.broker.store, front.broker.take_kv(PREFIX))
        for name, stored in self.store.loaded.items():
            self.rooms[name] = Room(
                JID(name, self.domain, ""),
                self,
                stored.config,
                stored.affiliations,
                stored.subject,
                stored.log,
            )
        self.store.loaded.clear()
        self.bridge = RoomBridge(front, self)
        front.disco_items[self.domain] = SERVICE_IDENTITY[2]

    # --- the component protocol ------------------------------------------------------

    def stanza(self, session: Session, el: etree._Element, to: JID) -> None:
        try:
            if el.tag == MESSAGE:
                self._message(session, el, to)
            elif el.tag == PRESENCE:
                self._presence(session, el, to)
            else:
                self._iq(session, el, to)
        except MucError as exc:
            if el.get("type") not in ("error", "result"):
                session.send(error_reply(el, exc.condition, exc.text))

    def unavailable(self, session: Session) -> None:
        for name in self._joined.pop(session.jid, ()):
            room = self.rooms.get(name)
            occupant = room.by_jid.get(session.jid) if room is not None else None
            if room is not None and occupant is not None:
                room.leave(occupant)

    # --- RoomEvents ------------------------------------------------------------------

    def saved(self, room: Room) -> None:
        self.store.save(room)

    def logged(self, room: Room, record: Record, dropped: Record | None) -> None:
        self.store.log(room, record, dropped)

    def said(self, room: Room, occupant: Occupant, body: str) -> None:
        self.bridge.publish(room, occupant, body)

    def closed(self, room: Room) -> None:
        if self.rooms.get(room.jid.local) is room:
            del self.rooms[room.jid.local]
        self.store.forget(room)

    # --- presence --------------------------------------------------------------------

    def _presence(self, session: Session, el: etree._Element, to: JID) -> None:
        if not to.local:
            return  # presence to the service itself means nothing
        kind = el.get("type")
        if not to.resource:
            if kind is None:
                raise MucError("jid-malformed", "join with a nick: room@service/nick")
            return
        room = self.rooms.get(to.local)
        created = False
        if room is None:
            if kind is not None:
                return
            room = Room(to.bare, self, affiliations={str(session.bare): "owner"}, locked=True)
            self.rooms[to.local] = room
            created = True
        try:
            room.presence(session.jid, to.resource, el, session.send, session.serialize, created)
        finally:
            if created and room.empty:
                del self.rooms[to.local]
        joined = self._joined.setdefault(session.jid, set())
        if session.jid in room.by_jid:
            joined.add(to.local)
        else:
            joined.discard(to.local)

    # --- messages --------------------------------------------------------------------

    def _message(self, session: Session, el: etree._Element, to: JID) -> None:
        kind = el.get("type", "normal")
        if kind == "error":
            return
        if not to.local:
            raise MucError("service-unavailable", "the service takes no messages")
        room = self.rooms.get(to.local)
        if room is None:
            raise MucError("item-not-found", "no such room")
        if to.resource:
            if kind == "groupchat":
                raise MucError("bad-request", "private messages are not of type groupchat")
            room.private(session.jid, to.resource, el, session.serialize)
        elif kind == "groupchat":
            room.groupchat(session.jid, el, session.serialize)
            self.front.counts.messages_out += len(room.occupants)
        elif (x := el.find(X_USER)) is not None and x.find(f"{{{NS_USER}}}invite") is not None:
            self._invite(session, room, x)
        else:
            raise MucError("not-acceptable", "send groupchat to the room")
        self.front.counts.messages_in += 1

    def _invite(self, session: Session, room: Room, x: etree._Element) -> None:
        """A mediated invitation (XEP-0045 7.8.2): the room passes it on."""
        occupant = room.by_jid.get(session.jid)
        if occupant is None:
            raise MucError("not-acceptable", "only occupants invite")
        if room.config.members_only and RANK[room.affiliation(session.jid)] < RANK["admin"]:
            raise MucError("forbidden", "only admins invite to a members-only room")
        for invite in x.iterfind(f"{{{NS_USER}}}invite"):
            try:
                invitee = parse_jid(invite.get("to", ""))
            except InvalidJID:
                raise MucError("jid-malformed", "invite whom?") from None
            reason = invite.findtext(f"{{{NS_USER}}}reason") or ""
            password = room.config.password if room.config.password_protected else ""
            body = f"<reason>{escape(reason)}</reason>" if reason else ""
            extra = f"<password>{escape(password)}</password>" if password else ""
            data = (
                f"<message xmlns='{NS_CLIENT}' from={quoteattr(room.jid_text)} "
                f"to={quoteattr(str(invitee))}><x xmlns='{NS_USER}'>"
                f"<invite from={quoteattr(str(session.jid))}>{body}</invite>{extra}</x></message>"
            ).encode()
            self.front.send_to(invitee, data)

    # --- iq --------------------------------------------------------------------------

    def _iq(self, session: Session, iq: etree._Element, to: JID) -> None:
        kind = iq.get("type")
        if kind in ("result", "error"):
            return
        if kind not in ("get", "set") or iq.get("id") is None or len(iq) != 1:
            raise MucError("bad-request", "an iq needs an id, a type and one payload")
        payload = iq[0]
        if not to.local:
            self._service_iq(session, iq, kind, payload)
            return
        room = self.rooms.get(to.local)
        if to.resource:
            self._occupant_iq(session, iq, payload, room, to.resource)
            return
        if room is None:
            raise MucError("item-not-found", "no such room")
        tag = payload.tag
        if tag == f"{{{NS_INFO}}}query" and kind == "get":
            session.send(iq_result(iq, self._room_info(room)))
        elif tag == f"{{{NS_ITEMS}}}query" and kind == "get":
            session.send(
                iq_result(iq, etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS}))
            )
        elif tag == f"{{{NS_ADMIN}}}query":
            if kind == "get":
                session.send(iq_result(iq, room.admin_items(session.jid, payload)))
            else:
                if room.admin_set(session.jid, payload) and room.config.persistent:
                    session.conn.sync_before_output = True
                session.send(iq_result(iq))
        elif tag == f"{{{NS_OWNER}}}query":
            self._owner(session, iq, kind, payload, room)
        elif tag == f"{{{NS_MAM}}}query":
            self._archive_query(session, iq, kind, payload, room)
        elif tag == f"{{{NS_PING}}}ping" and kind == "get":
            session.send(iq_result(iq))
        else:
            raise MucError("service-unavailable", "the room does not answer that")

    def _service_iq(
        self, session: Session, iq: etree._Element, kind: str, payload: etree._Element
    ) -> None:
        tag = payload.tag
        if kind == "get" and tag == f"{{{NS_INFO}}}query" and payload.get("node") is None:
            session.send(iq_result(iq, info(SERVICE_IDENTITY, SERVICE_FEATURES, None)))
        elif kind == "get" and tag == f"{{{NS_ITEMS}}}query" and payload.get("node") is None:
            result = etree.Element(f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})
            for name, room in sorted(self.rooms.items()):
                if room.config.public and not room.locked:
                    item = etree.SubElement(result, f"{{{NS_ITEMS}}}item", jid=room.jid_text)
                    item.set("name", room.config.name or name)
            session.send(iq_result(iq, result))
        elif kind == "get" and tag == f"{{{NS_PING}}}ping":
            session.send(iq_result(iq))
        else:
            raise MucError("service-unavailable", "the service does not answer that")

    def _occupant_iq(
        self,
        session: Session,
        iq: etree._Element,
        payload: etree._Element,
        room: Room | None,
        nick: str,
    ) -> None:
        """IQs to an occupant JID: self-pings (XEP-0410) are answered here, with
        not-acceptable for a sender that is not in the room."""
        if payload.tag != f"{{{NS_PING}}}ping" or iq.get("type") != "get":
            raise MucError("service-unavailable", "occupants take no queries through the room")
        if room is None or session.jid not in room.by_jid:
            raise MucError("not-acceptable", "you are not in this room")
        if nick not in room.occupants:
            raise MucError("item-not-found", "no occupant with that nick")
        session.send(iq_result(iq))

    def _owner(
        self,
        session: Session,
        iq: etree._Element,
        kind: str,
        payload: etree._Element,
        room: Room,
    ) -> None:
        room.require_owner(session.jid)
        was_stored = room.config.persistent and not room.locked
        if kind == "get":
            query = etree.Element(f"{{{NS_OWNER}}}query", nsmap={None: NS_OWNER})
            query.append(room_config.form(room.config))
            session.send(iq_result(iq, query))
            return
        destroy = payload.find(f"{{{NS_OWNER}}}destroy")
        x = payload.find(DATA_X)
        if destroy is not None:
            room.destroy(
                destroy.findtext(f"{{{NS_OWNER}}}reason") or "", destroy.get("jid") or None
            )
        elif x is not None:
            try:
                room.configure(session.jid, x)
            except UnacceptableValue as exc:
                raise MucError("not-acceptable", str(exc)) from None
            except FormError as exc:
                raise MucError("bad-request", str(exc)) from None
        else:
            raise MucError("bad-request", "submit a form or destroy the room")
        if was_stored or room.config.persistent:
            session.conn.sync_before_output = True
        session.send(iq_result(iq))

    def _room_info(self, room: Room) -> etree._Element:
        features = ROOM_FEATURES | set(room.features())
        if room.config.mam:
            features.add(NS_MAM)
        identity = ("conference", "text", room.config.name or room.jid.local)
        query = info(identity, features, None)
        query.append(room_config.room_info(room.config, len(room.occupants), room.subject[0]))
        return query

    # --- the room's archive (XEP-0313) -------------------------------------------------

    def _archive_query(
        self,
        session: Session,
        iq: etree._Element,
        kind: str,
        query: etree._Element,
        room: Room,
    ) -> None:
        if not room.config.mam:
            raise MucError("service-unavailable", "the room keeps no archive")
        affiliation = room.affiliation(session.jid)
        if affiliation == "outcast" or (
            room.config.members_only and affiliation == "none" and session.jid not in room.by_jid
        ):
            raise MucError("forbidden", "the archive is for the room's members")
        if kind == "get":
            reply = etree.Element(f"{{{NS_MAM}}}query", nsmap={None: NS_MAM})
            session.send(iq_result(iq, reply))
            return
        try:
            wanted = parse_filter(query.find(DATA_X))
            request = rsm.parse_request(query.find(f"{{{rsm.NS_RSM}}}set"), DEFAULT_PAGE, MAX_PAGE)
            found = [r for r in room.log.records if wanted.matches(r)]
            page = rsm.select(found, [r.id for r in found], request)
        except BadQuery as exc:
            raise MucError("bad-request", str(exc)) from None
        except rsm.BadPage as exc:
            raise MucError(exc.condition, str(exc)) from None
        send_page(session, iq, room.jid_text, query.get("queryid"), page)
        event(log, logging.DEBUG, "muc archive query", room=room.jid_text, results=len(page.items))
