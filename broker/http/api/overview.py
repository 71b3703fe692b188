"""GET /api/overview and /api/whoami: the broker at a glance."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Mapping

from broker.http.api.routing import Call, Router, json_response
from broker.http.api.topology import queue_totals
from broker.http.app import Response

#: listener name -> bound (host, port), as the runtime holds them
Listeners = Callable[[], Mapping[str, tuple[str, int]]]

PRODUCT = "broker"


def _version() -> str:
    try:
        return importlib.metadata.version(PRODUCT)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def install(router: Router, listeners: Listeners) -> None:
    version = _version()

    def overview(call: Call) -> Response:
        broker = call.broker
        rates = broker.rates
        publish_rate, deliver_rate = rates.overall.rates()
        queues = [q for v in broker.vhosts.values() for q in v.queues.values()]
        return json_response(
            {
                "product_name": PRODUCT,
                "product_version": version,
                "uptime": int((time.time() - broker.started) * 1000),
                "listeners": [
                    {"protocol": name, "ip_address": host, "port": port}
                    for name, (host, port) in sorted(listeners().items())
                ],
                "connections_by_protocol": dict(sorted(broker.connections.by_protocol().items())),
                "object_totals": {
                    "connections": len(broker.connections),
                    "queues": len(queues),
                    "exchanges": sum(len(v.exchanges) for v in broker.vhosts.values()),
                    "consumers": sum(len(q.consumers) for q in queues),
                },
                "queue_totals": queue_totals(queues),
                "message_stats": {
                    "publish": rates.published,
                    "publish_details": {"rate": publish_rate},
                    "deliver_get": rates.delivered,
                    "deliver_get_details": {"rate": deliver_rate},
                },
            }
        )

    def whoami(call: Call) -> Response:
        return json_response({"name": call.user.name, "tags": list(call.user.tags)})

    router.add("GET", "overview", overview)
    router.add("GET", "whoami", whoami)
