"""AMQP 0-9-1 scenarios, compared with RabbitMQ: one queue, 256-byte bodies.

Targets from the AMQP issue: transient throughput at least RabbitMQ's, persistent confirmed
throughput at least 1.5x RabbitMQ's, and MQTT publish to AMQP consumer at least 0.7x the
same broker's MQTT 1-to-1 figure.
"""

from __future__ import annotations

from benchmarks.amqpload import AmqpJob
from benchmarks.brokers import Broker
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

SENSOR_TOPIC = "sensors/1/temp"
SENSOR_FILTER, SENSOR_BINDING = "sensors/#", "sensors.#"


def transient(b: Broker, s: Settings) -> Figures:
    """Default exchange to a non-durable queue, consumed with no-ack."""
    queue = "bench-transient"
    sub = AmqpJob("consumer", b.amqp_port, "consumer", queue=queue)
    pub = AmqpJob("publisher", b.amqp_port, "publisher", routing_key=queue)
    return throughput(b, [sub], [pub], s)


def persistent(b: Broker, s: Settings) -> Figures:
    """delivery_mode 2 to a durable queue with publisher confirms (``s.window`` unconfirmed
    at most); the consumer acks, multiple, every ``s.ack_every`` deliveries under a prefetch
    of ``s.prefetch``."""
    queue = "bench-persistent"
    sub = AmqpJob(
        "consumer",
        b.amqp_port,
        "consumer",
        queue=queue,
        durable=True,
        no_ack=False,
        prefetch=s.prefetch,
        ack_every=min(s.ack_every, s.prefetch),
    )
    pub = AmqpJob(
        "publisher",
        b.amqp_port,
        "publisher",
        routing_key=queue,
        persistent=True,
        window=s.window,
    )
    return throughput(b, [sub], [pub], s)


def mqtt_to_amqp(b: Broker, s: Settings) -> Figures:
    """An MQTT QoS 0 publisher on ``sensors/1/temp``, first to an MQTT subscriber of
    ``sensors/#`` (the same broker's 1-to-1 figure), then through ``amq.topic`` to an AMQP
    queue bound with ``sensors.#`` and consumed with no-ack.  The MQTT payload is the usual
    64 bytes either way, so the ratio isolates the AMQP delivery path."""
    mqtt_pub = Job("pub", b.port, "mqtt-pub", [SENSOR_TOPIC])
    mqtt_sub = Job("sub", b.port, "mqtt-sub", [SENSOR_FILTER])
    baseline = throughput(b, [mqtt_sub], [mqtt_pub], s)
    # a client id of its own: the first publisher's session may not be gone yet
    pub = Job("pub", b.port, "cross-pub", [SENSOR_TOPIC])
    sub = AmqpJob(
        "consumer",
        b.amqp_port,
        "consumer",
        queue="bench-sensors",
        binding=("amq.topic", SENSOR_BINDING),
    )
    cross = throughput(b, [sub], [pub], s)
    ratio = cross["rate"] / baseline["rate"] if baseline["rate"] else float("nan")
    return cross | {"mqtt_rate": baseline["rate"], "vs_mqtt": ratio}


SCENARIOS: dict[str, Scenario] = {
    "amqp-transient": Scenario(
        transient,
        [
            Metric("rate", "transient 1->1 delivered msg/s", "higher", (Target("ratio", 1.0),)),
            *THROUGHPUT_INFO,
        ],
        peers=("rabbitmq",),
        protocols=("amqp",),
    ),
    "amqp-persistent": Scenario(
        persistent,
        [
            Metric(
                "confirmed_rate", "persistent confirmed msg/s", "higher", (Target("ratio", 1.5),)
            ),
            Metric("rate", "persistent delivered msg/s", "higher"),
            *THROUGHPUT_INFO,
        ],
        peers=("rabbitmq",),
        protocols=("amqp",),
    ),
    "mqtt-to-amqp": Scenario(
        mqtt_to_amqp,
        [
            Metric("rate", "MQTT QoS 0 -> AMQP msg/s", "higher"),
            Metric("mqtt_rate", "MQTT QoS 0 1->1 msg/s (same broker)", "higher"),
            Metric("vs_mqtt", "MQTT->AMQP / MQTT 1->1", "", (Target("ours", 0.7),)),
            *THROUGHPUT_INFO,
        ],
        peers=("rabbitmq",),
        protocols=("mqtt", "amqp"),
    ),
}
