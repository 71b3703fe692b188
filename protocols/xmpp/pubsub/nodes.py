"""The node model of publish-subscribe (XEP-0060), sans-I/O: configuration, affiliations,
subscriptions, items, and the access model's verdict on a requester.

The topic service (``service.py``) and PEP (``pep.py``) both keep ``Node`` records, each
written whole to the store's key-value records after a change (``encode``/``decode``).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, fields, replace

import msgpack
from lxml import etree

from protocols.xmpp import forms
from protocols.xmpp.forms import Field, FormError
from protocols.xmpp.jid import JID, parse_jid
from protocols.xmpp.roster import Roster

NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
META_DATA = "http://jabber.org/protocol/pubsub#meta-data"

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
PUBLISH_MODELS = ("publishers", "subscribers", "open")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
NOTIFICATION_TYPES = ("headline", "normal")
AFFILIATIONS = ("owner", "publisher", "publish-only", "member", "none", "outcast")
#: items a node may keep at most, and the largest payload it may accept (bytes)
MAX_ITEMS = 1000
MAX_PAYLOAD = 256 * 1024


class NotAcceptable(FormError):
    """A well-formed form asking for a value the service does not offer."""


@dataclass(frozen=True)
class Config:
    """A node's configuration (the pubsub#node_config fields this service implements)."""

    title: str = ""
    access_model: str = "open"
    roster_groups_allowed: tuple[str, ...] = ()
    publish_model: str = "open"
    max_items: int = 1
    persist_items: bool = True
    deliver_payloads: bool = True
    deliver_notifications: bool = True
    notify_retract: bool = True
    notify_delete: bool = True
    send_last_published_item: str = "on_sub"
    max_payload_size: int = 64 * 1024
    notification_type: str = "headline"

    def fields(self) -> list[Field]:
        """The configuration as form fields (a form to fill, or a result to read)."""

        def choice(var: str, value: str, options: tuple[str, ...]) -> Field:
            return Field(var, "list-single", values=[value], options=[(o, o) for o in options])

        def flag(var: str, value: bool) -> Field:
            return Field(var, "boolean", values=["1" if value else "0"])

        return [
            Field("pubsub#title", values=[self.title]),
            choice("pubsub#access_model", self.access_model, ACCESS_MODELS),
            Field(
                "pubsub#roster_groups_allowed", "list-multi", values=[*self.roster_groups_allowed]
            ),
            choice("pubsub#publish_model", self.publish_model, PUBLISH_MODELS),
            Field("pubsub#max_items", values=[str(self.max_items)]),
            flag("pubsub#persist_items", self.persist_items),
            flag("pubsub#deliver_payloads", self.deliver_payloads),
            flag("pubsub#deliver_notifications", self.deliver_notifications),
            flag("pubsub#notify_retract", self.notify_retract),
            flag("pubsub#notify_delete", self.notify_delete),
            choice("pubsub#send_last_published_item", self.send_last_published_item, SEND_LAST),
            Field("pubsub#max_payload_size", values=[str(self.max_payload_size)]),
            choice("pubsub#notification_type", self.notification_type, NOTIFICATION_TYPES),
        ]

    def form(self, kind: str = "form") -> etree._Element:
        return forms.build(kind, self.fields(), NODE_CONFIG)

    def updated(self, values: dict[str, list[str]], form_type: str = NODE_CONFIG) -> Config:
        """This configuration with a submitted form's values; FormError for a malformed
        one, NotAcceptable for a value out of range.  Fields this service does not know
        are ignored (clients send what other servers offer)."""
        given = forms.form_type(values)
        if given is not None and given != form_type:
            raise FormError(f"FORM_TYPE must be {form_type}")
        changes: dict[str, object] = {}
        for var, found in values.items():
            name = var.removeprefix("pubsub#")
            if var == "FORM_TYPE" or name not in _FIELD_NAMES:
                continue
            changes[name] = _value(name, found)
        return replace(self, **changes)

    def differs(self, values: dict[str, list[str]]) -> str | None:
        """The first field of submitted publish-options this configuration does not meet
        (XEP-0060 7.1.5 preconditions), if any."""
        wanted = Config().updated(values, PUBLISH_OPTIONS)
        for var in values:
            name = var.removeprefix("pubsub#")
            if name in _FIELD_NAMES and getattr(wanted, name) != getattr(self, name):
                return var
        return None

    def record(self) -> dict[str, object]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != f.default
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Config:
        known = {k: v for k, v in record.items() if k in _FIELD_NAMES}
        if "roster_groups_allowed" in known:
            known["roster_groups_allowed"] = tuple(known["roster_groups_allowed"])  # type: ignore[arg-type]
        return cls(**known)  # type: ignore[arg-type]


_FIELD_NAMES = frozenset(f.name for f in fields(Config))


def _value(name: str, found: list[str]) -> object:
    var = f"pubsub#{name}"
    default = getattr(Config, name, None)
    if name == "roster_groups_allowed":
        return tuple(found)
    if isinstance(default, bool):
        return forms.boolean(found, var)
    if isinstance(default, int):
        number = forms.integer(found, var, minimum=0 if name == "max_items" else 1)
        limit = MAX_ITEMS if name == "max_items" else MAX_PAYLOAD
        if number > limit:
            raise NotAcceptable(f"{var} is at most {limit}")
        return number
    value = forms.single(found, var)
    choices = {
        "access_model": ACCESS_MODELS,
        "publish_model": PUBLISH_MODELS,
        "send_last_published_item": SEND_LAST,
        "notification_type": NOTIFICATION_TYPES,
    }.get(name)
    if choices is not None and value not in choices:
        raise NotAcceptable(f"{var} {value!r} is not offered")
    return value


