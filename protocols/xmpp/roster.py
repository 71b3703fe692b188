"""Rosters (RFC 6121 section 2): each user's contact list with the subscription state of
every contact, kept in the store, and the ``jabber:iq:roster`` get and set.

A ``Roster`` holds the listed items and, apart from them, the subscription requests that
wait for the user's answer (a request does not list its sender, RFC 6121 3.1.3).  Every
change bumps the version (``ver``, RFC 6121 2.6) and writes the roster's record to the
store under ``xmpp/roster/<user>``, so rosters survive a restart.  A roster set is
answered here; what a removal means for subscriptions is the caller's (``on_remove``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import msgpack
from lxml import etree

from broker.store.base import Store
from protocols.xmpp.jid import JID, InvalidJID, parse_jid
from protocols.xmpp.session import Session
from protocols.xmpp.stanza import element, error_reply, iq_result
from protocols.xmpp.subscription import NONE, State

NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
QUERY = f"{{{NS_ROSTER}}}query"
ITEM = f"{{{NS_ROSTER}}}item"
GROUP = f"{{{NS_ROSTER}}}group"
KV_PREFIX = "xmpp/roster/"
#: items one roster may list
MAX_ITEMS = 1000
#: characters in an item's name or a group's
MAX_NAME = 1023


@dataclass(frozen=True, slots=True)
class RosterItem:
    jid: JID
    name: str = ""
    groups: tuple[str, ...] = ()
    #: never pending_in: requests are kept apart (``Roster.requests``)
    state: State = NONE


class Roster:
    def __init__(self, epoch: str = "", version: int = 0) -> None:
        #: changes with every new roster record, so a client's ``ver`` from a roster that
        #: was lost (or never stored) is not taken for a current one
        self.epoch = epoch or secrets.token_hex(4)
        self.version = version
        self.items: dict[JID, RosterItem] = {}
        #: bare JID -> the stored 'subscribe' stanza awaiting the user's answer
        self.requests: dict[JID, bytes] = {}

    @property
    def ver(self) -> str:
        return f"{self.epoch}-{self.version}"

    def state(self, contact: JID) -> State:
        item = self.items.get(contact)
        state = item.state if item is not None else NONE
        return replace(state, pending_in=True) if contact in self.requests else state

    def subscribers(self) -> Iterator[JID]:
        """The contacts that get the user's presence (subscription from or both)."""
        return (jid for jid, item in self.items.items() if item.state.from_)

    def subscriptions(self) -> Iterator[JID]:
        """The contacts whose presence the user gets (subscription to or both)."""
        return (jid for jid, item in self.items.items() if item.state.to)

    def set_state(self, contact: JID, state: State, request: bytes = b"") -> RosterItem | None:
        """Record a new subscription state (``request``: the stanza that made it pending
        in); returns the item to push when the listed item changed."""
        if state.pending_in:
            self.requests.setdefault(contact, request)
        else:
            self.requests.pop(contact, None)
        listed = replace(state, pending_in=False)
        item = self.items.get(contact)
        if item is None and listed == NONE or item is not None and item.state == listed:
            return None
        item = RosterItem(contact, state=listed) if item is None else replace(item, state=listed)
        self.items[contact] = item
        self.version += 1
        return item

    def set_item(self, contact: JID, name: str, groups: tuple[str, ...]) -> RosterItem:
        old = self.items.get(contact)
        item = RosterItem(contact, name, groups, old.state if old is not None else NONE)
        self.items[contact] = item
        self.version += 1
        return item

    def remove(self, contact: JID) -> RosterItem | None:
        """Unlist ``contact`` (its pending request goes too); the removed item, if any."""
        self.requests.pop(contact, None)
        item = self.items.pop(contact, None)
        if item is not None:
            self.version += 1
        return item

    # --- the stored record ------------------------------------------------------------

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "epoch": self.epoch,
                "version": self.version,
                "items": [
                    [str(i.jid), i.name, list(i.groups), _flags(i.state)]
                    for i in self.items.values()
                ],
                "requests": {str(jid): stanza for jid, stanza in self.requests.items()},
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> Roster:
        record = msgpack.unpackb(data, raw=False)
        roster = cls(record["epoch"], record["version"])
        for jid, name, groups, flags in record["items"]:
            contact = parse_jid(jid)
            roster.items[contact] = RosterItem(contact, name, tuple(groups), _state(flags))
        roster.requests = {parse_jid(jid): stanza for jid, stanza in record["requests"].items()}
        return roster


_FLAGS = ("to", "from_", "pending_out", "approved")


def _flags(state: State) -> list[str]:
    return [flag for flag in _FLAGS if getattr(state, flag)]


def _state(flags: list[str]) -> State:
    return State(**{flag: True for flag in flags if flag in _FLAGS})


class RosterBook:
    """Every user's roster: read from the store's records at start (decoded when first
    used), written back whole after each change."""

    def __init__(self, store: Store, records: dict[str, bytes]) -> None:
        self._store = store
        self._records = records
        self._rosters: dict[str, Roster] = {}

    def get(self, user: str) -> Roster:
        roster = self._rosters.get(user)
        if roster is None:
            record = self._records.pop(KV_PREFIX + user, None)
            roster = Roster.decode(record) if record is not None else Roster()
            self._rosters[user] = roster
        return roster

    def save(self, user: str) -> None:
        self._store.put_kv(KV_PREFIX + user, self._rosters[user].encode())


