"""Users and their vhost permissions: administrators only, reads included (they show
every account).  Changes go through the user database, which persists them."""

from __future__ import annotations

from typing import Any

from broker.auth import User
from broker.http.api.routing import (
    Call,
    Router,
    bad_request,
    json_response,
    no_content,
    not_found,
    tags_field,
)
from broker.http.app import Response


def describe_user(user: User) -> dict[str, Any]:
    return {"name": user.name, "tags": list(user.tags)}


def _permissions(user: User) -> list[dict[str, str]]:
    return [
        {
            "user": user.name,
            "vhost": vhost,
            "configure": p.configure,
            "write": p.write,
            "read": p.read,
        }
        for vhost, p in sorted(user.permissions.items())
    ]


def install(router: Router) -> None:
    def existing(call: Call) -> User:
        user = call.broker.users.get(call.params["name"])
        if user is None:
            raise not_found()
        return user

    def list_users(call: Call) -> Response:
        call.require_admin()
        return json_response([describe_user(u) for u in call.broker.users.list()])

    def get_user(call: Call) -> Response:
        call.require_admin()
        return json_response(describe_user(existing(call)))

    def put_user(call: Call) -> Response:
        """Create a user (a password is required) or change its password and tags."""
        call.require_admin()
        users, name, body = call.broker.users, call.params["name"], call.body()
        password, tags = body.get("password"), tags_field(body)
        if password is not None and not isinstance(password, str):
            raise bad_request("'password' must be a string")
        try:
            if users.get(name) is None:
                if password is None:
                    raise bad_request("a new user needs a 'password'")
                users.add(name, password, tags or [])
                return Response(201, content_type="application/json")
            if password is not None:
                users.set_password(name, password)
            if tags is not None:
                users.set_tags(name, tags)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return no_content()

    def delete_user(call: Call) -> Response:
        call.require_admin()
        call.broker.users.delete(existing(call).name)
        return no_content()

    def user_permissions(call: Call) -> Response:
        call.require_admin()
        return json_response(_permissions(existing(call)))

    def list_permissions(call: Call) -> Response:
        call.require_admin()
        return json_response([p for u in call.broker.users.list() for p in _permissions(u)])

    def get_permission(call: Call) -> Response:
        call.require_admin()
        found = [p for p in _permissions(existing(call)) if p["vhost"] == call.params["vhost"]]
        if not found:
            raise not_found()
        return json_response(found[0])

    def put_permission(call: Call) -> Response:
        call.require_admin()
        user, body = existing(call), call.body()
        patterns = [body.get(kind, "") for kind in ("configure", "write", "read")]
        if not all(isinstance(p, str) for p in patterns):
            raise bad_request("'configure', 'write' and 'read' must be strings (regexes)")
        created = call.params["vhost"] not in user.permissions
        try:
            call.broker.users.set_permissions(user.name, call.params["vhost"], *patterns)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return Response(201, content_type="application/json") if created else no_content()

    def delete_permission(call: Call) -> Response:
        call.require_admin()
        user = existing(call)
        if call.params["vhost"] not in user.permissions:
            raise not_found()
        call.broker.users.clear_permissions(user.name, call.params["vhost"])
        return no_content()

    router.add("GET", "users", list_users)
    router.add("GET", "users/{name}", get_user)
    router.add("PUT", "users/{name}", put_user)
    router.add("DELETE", "users/{name}", delete_user)
    router.add("GET", "users/{name}/permissions", user_permissions)
    router.add("GET", "permissions", list_permissions)
    router.add("GET", "permissions/{vhost}/{name}", get_permission)
    router.add("PUT", "permissions/{vhost}/{name}", put_permission)
    router.add("DELETE", "permissions/{vhost}/{name}", delete_permission)
