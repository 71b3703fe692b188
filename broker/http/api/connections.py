"""Client connections of every protocol: listed (administrators see all, other users
their own) and closed by administrators, each in its own protocol's words."""

from __future__ import annotations

from typing import Any

from broker.connections import ClientConnection
from broker.http.api.routing import Call, Router, json_response, no_content, not_found
from broker.http.app import Response

#: why a connection closed through the API closes, unless the X-Reason header says
DEFAULT_REASON = "Closed via management API"


def describe_connection(connection: ClientConnection) -> dict[str, Any]:
    host, _, port = connection.peer.rpartition(":")
    return {
        "name": connection.name,
        "protocol": connection.protocol,
        "peer_host": host.strip("[]"),
        "peer_port": int(port) if port.isdigit() else None,
        "connected_at": int(connection.connected_at * 1000),
        "user": None,
        "vhost": None,
        "client_id": None,
        **connection.describe(),
    }


def install(router: Router) -> None:
    def visible(call: Call) -> list[dict[str, Any]]:
        described = [describe_connection(c) for c in call.broker.connections]
        if call.is_admin:
            return described
        return [c for c in described if c["user"] == call.user.name]

    def list_connections(call: Call) -> Response:
        return json_response(visible(call))

    def get_connection(call: Call) -> Response:
        for described in visible(call):
            if described["name"] == call.params["name"]:
                return json_response(described)
        raise not_found()

    def close_connection(call: Call) -> Response:
        call.require_admin()
        connection = call.broker.connections.get(call.params["name"])
        if connection is None:
            raise not_found()
        connection.close(call.request.headers.get("x-reason") or DEFAULT_REASON)
        return no_content()

    router.add("GET", "connections", list_connections)
    router.add("GET", "connections/{name}", get_connection)
    router.add("DELETE", "connections/{name}", close_connection)
