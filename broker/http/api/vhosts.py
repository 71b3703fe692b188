"""Virtual hosts: listed (the ones the user may see), created and deleted by administrators
at run time, as RabbitMQ's /api/vhosts.  Deleting one closes its connections and drops
everything in it; the default vhost "/" cannot be deleted (400)."""

from __future__ import annotations

from typing import Any

from broker.http.api.routing import (
    Call,
    Router,
    bad_request,
    json_response,
    no_content,
    tags_field,
)
from broker.http.api.topology import queue_totals
from broker.http.app import Response
from broker.vhost import VHost


def describe_vhost(vhost: VHost) -> dict[str, Any]:
    return {
        "name": vhost.name,
        "description": vhost.description,
        "tags": list(vhost.tags),
        "metadata": {"description": vhost.description, "tags": list(vhost.tags)},
        **queue_totals(list(vhost.queues.values())),
    }


def install(router: Router) -> None:
    def list_vhosts(call: Call) -> Response:
        return json_response([describe_vhost(v) for v in call.visible_vhosts()])

    def get_vhost(call: Call) -> Response:
        return json_response(describe_vhost(call.vhost()))

    def put_vhost(call: Call) -> Response:
        """Create a vhost, or change its description and tags (201 new, 204 existed)."""
        call.require_admin()
        body = call.body()
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise bad_request("'description' must be a string")
        try:
            created = call.broker.add_vhost(
                call.params["vhost"], description=description, tags=tags_field(body)
            )
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return Response(201, content_type="application/json") if created else no_content()

    def delete_vhost(call: Call) -> Response:
        call.require_admin()
        call.broker.delete_vhost(call.params["vhost"])
        return no_content()

    router.add("GET", "vhosts", list_vhosts)
    router.add("GET", "vhosts/{vhost}", get_vhost)
    router.add("PUT", "vhosts/{vhost}", put_vhost)
    router.add("DELETE", "vhosts/{vhost}", delete_vhost)
