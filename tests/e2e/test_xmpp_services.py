"""The server's informational and per-account services with slixmpp: service discovery
and entity capabilities, ping both ways, software version, vCards, private XML storage."""

from __future__ import annotations

import queue
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from .brokers import BrokerFactory, merge
from .rawxmpp import RawXmpp
from .xmpp import XmppClient, XmppClients, wait, xmpp_config
from .xmpp_sync import wait_until_stored

SERVICES = (
    "xep_0030",
    "xep_0054",
    "xep_0092",
    "xep_0115",
    "xep_0199",
)
NS_CAPS = "http://jabber.org/protocol/caps"


def _features(client: XmppClient, jid: str | None = "localhost", node: str | None = None) -> Any:
    return client.call(client.client.plugin["xep_0030"].get_info, jid=jid, node=node)


# --- service discovery and capabilities -------------------------------------------------


def test_disco_info_lists_the_server_features(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    info = _features(alice)["disco_info"]
    assert ("server", "im", None, "broker") in info["identities"]
    for feature in (
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "vcard-temp",
        "jabber:iq:private",
        "urn:xmpp:blocking",
    ):
        assert feature in info["features"]
    assert "jabber:iq:register" not in info["features"]


def test_disco_items_and_account_info(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    items = alice.call(alice.client.plugin["xep_0030"].get_items, jid="localhost")
    assert isinstance(items["disco_items"]["items"], set)
    account = _features(alice, "bob@localhost")["disco_info"]
    assert ("account", "registered", None, None) in account["identities"]


def test_caps_in_stream_features_verify(xmpp: XmppClients) -> None:
    alice = xmpp.unconnected("alice@localhost/desk", plugins=SERVICES)
    caps: queue.Queue[Any] = queue.Queue()

    def spy(stanza: Any) -> Any:
        if stanza.name == "features" and (c := stanza.xml.find(f"{{{NS_CAPS}}}c")) is not None:
            caps.put(dict(c.attrib))
        return stanza

    alice.run(alice.client.add_filter, "in", spy)
    alice.connect()
    advertised = wait(caps, "caps in the stream features")
    assert advertised["hash"] == "sha-1"
    info = _features(alice)["disco_info"]
    computed = alice.run(alice.client.plugin["xep_0115"].generate_verstring, info, "sha-1")
    assert advertised["ver"] == computed
    node = f"{advertised['node']}#{advertised['ver']}"
    at_node = _features(alice, node=node)["disco_info"]
    assert at_node["node"] == node
    assert at_node["features"] == info["features"]


# --- ping, version ----------------------------------------------------------------------


def test_ping_the_server_and_an_account(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    ping = alice.client.plugin["xep_0199"]
    assert alice.call(ping.ping, "localhost") >= 0
    assert alice.call(ping.ping, "bob@localhost") >= 0


def test_server_pings_an_idle_client_that_answers(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(merge(xmpp_config(), {"xmpp": {"ping_interval": 1, "ping_timeout": 1}}))
    clients = XmppClients(broker)
    try:
        alice = clients.unconnected("alice@localhost/desk", plugins=SERVICES)
        pings: queue.Queue[Any] = queue.Queue()
        path = StanzaPath("iq@type=get/ping")
        alice.run(alice.client.register_handler, Callback("server ping", path, pings.put))
        alice.connect()
        for _ in range(3):  # each answered ping keeps the stream open for the next one
            assert wait(pings, "a ping from the server")["from"] == "localhost"
        assert alice.disconnected.empty()
    finally:
        clients.close_all()


def test_server_closes_a_client_that_does_not_answer(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(merge(xmpp_config(), {"xmpp": {"ping_interval": 1, "ping_timeout": 1}}))
    raw = RawXmpp(broker.host, broker.xmpp_port)
    try:
        raw.login("alice", "alicepw", "raw")
        raw.read_until(b"urn:xmpp:ping")
        assert b"<connection-timeout" in raw.read_until(b"</stream:stream>")
    finally:
        raw.close()


def test_software_version(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    reply = alice.call(alice.client.plugin["xep_0092"].get_version, "localhost")
    version = reply["software_version"]
    assert version["name"] == "broker"
    assert version["version"]


# --- vCards, private storage ------------------------------------------------------------


def test_vcard_set_get_and_another_users(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    vcards = alice.client.plugin["xep_0054"]
    empty = alice.call(vcards.get_vcard, "alice@localhost")
    assert not empty["vcard_temp"]["FN"]
    vcard = alice.run(vcards.make_vcard)
    vcard["FN"] = "Alice Liddell"
    vcard["NICKNAME"] = "alice"
    alice.call(vcards.publish_vcard, vcard)
    assert alice.call(vcards.get_vcard, "alice@localhost")["vcard_temp"]["FN"] == "Alice Liddell"
    bob = xmpp.login("bob@localhost/phone", plugins=SERVICES)
    theirs = bob.call(bob.client.plugin["xep_0054"].get_vcard, "alice@localhost")
    assert theirs["vcard_temp"]["NICKNAME"] == ["alice"]


def test_vcard_of_another_user_cannot_be_set(xmpp: XmppClients) -> None:
    bob = xmpp.login("bob@localhost/phone", plugins=SERVICES)
    iq = bob.run(bob.client.make_iq_set, ito="alice@localhost")
    iq.append(ET.fromstring("<vCard xmlns='vcard-temp'><FN>Not Alice</FN></vCard>"))
    with pytest.raises(IqError) as refused:
        bob.iq(iq)
    assert refused.value.iq["error"]["condition"] == "forbidden"


def test_vcard_and_private_storage_survive_a_restart(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    vcards = alice.client.plugin["xep_0054"]
    vcard = alice.run(vcards.make_vcard)
    vcard["FN"] = "Alice Liddell"
    alice.call(vcards.publish_vcard, vcard)
    _private_set(alice, "<notes xmlns='urn:test:notes'><note>kept</note></notes>")
    wait_until_stored(xmpp.broker)
    xmpp.broker.kill()
    xmpp.broker.start()
    again = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    fetched = again.call(again.client.plugin["xep_0054"].get_vcard, "alice@localhost")
    assert fetched["vcard_temp"]["FN"] == "Alice Liddell"
    notes = _private_get(again, "<notes xmlns='urn:test:notes'/>")
    assert notes.findtext("{urn:test:notes}note") == "kept"


def test_private_storage_set_and_get(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    empty = _private_get(alice, "<storage xmlns='storage:bookmarks'/>")
    assert len(empty) == 0
    _private_set(
        alice,
        "<storage xmlns='storage:bookmarks'><conference jid='tea@conference.localhost'/></storage>",
    )
    stored = _private_get(alice, "<storage xmlns='storage:bookmarks'/>")
    assert stored[0].get("jid") == "tea@conference.localhost"
    bob = xmpp.login("bob@localhost/phone", plugins=SERVICES)
    assert len(_private_get(bob, "<storage xmlns='storage:bookmarks'/>")) == 0


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        ("<query xmlns='jabber:iq:roster'/>", "not-acceptable"),
        ("", "bad-request"),
    ],
)
def test_private_storage_refusals(xmpp: XmppClients, payload: str, condition: str) -> None:
    alice = xmpp.login("alice@localhost/desk", plugins=SERVICES)
    with pytest.raises(IqError) as refused:
        _private_set(alice, payload)
    assert refused.value.iq["error"]["condition"] == condition


def _private_set(client: XmppClient, data: str) -> None:
    iq = client.run(client.client.make_iq_set)
    iq.append(ET.fromstring(f"<query xmlns='jabber:iq:private'>{data}</query>"))
    client.iq(iq)


def _private_get(client: XmppClient, wanted: str) -> Any:
    """The stored element named like ``wanted``."""
    iq = client.run(client.client.make_iq_get)
    iq.append(ET.fromstring(f"<query xmlns='jabber:iq:private'>{wanted}</query>"))
    reply = client.iq(iq)
    query = reply.xml.find("{jabber:iq:private}query")
    return query[0]
