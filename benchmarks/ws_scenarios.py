"""WebSocket scenarios: MQTT over WebSocket against Mosquitto's websockets listener, and
the native protocol on ``/ws`` (msgpack and JSON) against ours' own MQTT TCP figure.

Targets from the HTTP and WebSocket issue, on the same run: MQTT over WebSocket at least
1.0x Mosquitto's; native msgpack publish-to-subscribe at least 0.7x the same broker's
MQTT TCP QoS 0 1-to-1 figure.  Every broker gets an MQTT TCP listener beside its HTTP one
(Mosquitto 2.0 will not start with websockets listeners alone).
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import ws_wire
from benchmarks.brokers import Broker, BrokerUnavailable
from benchmarks.loadgen import Job
from benchmarks.measure import (
    THROUGHPUT_INFO,
    Figures,
    Metric,
    Scenario,
    Settings,
    Target,
    throughput,
)
from benchmarks.ws_load import WsJob, open_websocket

TOPIC = "bench/t"
#: the native rows' MQTT TCP baseline publishes elsewhere: an overloaded broker may still
#: be routing its backlog when the native run starts
BASELINE_TOPIC = "bench/tcp"
PROTOCOLS = ("mqtt", "http")


def mqtt_over_websocket(b: Broker, s: Settings) -> Figures:
    """QoS 0, 1 publisher -> 1 subscriber, as ``qos0`` but on ``/mqtt`` over WebSocket."""
    sub = WsJob("sub", b.http_port, "ws-sub", "mqtt", TOPIC)
    return throughput(b, [sub], [WsJob("pub", b.http_port, "ws-pub", "mqtt", TOPIC)], s)


def _probe(b: Broker, dialect: str) -> None:
    """Skip the row, not fail it, when the broker does not serve the endpoint."""
    try:
        sock, _ = open_websocket(b.http_port, dialect)
    except ws_wire.HandshakeRefused as e:
        raise BrokerUnavailable(f"no native WebSocket endpoint ({e})") from e
    sock.close()


def native(dialect: str) -> Callable[[Broker, Settings], Figures]:
    """1 publisher -> 1 subscriber on ``/ws`` in ``dialect``, after the same broker's MQTT
    TCP QoS 0 1-to-1 run (its ``qos0`` figure) for the ratio."""

    def run(b: Broker, s: Settings) -> Figures:
        _probe(b, dialect)
        tcp_sub = Job("sub", b.port, "tcp-sub", [BASELINE_TOPIC])
        tcp_pub = Job("pub", b.port, "tcp-pub", [BASELINE_TOPIC])
        baseline = throughput(b, [tcp_sub], [tcp_pub], s)
        sub = WsJob("sub", b.http_port, "ws-sub", dialect, TOPIC)
        ws = throughput(b, [sub], [WsJob("pub", b.http_port, "ws-pub", dialect, TOPIC)], s)
        ratio = ws["rate"] / baseline["rate"] if baseline["rate"] else float("nan")
        return ws | {"mqtt_rate": baseline["rate"], "vs_mqtt": ratio}

    return run


def _native_metrics(dialect: str, target: float | None) -> list[Metric]:
    targets = (Target("ours", target),) if target else ()
    return [
        Metric("rate", f"native {dialect} 1->1 msg/s", "higher"),
        Metric("mqtt_rate", "MQTT TCP QoS 0 1->1 msg/s (same broker)", "higher"),
        Metric("vs_mqtt", f"native {dialect} / MQTT TCP", "", targets),
        *THROUGHPUT_INFO,
    ]


SCENARIOS: dict[str, Scenario] = {
    "ws-mqtt": Scenario(
        mqtt_over_websocket,
        [
            Metric("rate", "MQTT/WebSocket QoS 0 1->1 msg/s", "higher", (Target("ratio", 1.0),)),
            *THROUGHPUT_INFO,
        ],
        protocols=PROTOCOLS,
    ),
    "ws-msgpack": Scenario(
        native("msgpack"), _native_metrics("msgpack", 0.7), peers=(), protocols=PROTOCOLS
    ),
    "ws-json": Scenario(
        native("json"), _native_metrics("json", None), peers=(), protocols=PROTOCOLS
    ),
}
