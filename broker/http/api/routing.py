"""Routing and the request context of the management API: path patterns with
percent-encoded segments (``%2F`` is the vhost ``/``), HTTP Basic authentication against
the user database, and JSON errors shaped as RabbitMQ's ``{"error", "reason"}``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from broker.auth import AuthError, User, has_vhost_access
from broker.core import Broker
from broker.errors import BrokerError
from broker.http.app import Request, Response
from broker.store.base import StoreError
from broker.vhost import VHost

PREFIX = "/api/"
ADMINISTRATOR = "administrator"
REALM = 'Basic realm="broker management"'
#: methods that change something: their success is answered once the store has it
CHANGES = frozenset({"PUT", "POST", "DELETE"})


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


def not_found(reason: str = "Object Not Found") -> ApiError:
    return ApiError(404, "not_found", reason)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


@dataclass
class Call:
    """One authenticated API request: who asks, the path's parameters, and the broker."""

    request: Request
    user: User
    params: dict[str, str]
    broker: Broker

    @property
    def is_admin(self) -> bool:
        return ADMINISTRATOR in self.user.tags

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ApiError(403, "not_authorised", "Not administrator user")

    def may_see(self, vhost: str) -> bool:
        return self.is_admin or has_vhost_access(self.user, vhost)

    def vhost(self) -> VHost:
        """The path's vhost, if it exists and the user may see it."""
        name = self.params["vhost"]
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise not_found(f"no vhost '{name}'")
        if not self.may_see(name):
            raise ApiError(403, "not_authorised", f"Access to vhost '{name}' refused")
        return vhost

    def visible_vhosts(self) -> list[VHost]:
        """The path's vhost when it names one, else every vhost the user may see."""
        if "vhost" in self.params:
            return [self.vhost()]
        return [v for n, v in sorted(self.broker.vhosts.items()) if self.may_see(n)]

    def body(self) -> dict[str, Any]:
        """The request's JSON object (an empty body is an empty object)."""
        if not self.request.body.strip():
            return {}
        try:
            value = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad_request(f"body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise bad_request("body must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        """A query flag such as ``if-unused=true``."""
        values = parse_qs(self.request.query).get(name, [])
        return bool(values) and values[-1].lower() == "true"


Handler = Callable[[Call], Response]


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value, default=_jsonable).encode(), "application/json")


def no_content() -> Response:
    return Response(204, content_type="application/json")


def tags_field(body: dict[str, Any]) -> list[str] | None:
    """A body's ``tags``: RabbitMQ accepts a comma-separated string or (since 3.12) a
    list."""
    tags = body.get("tags")
    if tags is None:
        return None
    if isinstance(tags, str):
        return [t.strip() for t in tags.split(",") if t.strip()]
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        return tags
    raise bad_request("'tags' must be a string or a list of strings")


def _jsonable(value: Any) -> Any:
    """Values AMQP tables may hold that JSON has no type for."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


#: HTTP status for the core's refusals, by their AMQP reply code
_STATUS = {403: 403, 404: 404, 405: 409, 406: 400, 530: 400}


def refused(exc: BrokerError) -> ApiError:
    """The API error for a refusal of the core (NotFound, AccessRefused, ...)."""
    status = _STATUS.get(exc.code, 400)
    error = {403: "access_refused", 404: "not_found", 409: "resource_locked"}.get(status)
    return ApiError(status, error or "bad_request", exc.message)


class Router:
    """Routes ``/api/...`` by method and path pattern; ``{name}`` segments become
    parameters, decoded after the path is split (so ``%2F`` stays inside its segment)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, tuple(pattern.strip("/").split("/")), handler))

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        try:
            handler, params = self._match(request)
            user = self._authenticate(request)
            response = handler(Call(request, user, params, self._broker))
        except BrokerError as exc:  # the core refused: its AMQP reply code says why
            return self._error_response(request, refused(exc))
        except ApiError as exc:
            return self._error_response(request, exc)
        if request.method in CHANGES and response.status < 300:
            return self._durable(response)
        return response

    async def _durable(self, response: Response) -> Response:
        """A change is confirmed once it is on disk, so it survives a kill -9 after the
        answer."""
        try:
            await self._broker.store.sync()
        except StoreError as exc:
            return json_response({"error": "internal_error", "reason": str(exc)}, 500)
        return response

    @staticmethod
    def _error_response(request: Request, exc: ApiError) -> Response:
        response = json_response({"error": exc.error, "reason": exc.reason}, exc.status)
        if exc.status == 401 and "x-requested-with" not in request.headers:
            # scripts (the dashboard) say so and handle 401 themselves: no browser prompt
            response.headers.append(("www-authenticate", REALM))
        return response

    def _match(self, request: Request) -> tuple[Handler, dict[str, str]]:
        raw = request.path[len(PREFIX) :].rstrip("/").split("/")
        segments = [unquote(s) for s in raw]
        allowed: list[str] = []
        for method, pattern, handler in self._routes:
            params = _bind(pattern, segments)
            if params is None:
                continue
            if method == request.method:
                return handler, params
            allowed.append(method)
        if allowed:
            raise ApiError(405, "method_not_allowed", f"use {', '.join(sorted(set(allowed)))}")
        raise not_found()

    def _authenticate(self, request: Request) -> User:
        """HTTP Basic against the user database, guest rules included (loopback only).
        No credentials at all is a 401 too: the API never acts as anonymous guest."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise ApiError(401, "not_authorized", "Login required")
        try:
            username, sep, password = (
                base64.b64decode(encoded, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "not_authorized", "Malformed credentials") from None
        if not username or not sep:
            raise ApiError(401, "not_authorized", "Login failed")
        try:
            return self._broker.users.authenticate(
                username, password, peer_loopback=request.peer_loopback
            )
        except AuthError:
            raise ApiError(401, "not_authorized", "Login failed") from None


def _bind(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for part, segment in zip(pattern, segments, strict=True):
        if part.startswith("{"):
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    return params
