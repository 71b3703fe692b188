"""One multi-user chat room (XEP-0045), sans-I/O: occupants with roles, affiliations, the
configuration, the subject and the message log, and every rule of entering, talking,
moderating and configuring.

A room never touches a socket: each occupant carries ``deliver``, a callable that takes a
serialized stanza for that occupant's real JID (the service hands in the session's send;
tests a list's append), and what must outlive the process or leave the room is reported
to ``RoomEvents`` (the service stores, bridges and forgets rooms).  Refusals raise
``MucError`` with the stanza error condition, which the service answers.

Stanzas the room sends are built as text (lxml only parses what arrives): a groupchat
message is serialized once per room fan-out and each occupant's 'to' spliced into the
bytes, so a message to fifty occupants costs one serialization and fifty joins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from protocols.xmpp.archive import NS_SID, STANZA_ID, Record
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.muc import config as room_config
from protocols.xmpp.muc.archive import RoomLog, parse_since
from protocols.xmpp.muc.config import RoomConfig
from protocols.xmpp.offline import NS_DELAY, stamp_time
from protocols.xmpp.stream import NS_CLIENT

NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = f"{NS_MUC}#user"
NS_ADMIN = f"{NS_MUC}#admin"
NS_OWNER = f"{NS_MUC}#owner"
X_MUC = f"{{{NS_MUC}}}x"
X_USER = f"{{{NS_USER}}}x"
BODY = f"{{{NS_CLIENT}}}body"
SUBJECT = f"{{{NS_CLIENT}}}subject"
THREAD = f"{{{NS_CLIENT}}}thread"

AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
ROLES = ("moderator", "participant", "visitor", "none")
#: rank of each affiliation: who may act on whom
RANK = {"owner": 4, "admin": 3, "member": 2, "none": 1, "outcast": 0}

SELF, NON_ANONYMOUS, LOGGING, CREATED, NICK_CHANGED = 110, 100, 170, 201, 303
BANNED, KICKED, AFFILIATION_REMOVED, MEMBERS_ONLY, CONFIG_CHANGED = 301, 307, 321, 322, 104

_MESSAGE = b"<message"
_MESSAGE_END = b"</message>"


class MucError(Exception):
    """A refusal: ``condition`` is the RFC 6120 stanza error to answer with."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.text = text


class RoomEvents(Protocol):
    """What a room reports to its service."""

    def saved(self, room: Room) -> None:
        """Configuration, affiliations or subject changed (store a persistent room)."""

    def logged(self, room: Room, record: Record, dropped: Record | None) -> None:
        """A message went into the log (``dropped`` fell out of it)."""

    def said(self, room: Room, occupant: Occupant, body: str) -> None:
        """An occupant's groupchat body, for the bridge to the room's topic."""

    def closed(self, room: Room) -> None:
        """The room is gone: destroyed, or temporary and left empty."""


Deliver = Callable[[bytes], None]


@dataclass(eq=False, slots=True)
class Occupant:
    nick: str
    #: the real full JID
    jid: JID
    role: str
    deliver: Deliver
    #: the presence payload other than MUC's own (show, status, caps), serialized
    extra: bytes = b""
    #: `` to='real JID'``, spliced into each stanza for the occupant
    to_attr: bytes = field(init=False, default=b"")
    #: ``room@service/nick`` as text (set by the room)
    occupant_jid: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.to_attr = b" to=" + quoteattr(str(self.jid)).encode()


@dataclass(slots=True)
class JoinRequest:
    """What a join presence asks for beyond the nick: password and history."""

    password: str | None = None
    maxstanzas: int | None = None
    maxchars: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def parse(cls, x: etree._Element | None) -> JoinRequest:
        if x is None:
            return cls()
        request = cls(password=x.findtext(f"{{{NS_MUC}}}password"))
        history = x.find(f"{{{NS_MUC}}}history")
        if history is not None:
            request.maxstanzas = _count(history.get("maxstanzas"))
            request.maxchars = _count(history.get("maxchars"))
            request.seconds = _count(history.get("seconds"))
            since = history.get("since")
            request.since = parse_since(since) if since else None
        return request


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return max(0, int(text))
    except ValueError:
        return None


@dataclass(slots=True)
class Change:
    """One item of a muc#admin set: a role by nick or an affiliation by JID."""

    nick: str | None = None
    jid: JID | None = None
    role: str | None = None
    affiliation: str | None = None
    reason: str = ""


