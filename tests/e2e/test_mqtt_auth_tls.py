"""Authentication, ACLs and TLS."""

from __future__ import annotations

import pytest

from .brokers import (
    ALICE,
    NOPERM,
    ON_MOSQUITTO,
    BrokerFactory,
    BrokerProcess,
    Certs,
    skip_on_mosquitto,
)
from .clients import Clients, flush, round_trip

# Mosquitto answers a failed password check with 5 (not authorized); we answer 4, as the
# MQTT 3.1.1 spec names it: bad user name or password.
BAD_CREDENTIALS = "Not authorized" if ON_MOSQUITTO else "Bad user name or password"


def test_user_with_password_connects(broker: BrokerProcess, clients: Clients) -> None:
    round_trip(clients.paho(broker, username=ALICE[0], password=ALICE[1]))


def test_anonymous_client_connects(broker: BrokerProcess, clients: Clients) -> None:
    round_trip(clients.paho(broker))


@pytest.mark.parametrize(
    ("username", "password"),
    [(ALICE[0], "wrong"), ("nobody-by-this-name", "secret")],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_refused(
    broker: BrokerProcess, clients: Clients, username: str, password: str
) -> None:
    client = clients.paho_unconnected(broker, username=username, password=password)
    assert client.connect().reason == BAD_CREDENTIALS
    assert client.disconnected.wait(5)


@skip_on_mosquitto("has no per-vhost permissions")
def test_user_without_permissions_is_not_authorized(
    broker: BrokerProcess, clients: Clients
) -> None:
    client = clients.paho_unconnected(broker, username=NOPERM[0], password=NOPERM[1])
    assert client.connect().reason == "Not authorized"


def test_anonymous_refused_when_disabled(broker_factory: BrokerFactory, clients: Clients) -> None:
    broker = broker_factory({"auth": {"allow_anonymous": False}})
    assert clients.paho_unconnected(broker).connect().reason == "Not authorized"
    round_trip(clients.paho(broker, username=ALICE[0], password=ALICE[1]))


@skip_on_mosquitto("grants every subscription and applies acl_file at delivery")
def test_acl_refused_subscription_gets_failure_code(
    broker: BrokerProcess, clients: Clients
) -> None:
    client = clients.paho(broker)
    assert client.subscribe(("public/t", 1), ("private/t", 1), ("private/#", 0)) == [1, 0x80, 0x80]
    round_trip(client)


def test_acl_refused_publish_is_dropped(broker: BrokerProcess, clients: Clients) -> None:
    alice = clients.paho(broker, username=ALICE[0], password=ALICE[1])
    assert alice.subscribe(("private/t", 1)) == [1]
    anonymous = clients.paho(broker)
    anonymous.publish("private/t", b"sneaky", qos=1)
    flush(alice, alice, "private/t")
    round_trip(anonymous)


def test_tls_connection_with_trusted_ca(
    broker_factory: BrokerFactory, clients: Clients, certs: Certs
) -> None:
    broker = broker_factory(tls=True)
    round_trip(clients.paho(broker, tls=True, ca_file=str(certs.ca)))
