"""Topic filter validation, `$`-topics and the $SYS/broker statistics."""

from __future__ import annotations

import re
import time

import pytest

from .brokers import BrokerFactory, BrokerProcess
from .clients import Clients, flush, round_trip
from .rawmqtt import ConnectionClosed

CONNECTED = "$SYS/broker/clients/connected"
SYS_TOPICS = {
    CONNECTED,
    "$SYS/broker/messages/received",
    "$SYS/broker/uptime",
    "$SYS/broker/version",
}


@pytest.mark.parametrize("bad_filter", ["a/#/b", "a+", "a/b#", "#/a", ""])
def test_invalid_filter_is_refused(
    broker: BrokerProcess, clients: Clients, bad_filter: str
) -> None:
    """MQTT 3.1.1 allows either a SUBACK failure (0x80) or closing the connection."""
    raw = clients.raw(broker)
    assert raw.connect("filters") == (False, 0)
    try:
        codes = raw.subscribe([("ok/t", 1), (bad_filter, 1)])
    except ConnectionClosed:
        pass
    else:
        assert codes == [1, 0x80]
    round_trip(clients.paho(broker))


def test_leading_wildcards_do_not_match_sys_topics(
    broker_factory: BrokerFactory, clients: Clients
) -> None:
    broker = broker_factory({"acl": []})  # no ACL, so that nothing refuses `#`
    wildcard = clients.paho(broker)
    assert wildcard.subscribe(("#", 0), ("+/broker/uptime", 0)) == [0, 0]
    sys_sub = clients.paho(broker)
    assert sys_sub.subscribe(("$SYS/broker/uptime", 0)) == [0]
    while sys_sub.get().retain:
        pass  # wait for a periodic publish made while `wildcard` was subscribed
    flush(wildcard, wildcard, "not/dollar")


def test_sys_broker_statistics_are_published(broker: BrokerProcess, clients: Clients) -> None:
    sub = clients.paho(broker)
    assert sub.subscribe(("$SYS/broker/#", 0)) == [0]
    values: dict[str, bytes] = {}

    def complete() -> bool:
        """Every topic seen, and a count that includes this subscriber (not a stale one)."""
        return values.keys() >= SYS_TOPICS and values[CONNECTED] not in (b"", b"0")

    deadline = time.monotonic() + 10
    while not complete():
        msg = sub.get(timeout=max(deadline - time.monotonic(), 0.01))
        values[msg.topic] = msg.payload
    assert int(values[CONNECTED]) >= 1
    assert int(values["$SYS/broker/messages/received"]) >= 0
    assert re.fullmatch(rb"\d+ seconds", values["$SYS/broker/uptime"])
    assert values["$SYS/broker/version"]
