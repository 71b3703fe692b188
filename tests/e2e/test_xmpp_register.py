"""In-band registration (XEP-0077): off by default; when configured, slixmpp creates an
account before logging in with it, changes its password and removes it."""

from __future__ import annotations

from typing import Any

import pytest
from slixmpp.exceptions import IqError

from .brokers import BrokerFactory, BrokerProcess, merge
from .rawxmpp import RawXmpp
from .xmpp import XmppClient, XmppClients, wait, xmpp_config

PLUGINS = ("xep_0030", "xep_0077", "xep_0199")
REGISTER_GET = b"<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>"


@pytest.fixture
def open_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """A broker with in-band registration switched on."""
    return broker_factory(merge(xmpp_config(), {"xmpp": {"registration": True}}))


def test_registration_is_off_by_default(xmpp_broker: BrokerProcess) -> None:
    raw = RawXmpp(xmpp_broker.host, xmpp_broker.xmpp_port)
    try:
        assert b"iq-register" not in raw.open_stream()
        raw.send(REGISTER_GET)
        reply = raw.read_until(b"</iq>")
        assert b'type="error"' in reply and b"<service-unavailable" in reply
    finally:
        raw.close()


def test_other_iqs_before_authentication_are_still_refused(open_broker: BrokerProcess) -> None:
    raw = RawXmpp(open_broker.host, open_broker.xmpp_port)
    try:
        raw.open_stream()
        raw.send(b"<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
        assert b"<not-authorized" in raw.read_until(b"</stream:stream>")
    finally:
        raw.close()


def test_register_then_log_in(open_broker: BrokerProcess) -> None:
    clients = XmppClients(open_broker)
    try:
        dave = _registering(clients, "dave@localhost/desk", "davepw")
        dave.connect()
        assert str(dave.jid) == "dave@localhost/desk"
        again = clients.login("dave@localhost/phone", password="davepw", plugins=PLUGINS)
        assert str(again.jid) == "dave@localhost/phone"
        assert "jabber:iq:register" in _server_features(again)
    finally:
        clients.close_all()


def test_registering_a_taken_name_conflicts(open_broker: BrokerProcess) -> None:
    raw = RawXmpp(open_broker.host, open_broker.xmpp_port)
    try:
        assert b"iq-register" in raw.open_stream()
        raw.send(
            b"<iq type='set' id='reg2'><query xmlns='jabber:iq:register'>"
            b"<username>alice</username><password>stolen</password></query></iq>"
        )
        reply = raw.read_until(b"</iq>")
        assert b"<conflict" in reply
    finally:
        raw.close()


def test_change_password_and_remove_account(open_broker: BrokerProcess) -> None:
    clients = XmppClients(open_broker)
    try:
        erin = _registering(clients, "erin@localhost/desk", "first")
        erin.connect()
        register = erin.client.plugin["xep_0077"]
        erin.call(register.change_password, "second")
        again = clients.login("erin@localhost/phone", password="second", plugins=PLUGINS)
        again.call(again.client.plugin["xep_0077"].cancel_registration)
        wait(again.disconnected, "the stream closed after removal")
        gone = clients.unconnected("erin@localhost/desk", "second", plugins=PLUGINS)
        assert open_broker.xmpp_port
        gone.run(gone.client.connect, open_broker.host, open_broker.xmpp_port)
        wait(gone.failed_auth, "failed_all_auth")
    finally:
        clients.close_all()


def test_password_change_for_another_account_is_refused(open_broker: BrokerProcess) -> None:
    clients = XmppClients(open_broker)
    try:
        alice = clients.login("alice@localhost/desk", plugins=PLUGINS)
        iq = alice.run(alice.client.make_iq_set)
        iq["register"]["username"] = "bob"
        iq["register"]["password"] = "hijacked"
        with pytest.raises(IqError) as refused:
            alice.iq(iq)
        assert refused.value.iq["error"]["condition"] == "bad-request"
    finally:
        clients.close_all()


def _registering(clients: XmppClients, jid: str, password: str) -> XmppClient:
    """A client that registers its account when the server offers registration."""
    client = clients.unconnected(jid, password, plugins=PLUGINS)
    user = jid.split("@")[0]

    async def register(form: Any) -> None:
        iq = client.client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = user
        iq["register"]["password"] = password
        await iq.send()

    client.run(client.client.add_event_handler, "register", register)
    return client


def _server_features(client: XmppClient) -> Any:
    info = client.call(client.client.plugin["xep_0030"].get_info, jid="localhost")
    return info["disco_info"]["features"]
