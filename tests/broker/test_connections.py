"""The registry of client connections the management API lists and closes."""

from __future__ import annotations

from broker.connections import ConnectionRegistry


def test_connections_are_named_by_peer_and_protocol_and_counted() -> None:
    registry = ConnectionRegistry()
    mqtt = registry.register("mqtt", "127.0.0.1:5000", lambda: {"user": "a"}, lambda r: None)
    registry.register("amqp", "127.0.0.1:5001", dict, lambda r: None)
    registry.register("mqtt", "127.0.0.1:5002", dict, lambda r: None)
    assert mqtt.name == "127.0.0.1:5000 -> mqtt"
    assert registry.get(mqtt.name) is mqtt
    assert mqtt.describe() == {"user": "a"}
    assert len(registry) == 3
    assert registry.by_protocol() == {"mqtt": 2, "amqp": 1}


def test_a_name_in_use_gets_a_suffix_and_unregistering_frees_only_its_own() -> None:
    registry = ConnectionRegistry()
    first = registry.register("mqtt", "peer:1", dict, lambda r: None)
    second = registry.register("mqtt", "peer:1", dict, lambda r: None)
    assert second.name == "peer:1 -> mqtt #2"
    registry.unregister(first)
    registry.unregister(first)
    assert list(registry) == [second]


def test_close_hands_the_reason_to_the_front_end() -> None:
    registry = ConnectionRegistry()
    reasons: list[str] = []
    connection = registry.register("xmpp", "peer:2", dict, reasons.append)
    connection.close("maintenance")
    assert reasons == ["maintenance"]
