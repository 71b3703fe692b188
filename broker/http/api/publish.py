"""POST /api/exchanges/{vhost}/{name}/publish: publish one message for testing, with
RabbitMQ's body (``routing_key``, ``payload``, ``payload_encoding`` "string" or
"base64", ``properties``) and answer (``{"routed": bool}``).

Administrators only, with write permission on the exchange and the topic ACL as for an
AMQP publish.  The answer does not wait for the store: this is a test tool, not a
confirmed publish.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from broker.auth import can
from broker.http.api.routing import ApiError, Call, Router, bad_request, json_response
from broker.http.api.topology import exchange_name
from broker.http.app import Response
from broker.message import PROPERTY_NAMES, Message, Properties
from broker.topics import key_to_mqtt


def _body(request: dict[str, Any]) -> bytes:
    payload = request.get("payload", "")
    encoding = request.get("payload_encoding", "string")
    if not isinstance(payload, str):
        raise bad_request("'payload' must be a string")
    if encoding == "string":
        return payload.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise bad_request("'payload' is not base64") from None
    raise bad_request("'payload_encoding' must be 'string' or 'base64'")


def _properties(request: dict[str, Any]) -> Properties:
    given = request.get("properties") or {}
    if not isinstance(given, dict):
        raise bad_request("'properties' must be an object")
    unknown = set(given) - set(PROPERTY_NAMES)
    if unknown:
        raise bad_request(f"unknown properties: {', '.join(sorted(unknown))}")
    if not isinstance(given.get("headers") or {}, dict):
        raise bad_request("'headers' must be an object")
    expiration = given.get("expiration")
    if expiration is not None and not (isinstance(expiration, str) and expiration.isdigit()):
        raise bad_request("'expiration' must be milliseconds as a string")
    return Properties(**given)


def install(router: Router) -> None:
    def publish(call: Call) -> Response:
        call.require_admin()
        vhost, request, exchange = call.vhost(), call.body(), exchange_name(call)
        routing_key = request.get("routing_key", "")
        if not isinstance(routing_key, str):
            raise bad_request("'routing_key' must be a string")
        user = call.user
        if not can(user, vhost.name, "write", exchange):
            raise ApiError(403, "access_refused", f"write access to '{exchange}' refused")
        acl = call.broker.acl
        if (
            exchange == "amq.topic"
            and acl
            and not acl.check(user.name, "", key_to_mqtt(routing_key), "publish")
        ):
            raise ApiError(403, "access_refused", f"publishing on '{routing_key}' refused")
        properties = _properties(request)
        expires_at = None
        if properties.expiration is not None:
            expires_at = time.time() + int(properties.expiration) / 1000
        message = Message(
            exchange, routing_key, _body(request), properties, expires_at, publisher=user.name
        )
        result = vhost.publish(message)
        return json_response({"routed": result.routed > 0})

    router.add("POST", "exchanges/{vhost}/{name}/publish", publish)
