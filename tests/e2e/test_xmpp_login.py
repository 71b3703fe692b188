"""Logging in over XMPP with slixmpp: STARTTLS, each SASL mechanism, resource binding."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .xmpp import XmppClients, wait


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_login_with_each_mechanism(xmpp: XmppClients, mechanism: str) -> None:
    client = xmpp.login("alice@localhost/desk", mechanism=mechanism)
    assert str(client.jid) == "alice@localhost/desk"


def test_wrong_password_is_refused(xmpp: XmppClients) -> None:
    client = xmpp.unconnected("alice@localhost/desk", "wrong")
    assert client.broker.xmpp_port
    client.run(client.client.connect, client.broker.host, client.broker.xmpp_port)
    wait(client.failed_auth, "failed_all_auth")


def test_server_generates_a_resource(xmpp: XmppClients) -> None:
    client = xmpp.login("bob@localhost")
    assert client.jid.resource


def test_message_to_full_and_bare_jid(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    bob = xmpp.login("bob@localhost/phone")
    alice.send_message("bob@localhost/phone", "to the full JID")
    message = bob.next_message()
    assert (message["body"], str(message["from"])) == ("to the full JID", "alice@localhost/desk")
    alice.send_message("bob@localhost", "to the bare JID")
    assert bob.next_message()["body"] == "to the bare JID"


def test_message_to_a_nonexistent_user_errors(xmpp: XmppClients) -> None:
    alice = xmpp.login("alice@localhost/desk")
    alice.send_message("nobody@localhost", "hello?")
    reply = alice.next_message()
    assert reply["type"] == "error"
    assert reply["error"]["condition"] == "service-unavailable"


def test_user_added_with_the_cli_logs_in(xmpp: XmppClients) -> None:
    broker = xmpp.broker
    broker.terminate()
    added = subprocess.run(
        [sys.executable, "-m", "broker", "user", "add", "dave", "--password", "davepw"]
        + ["--data-dir", str(broker.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert added.returncode == 0, added.stderr
    broker.start()
    dave = xmpp.login("dave@localhost/cli", password="davepw")
    assert str(dave.jid) == "dave@localhost/cli"
