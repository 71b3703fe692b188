"""The management API under ``/api/``: JSON over HTTP Basic, shaped as RabbitMQ's
management API where that makes sense (see docs/management.md).  Any user may read what
concerns their vhosts; changes need the ``administrator`` tag."""

from __future__ import annotations

from broker.core import Broker
from broker.http.api import connections, overview, publish, topology, users, vhosts
from broker.http.api.overview import Listeners
from broker.http.api.routing import PREFIX, Router
from broker.http.app import HttpApp


def install(app: HttpApp, broker: Broker, listeners: Listeners) -> None:
    router = Router(broker)
    overview.install(router, listeners)
    connections.install(router)
    topology.install(router)
    publish.install(router)
    users.install(router)
    vhosts.install(router)
    app.route(PREFIX, router)