@dataclass
class Subscription:
    jid: JID
    subid: str = field(default_factory=lambda: secrets.token_hex(8))
    #: pubsub#deliver: notifications are sent (XEP-0060 6.3)
    deliver: bool = True

    def options(self, kind: str = "form") -> etree._Element:
        deliver = Field("pubsub#deliver", "boolean", values=["1" if self.deliver else "0"])
        return forms.build(kind, [deliver], SUBSCRIBE_OPTIONS)

    def set_options(self, values: dict[str, list[str]]) -> None:
        """Apply a submitted subscribe_options form (unknown fields are ignored)."""
        if forms.form_type(values) not in (None, SUBSCRIBE_OPTIONS):
            raise FormError(f"FORM_TYPE must be {SUBSCRIBE_OPTIONS}")
        if "pubsub#deliver" in values:
            self.deliver = forms.boolean(values["pubsub#deliver"], "pubsub#deliver")


@dataclass(frozen=True)
class Item:
    id: str
    #: the payload element's serialized XML (b"" for an item without payload)
    payload: bytes
    #: the publisher's bare JID
    publisher: str = ""


class Node:
    def __init__(self, name: str, config: Config | None = None) -> None:
        self.name = name
        self.config = config or Config()
        #: bare JID -> affiliation other than none
        self.affiliations: dict[JID, str] = {}
        self.subscriptions: list[Subscription] = []
        #: item id -> item, oldest first
        self.items: OrderedDict[str, Item] = OrderedDict()

    # --- affiliations -------------------------------------------------------------------

    def affiliation(self, jid: JID) -> str:
        return self.affiliations.get(jid.bare, "none")

    def owners(self) -> list[JID]:
        return [jid for jid, kind in self.affiliations.items() if kind == "owner"]

    def is_owner(self, jid: JID) -> bool:
        return self.affiliation(jid) == "owner"

    def may_publish(self, jid: JID) -> bool:
        """The publish model's verdict (XEP-0060 4.1 and the publish_model field)."""
        affiliation = self.affiliation(jid)
        if affiliation == "outcast":
            return False
        if affiliation in ("owner", "publisher", "publish-only"):
            return True
        model = self.config.publish_model
        return model == "open" or model == "subscribers" and bool(self.subscriptions_of(jid))

    def refusal(self, jid: JID, roster: Roster | None) -> tuple[str, str] | None:
        """(stanza condition, pubsub condition) refusing ``jid`` access to the items and
        subscriptions under the access model (XEP-0060 6.1.3), or None; ``roster`` is the
        owner's."""
        affiliation = self.affiliation(jid)
        if affiliation == "outcast":
            return "forbidden", ""
        if affiliation in ("owner", "publisher", "member") or not self.owners():
            return None
        model = self.config.access_model
        if model == "open":
            return None
        if model == "presence":
            if roster is None or not roster.state(jid.bare).from_:
                return "not-authorized", "presence-subscription-required"
            return None
        if model == "roster":
            item = roster.items.get(jid.bare) if roster is not None else None
            allowed = set(self.config.roster_groups_allowed)
            if item is None or not allowed.intersection(item.groups):
                return "not-authorized", "not-in-roster-group"
            return None
        return "not-allowed", "closed-node"

    # --- subscriptions ------------------------------------------------------------------

    def subscriptions_of(self, jid: JID) -> list[Subscription]:
        """Subscriptions of exactly ``jid`` (a bare JID's are not a full JID's)."""
        return [s for s in self.subscriptions if s.jid == jid]

    def subscription(self, subid: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.subid == subid), None)

    # --- items --------------------------------------------------------------------------

    def add_item(self, item: Item) -> list[str]:
        """Keep ``item`` as the newest; returns the ids of items it pushed out."""
        self.items.pop(item.id, None)
        self.items[item.id] = item
        dropped = []
        while len(self.items) > max(self.config.max_items, 1):
            dropped.append(self.items.popitem(last=False)[0])
        return dropped

    def newest(self, count: int | None = None) -> list[Item]:
        items = list(self.items.values())
        return items if count is None else items[max(0, len(items) - count) :]

    # --- the stored record --------------------------------------------------------------

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "config": self.config.record(),
                "affiliations": {str(j): a for j, a in self.affiliations.items()},
                "subscriptions": [[str(s.jid), s.subid, s.deliver] for s in self.subscriptions],
                "items": [[i.id, i.payload, i.publisher] for i in self.items.values()],
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, name: str, data: bytes) -> Node:
        record = msgpack.unpackb(data, raw=False)
        node = cls(name, Config.from_record(record["config"]))
        node.affiliations = {parse_jid(j): a for j, a in record["affiliations"].items()}
        node.subscriptions = [
            Subscription(parse_jid(jid), subid, deliver)
            for jid, subid, deliver in record["subscriptions"]
        ]
        for item_id, payload, publisher in record["items"]:
            node.items[item_id] = Item(item_id, payload, publisher)
        return node