class InvalidRosterSet(Exception):
    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class RosterSet:
    jid: JID
    remove: bool
    name: str = ""
    groups: tuple[str, ...] = ()


def parse_roster_set(query: etree._Element, owner: JID) -> RosterSet:
    """The one item of a roster set, checked as RFC 6121 2.3.3 asks; the client's
    'subscription' (other than 'remove') and 'ask' are ignored (2.1.2)."""
    items = query.findall(ITEM)
    if len(items) != 1:
        raise InvalidRosterSet("bad-request", "a roster set carries exactly one item")
    item = items[0]
    try:
        jid = parse_jid(item.get("jid", ""))
    except InvalidJID:
        raise InvalidRosterSet("bad-request", "the item's jid is not valid") from None
    if jid.resource:
        raise InvalidRosterSet("bad-request", "roster items are bare JIDs")
    if jid == owner:
        raise InvalidRosterSet("not-allowed", "the user's own JID is not a contact")
    if item.get("subscription") == "remove":
        return RosterSet(jid, remove=True)
    name = item.get("name", "")
    groups = tuple((group.text or "") for group in item.findall(GROUP))
    if len(name) > MAX_NAME or any(not g or len(g) > MAX_NAME for g in groups):
        raise InvalidRosterSet("not-acceptable", "names and groups have 1 to 1023 characters")
    if len(set(groups)) != len(groups):
        raise InvalidRosterSet("bad-request", "a group is named twice")
    return RosterSet(jid, remove=False, name=name, groups=groups)


def item_element(item: RosterItem, removed: bool = False) -> etree._Element:
    el = etree.Element(ITEM, jid=str(item.jid), nsmap={None: NS_ROSTER})
    if removed:
        el.set("subscription", "remove")
        return el
    if item.name:
        el.set("name", item.name)
    el.set("subscription", item.state.subscription)
    if item.state.pending_out:
        el.set("ask", "subscribe")
    if item.state.approved:
        el.set("approved", "true")
    for group in item.groups:
        etree.SubElement(el, GROUP).text = group
    return el


def query_element(ver: str, items: Iterable[etree._Element] = ()) -> etree._Element:
    query = etree.Element(QUERY, ver=ver, nsmap={None: NS_ROSTER})
    query.extend(items)
    return query


#: the front end's view the roster service needs: the user's bound resources
Resources = Callable[[JID], list[Session]]
#: (session, contact, its state before the removal): what a removal does to subscriptions
OnRemove = Callable[[Session, JID, State], None]


class RosterService:
    """The ``jabber:iq:roster`` get and set of one server, with roster pushes."""

    def __init__(self, book: RosterBook, resources: Resources, on_remove: OnRemove) -> None:
        self.book = book
        self._resources = resources
        self._on_remove = on_remove
        self._push_ids = 0

    def get(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        if not _own(session, iq):
            return
        session.roster_requested = True
        roster = self.book.get(session.bare.local)
        if query.get("ver") == roster.ver:
            session.send(iq_result(iq))  # the client's copy is current (RFC 6121 2.6.3)
            return
        items = [item_element(item) for item in roster.items.values()]
        session.send(iq_result(iq, query_element(roster.ver, items)))

    def set(self, session: Session, iq: etree._Element, query: etree._Element) -> None:
        if not _own(session, iq):
            return
        try:
            request = parse_roster_set(query, session.bare)
        except InvalidRosterSet as exc:
            session.send(error_reply(iq, exc.condition, exc.text))
            return
        roster = self.book.get(session.bare.local)
        if request.remove:
            item = roster.items.get(request.jid)
            if item is None:
                session.send(error_reply(iq, "item-not-found"))
                return
            state = roster.state(request.jid)
            roster.remove(request.jid)
            self._save(session)
            session.send(iq_result(iq))
            self.push(session.bare, item, removed=True)
            self._on_remove(session, request.jid, state)
            return
        if request.jid not in roster.items and len(roster.items) >= MAX_ITEMS:
            session.send(error_reply(iq, "resource-constraint", "the roster is full"))
            return
        item = roster.set_item(request.jid, request.name, request.groups)
        self._save(session)
        session.send(iq_result(iq))
        self.push(session.bare, item)

    def _save(self, session: Session) -> None:
        """Store the user's roster; the answer waits until it is durable."""
        self.book.save(session.bare.local)
        session.conn.sync_before_output = True

    def push(self, owner: JID, item: RosterItem, removed: bool = False) -> None:
        """Send the changed item to every resource of ``owner`` that asked for the
        roster (RFC 6121 2.1.6), with the roster's new version."""
        roster = self.book.get(owner.local)
        for target in self._resources(owner):
            if not target.roster_requested:
                continue
            self._push_ids += 1
            push = element("iq", type="set", id=f"push{self._push_ids}", to=str(target.jid))
            push.append(query_element(roster.ver, [item_element(item, removed)]))
            target.send(push)


def _own(session: Session, iq: etree._Element) -> bool:
    """Only the account itself reads and writes its roster (RFC 6121 2.1.5); otherwise
    answer forbidden."""
    to = iq.get("to")
    try:
        allowed = to is None or parse_jid(to) == session.bare
    except InvalidJID:
        allowed = False
    if not allowed:
        session.send(error_reply(iq, "forbidden", "not your roster"))
    return allowed
