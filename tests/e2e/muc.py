"""Helpers for the multi-user chat tests (XEP-0045) on slixmpp's xep_0045 plugin: joining,
configuring rooms with data forms, admin items, and waiting for the stanzas a room sends.

Every message a client receives lands in its ``messages`` queue (history, subjects and
groupchat alike), so the helpers that wait skip what the test is not after.
"""

from __future__ import annotations

import queue
import time
from typing import Any
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .xmpp import TIMEOUT, XmppClient, XmppClients, wait
from .xmpp_sync import round_trip

SERVICE = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = f"{NS_MUC}#user"
NS_ADMIN = f"{NS_MUC}#admin"
NS_OWNER = f"{NS_MUC}#owner"
NS_DATA = "jabber:x:data"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"
NS_PING = "urn:xmpp:ping"
NS_FORWARD = "urn:xmpp:forward:0"
PLUGINS = ("xep_0030", "xep_0199", "xep_0045", "xep_0004", "xep_0082", "xep_0203")


def room_jid(name: str) -> str:
    return f"{name}@{SERVICE}"


def login(xmpp: XmppClients, user: str, resource: str = "desk") -> XmppClient:
    """A client with the MUC plugin; it collects message errors (``next_error``) and
    room status messages (``statuses``) from the start."""
    client = xmpp.login(f"{user}@localhost/{resource}", plugins=PLUGINS)
    client.watch("message_error")
    client.watch("groupchat_config_status")
    return client


def join(client: XmppClient, room: str, nick: str, **kwargs: Any) -> tuple[Any, ...]:
    """Join and wait for the self-presence and the subject (PresenceError on refusal)."""
    muc = client.client.plugin["xep_0045"]
    return client.call(muc.join_muc_wait, JID(room), nick, timeout=TIMEOUT, **kwargs)


def leave(client: XmppClient, room: str, nick: str) -> None:
    """Leave and wait for the room's goodbye (so a later join does not take it for its
    own self-presence)."""
    own = presences(client)
    client.run(client.client.plugin["xep_0045"].leave_muc, JID(room), nick)
    while True:
        presence = next_presence_of(own, f"{room}/{nick}")
        if presence["type"] == "unavailable":
            return


def join_error(client: XmppClient, room: str, nick: str, **kwargs: Any) -> str:
    """The condition of the error a join is refused with."""
    try:
        join(client, room, nick, **kwargs)
    except PresenceError as exc:
        return exc.condition
    raise AssertionError(f"{nick} joined {room}")


def field(var: str, *values: str) -> ET.Element:
    el = ET.Element(f"{{{NS_DATA}}}field", var=var)
    for value in values:
        ET.SubElement(el, f"{{{NS_DATA}}}value").text = value
    return el


def submit(client: XmppClient, room: str, **config: str) -> slixmpp.Iq:
    """The owner's configuration form, submitted with ``config`` (field
    ``muc#roomconfig_<name>`` per keyword; ``mam`` as it is): an empty one makes an
    instant room."""
    form = ET.Element(f"{{{NS_DATA}}}x", type="submit")
    form.append(field("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"))
    for name, value in config.items():
        form.append(field(name if name == "mam" else f"muc#roomconfig_{name}", value))
    return owner_set(client, room, form)


def owner_set(client: XmppClient, room: str, payload: ET.Element) -> slixmpp.Iq:
    query = ET.Element(f"{{{NS_OWNER}}}query")
    query.append(payload)
    return iq(client, room, "set", query)


def iq(client: XmppClient, to: str, kind: str, payload: ET.Element) -> slixmpp.Iq:
    stanza = client.run(client.client.make_iq, ito=to, itype=kind)
    stanza.append(payload)
    return client.iq(stanza)


def iq_error(client: XmppClient, to: str, kind: str, payload: ET.Element) -> str:
    try:
        iq(client, to, kind, payload)
    except IqError as exc:
        return exc.condition
    raise AssertionError("the iq succeeded")


def create(client: XmppClient, name: str, nick: str, **config: str) -> tuple[Any, ...]:
    """Create room ``name`` as its owner and configure it (instant without ``config``)."""
    joined = join(client, room_jid(name), nick)
    status = joined[0]["muc"]["status_codes"]
    assert 201 in status and 110 in status, status
    submit(client, room_jid(name), **config)
    return joined


def admin(client: XmppClient, room: str, kind: str = "set", **item: str) -> ET.Element:
    query = ET.Element(f"{{{NS_ADMIN}}}query")
    reason = item.pop("reason", None)
    el = ET.SubElement(query, f"{{{NS_ADMIN}}}item", **item)
    if reason is not None:
        ET.SubElement(el, f"{{{NS_ADMIN}}}reason").text = reason
    return query


def say(client: XmppClient, room: str, body: str) -> None:
    client.send_message(room, body, "groupchat")


def next_body(client: XmppClient, kind: str = "groupchat", timeout: float = TIMEOUT) -> Any:
    """The next message of ``kind`` with a body (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            message = client.messages.get(timeout=max(0.0, left))
        except queue.Empty:
            raise AssertionError(f"no {kind} message with a body within {timeout} s") from None
        if message["type"] == kind and message["body"]:
            return message


def next_error(client: XmppClient, timeout: float = TIMEOUT) -> Any:
    """The next message of type error the client got."""
    return wait(client.watch("message_error"), "message error", timeout)


def next_status(client: XmppClient, timeout: float = TIMEOUT) -> set[int]:
    """The status codes of the next room status message (a configuration change)."""
    message = wait(client.watch("groupchat_config_status"), "room status message", timeout)
    return set(message["muc"]["status_codes"])


def no_more_bodies(client: XmppClient) -> None:
    """Nothing with a body is waiting (after a round trip settles what was sent)."""
    round_trip(client)
    while not client.messages.empty():
        message = client.messages.get_nowait()
        assert not message["body"], f"unexpected {message}"


def presences(client: XmppClient) -> queue.Queue[Any]:
    """MUC presences the client receives from now on."""
    return client.watch("groupchat_presence")


def next_presence_of(events: queue.Queue[Any], occupant: str, timeout: float = TIMEOUT) -> Any:
    """The next presence from ``room/nick`` ``occupant`` in ``events``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            presence = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no presence from {occupant} within {timeout} s") from None
        if str(presence["from"]) == occupant:
            return presence


def codes(presence: Any) -> set[int]:
    return set(presence["muc"]["status_codes"])


def archive(client: XmppClient, room: str, query: ET.Element) -> list[ET.Element]:
    """Run an archive query (XEP-0313) to ``room``; the forwarded messages, in order."""
    found: list[ET.Element] = []
    collect = Callback(
        "muc-mam-results",
        MatchXPath(f"{{jabber:client}}message/{{{NS_MAM}}}result"),
        lambda message: found.append(message.xml.find(f".//{{{NS_FORWARD}}}forwarded")),
    )
    client.run(client.client.register_handler, collect)
    answer = iq(client, room, "set", query)
    fin = answer.xml.find(f"{{{NS_MAM}}}fin")
    assert fin is not None and fin.get("complete") == "true"
    round_trip(client)
    client.run(client.client.remove_handler, "muc-mam-results")
    return found


def archived_bodies(client: XmppClient, room: str) -> list[str | None]:
    """The bodies of every message in the room's archive."""
    query = ET.Element(f"{{{NS_MAM}}}query", queryid="all")
    return [r.findtext(".//{jabber:client}body") for r in archive(client, room, query)]