class Room:
    def __init__(
        self,
        jid: JID,
        events: RoomEvents,
        config: RoomConfig | None = None,
        affiliations: dict[str, str] | None = None,
        subject: tuple[str, str] = ("", ""),
        log: Iterable[Record] = (),
        locked: bool = False,
    ) -> None:
        self.jid = jid
        self.jid_text = str(jid)
        self.events = events
        self.config = config or RoomConfig()
        #: bare JID text -> owner/admin/member/outcast (none is not kept)
        self.affiliations: dict[str, str] = dict(affiliations or {})
        #: (text, nick of who set it)
        self.subject = subject
        self.log = RoomLog(log)
        #: a new room waits for its owner's configuration (XEP-0045 10.1)
        self.locked = locked
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}
        self._quoted_jid = quoteattr(self.jid_text)

    # --- who is who ------------------------------------------------------------------

    def affiliation(self, jid: JID) -> str:
        return self.affiliations.get(str(jid.bare), "none")

    def default_role(self, affiliation: str) -> str:
        if affiliation in ("owner", "admin"):
            return "moderator"
        if self.config.moderated and affiliation == "none":
            return "visitor"
        return "participant"

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid_text}/{nick}"

    @property
    def empty(self) -> bool:
        return not self.occupants

    # --- presence: entering, updating, changing nick, leaving (XEP-0045 7.2-7.6, 7.14) -

    def presence(
        self,
        sender: JID,
        nick: str,
        el: etree._Element,
        deliver: Deliver,
        serialize: Callable[[etree._Element], bytes],
        created: bool = False,
    ) -> None:
        """A presence from ``sender`` to ``room/nick``."""
        kind = el.get("type")
        occupant = self.by_jid.get(sender)
        if kind in ("unavailable", "error"):
            if occupant is not None:
                self.leave(occupant, el.findtext(f"{{{NS_CLIENT}}}status") or "")
            return
        if kind is not None:
            raise MucError("bad-request", f"presence of type {kind} is not for a room")
        extra = b"".join(serialize(child) for child in el if child.tag not in (X_MUC, X_USER))
        if occupant is None:
            self._join(sender, nick, extra, JoinRequest.parse(el.find(X_MUC)), deliver, created)
        elif nick != occupant.nick:
            self._change_nick(occupant, nick, extra)
        else:
            occupant.extra = extra
            self._broadcast_presence(occupant)

    def _join(
        self,
        sender: JID,
        nick: str,
        extra: bytes,
        request: JoinRequest,
        deliver: Deliver,
        created: bool,
    ) -> None:
        affiliation = self.affiliation(sender)
        config = self.config
        if self.locked and affiliation != "owner":
            raise MucError("item-not-found", "the room is locked until its owner configures it")
        if affiliation == "outcast":
            raise MucError("forbidden", "you are banned from this room")
        if config.members_only and affiliation == "none":
            raise MucError("registration-required", "the room is for members only")
        if nick in self.occupants:
            raise MucError("conflict", "that nick is taken")
        if (
            config.password_protected
            and RANK[affiliation] < RANK["admin"]
            and request.password != config.password
        ):
            raise MucError("not-authorized", "the room needs a password")
        if config.max_users and len(self.occupants) >= config.max_users and RANK[affiliation] < 3:
            raise MucError("service-unavailable", "the room is full")
        occupant = Occupant(nick, sender, self.default_role(affiliation), deliver, extra)
        occupant.occupant_jid = self.occupant_jid(nick)
        for other in self.occupants.values():
            deliver(self._presence_bytes(other, occupant))
        self.occupants[nick] = occupant
        self.by_jid[sender] = occupant
        codes = [SELF]
        if config.whois == "anyone":
            codes.append(NON_ANONYMOUS)
        if config.mam:
            codes.append(LOGGING)
        if created:
            codes.append(CREATED)
        self._broadcast_presence(occupant, self_codes=codes)
        self._send_history(occupant, request)
        self._send_subject(occupant)

    def _change_nick(self, occupant: Occupant, nick: str, extra: bytes) -> None:
        if nick in self.occupants:
            raise MucError("conflict", "that nick is taken")
        old = occupant.nick
        for other in self.occupants.values():
            codes = [NICK_CHANGED, SELF] if other is occupant else [NICK_CHANGED]
            other.deliver(
                self._presence_bytes(occupant, other, codes, unavailable=True, new_nick=nick)
            )
        del self.occupants[old]
        occupant.nick = nick
        occupant.occupant_jid = self.occupant_jid(nick)
        occupant.extra = extra
        self.occupants[nick] = occupant
        self._broadcast_presence(occupant)

    def leave(self, occupant: Occupant, status: str = "") -> None:
        """The occupant goes (its unavailable presence, or its session ended)."""
        extra = f"<status>{escape(status)}</status>".encode() if status else b""
        occupant.extra = extra
        occupant.role = "none"
        self._remove(occupant, [])

    def _remove(
        self, occupant: Occupant, codes: list[int], actor: str = "", reason: str = ""
    ) -> None:
        """Everyone, the occupant last, learns it is gone; an emptied temporary room
        closes."""
        occupant.role = "none"
        for other in self.occupants.values():
            if other is not occupant:
                other.deliver(
                    self._presence_bytes(occupant, other, codes, True, actor=actor, reason=reason)
                )
        occupant.deliver(
            self._presence_bytes(
                occupant, occupant, [*codes, SELF], True, actor=actor, reason=reason
            )
        )
        del self.occupants[occupant.nick]
        del self.by_jid[occupant.jid]
        if not self.occupants and not self.config.persistent:
            self.events.closed(self)

    def _broadcast_presence(self, occupant: Occupant, self_codes: list[int] | None = None) -> None:
        for other in self.occupants.values():
            codes = (self_codes or [SELF]) if other is occupant else []
            other.deliver(self._presence_bytes(occupant, other, codes))

    def _presence_bytes(
        self,
        occupant: Occupant,
        recipient: Occupant,
        codes: Iterable[int] = (),
        unavailable: bool = False,
        new_nick: str | None = None,
        actor: str = "",
        reason: str = "",
        destroy: str | None = None,
    ) -> bytes:
        """``occupant``'s presence as ``recipient`` gets it: the real JID only for
        moderators, the occupant itself, or everyone in a non-anonymous room."""
        item = f"<item affiliation='{self.affiliation(occupant.jid)}' role='{occupant.role}'"
        if recipient is occupant or recipient.role == "moderator" or self.config.whois == "anyone":
            item += f" jid={quoteattr(str(occupant.jid))}"
        if new_nick is not None:
            item += f" nick={quoteattr(new_nick)}"
        inner = ""
        if actor:
            inner += f"<actor nick={quoteattr(actor)}/>"
        if reason:
            inner += f"<reason>{escape(reason)}</reason>"
        item += f">{inner}</item>" if inner else "/>"
        status = "".join(f"<status code='{code}'/>" for code in codes)
        if destroy is not None:
            status += destroy
        kind = " type='unavailable'" if unavailable else ""
        return b"".join(
            (
                f"<presence xmlns='{NS_CLIENT}' from={quoteattr(occupant.occupant_jid)}".encode(),
                recipient.to_attr,
                f"{kind}>".encode(),
                occupant.extra,
                f"<x xmlns='{NS_USER}'>{item}{status}</x></presence>".encode(),
            )
        )

    # --- history and subject on join (XEP-0045 7.2.15, 7.2.16) --------------------------

    def _send_history(self, occupant: Occupant, request: JoinRequest) -> None:
        records = self.log.history(
            self.config.history_length,
            request.maxstanzas,
            request.maxchars,
            request.seconds,
            request.since,
        )
        for record in records:
            occupant.deliver(self.delayed(record, occupant.to_attr))

    def delayed(self, record: Record, to_attr: bytes) -> bytes:
        """A logged message for history: its stored bytes with a XEP-0203 delay and an
        address spliced in."""
        stanza = record.stanza
        delay = (
            f"<delay xmlns='{NS_DELAY}' from={self._quoted_jid} "
            f"stamp='{stamp_time(record.stamp)}'/>"
        ).encode()
        return b"".join(
            (_MESSAGE, to_attr, stanza[len(_MESSAGE) : -len(_MESSAGE_END)], delay, _MESSAGE_END)
        )

    def _send_subject(self, occupant: Occupant) -> None:
        text, nick = self.subject
        sender = self.occupant_jid(nick) if nick else self.jid_text
        subject = f"<subject>{escape(text)}</subject>" if text else "<subject/>"
        occupant.deliver(
            b"".join(
                (
                    f"<message xmlns='{NS_CLIENT}' type='groupchat' "
                    f"from={quoteattr(sender)}".encode(),
                    occupant.to_attr,
                    f">{subject}</message>".encode(),
                )
            )
        )

    # --- messages (XEP-0045 7.4, 7.5, 8.1) ---------------------------------------------

    def groupchat(
        self, sender: JID, el: etree._Element, serialize: Callable[[etree._Element], bytes]
    ) -> None:
        """A groupchat message to the room: reflected to every occupant, the sender too;
        a subject alone changes the subject."""
        occupant = self.by_jid.get(sender)
        if occupant is None:
            raise MucError("not-acceptable", "only occupants may send to the room")
        if occupant.role == "visitor":
            raise MucError("forbidden", "visitors may not speak in a moderated room")
        body = subject = None
        forged = []
        for child in el:
            tag = child.tag
            if tag == BODY:
                body = child.text or ""
            elif tag == SUBJECT:
                subject = child.text or ""
            elif tag == STANZA_ID and child.get("by") == self.jid_text:
                forged.append(child)
        for child in forged:
            el.remove(child)
        if subject is not None and body is None:
            self._change_subject(occupant, el, subject, serialize)
            return
        el.attrib.pop("to", None)
        el.set("from", occupant.occupant_jid)
        record_id = self.log.next_id()
        sid = etree.SubElement(el, STANZA_ID, nsmap={None: NS_SID})
        sid.set("by", self.jid_text)
        sid.set("id", record_id)
        data = serialize(el)
        self.fan_out(data)
        if body is not None:
            self._log(occupant.occupant_jid, data)
            self.events.said(self, occupant, body)

    def fan_out(self, data: bytes) -> None:
        """One serialized message without 'to' to every occupant, each its own 'to'."""
        if not data.startswith(_MESSAGE):
            raise ValueError("not a serialized message")
        rest = data[len(_MESSAGE) :]
        for occupant in self.occupants.values():
            occupant.deliver(b"".join((_MESSAGE, occupant.to_attr, rest)))

    def say(self, nick: str, body: str) -> None:
        """A message from outside XMPP (the topic bridge) as groupchat from ``nick``."""
        sender = self.occupant_jid(nick)
        data = (
            f"<message xmlns='{NS_CLIENT}' type='groupchat' from={quoteattr(sender)}>"
            f"<body>{escape(body)}</body><stanza-id xmlns='{NS_SID}' by={self._quoted_jid} "
            f"id='{self.log.next_id()}'/></message>"
        ).encode()
        self.fan_out(data)
        self._log(sender, data)

    def _log(self, sender: str, data: bytes) -> None:
        dropped = self.log.oldest_dropped()
        record = self.log.add(sender, data)
        self.events.logged(self, record, dropped)

    def _change_subject(
        self,
        occupant: Occupant,
        el: etree._Element,
        subject: str,
        serialize: Callable[[etree._Element], bytes],
    ) -> None:
        if occupant.role != "moderator" and not (
            self.config.change_subject and occupant.role == "participant"
        ):
            raise MucError("forbidden", "you may not change the subject")
        el.attrib.pop("to", None)
        el.set("from", occupant.occupant_jid)
        self.subject = (subject, occupant.nick)
        self.fan_out(serialize(el))
        self.events.saved(self)

    def private(
        self,
        sender: JID,
        nick: str,
        el: etree._Element,
        serialize: Callable[[etree._Element], bytes],
    ) -> None:
        """A private message to the occupant ``nick`` (XEP-0045 7.5)."""
        occupant = self.by_jid.get(sender)
        if occupant is None:
            raise MucError("not-acceptable", "only occupants may send private messages")
        target = self.occupants.get(nick)
        if target is None:
            raise MucError("item-not-found", "no occupant with that nick")
        allowed = self.config.allow_pm
        if (
            allowed == "none"
            or (allowed == "moderators" and occupant.role != "moderator")
            or (allowed == "participants" and occupant.role == "visitor")
        ):
            raise MucError("forbidden", "private messages are not allowed here")
        el.attrib.pop("to", None)
        el.set("from", occupant.occupant_jid)
        if el.find(X_USER) is None:
            etree.SubElement(el, X_USER, nsmap={None: NS_USER})
        data = serialize(el)
        target.deliver(b"".join((_MESSAGE, target.to_attr, data[len(_MESSAGE) :])))

    # --- moderation (XEP-0045 8, 9: muc#admin) -----------------------------------------

    def admin_items(self, sender: JID, query: etree._Element) -> etree._Element:
        """A muc#admin get: the occupants of a role or the JIDs of an affiliation."""
        item = query.find(f"{{{NS_ADMIN}}}item")
        if item is None:
            raise MucError("bad-request", "ask for a role or an affiliation")
        result = etree.Element(f"{{{NS_ADMIN}}}query", nsmap={None: NS_ADMIN})
        affiliation, role = item.get("affiliation"), item.get("role")
        if affiliation is not None:
            if affiliation not in AFFILIATIONS or affiliation == "none":
                raise MucError("bad-request", f"no affiliation list {affiliation!r}")
            if RANK[self.affiliation(sender)] < RANK["admin"]:
                raise MucError("forbidden", "only admins and owners see affiliation lists")
            for jid, held in sorted(self.affiliations.items()):
                if held == affiliation:
                    etree.SubElement(result, f"{{{NS_ADMIN}}}item", affiliation=held, jid=jid)
            return result
        if role not in ROLES or role == "none":
            raise MucError("bad-request", "ask for a role or an affiliation")
        actor = self.by_jid.get(sender)
        if actor is None or actor.role != "moderator":
            raise MucError("forbidden", "only moderators see role lists")
        for occupant in self.occupants.values():
            if occupant.role == role:
                etree.SubElement(
                    result,
                    f"{{{NS_ADMIN}}}item",
                    affiliation=self.affiliation(occupant.jid),
                    role=role,
                    nick=occupant.nick,
                    jid=str(occupant.jid),
                )
        return result

    def admin_set(self, sender: JID, query: etree._Element) -> bool:
        """A muc#admin set: every item is checked before any is applied.  True when
        affiliations changed (the answer waits for the store)."""
        changes = [_change(item) for item in query.iterfind(f"{{{NS_ADMIN}}}item")]
        if not changes:
            raise MucError("bad-request", "no items")
        actor = self.by_jid.get(sender)
        actor_affiliation = self.affiliation(sender)
        for change in changes:
            if change.role is not None:
                self._check_role_change(actor, actor_affiliation, change)
            else:
                self._check_affiliation_change(actor_affiliation, change)
        affiliations_changed = False
        for change in changes:
            if change.role is not None:
                assert change.nick is not None
                self._set_role(self.occupants[change.nick], change.role, actor, change.reason)
            else:
                assert change.jid is not None and change.affiliation is not None
                self._set_affiliation(change.jid, change.affiliation, actor, change.reason)
                affiliations_changed = True
        if affiliations_changed:
            self.events.saved(self)
        return affiliations_changed

    def _check_role_change(
        self, actor: Occupant | None, actor_affiliation: str, change: Change
    ) -> None:
        if actor is None or actor.role != "moderator":
            raise MucError("forbidden", "only moderators change roles")
        target = self.occupants.get(change.nick or "")
        if target is None:
            raise MucError("item-not-found", "no occupant with that nick")
        if RANK[self.affiliation(target.jid)] >= RANK["admin"] and change.role != "moderator":
            raise MucError("not-allowed", "admins and owners stay moderators")
        moderation = change.role == "moderator" or target.role == "moderator"
        if moderation and RANK[actor_affiliation] < RANK["admin"]:
            raise MucError("not-allowed", "only admins grant or revoke moderation")

    def _check_affiliation_change(self, actor_affiliation: str, change: Change) -> None:
        assert change.jid is not None and change.affiliation is not None
        actor_rank = RANK[actor_affiliation]
        if actor_rank < RANK["admin"]:
            raise MucError("forbidden", "only admins and owners change affiliations")
        current = self.affiliations.get(str(change.jid), "none")
        touches_admins = max(RANK[current], RANK[change.affiliation]) >= RANK["admin"]
        if touches_admins and actor_rank < RANK["owner"]:
            raise MucError("not-allowed", "only owners grant or revoke admin and owner")
        if current == "owner" and change.affiliation != "owner":
            owners = [j for j, a in self.affiliations.items() if a == "owner"]
            if owners == [str(change.jid)]:
                raise MucError("conflict", "a room keeps at least one owner")

    def _set_role(self, target: Occupant, role: str, actor: Occupant | None, reason: str) -> None:
        actor_nick = actor.nick if actor is not None else ""
        if role == "none":
            self._remove(target, [KICKED], actor_nick, reason)
            return
        target.role = role
        self._broadcast_presence(target)

    def _set_affiliation(
        self, jid: JID, affiliation: str, actor: Occupant | None, reason: str
    ) -> None:
        key = str(jid.bare)
        if affiliation == "none":
            self.affiliations.pop(key, None)
        else:
            self.affiliations[key] = affiliation
        actor_nick = actor.nick if actor is not None else ""
        for occupant in [o for o in self.occupants.values() if o.jid.bare == jid.bare]:
            if affiliation == "outcast":
                self._remove(occupant, [BANNED], actor_nick, reason)
            elif affiliation == "none" and self.config.members_only:
                self._remove(occupant, [AFFILIATION_REMOVED], actor_nick, reason)
            else:
                occupant.role = self.default_role(affiliation)
                self._broadcast_presence(occupant)

    # --- ownership (XEP-0045 10: muc#owner) --------------------------------------------

    def require_owner(self, sender: JID) -> None:
        if self.affiliation(sender) != "owner":
            raise MucError("forbidden", "only owners configure the room")

    def configure(self, sender: JID, x: etree._Element) -> bool:
        """A submitted (or cancelled) configuration form; True when the room stays
        (a cancelled first configuration destroys it).  FormError for a bad form."""
        self.require_owner(sender)
        if x.get("type") == "cancel":
            if self.locked:
                self.destroy("")
                return False
            return True
        before = self.config
        self.config = room_config.apply(before, x)
        was_locked, self.locked = self.locked, False
        if not was_locked and self.config != before:
            self._notify(CONFIG_CHANGED)
        if self.config.members_only and not before.members_only:
            for occupant in list(self.occupants.values()):
                if self.affiliation(occupant.jid) == "none":
                    self._remove(occupant, [MEMBERS_ONLY])
        self.events.saved(self)
        if not self.occupants and not self.config.persistent:
            self.events.closed(self)
            return False
        return True

    def _notify(self, code: int) -> None:
        self.fan_out(
            (
                f"<message xmlns='{NS_CLIENT}' type='groupchat' from={self._quoted_jid}>"
                f"<x xmlns='{NS_USER}'><status code='{code}'/></x></message>"
            ).encode()
        )

    def destroy(self, reason: str, alternate: str | None = None) -> None:
        """Everyone leaves with the room's destruction notice; the room closes."""
        destroy = f"<destroy jid={quoteattr(alternate)}" if alternate else "<destroy"
        destroy += f"><reason>{escape(reason)}</reason></destroy>" if reason else "/>"
        for occupant in list(self.occupants.values()):
            occupant.role = "none"
            occupant.deliver(
                self._presence_bytes(occupant, occupant, [SELF], True, destroy=destroy)
            )
        self.occupants.clear()
        self.by_jid.clear()
        self.events.closed(self)

    # --- disco (XEP-0045 6.4) and self-ping (XEP-0410) ----------------------------------

    def features(self) -> list[str]:
        return room_config.features(self.config)

    def is_joined(self, sender: JID, nick: str) -> bool:
        occupant = self.by_jid.get(sender)
        return occupant is not None and occupant.nick == nick


def _change(item: etree._Element) -> Change:
    """One muc#admin item as a change; bad-request if it is neither kind."""
    reason = item.findtext(f"{{{NS_ADMIN}}}reason") or ""
    role, affiliation = item.get("role"), item.get("affiliation")
    if role is not None and affiliation is None:
        if role not in ROLES or not item.get("nick"):
            raise MucError("bad-request", "a role change names a known role and a nick")
        return Change(nick=item.get("nick"), role=role, reason=reason)
    if affiliation is not None and role is None:
        if affiliation not in AFFILIATIONS:
            raise MucError("bad-request", f"unknown affiliation {affiliation!r}")
        try:
            jid = parse_jid(item.get("jid", ""))
        except InvalidJID:
            raise MucError("jid-malformed", "an affiliation change names a JID") from None
        return Change(jid=jid.bare, affiliation=affiliation, reason=reason)
    raise MucError("bad-request", "an item changes a role or an affiliation")
