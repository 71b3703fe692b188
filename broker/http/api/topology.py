"""Exchanges, queues and bindings: listed per vhost (the ones the user may see), declared
and deleted by administrators, with RabbitMQ's field names."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from broker.exchanges import Binding, Exchange
from broker.http.api.routing import (
    Call,
    Router,
    bad_request,
    json_response,
    no_content,
    not_found,
)
from broker.http.app import Response
from broker.queues import Queue
from broker.vhost import VHost

#: how the default exchange "" is named in URLs, as RabbitMQ names it
DEFAULT_EXCHANGE = "amq.default"

#: broker errors (by AMQP reply code) as HTTP statuses


def exchange_name(call: Call) -> str:
    name = call.params["name"]
    return "" if name == DEFAULT_EXCHANGE else name


def queue_totals(queues: list[Queue]) -> dict[str, int]:
    ready = sum(len(q) for q in queues)
    unacked = sum(len(q.unacked) for q in queues)
    return {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }


def describe_exchange(vhost: VHost, exchange: Exchange) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "vhost": vhost.name,
        "type": exchange.type,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": exchange.arguments,
    }


def describe_queue(call: Call, vhost: VHost, queue: Queue) -> dict[str, Any]:
    publish_rate, deliver_rate = call.broker.rates.of_queue(queue)
    return {
        "name": queue.name,
        "vhost": vhost.name,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
        "arguments": queue.arguments,
        "consumers": len(queue.consumers),
        **queue_totals([queue]),
        "message_bytes_ready": queue.ready_bytes,
        "message_stats": {
            "publish": queue.published,
            "publish_details": {"rate": publish_rate},
            "deliver_get": queue.delivered,
            "deliver_get_details": {"rate": deliver_rate},
        },
    }


def properties_key(binding: Binding) -> str:
    """Names a binding in a URL, as RabbitMQ does: the routing key ("~" when empty), and a
    digest of the arguments when there are any."""
    key = binding.routing_key or "~"
    if not binding.arguments:
        return key
    encoded = json.dumps(binding.arguments, sort_keys=True, default=str).encode()
    return f"{key}~{hashlib.sha256(encoded).hexdigest()[:10]}"


def _bindings(vhost: VHost) -> Iterator[dict[str, Any]]:
    for queue in vhost.queues.values():  # the default exchange's implicit bindings
        yield {
            "source": "",
            "vhost": vhost.name,
            "destination": queue.name,
            "destination_type": "queue",
            "routing_key": queue.name,
            "arguments": {},
            "properties_key": queue.name,
        }
    for exchange in vhost.exchanges.values():
        for binding in exchange.bindings.values():
            destination = binding.destination
            yield {
                "source": exchange.name,
                "vhost": vhost.name,
                "destination": destination.name,
                "destination_type": "exchange" if destination.is_exchange else "queue",
                "routing_key": binding.routing_key,
                "arguments": binding.arguments,
                "properties_key": properties_key(binding),
            }


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false")
    return value


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("'arguments' must be an object")
    return arguments


def install(router: Router) -> None:
    def list_exchanges(call: Call) -> Response:
        return json_response(
            [describe_exchange(v, e) for v in call.visible_vhosts() for e in v.exchanges.values()]
        )

    def get_exchange(call: Call) -> Response:
        vhost = call.vhost()
        exchange = vhost.exchanges.get(exchange_name(call))
        if exchange is None:
            raise not_found()
        return json_response(describe_exchange(vhost, exchange))

    def put_exchange(call: Call) -> Response:
        call.require_admin()
        vhost, body, name = call.vhost(), call.body(), exchange_name(call)
        existed = name in vhost.exchanges
        vhost.declare_exchange(
            name,
            str(body.get("type", "direct")),
            durable=_flag(body, "durable", True),
            auto_delete=_flag(body, "auto_delete", False),
            internal=_flag(body, "internal", False),
            arguments=_arguments(body),
        )
        return no_content() if existed else Response(201, content_type="application/json")

    def delete_exchange(call: Call) -> Response:
        call.require_admin()
        call.vhost().delete_exchange(exchange_name(call), if_unused=call.flag("if-unused"))
        return no_content()

    def list_queues(call: Call) -> Response:
        return json_response(
            [describe_queue(call, v, q) for v in call.visible_vhosts() for q in v.queues.values()]
        )

    def get_queue(call: Call) -> Response:
        vhost = call.vhost()
        queue = vhost.queues.get(call.params["name"])
        if queue is None:
            raise not_found()
        return json_response(describe_queue(call, vhost, queue))

    def put_queue(call: Call) -> Response:
        call.require_admin()
        vhost, body, name = call.vhost(), call.body(), call.params["name"]
        existed = name in vhost.queues
        vhost.declare_queue(
            name,
            durable=_flag(body, "durable", True),
            auto_delete=_flag(body, "auto_delete", False),
            arguments=_arguments(body),
        )
        return no_content() if existed else Response(201, content_type="application/json")

    def delete_queue(call: Call) -> Response:
        call.require_admin()
        call.vhost().delete_queue(
            call.params["name"],
            if_unused=call.flag("if-unused"),
            if_empty=call.flag("if-empty"),
        )
        return no_content()

    def purge_queue(call: Call) -> Response:
        call.require_admin()
        call.vhost().queue(call.params["name"]).purge()
        return no_content()

    def list_bindings(call: Call) -> Response:
        return json_response([b for v in call.visible_vhosts() for b in _bindings(v)])

    for prefix, lister in (
        ("exchanges", list_exchanges),
        ("queues", list_queues),
        ("bindings", list_bindings),
    ):
        router.add("GET", prefix, lister)
        router.add("GET", prefix + "/{vhost}", lister)
    router.add("GET", "exchanges/{vhost}/{name}", get_exchange)
    router.add("PUT", "exchanges/{vhost}/{name}", put_exchange)
    router.add("DELETE", "exchanges/{vhost}/{name}", delete_exchange)
    router.add("GET", "queues/{vhost}/{name}", get_queue)
    router.add("PUT", "queues/{vhost}/{name}", put_queue)
    router.add("DELETE", "queues/{vhost}/{name}", delete_queue)
    router.add("DELETE", "queues/{vhost}/{name}/contents", purge_queue)
    install_binding_changes(router)


def install_binding_changes(router: Router) -> None:
    """POST /api/bindings/{vhost}/e/{source}/{q|e}/{destination} binds (body:
    ``routing_key``, ``arguments``); DELETE .../{props} unbinds by properties key."""

    def endpoints(call: Call) -> tuple[VHost, Exchange, Queue | Exchange]:
        vhost = call.vhost()
        kind = call.params["kind"]
        if kind not in ("q", "e"):
            raise not_found()
        source = vhost.exchanges.get(call.params["source"])
        targets: dict[str, Any] = vhost.queues if kind == "q" else vhost.exchanges
        destination = targets.get(call.params["destination"])
        if source is None or destination is None:
            raise not_found()
        return vhost, source, destination

    def bind(call: Call) -> Response:
        call.require_admin()
        vhost, source, destination = endpoints(call)
        body = call.body()
        routing_key = body.get("routing_key", "")
        if not isinstance(routing_key, str):
            raise bad_request("'routing_key' must be a string")
        vhost.bind(destination, source.name, routing_key, _arguments(body))
        location = properties_key(Binding(destination, routing_key, _arguments(body)))
        return Response(201, content_type="application/json", headers=[("location", location)])

    def unbind(call: Call) -> Response:
        call.require_admin()
        vhost, source, destination = endpoints(call)
        for binding in list(source.bindings.values()):
            if (
                binding.destination is destination
                and properties_key(binding) == call.params["props"]
            ):
                vhost.unbind(destination, source.name, binding.routing_key, binding.arguments)
                return no_content()
        raise not_found()

    router.add("POST", "bindings/{vhost}/e/{source}/{kind}/{destination}", bind)
    router.add("DELETE", "bindings/{vhost}/e/{source}/{kind}/{destination}/{props}", unbind)
