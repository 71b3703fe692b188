"""``/metrics``: the broker's figures in Prometheus text format (0.0.4), through
prometheus-client.

Everything but the commit histogram is read from the broker's own state when Prometheus
scrapes (connection counts, message counters, queue depths, the process's memory), so
serving metrics adds no work to the message path. The registry is the broker's own, not
prometheus-client's global one, so several brokers in one process (tests) stay apart.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.alarms import DISK, MEMORY
from broker.core import Broker
from broker.http.app import HttpApp, Request, Response

#: commit durations of the store's group commits: fsync dominates, from under a
#: millisecond on fast disks to a second on a struggling one
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class BrokerCollector(Collector):
    """Connections, messages and queues, read from the broker at scrape time."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        stats = self.broker.stats
        connections = GaugeMetricFamily(
            "broker_connections", "Open client connections.", labels=["protocol"]
        )
        for protocol, count in sorted(self.broker.connections.by_protocol().items()):
            connections.add_metric([protocol], count)
        yield connections

        received = CounterMetricFamily(
            "broker_messages_received",
            "Messages published by clients, per protocol.",
            labels=["protocol"],
        )
        delivered = CounterMetricFamily(
            "broker_messages_delivered",
            "Messages delivered to clients, per protocol.",
            labels=["protocol"],
        )
        for protocol, (count_in, count_out) in sorted(stats.messages_by_protocol().items()):
            received.add_metric([protocol], count_in)
            delivered.add_metric([protocol], count_out)
        yield received
        yield delivered

        yield from self._queues()

        alarms = GaugeMetricFamily(
            "broker_alarm", "1 while a resource alarm blocks publishers.", labels=["resource"]
        )
        active = self.broker.alarms.active
        for resource in (MEMORY, DISK):
            alarms.add_metric([resource], 1 if resource in active else 0)
        yield alarms

    def _queues(self) -> Iterator[Metric]:
        labels = ["vhost", "queue"]
        ready = GaugeMetricFamily(
            "broker_queue_messages_ready", "Messages ready for delivery.", labels=labels
        )
        unacked = GaugeMetricFamily(
            "broker_queue_messages_unacked",
            "Messages delivered and awaiting acknowledgement.",
            labels=labels,
        )
        consumers = GaugeMetricFamily("broker_queue_consumers", "Consumers.", labels=labels)
        for vhost in list(self.broker.vhosts.values()):
            for queue in list(vhost.queues.values()):
                key = [vhost.name, queue.name]
                ready.add_metric(key, len(queue))
                unacked.add_metric(key, len(queue.unacked))
                consumers.add_metric(key, len(queue.consumers))
        yield ready
        yield unacked
        yield consumers


def install(app: HttpApp, broker: Broker) -> CollectorRegistry:
    """Serve ``/metrics`` for ``broker`` and feed the commit histogram from its store."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BrokerCollector(broker))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, open fds
    commits = Histogram(
        "broker_store_commit_seconds",
        "Duration of the store's group commits (write and fsync).",
        buckets=COMMIT_BUCKETS,
        registry=registry,
    )
    broker.store.on_commit = commits.observe

    def metrics(request: Request) -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4)

    app.route("/metrics", metrics)
    return registry
