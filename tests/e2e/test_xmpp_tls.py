"""XMPP over TLS: STARTTLS on the client port and direct TLS (XEP-0368) on the xmpps port,
both with the configured certificate, checked against a trustme CA."""

from __future__ import annotations

import ssl

import pytest

from .brokers import BrokerFactory, BrokerProcess, Certs, merge
from .rawxmpp import RawXmpp, stream_error_condition
from .xmpp import USERS, XmppClient, XmppClients, wait, xmpp_config


@pytest.fixture
def xmpp_broker(broker_factory: BrokerFactory, certs: Certs) -> BrokerProcess:
    """The XMPP test broker with the trustme certificate and the direct TLS listener."""
    tls = {
        "listeners": {"xmpps": "127.0.0.1:0"},
        "tls": {"cert": str(certs.cert), "key": str(certs.key)},
    }
    return broker_factory(merge(xmpp_config(), tls))


def trusting(client: XmppClient, certs: Certs, *, direct_tls: bool) -> None:
    """Make ``client`` trust only the test CA and use one way into TLS."""
    xmpp = client.client
    client.run(setattr, xmpp, "ca_certs", str(certs.ca))
    client.run(setattr, xmpp, "enable_direct_tls", direct_tls)
    client.run(setattr, xmpp, "enable_starttls", not direct_tls)
    client.run(setattr, xmpp, "enable_plaintext", False)


def configured_certificate(certs: Certs) -> bytes:
    """The DER of the server certificate (the first of the chain in the file)."""
    return ssl.PEM_cert_to_DER_cert(certs.cert.read_text())


@pytest.mark.parametrize("direct_tls", [True, False], ids=["direct-tls", "starttls"])
def test_login_over_tls_with_the_configured_certificate(
    xmpp_broker: BrokerProcess, xmpp: XmppClients, certs: Certs, direct_tls: bool
) -> None:
    port = xmpp_broker.xmpps_port if direct_tls else xmpp_broker.xmpp_port
    assert port
    bob = xmpp.unconnected("bob@localhost/phone")
    trusting(bob, certs, direct_tls=False)
    bob.connect()
    alice = xmpp.unconnected("alice@localhost/tls", mechanism="PLAIN")
    trusting(alice, certs, direct_tls=direct_tls)
    certificates = alice.watch("ssl_cert")
    alice.run(alice.client.connect, xmpp_broker.host, port)
    wait(alice.session_started, "session_start")
    served = ssl.PEM_cert_to_DER_cert(wait(certificates, "ssl_cert"))
    assert served == configured_certificate(certs)
    alice.send_message("bob@localhost/phone", "over tls")
    assert bob.next_message()["body"] == "over tls"


def test_direct_tls_offers_plain_and_no_starttls(xmpp_broker: BrokerProcess, certs: Certs) -> None:
    assert xmpp_broker.xmpps_port
    context = ssl.create_default_context(cafile=str(certs.ca))
    raw = RawXmpp(xmpp_broker.host, xmpp_broker.xmpps_port, tls=context)
    try:
        features = raw.open_stream()
        assert b"starttls" not in features
        assert b"<mechanism>PLAIN</mechanism>" in features
        raw.close()
        raw = RawXmpp(xmpp_broker.host, xmpp_broker.xmpps_port, tls=context)
        assert raw.login("carol", USERS["carol"], "raw") == "carol@localhost/raw"
        raw.send_until_closed(b"<message><body>&bad;</body></message>")
        said = raw.wait_closed()
    finally:
        raw.close()
    assert stream_error_condition(said) == "not-well-formed"


def test_starttls_with_the_trustme_ca_then_sasl(xmpp_broker: BrokerProcess, certs: Certs) -> None:
    assert xmpp_broker.xmpp_port
    raw = RawXmpp(xmpp_broker.host, xmpp_broker.xmpp_port)
    try:
        assert raw.login("carol", USERS["carol"], "raw", ca=certs.ca) == "carol@localhost/raw"
        assert isinstance(raw.sock, ssl.SSLSocket)
        assert raw.sock.getpeercert(binary_form=True) == configured_certificate(certs)
    finally:
        raw.close()
