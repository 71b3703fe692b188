"""Helpers for the publish-subscribe tests: slixmpp clients with the pubsub plugins, the
service's JID, data forms, and stanza errors as (condition, pubsub condition)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from .xmpp import XmppClient, XmppClients
from .xmpp_sync import round_trip

SERVICE = "pubsub.localhost"
PLUGINS = ("xep_0030", "xep_0199", "xep_0004", "xep_0060")
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = f"{NS_PUBSUB}#event"
NS_PAYLOAD = "urn:broker:payload:0"
NS_ERRORS = f"{NS_PUBSUB}#errors"


def login(xmpp: XmppClients, jid: str, **kwargs: Any) -> XmppClient:
    return xmpp.login(jid, plugins=kwargs.pop("plugins", PLUGINS), **kwargs)


def pubsub(client: XmppClient) -> Any:
    return client.client.plugin["xep_0060"]


def form(values: dict[str, Any], form_type: str | None = None, kind: str = "submit") -> Form:
    """A submitted data form; ``form_type`` becomes a hidden FORM_TYPE field."""
    x = Form()
    x["type"] = kind
    if form_type is not None:
        x.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in values.items():
        if isinstance(value, bool):
            x.add_field(var=var, ftype="boolean", value=value)
        elif isinstance(value, list):
            x.add_field(var=var, ftype="list-multi", value=value)
        else:
            x.add_field(var=var, value=value)
    return x


def config(**values: Any) -> Form:
    return form({f"pubsub#{k}": v for k, v in values.items()}, f"{NS_PUBSUB}#node_config")


def publish_options(**values: Any) -> Form:
    return form({f"pubsub#{k}": v for k, v in values.items()}, f"{NS_PUBSUB}#publish-options")


def refused(call: Callable[[], Any]) -> tuple[str, str]:
    """The (stanza condition, pubsub condition) of the error the call is answered with."""
    try:
        call()
    except IqError as exc:
        error = exc.iq["error"]
        # read from the XML: slixmpp knows not every condition (precondition-not-met)
        pubsub_conditions = [
            child.tag.split("}")[1]
            for child in error.xml
            if child.tag.startswith(f"{{{NS_ERRORS}}}")
        ]
        return error["condition"], "".join(pubsub_conditions)
    raise AssertionError("the request was not refused")


def payload(tag: str = "{urn:example:weather}temp", text: str = "") -> slixmpp.ET.Element:
    el = slixmpp.ET.Element(tag)
    el.text = text
    return el


def item_of(message: slixmpp.Message) -> tuple[str, str, Any]:
    """(node, item id, payload element) of a publish notification."""
    items = message["pubsub_event"]["items"]
    item = next(iter(items))
    return items["node"], item["id"], item["payload"]


PEP_PLUGINS = (
    "xep_0030",
    "xep_0199",
    "xep_0004",
    "xep_0060",
    "xep_0115",
    "xep_0163",
    "xep_0084",
    "xep_0172",
)
NS_NICK = "http://jabber.org/protocol/nick"
OMEMO = "eu.siacs.conversations.axolotl"
DEVICELIST = f"{OMEMO}.devicelist"


def pep_login(xmpp: XmppClients, jid: str, plugins: tuple[str, ...] = PEP_PLUGINS) -> XmppClient:
    """A client whose caps announce +notify for what its plugins are interested in; it
    is online once the server has learnt its caps (one disco#info round trip)."""
    client = xmpp.login(jid, plugins=plugins)
    # the server asks for the caps on initial presence, before it answers the first
    # ping; the client answers that question before it sends the second ping
    round_trip(client)
    round_trip(client)
    return client


def contacts(xmpp: XmppClients, owner: str, contact: str) -> None:
    """``contact`` gets ``owner``'s presence (a subscription the owner pre-approved)."""
    a = xmpp.login(f"{owner}@localhost/setup")
    c = xmpp.login(f"{contact}@localhost/setup")
    a.run(a.client.send_presence, pto=f"{contact}@localhost", ptype="subscribed")
    c.run(c.client.send_presence, pto=f"{owner}@localhost", ptype="subscribe")
    round_trip(c)
    round_trip(a)
    a.close()
    c.close()


def element(tag: str, text: str = "", **attrs: str) -> slixmpp.ET.Element:
    el = slixmpp.ET.Element(tag, attrs)
    el.text = text or None
    return el


def device_list(*ids: int) -> slixmpp.ET.Element:
    listing = element(f"{{{OMEMO}}}list")
    for device in ids:
        listing.append(element(f"{{{OMEMO}}}device", id=str(device)))
    return listing


def omemo_bundle() -> slixmpp.ET.Element:
    keys = element(f"{{{OMEMO}}}bundle")
    keys.append(element(f"{{{OMEMO}}}signedPreKeyPublic", "BQ==", signedPreKeyId="1"))
    keys.append(element(f"{{{OMEMO}}}signedPreKeySignature", "c2ln"))
    keys.append(element(f"{{{OMEMO}}}identityKey", "aWQ="))
    prekeys = element(f"{{{OMEMO}}}prekeys")
    prekeys.append(element(f"{{{OMEMO}}}preKeyPublic", "cGs=", preKeyId="1"))
    keys.append(prekeys)
    return keys
