"""Stream management (XEP-0198) with slixmpp: acks both ways, resumption after the TCP
connection is cut, and what happens to a session nobody resumes."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest
from slixmpp import Message
from slixmpp.plugins.xep_0198 import stanza as sm_stanza
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .brokers import BrokerFactory, merge
from .xmpp import PLUGINS, XmppClient, XmppClients, wait, xmpp_config

SM_PLUGINS = (*PLUGINS, "xep_0198")


def managed(xmpp: XmppClients, jid: str) -> XmppClient:
    """A connected client that has stream management enabled (with resumption)."""
    client = xmpp.unconnected(jid, plugins=SM_PLUGINS)
    enabled = client.watch("sm_enabled")
    client.connect()
    wait(enabled, "sm_enabled")
    return client


def requests_from_server(client: XmppClient) -> queue.Queue[Any]:
    """The server's ``<r/>`` requests, as the client sees them."""
    requests: queue.Queue[Any] = queue.Queue()
    matcher = MatchXPath(sm_stanza.RequestAck.tag_name())
    handler = Callback("server ack request", matcher, requests.put, instream=True)
    client.run(client.client.register_handler, handler)
    return requests


def cut(client: XmppClient) -> None:
    """Drop the TCP connection without closing the stream, as a phone losing its network."""
    client.run(client.client.transport.abort)
    wait(client.disconnected, "disconnected")


def reconnect(client: XmppClient) -> None:
    resumed = client.watch("session_resumed")
    client.run(client.client.connect, client.broker.host, client.broker.xmpp_port)
    wait(resumed, "session_resumed")


def test_acks_flow_both_ways(xmpp: XmppClients) -> None:
    alice = managed(xmpp, "alice@localhost/desk")
    bob = xmpp.login("bob@localhost/phone")
    acked = alice.watch("stanza_acked")
    requests = requests_from_server(alice)
    for n in range(3):
        alice.send_message("bob@localhost/phone", f"m{n}")
    alice.run(alice.client.plugin["xep_0198"].request_ack)
    for n in range(3):
        assert bob.next_message()["body"] == f"m{n}"
    bodies: list[str] = []
    while len(bodies) < 3:  # the server acks each (and the initial presence before them)
        stanza = wait(acked, "stanza_acked")
        if isinstance(stanza, Message):
            bodies.append(stanza["body"])
    assert bodies == ["m0", "m1", "m2"]
    bob.send_message("alice@localhost/desk", "to alice")
    assert alice.next_message()["body"] == "to alice"
    wait(requests, "an ack request from the server")


def test_resumption_after_the_connection_is_cut_loses_no_message(xmpp: XmppClients) -> None:
    alice = managed(xmpp, "alice@localhost/desk")
    bob = xmpp.login("bob@localhost/phone")
    bob.send_message("alice@localhost/desk", "before")
    assert alice.next_message()["body"] == "before"
    cut(alice)
    bob.send_message("alice@localhost/desk", "while down, to the full JID")
    bob.send_message("alice@localhost", "while down, to the bare JID")
    reconnect(alice)
    assert alice.next_message()["body"] == "while down, to the full JID"
    assert alice.next_message()["body"] == "while down, to the bare JID"
    bob.send_message("alice@localhost/desk", "after")
    assert alice.next_message()["body"] == "after"  # nothing delivered twice
    alice.send_message("bob@localhost/phone", "alice is back")
    assert bob.next_message()["body"] == "alice is back"


def test_resuming_an_unknown_session_fails_and_the_client_binds(xmpp: XmppClients) -> None:
    alice = managed(xmpp, "alice@localhost/desk")
    failed = alice.watch("sm_failed")
    enabled = alice.watch("sm_enabled")
    alice.run(setattr, alice.client.plugin["xep_0198"], "sm_id", "no-such-session")
    cut(alice)
    alice.run(alice.client.connect, alice.broker.host, alice.broker.xmpp_port)
    failed_stanza = wait(failed, "sm_failed")
    assert failed_stanza.xml.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    wait(alice.session_started, "session_start")
    wait(enabled, "sm_enabled")


def test_a_resumption_takes_over_from_a_stream_still_open(xmpp: XmppClients) -> None:
    desk = managed(xmpp, "alice@localhost/desk")
    bob = xmpp.login("bob@localhost/laptop")
    old = desk.client.plugin["xep_0198"]
    successor = xmpp.unconnected("alice@localhost/desk", plugins=SM_PLUGINS)
    new = successor.client.plugin["xep_0198"]
    for name in ("sm_id", "handled", "seq", "last_ack"):
        successor.run(setattr, new, name, desk.run(getattr, old, name))
    reconnect(successor)
    wait(desk.disconnected, "disconnected")  # the old stream is closed
    bob.send_message("alice@localhost/desk", "to the new stream")
    assert successor.next_message()["body"] == "to the new stream"


def test_an_ack_of_stanzas_never_sent_is_a_stream_error(xmpp: XmppClients) -> None:
    desk = managed(xmpp, "alice@localhost/desk")
    errors = desk.watch("stream_error")
    desk.run(desk.client.send_raw, "<a xmlns='urn:xmpp:sm:3' h='1000'/>")
    assert wait(errors, "stream_error")["condition"] == "undefined-condition"


@pytest.fixture
def quick_expiry(broker_factory: BrokerFactory) -> Iterator[XmppClients]:
    """A broker whose sessions may be resumed for one second only."""
    pool = XmppClients(broker_factory(merge(xmpp_config(), {"xmpp": {"resume_timeout": 1}})))
    yield pool
    pool.close_all()


def test_unacked_messages_go_to_another_resource_when_resumption_times_out(
    quick_expiry: XmppClients,
) -> None:
    desk = managed(quick_expiry, "alice@localhost/desk")
    phone = quick_expiry.login("alice@localhost/phone")
    bob = quick_expiry.login("bob@localhost/laptop")
    cut(desk)
    bob.send_message("alice@localhost/desk", "for the desk")
    quick_expiry.broker.wait_logged("xmpp session ended without resumption", 1)
    assert phone.next_message()["body"] == "for the desk"


def test_unacked_messages_are_stored_offline_when_resumption_times_out(
    quick_expiry: XmppClients,
) -> None:
    desk = managed(quick_expiry, "alice@localhost/desk")
    bob = quick_expiry.login("bob@localhost/laptop")
    cut(desk)
    bob.send_message("alice@localhost/desk", "kept for later")
    quick_expiry.broker.wait_logged("xmpp session ended without resumption", 1)
    laptop = quick_expiry.login("alice@localhost/laptop")
    assert laptop.next_message()["body"] == "kept for later"


def test_a_shutdown_stores_what_a_hibernating_session_had_not_acked(xmpp: XmppClients) -> None:
    desk = managed(xmpp, "alice@localhost/desk")
    bob = xmpp.login("bob@localhost/laptop")
    cut(desk)
    bob.send_message("alice@localhost/desk", "kept across the restart")
    bob.call(bob.client.plugin["xep_0199"].send_ping, "localhost")  # the message is queued
    assert xmpp.broker.terminate() == 0
    xmpp.broker.start()
    laptop = xmpp.login("alice@localhost/laptop")
    assert laptop.next_message()["body"] == "kept across the restart"
